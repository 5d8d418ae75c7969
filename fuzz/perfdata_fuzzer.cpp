// Nagios plugin output: split_plugin_output, parse_perfdata and unit_scale on
// arbitrary bytes. Besides not crashing: at most kMaxPerfDataItems items with
// distinct labels that are valid UTF-8 without control characters (they become
// Prometheus label values), and finite numbers only.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "probes/exec_probe.hpp"

namespace {

// Well-formed UTF-8 as Unicode's table 3-7 defines it, written independently
// of the parser's check.
bool well_formed_utf8(std::string_view s) {
  size_t i = 0;
  auto in = [&](size_t k, unsigned lo, unsigned hi) {
    if (i + k >= s.size()) return false;
    auto c = static_cast<unsigned char>(s[i + k]);
    return c >= lo && c <= hi;
  };
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c <= 0x7f) {
      i += 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
      if (!in(1, 0x80, 0xbf)) return false;
      i += 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      unsigned lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
      if (!in(1, lo, hi) || !in(2, 0x80, 0xbf)) return false;
      i += 3;
    } else if (c >= 0xf0 && c <= 0xf4) {
      unsigned lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
      if (!in(1, lo, hi) || !in(2, 0x80, 0xbf) || !in(3, 0x80, 0xbf)) return false;
      i += 4;
    } else {
      return false;
    }
  }
  return true;
}

bool finite(const std::optional<double>& v) { return !v || std::isfinite(*v); }

void check(const wacht::probes::PerfDataList& list) {
  using namespace wacht::probes;
  FUZZ_CHECK(list.items.size() <= kMaxPerfDataItems, "too many items");
  std::set<std::string> labels;
  for (const PerfData& p : list.items) {
    FUZZ_CHECK(!p.label.empty() && p.label.size() <= kMaxPerfDataLabelBytes, p.label);
    FUZZ_CHECK(well_formed_utf8(p.label), p.label);
    for (unsigned char c : p.label) FUZZ_CHECK(c >= 0x20 && c != 0x7f, p.label);
    FUZZ_CHECK(labels.insert(p.label).second, "duplicate label " + p.label);
    FUZZ_CHECK(std::isfinite(p.value), p.label);
    FUZZ_CHECK(finite(p.warning) && finite(p.critical) && finite(p.min) && finite(p.max), p.label);
    UnitScale scale = unit_scale(p.unit);
    FUZZ_CHECK(scale.factor > 0, p.unit);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace wacht::probes;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  // As the exec probe sees a plugin's whole output...
  PluginOutput out = split_plugin_output(text);
  FUZZ_CHECK(out.summary.find('\n') == std::string_view::npos, "summary spans lines");
  check(parse_perfdata(out.perfdata));
  // ... and the perfdata part alone, which reaches more of the item syntax.
  check(parse_perfdata(text));
  return 0;
}
