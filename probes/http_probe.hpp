#pragma once

#include "probes/registry.hpp"

namespace wacht::probes {

ProbeType http_probe_type();

}  // namespace wacht::probes
