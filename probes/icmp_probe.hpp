#pragma once

#include <memory>
#include <string>

#include "probes/registry.hpp"

namespace wacht::probes {

ProbeType icmp_probe_type();

// One ICMP socket per address family shared by every ICMP check on the loop;
// replies are matched to probes by identifier and sequence. Implemented in
// icmp_probe.cpp.
class IcmpService;
// Opens the sockets: an unprivileged datagram socket where
// net.ipv4.ping_group_range allows it, else a raw socket (CAP_NET_RAW). Returns
// null and sets `error` (naming both fixes) if neither is permitted.
// The deleter closes its handles; memory is freed in their close callbacks.
using IcmpServicePtr = std::unique_ptr<IcmpService, void (*)(IcmpService*)>;
IcmpServicePtr make_icmp_service(uv_loop_t* loop, std::string* error);

}  // namespace wacht::probes
