#!/bin/sh
# Installs every Debian 12 package wacht needs to build, run and test, or
# with arguments just those packages (bench/install-deps.sh).
# Idempotent: apt runs only when something is missing.
set -eu
# The last line is for scripts/ops-checks.sh: dpkg-shlibdeps for the .deb,
# systemd-analyze, man and groff/mandoc for the man pages, YAML for the rules.
PACKAGES="
  build-essential cmake ninja-build pkg-config git
  libuv1-dev libcurl4-openssl-dev libssl-dev libc-ares-dev libsystemd-dev libpcre2-dev
  prometheus-cpp-dev libcivetweb-dev libtomlplusplus-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev clang-format clang-tidy cppcheck
  clang libclang-rt-14-dev llvm
  python3 python3-aiosmtpd python3-dnslib openssl curl prometheus faketime
  monitoring-plugins-basic monitoring-plugins-standard iproute2 nftables
  dpkg-dev systemd man-db groff-base mandoc python3-yaml
  prometheus-alertmanager ccache
"
[ $# -eq 0 ] || PACKAGES="$*"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "installing:$missing"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # --no-install-recommends keeps the prometheus package from pulling in
  # more than wacht uses (its promtool; its server only in bench/).
  $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
