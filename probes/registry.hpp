#pragma once

#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "probes/probe.hpp"
#include "runtime/toml_reader.hpp"

namespace wacht::probes {

// What every probe type gets besides its own keys.
struct CheckTarget {
  std::string id;
  std::string target;
  std::chrono::milliseconds timeout;
};

// One entry of the explicit probe table: adding a probe type is one line in
// registry.cpp plus its own file pair.
struct ProbeType {
  std::string_view name;
  std::string_view summary;                // one line for the reference
  std::span<const runtime::KeySpec> keys;  // type-specific keys
  // Validates the target and reads the type-specific keys; reports problems to
  // the reader's diagnostics and returns nullptr if there were any.
  std::shared_ptr<const ProbeSpec> (*parse)(runtime::TableReader& reader,
                                            const std::string& target);
  std::unique_ptr<Probe> (*create)(const ProbeContext& ctx, const CheckTarget& check,
                                   const ProbeSpec& spec);
};

std::span<const ProbeType> probe_types();
const ProbeType* find_probe_type(std::string_view name);

}  // namespace wacht::probes
