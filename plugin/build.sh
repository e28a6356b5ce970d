#!/bin/sh
# Builds the native evidence recorder (plugin/) into ./build, where zkg picks it up
# (zkg.meta: build_command). Without the tools it needs, or if the build fails, it says
# so, leaves no ./build behind and exits 0: the package then records in script-land.
#
#   MSEWATCH_PLUGIN=off       do not build (script recording)
#   MSEWATCH_PLUGIN=strict    without the tools or headers it needs: the one line and exit 0,
#                             as by default; with them, a failed build is an error (make plugin)
#   MSEWATCH_PLUGIN=required  any failure, a missing tool too, is an error
set -u
cd "$(dirname "$0")/.." || exit 1

mode="${MSEWATCH_PLUGIN:-auto}"
fallback() {
    echo "msewatch: native recorder not built ($1); the package records evidence in script-land" >&2
    rm -rf build
    if [ "$mode" = required ] || { [ "$mode" = strict ] && [ "${2:-}" = failed ]; }; then
        exit 1
    fi
    exit 0
}

[ "$mode" = off ] && fallback "MSEWATCH_PLUGIN=off"

zeek_config="$(command -v zeek-config 2>/dev/null)"
[ -n "$zeek_config" ] || fallback "zeek-config not on PATH"
cmake_bin="$(command -v cmake 2>/dev/null)"
[ -n "$cmake_bin" ] || fallback "cmake not found"
cxx="${CXX:-c++}"
command -v "$cxx" >/dev/null 2>&1 || fallback "no C++ compiler ($cxx)"
# Zeek's headers include libpcap's and OpenSSL's (its CMake config requires OpenSSL).
missing=""
for h in pcap.h openssl/ssl.h; do
    printf '#include <%s>\n' "$h" | "$cxx" -E -x c++ - >/dev/null 2>&1 || missing="$missing <$h>"
done
[ -z "$missing" ] || fallback "no$missing for Zeek's headers; Debian: apt-get install libpcap-dev libssl-dev"

cmake_dir="$("$zeek_config" --cmake_dir)"
jobs="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)"

rm -rf build
"$cmake_bin" -S plugin -B build -DCMAKE_MODULE_PATH="$cmake_dir" -DCMAKE_BUILD_TYPE=Release >build.log 2>&1 \
    || { cat build.log >&2; rm -f build.log; fallback "cmake configure failed" failed; }
"$cmake_bin" --build build -j "$jobs" >>build.log 2>&1 \
    || { cat build.log >&2; rm -f build.log; fallback "compile failed" failed; }
mv build.log build/build.log
echo "msewatch: native recorder built in $(pwd)/build"
