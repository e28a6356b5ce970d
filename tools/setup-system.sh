#!/usr/bin/env bash
# Installs the system programs the tests and benchmarks run for real: Suricata 7 from
# Debian bookworm-backports, ndpiReader (libndpi-bin), jq, tcpdump, Chromium, logrotate, and
# promtool (only that binary, taken from Debian's prometheus package), and libpcap-dev (Zeek's
# headers include pcap.h: building the Zeek package's plugin needs it), and when a Zeek is
# installed the plugin's other build needs: cmake, g++, libssl-dev. Idempotent.
# The backports source reuses the archive URI of the machine's own Debian source: no mirror
# host name is ever written here.
set -euo pipefail
need=()
if [ "${1:-}" = venv ]; then
  # only what `python3 -m venv` needs on Debian (make setup calls this when venv fails)
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    exit 0
  fi
  echo "setup-system: python3 -m venv failed; install python3-venv (as root: apt-get install python3-venv)" >&2
  exit 1
fi
if [ "${1:-}" = build ]; then
  # a C compiler and the Python headers, for the compiled packet path (make setup calls this;
  # without them msewatch installs with its pure-Python packet path)
  py="${2:-python3}"
  inc="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null || true)"
  command -v gcc >/dev/null || command -v cc >/dev/null || need+=(gcc)
  [ -n "$inc" ] && [ -f "$inc/Python.h" ] || need+=(python3-dev)
  [ ${#need[@]} -eq 0 ] && exit 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null \
      && echo "setup-system: installed ${need[*]} (to build the compiled packet path)" && exit 0
  fi
  echo "setup-system: no ${need[*]}: msewatch installs with its pure-Python packet path (slower);" \
       "as root: apt-get install ${need[*]}, then make setup" >&2
  exit 0
fi
command -v suricata >/dev/null || need+=(suricata)
command -v ndpiReader >/dev/null || need+=(libndpi-bin)
command -v jq >/dev/null || need+=(jq)
command -v tcpdump >/dev/null || need+=(tcpdump)
command -v openssl >/dev/null || need+=(openssl)         # the wss:// bridge test makes its certificate
[ -x /usr/bin/chromium ] || need+=(chromium)            # the report's browser test
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
command -v logrotate >/dev/null || need+=(logrotate)      # contrib/logrotate/msewatch under a running bridge
command -v promtool >/dev/null || need+=(promtool)        # checks the bridge's metric names
[ -e /usr/include/pcap.h ] || need+=(libpcap-dev)         # Zeek's headers, for the package's plugin (make plugin)
if command -v zeek >/dev/null || [ -x /opt/zeek/bin/zeek ]; then   # the rest of what make plugin needs
  command -v cmake >/dev/null || need+=(cmake)
  command -v c++ >/dev/null || need+=(g++)
  [ -e /usr/include/openssl/ssl.h ] || need+=(libssl-dev) # Zeek's CMake config requires OpenSSL
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "setup-system: missing ${need[*]}; run as root on Debian to install (tests needing them will skip)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
. /etc/os-release

# The URI of the machine's own Debian archive source (deb822 or one-line format), for the
# codename's main suite: the mirror this machine already uses.
debian_archive_uri() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk -v suite="$VERSION_CODENAME" '
      function flush() { if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uri != "") { print uri; found = 1; exit } types = suites = uri = "" }
      /^[[:space:]]*$/ { flush(); next }
      /^[[:space:]]*#/ { next }
      tolower($1) == "types:"  { $1 = ""; types = $0 }
      tolower($1) == "suites:" { $1 = ""; suites = $0 }
      tolower($1) == "uris:"   { uri = $2 }
      END { if (!found) flush() }' "$f" | head -n1
  done | head -n1 | grep . && return 0
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk -v suite="$VERSION_CODENAME" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i+1) == suite) { print $i; exit } }' | grep .
}

if [ "${VERSION_CODENAME:-}" = bookworm ] && [[ " ${need[*]} " == *" suricata "* ]] &&
   ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  if uri=$(debian_archive_uri); then
    cat > /etc/apt/sources.list.d/msewatch-backports.sources <<SRC
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  else
    echo "setup-system: no Debian archive source for $VERSION_CODENAME in /etc/apt; add bookworm-backports yourself for Suricata 7" >&2
  fi
fi
apt-get update -qq
for pkg in "${need[@]}"; do
  if [ "$pkg" = suricata ] && [ "${VERSION_CODENAME:-}" = bookworm ] && grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    apt-get install -y -qq -t bookworm-backports suricata >/dev/null
  elif [ "$pkg" = promtool ]; then
    # Debian ships promtool inside the prometheus server package; take only the binary, so
    # that no Prometheus service gets installed or started on the machine
    tmp=$(mktemp -d)
    if (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1) && dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb |
         tar -x -O ./usr/bin/promtool > "$tmp/promtool" && [ -s "$tmp/promtool" ]; then
      install -m 0755 "$tmp/promtool" /usr/local/bin/promtool
    else
      echo "setup-system: promtool unavailable (no prometheus package); the metric-name check will skip" >&2
    fi
    rm -rf "$tmp"
  else
    apt-get install -y -qq "$pkg" >/dev/null
  fi
done
echo "setup-system: installed ${need[*]}"
