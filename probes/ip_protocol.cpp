#include "probes/ip_protocol.hpp"

#include <fmt/format.h>
#include <netdb.h>
#include <sys/socket.h>
#include <uv.h>

namespace wacht::probes {

IpProtocol read_ip_protocol(runtime::TableReader& reader, int literal_family, bool target_ok) {
  auto value = reader.get_string("ip_protocol");
  if (!value) return IpProtocol::kAny;
  IpProtocol p;
  if (*value == "any") {
    p = IpProtocol::kAny;
  } else if (*value == "ip4") {
    p = IpProtocol::kIp4;
  } else if (*value == "ip6") {
    p = IpProtocol::kIp6;
  } else {
    reader.error(
        "ip_protocol",
        fmt::format("'ip_protocol' must be \"any\", \"ip4\" or \"ip6\", not \"{}\"", *value));
    return IpProtocol::kAny;
  }
  int wanted = address_family(p);
  if (target_ok && literal_family && wanted != AF_UNSPEC && wanted != literal_family) {
    reader.error("ip_protocol",
                 fmt::format("ip_protocol = \"{}\" contradicts the target's {} address", *value,
                             literal_family == AF_INET ? "IPv4" : "IPv6"));
  }
  return p;
}

int address_family(IpProtocol p) {
  return p == IpProtocol::kIp4 ? AF_INET : p == IpProtocol::kIp6 ? AF_INET6 : AF_UNSPEC;
}

std::string resolve_error(int uv_status) {
  switch (uv_status) {
    case UV_EAI_NONAME: return gai_strerror(EAI_NONAME);
    case UV_EAI_AGAIN: return gai_strerror(EAI_AGAIN);
    case UV_EAI_FAIL: return gai_strerror(EAI_FAIL);
    case UV_EAI_NODATA: return gai_strerror(EAI_NODATA);
    case UV_EAI_ADDRFAMILY: return gai_strerror(EAI_ADDRFAMILY);
    default: return uv_strerror(uv_status);
  }
}

}  // namespace wacht::probes
