#pragma once

#include "probes/registry.hpp"

namespace wacht::probes {

ProbeType dns_probe_type();

}  // namespace wacht::probes
