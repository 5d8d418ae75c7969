#include "runtime/duration.hpp"

#include <cctype>
#include <cstdint>

namespace wacht::runtime {

// Exact decimal arithmetic: the sum is kept as an integer number of 1e-18 ms,
// since in binary floating point 4.1m is 245999.99999999997 ms and 1.001s
// 1000.9999999999999 ms, which the whole-milliseconds rule would refuse.
namespace {
using Units = unsigned __int128;
constexpr Units kUnitsPerMs = 1'000'000'000'000'000'000;  // 1e18
constexpr int kFractionDigits = 18;
constexpr Units kMaxMs = 1'000'000'000'000'000;  // 1e15
}  // namespace

std::optional<Millis> parse_duration(std::string_view text, std::string* error) {
  auto fail = [&](std::string msg) -> std::optional<Millis> {
    if (error) *error = std::move(msg);
    return std::nullopt;
  };
  if (text.empty()) return fail("empty duration");
  Units total = 0;
  bool below_units = false;  // a digit finer than 1e-18 ms: never whole milliseconds
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
    std::string_view number = text.substr(start, i - start);
    size_t unit_start = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    std::string_view unit = text.substr(unit_start, i - unit_start);
    uint64_t factor;
    if (unit == "ms")
      factor = 1;
    else if (unit == "s")
      factor = 1000;
    else if (unit == "m")
      factor = 60'000;
    else if (unit == "h")
      factor = 3'600'000;
    else if (unit == "d")
      factor = 86'400'000;
    else if (unit == "w")
      factor = 7 * 86'400'000ULL;
    else if (unit.empty())
      return fail("missing unit after '" + std::string(text.substr(start, i - start)) +
                  "' (use ms, s, m, h, d or w)");
    else
      return fail("unknown unit '" + std::string(unit) + "' (use ms, s, m, h, d or w)");
    size_t dot = number.find('.');
    std::string_view whole = number.substr(0, dot);
    std::string_view fraction = dot == std::string_view::npos ? "" : number.substr(dot + 1);
    while (!whole.empty() && whole.front() == '0') whole.remove_prefix(1);
    while (!fraction.empty() && fraction.back() == '0') fraction.remove_suffix(1);
    // Beyond 16 digits the number alone exceeds the limit, whatever the unit.
    if (whole.size() > 16) return fail("duration too large");
    Units ms = 0;
    for (char c : whole) ms = ms * 10 + static_cast<unsigned>(c - '0');
    ms *= factor;
    if (ms > kMaxMs) return fail("duration too large");
    Units part = 0;
    int digits = 0;
    for (char c : fraction) {
      if (digits == kFractionDigits) {
        below_units = true;
        break;
      }
      part = part * 10 + static_cast<unsigned>(c - '0');
      ++digits;
    }
    for (; digits < kFractionDigits; ++digits) part *= 10;
    total += ms * kUnitsPerMs + part * factor;
    if (total > kMaxMs * kUnitsPerMs) return fail("duration too large");
  }
  if (below_units || total % kUnitsPerMs != 0)
    return fail("durations are limited to whole milliseconds");
  return Millis(static_cast<int64_t>(total / kUnitsPerMs));
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
