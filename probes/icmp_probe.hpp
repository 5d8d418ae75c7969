#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "probes/registry.hpp"

namespace wacht::probes {

// Echo rounds (SmokePing-style): each run sends `count` echo requests and
// reports loss and the round-trip statistics of the round.
ProbeType icmp_probe_type();

// One ICMP socket per address family shared by every ICMP check on the loop.
// The kernel rewrites the echo identifier on datagram sockets, so replies are
// matched by a sequence number the service allocates per echo in flight (one
// 16-bit space across all checks), the replying address, and a random nonce
// carried in the payload. Loop thread only. It must outlive the loop's runs;
// probes still alive when it is destroyed fail their later runs.
class IcmpService;

enum class IcmpSocketKind { kNone, kDatagram, kRaw };

struct IcmpServiceOptions {
  // Seam for tests: creates the sockets instead of socket(2) (to force a
  // failure, or to create them in another network namespace). Returns a file
  // descriptor, or -1 with errno set.
  std::function<int(int domain, int type, int protocol)> open_socket;
};

// Opens the sockets: an unprivileged datagram socket where
// net.ipv4.ping_group_range allows it, else a raw socket (CAP_NET_RAW). Returns
// null and sets `error` (naming both fixes) if neither is permitted.
// The deleter closes its handles; memory is freed in their close callbacks.
using IcmpServicePtr = std::unique_ptr<IcmpService, void (*)(IcmpService*)>;
IcmpServicePtr make_icmp_service(uv_loop_t* loop, std::string* error);
IcmpServicePtr make_icmp_service(uv_loop_t* loop, std::string* error,
                                 const IcmpServiceOptions& options);

// For logs and tests: which socket serves `family` (AF_INET or AF_INET6).
IcmpSocketKind icmp_socket_kind(const IcmpService& service, int family);
// Echo requests sent and neither answered nor given up yet, over all checks.
size_t icmp_in_flight(const IcmpService& service);

}  // namespace wacht::probes
