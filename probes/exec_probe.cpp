// Placeholder so the tree links while the exec probe is being written.
#include "probes/exec_probe.hpp"

namespace wacht::probes {
ProbeType exec_probe_type() { return {"exec", "", {}, nullptr, nullptr}; }
}  // namespace wacht::probes
namespace wacht::probes {
class ExecLimiter {};
ExecLimiterPtr make_exec_limiter(uv_loop_t*, size_t) {
  return ExecLimiterPtr(new ExecLimiter, [](ExecLimiter* l) { delete l; });
}
}  // namespace wacht::probes
