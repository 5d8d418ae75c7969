// Helpers shared by the probe tests.
#pragma once

#include <toml++/toml.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "probes/registry.hpp"

namespace wacht::test {

// The value of a probe result's sample, if the result has it.
inline std::optional<double> sample(const probes::ProbeResult& r, std::string_view name,
                                    std::string_view label = {}) {
  for (const auto& s : r.samples)
    if (s.def->name == name && s.label_value == label) return s.value;
  return std::nullopt;
}

// Parses a check's table as the config loader does: `body` holds the TOML keys
// after the target, which is on line 1 of "checks.toml". Unknown keys are
// reported, as they would be in a real config.
class SpecParser {
 public:
  explicit SpecParser(const probes::ProbeType& type) : type_(type) {}

  std::shared_ptr<const probes::ProbeSpec> parse(const std::string& target,
                                                 const std::string& body) {
    std::string text = "target = \"" + target + "\"\n" + body;
    auto file = std::make_shared<const std::string>("checks.toml");
    diag.add_source(file, text);
    table_ = toml::parse(text, std::string_view(*file));
    runtime::TableReader reader(diag, "check 'test'", runtime::SourceLoc{file, 1, 1});
    reader.add_layer(table_);
    // The loader declares the keys every check has; of those only target occurs here.
    static constexpr runtime::KeySpec kTarget[] = {{"target", "string", "", ""}};
    reader.declare(kTarget);
    reader.declare(type_.keys);
    reader.get_string("target");
    auto spec = type_.parse(reader, target);
    reader.finish();
    return spec;
  }

  runtime::Diagnostics diag;

 private:
  probes::ProbeType type_;
  toml::table table_;  // the reader points into it
};

}  // namespace wacht::test
