#pragma once

#include <memory>

#include "probes/registry.hpp"

namespace wacht::probes {

ProbeType exec_probe_type();

// Caps how many plugins run at once across all exec checks (a queue of
// waiting starts). Implemented in exec_probe.cpp.
class ExecLimiter;
using ExecLimiterPtr = std::unique_ptr<ExecLimiter, void (*)(ExecLimiter*)>;
ExecLimiterPtr make_exec_limiter(uv_loop_t* loop, size_t max_running);

}  // namespace wacht::probes
