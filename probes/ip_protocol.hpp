#pragma once

#include <string>

#include "runtime/toml_reader.hpp"

namespace wacht::probes {

// The `ip_protocol` key shared by the probes that resolve a host themselves.
enum class IpProtocol { kAny, kIp4, kIp6 };

// Reads `ip_protocol` ("any", "ip4", "ip6"; kAny if unset). Reports a bad value,
// and one that contradicts a target given as an address of `literal_family`
// (AF_INET/AF_INET6, 0 for a name) when `target_ok`.
IpProtocol read_ip_protocol(runtime::TableReader& reader, int literal_family, bool target_ok);

// The getaddrinfo ai_family for a protocol (AF_UNSPEC for kAny).
int address_family(IpProtocol p);

// A uv_getaddrinfo failure in glibc's wording, which operators know from ping
// and curl, rather than libuv's.
std::string resolve_error(int uv_status);

}  // namespace wacht::probes
