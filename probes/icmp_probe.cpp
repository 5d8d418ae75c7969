// Placeholder so the tree links while the icmp probe is being written.
#include "probes/icmp_probe.hpp"

namespace wacht::probes {
ProbeType icmp_probe_type() { return {"icmp", "", {}, nullptr, nullptr}; }
}  // namespace wacht::probes
namespace wacht::probes {
class IcmpService {};
IcmpServicePtr make_icmp_service(uv_loop_t*, std::string* error) {
  *error = "not yet";
  return IcmpServicePtr(nullptr, [](IcmpService*) {});
}
}  // namespace wacht::probes
