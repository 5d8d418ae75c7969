#include "runtime/duration.hpp"

#include <cmath>
#include <cstdint>

namespace wacht::runtime {

std::optional<Millis> parse_duration(std::string_view text, std::string* error) {
  auto fail = [&](std::string msg) -> std::optional<Millis> {
    if (error) *error = std::move(msg);
    return std::nullopt;
  };
  if (text.empty()) return fail("empty duration");
  double total_ms = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    bool seen_dot = false;
    while (i < text.size() &&
           (std::isdigit(static_cast<unsigned char>(text[i])) || (text[i] == '.' && !seen_dot))) {
      if (text[i] == '.') seen_dot = true;
      ++i;
    }
    if (i == start || (i - start == 1 && seen_dot))
      return fail("expected a number at '" + std::string(text.substr(start)) + "'");
    double value = std::strtod(std::string(text.substr(start, i - start)).c_str(), nullptr);
    size_t unit_start = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    std::string_view unit = text.substr(unit_start, i - unit_start);
    double factor;
    if (unit == "ms")
      factor = 1;
    else if (unit == "s")
      factor = 1e3;
    else if (unit == "m")
      factor = 60e3;
    else if (unit == "h")
      factor = 3600e3;
    else if (unit == "d")
      factor = 86400e3;
    else if (unit == "w")
      factor = 7 * 86400e3;
    else if (unit.empty())
      return fail("missing unit after '" + std::string(text.substr(start, i - start)) +
                  "' (use ms, s, m, h, d or w)");
    else
      return fail("unknown unit '" + std::string(unit) + "' (use ms, s, m, h, d or w)");
    total_ms += value * factor;
    if (total_ms > 1e15) return fail("duration too large");
  }
  if (total_ms != std::floor(total_ms)) return fail("durations are limited to whole milliseconds");
  return Millis(static_cast<int64_t>(total_ms));
}

std::string format_duration(Millis d) {
  int64_t ms = d.count();
  if (ms == 0) return "0s";
  std::string out;
  if (ms < 0) {
    out = "-";
    ms = -ms;
  }
  static constexpr struct {
    int64_t size;
    const char* unit;
  } kUnits[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}};
  for (const auto& u : kUnits) {
    if (ms >= u.size) {
      out += std::to_string(ms / u.size) + u.unit;
      ms %= u.size;
    }
  }
  return out;
}

}  // namespace wacht::runtime
