// Placeholder so the tree links while the dns probe is being written.
#include "probes/dns_probe.hpp"

namespace wacht::probes {
ProbeType dns_probe_type() { return {"dns", "", {}, nullptr, nullptr}; }
}  // namespace wacht::probes
