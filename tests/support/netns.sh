#!/bin/sh
# Test topology for the ICMP probe tests, kept entirely inside two network
# namespaces so that the host's own addresses and routes are never touched:
#
#   wacht-mon-TAG  (monitoring side)          wacht-site-TAG (target)
#   veth "mon" 198.51.100.1/24  <-------->  veth "site" 198.51.100.2/24
#
# 198.51.100.3 is on the link but nobody answers for it. ping_group_range in
# the monitoring namespace allows unprivileged ICMP datagram sockets (it is per
# namespace, default "1 0").
#
# Usage: netns.sh up TAG          create (a failed step removes what was made)
#        netns.sh loss TAG PCT    drop PCT% of echo requests arriving at the site
#        netns.sh down TAG        remove everything (no error if already gone)
# TAG ends in the creating process's pid: "up" also removes topologies whose
# process died without "down" (a crashed test).
set -eu

cmd=${1:?usage: netns.sh up|loss|down TAG [PCT]}
tag=${2:?missing TAG}
mon=wacht-mon-$tag
site=wacht-site-$tag

down() {
  ip netns exec "$site" nft delete table inet wacht 2>/dev/null || true
  # Deleting a namespace destroys the veth end inside it, and with it the pair.
  ip netns delete "$mon" 2>/dev/null || true
  ip netns delete "$site" 2>/dev/null || true
}

sweep() {
  for ns in $(ip netns list | awk '{print $1}' | grep -E '^wacht-(mon|site)-icmp[0-9]+$' || true); do
    pid=${ns##*-icmp}
    kill -0 "$pid" 2>/dev/null || ip netns delete "$ns" 2>/dev/null || true
  done
}

case $cmd in
  up)
    sweep
    trap 'rc=$?; [ $rc -eq 0 ] || down; exit $rc' EXIT
    ip netns add "$mon"
    ip netns add "$site"
    # Both ends are created inside their namespaces: no link ever appears on the host.
    ip link add name mon netns "$mon" type veth peer name site netns "$site"
    ip -n "$mon" link set lo up
    ip -n "$site" link set lo up
    ip -n "$mon" addr add 198.51.100.1/24 dev mon
    ip -n "$site" addr add 198.51.100.2/24 dev site
    ip -n "$mon" link set mon up
    ip -n "$site" link set site up
    ip netns exec "$mon" sysctl -qw net.ipv4.ping_group_range="0 2147483647"
    ;;
  loss)
    pct=${3:?missing PCT}
    ip netns exec "$site" nft -f - <<NFT
table inet wacht {
  chain in {
    type filter hook input priority 0;
    icmp type echo-request numgen random mod 100 < $pct drop
  }
}
NFT
    ;;
  down)
    down
    ;;
  *)
    echo "unknown command $cmd" >&2
    exit 2
    ;;
esac
