#include "probes/registry.hpp"

#include "probes/dns_probe.hpp"
#include "probes/exec_probe.hpp"
#include "probes/http_probe.hpp"
#include "probes/icmp_probe.hpp"
#include "probes/tcp_probe.hpp"

namespace wacht::probes {

std::string_view state_name(State s) {
  switch (s) {
    case State::kOk: return "OK";
    case State::kWarning: return "WARNING";
    case State::kCritical: return "CRITICAL";
    case State::kUnknown: return "UNKNOWN";
  }
  return "UNKNOWN";
}

namespace {
const ProbeType kTypes[] = {
    http_probe_type(), tcp_probe_type(), icmp_probe_type(), dns_probe_type(), exec_probe_type(),
};
}  // namespace

std::span<const ProbeType> probe_types() { return kTypes; }

const ProbeType* find_probe_type(std::string_view name) {
  for (const auto& t : kTypes)
    if (t.name == name) return &t;
  return nullptr;
}

}  // namespace wacht::probes
