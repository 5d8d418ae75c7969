#!/bin/sh
# Operations checks, as CI runs them (after scripts/test.sh): the systemd unit,
# the shipped configs, the man pages, the Grafana dashboard and Prometheus
# files against a live wachtd, and the Debian package installed on this machine
# and purged again. Builds a release wachtd in build/release (as
# scripts/quickstart.sh does); WACHT_OPS_BUILD=dir picks another directory.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh
BUILD=${WACHT_OPS_BUILD:-build/release}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWACHT_TESTS=OFF \
  -DCMAKE_CXX_COMPILER_LAUNCHER=ccache >/dev/null
cmake --build "$BUILD" --target wachtd
WACHTD="$BUILD/wachtd"
TMP=$(mktemp -d /tmp/wacht-ops-checks-XXXXXX)
trap 'rm -rf "$TMP"' EXIT INT TERM

echo "== systemd unit"
# Installed into a scratch prefix, the unit points at that prefix's wachtd and
# man pages, so verify finds its executables and documentation.
cmake --install "$BUILD" --prefix "$TMP/prefix" >/dev/null
MANPATH="$TMP/prefix/share/man" systemd-analyze verify "$TMP/prefix/lib/systemd/system/wachtd.service"
score=$(systemd-analyze security --offline=true systemd/wachtd.service 2>/dev/null |
        sed -n 's/.*Overall exposure level for wachtd.service: \([0-9.]*\).*/\1/p')
[ -n "$score" ] || { echo "systemd-analyze security printed no score" >&2; exit 1; }
awk "BEGIN { exit !($score <= 2.0) }" || {
  echo "systemd-analyze security rates systemd/wachtd.service $score, more than 2.0" >&2; exit 1; }
echo "ok: systemd-analyze verify clean, security exposure $score (<= 2.0)"

echo "== shipped configs"
# Main files only (etc/examples/<site>/wacht.toml for an example with its own
# conf.d/); files in conf.d/ are fragments, checked through their includes.
for f in etc/*.toml etc/examples/*.toml etc/examples/*/wacht.toml; do
  [ -e "$f" ] || continue
  "$WACHTD" --check-config --config "$f"
done

echo "== man pages"
/usr/bin/python3 tests/ops/check_docs.py

echo "== Prometheus and Grafana"
/usr/bin/python3 tests/ops/check_ops.py --wachtd "$WACHTD"

echo "== Debian package"
if [ "$(id -u)" -eq 0 ]; then
  sh tests/packaging/deb_test.sh "$BUILD"
else
  echo "skipped: installing the package needs root (sudo sh tests/packaging/deb_test.sh $BUILD)"
fi
