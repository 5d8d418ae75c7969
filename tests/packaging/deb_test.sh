#!/bin/sh
# Builds the wacht .deb from a release build directory, installs it on this
# machine, checks what it installed, and purges it again (the machine is left
# as it was, except for the `wacht` system user, which Debian packages keep).
#
#   sudo sh tests/packaging/deb_test.sh build/release
#
# The build directory must be configured (cmake -S . -B DIR
# -DCMAKE_BUILD_TYPE=RelWithDebInfo); this script builds wachtd there and runs
# cpack. Needs root, dpkg-dev (dpkg-shlibdeps), systemd (systemd-analyze),
# man-db, util-linux (setpriv), curl. Without systemd as PID 1 (containers) the
# unit is verified offline and wachtd is started by hand as the wacht user with
# only CAP_NET_RAW, as the unit would. Refuses to touch a wacht package that
# was installed before it ran.
set -eu
BUILD=${1:?usage: deb_test.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "$BUILD" && pwd)
UNIT=/usr/lib/systemd/system/wachtd.service
[ "$(id -u)" -eq 0 ] || { echo "deb_test.sh: needs root (dpkg -i)" >&2; exit 2; }

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

if dpkg-query -W -f='${Status}' wacht 2>/dev/null | grep -q "install ok installed"; then
  fail "a wacht package is already installed; remove it first (apt-get purge wacht)"
fi

TMP=$(mktemp -d /tmp/wacht-deb-XXXXXX)
PID=""
# A wachtd run by hand on etc/wacht.toml (scripts/quickstart.sh) leaves
# /var/lib/wacht behind, owned by whoever ran it: moved aside for the test and
# put back afterwards, like an existing /etc/wacht, so the purge deletes
# nothing that was there before.
mkdir "$TMP/saved"
for d in /var/lib/wacht /etc/wacht; do
  if [ -e "$d" ]; then
    echo "   moving the existing $d aside for the test"
    mv "$d" "$TMP/saved/$(echo "$d" | tr / _)"
  fi
done
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  if dpkg-query -W -f='${Status}' wacht 2>/dev/null | grep -q "ok"; then
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq wacht >/dev/null 2>&1 || true
  fi
  for d in /var/lib/wacht /etc/wacht; do
    saved="$TMP/saved/$(echo "$d" | tr / _)"
    if [ -e "$saved" ]; then rm -rf "$d"; mv "$saved" "$d"; fi
  done
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

echo "== build the package"
cmake --build "$BUILD" --target wachtd >/dev/null
rm -f "$BUILD"/wacht_*.deb
(cd "$BUILD" && cpack -G DEB >"$TMP/cpack.log" 2>&1) || { cat "$TMP/cpack.log"; fail "cpack"; }
DEB=$(ls "$BUILD"/wacht_*.deb)
ok "built $(basename "$DEB")"

echo "== package metadata and contents"
dpkg-deb --field "$DEB" Package | grep -qx wacht || fail "package name is not wacht"
DEPENDS=$(dpkg-deb --field "$DEB" Depends)
echo "   Depends: $DEPENDS"
for lib in libuv1 libcurl4 libssl3 libc-ares2 libsystemd0 libpcre2-8-0; do
  echo "$DEPENDS" | grep -q "$lib" || fail "Depends lacks $lib (shlibdeps did not run?)"
done
dpkg-deb --contents "$DEB" | awk '{print $6}' | sed 's|^\./|/|' >"$TMP/contents"
for f in /usr/sbin/wachtd "$UNIT" /usr/lib/sysusers.d/wacht.conf /usr/lib/tmpfiles.d/wacht.conf \
         /usr/share/man/man8/wachtd.8 /usr/share/man/man5/wacht.toml.5 \
         /etc/wacht/wacht.toml /etc/wacht/conf.d/README \
         /usr/share/doc/wacht/operations.md /usr/share/doc/wacht/configuration.md \
         /usr/share/doc/wacht/examples/grafana/wacht-dashboard.json \
         /usr/share/doc/wacht/examples/prometheus/wacht-rules.yml; do
  grep -qx "$f" "$TMP/contents" || fail "the package lacks $f"
done
if grep -v -e '^/usr/' -e '^/etc/wacht' -e '^/etc/$' -e '^/$' "$TMP/contents" | grep -q .; then
  fail "files outside /usr and /etc/wacht: $(grep -v -e '^/usr/' -e '^/etc/' "$TMP/contents" | head -3)"
fi
ok "Depends from shlibdeps, every file in place"

echo "== install"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$DEB" >"$TMP/apt.log" 2>&1 || {
  cat "$TMP/apt.log"; fail "apt-get install"; }
ok "apt-get install $(basename "$DEB")"

/usr/sbin/wachtd --version
/usr/sbin/wachtd --check-config --config /etc/wacht/wacht.toml || fail "the installed config is invalid"
ok "wachtd --check-config --config /etc/wacht/wacht.toml"

getent passwd wacht >/dev/null || fail "no wacht user"
[ "$(stat -c '%U:%G %a' /var/lib/wacht)" = "wacht:wacht 750" ] ||
  fail "/var/lib/wacht is $(stat -c '%U:%G %a' /var/lib/wacht), not wacht:wacht 750"
ok "user wacht, /var/lib/wacht wacht:wacht 0750"

CONFFILES=$(dpkg-query --control-show wacht conffiles)
for f in /etc/wacht/wacht.toml /etc/wacht/conf.d/README; do
  echo "$CONFFILES" | grep -qx "$f" || fail "$f is not a conffile"
done
dpkg-query -W -f='${Conffiles}\n' wacht | grep -q /etc/wacht/wacht.toml || fail "dpkg does not track conffiles"
ok "conffiles: $(echo "$CONFFILES" | tr '\n' ' ')"

man -w wachtd >/dev/null && man -w 5 wacht.toml >/dev/null || fail "man pages not found by man"
ok "man wachtd, man 5 wacht.toml"

echo "== the installed unit"
systemd-analyze verify "$UNIT" || fail "systemd-analyze verify $UNIT"
ok "systemd-analyze verify $UNIT"
SCORE=$(systemd-analyze security --offline=true "$UNIT" 2>/dev/null |
        sed -n 's/.*Overall exposure level for wachtd.service: \([0-9.]*\).*/\1/p')
[ -n "$SCORE" ] || fail "no score from systemd-analyze security"
awk "BEGIN { exit !($SCORE <= 2.0) }" || fail "systemd-analyze security rates the unit $SCORE (> 2.0)"
ok "systemd-analyze security --offline=true: $SCORE"
if [ -d /run/systemd/system ]; then
  systemctl is-enabled wachtd >/dev/null || fail "wachtd.service is not enabled"
else
  [ -L /etc/systemd/system/multi-user.target.wants/wachtd.service ] ||
    fail "deb-systemd-helper did not enable wachtd.service"
fi
ok "enabled, not started (no systemd as PID 1: $(ps -o comm= -p 1))"

echo "== wachtd as the wacht user with only CAP_NET_RAW"
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed "s/127.0.0.1:9915/127.0.0.1:$PORT/g" /etc/wacht/wacht.toml >"$TMP/wacht.toml"
cat >>"$TMP/wacht.toml" <<EOF

[[check]]
id = "deb-icmp"
type = "icmp"
target = "127.0.0.1"
interval = "2s"
timeout = "1s"
count = 2
packet_gap = "100ms"
EOF
chmod 0755 "$TMP"; chmod 0644 "$TMP/wacht.toml"
setpriv --reuid=wacht --regid=wacht --init-groups --no-new-privs \
  --inh-caps=-all,+net_raw --ambient-caps=-all,+net_raw --bounding-set=-all,+net_raw \
  /usr/sbin/wachtd --config "$TMP/wacht.toml" 2>"$TMP/wachtd.log" &
PID=$!
i=0
until curl -sf "http://127.0.0.1:$PORT/metrics" 2>/dev/null | grep -q '^probe_success{check="deb-icmp"'; do
  i=$((i + 1))
  [ $i -lt 40 ] || { cat "$TMP/wachtd.log"; fail "wachtd as wacht did not report the ICMP check"; }
  kill -0 "$PID" 2>/dev/null || { cat "$TMP/wachtd.log"; fail "wachtd as wacht exited"; }
  sleep 0.5
done
curl -s "http://127.0.0.1:$PORT/metrics" | grep -q '^probe_success{check="deb-icmp".*} 1$' ||
  { cat "$TMP/wachtd.log"; fail "ICMP as the wacht user with CAP_NET_RAW failed"; }
[ "$(stat -c %U /var/lib/wacht/outbox.journal 2>/dev/null)" = wacht ] ||
  fail "wachtd did not create its outbox journal in /var/lib/wacht"
kill "$PID"; wait "$PID" || fail "wachtd did not exit cleanly on SIGTERM"
PID=""
ok "wachtd runs as wacht, pings with CAP_NET_RAW, writes /var/lib/wacht, stops on SIGTERM"

echo "== an admin's edit survives a reinstall"
echo "# local edit" >>/etc/wacht/wacht.toml
DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold "$DEB" >"$TMP/dpkg.log" 2>&1 || {
  cat "$TMP/dpkg.log"; fail "dpkg -i (reinstall)"; }
tail -1 /etc/wacht/wacht.toml | grep -qx "# local edit" || fail "reinstall replaced the edited config"
ok "dpkg -i again keeps /etc/wacht/wacht.toml as edited"

echo "== purge"
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq wacht >"$TMP/purge.log" 2>&1 || {
  cat "$TMP/purge.log"; fail "apt-get purge"; }
for f in /usr/sbin/wachtd "$UNIT" /etc/wacht/wacht.toml /var/lib/wacht \
         /etc/systemd/system/multi-user.target.wants/wachtd.service; do
  [ ! -e "$f" ] && [ ! -L "$f" ] || fail "$f is left after purge"
done
ok "purged: binary, unit, config, state and enablement gone (user wacht kept)"
echo "deb test passed"
