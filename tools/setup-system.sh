#!/usr/bin/env bash
# Installs the system programs the tests and benchmarks run for real: Suricata 7 from
# Debian bookworm-backports, ndpiReader (libndpi-bin), jq, tcpdump, Chromium. Idempotent.
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
command -v suricata >/dev/null || need+=(suricata)
command -v ndpiReader >/dev/null || need+=(libndpi-bin)
command -v jq >/dev/null || need+=(jq)
command -v tcpdump >/dev/null || need+=(tcpdump)
command -v openssl >/dev/null || need+=(openssl)         # the wss:// bridge test makes its certificate
[ -x /usr/bin/chromium ] || need+=(chromium)            # the report's browser test
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "setup-system: missing ${need[*]}; run as root on Debian to install (tests needing them will skip)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
. /etc/os-release
if [ "${VERSION_CODENAME:-}" = bookworm ] && ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  cat > /etc/apt/sources.list.d/msewatch-backports.sources <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
apt-get update -qq
for pkg in "${need[@]}"; do
  if [ "$pkg" = suricata ] && [ "${VERSION_CODENAME:-}" = bookworm ]; then
    apt-get install -y -qq -t bookworm-backports suricata >/dev/null
  else
    apt-get install -y -qq "$pkg" >/dev/null
  fi
done
echo "setup-system: installed ${need[*]}"
