#pragma once

#include "probes/registry.hpp"

namespace wacht::probes {

ProbeType tcp_probe_type();

}  // namespace wacht::probes
