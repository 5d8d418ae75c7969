#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace wacht::runtime {

using Millis = std::chrono::milliseconds;

// Parses durations as admins write them in the config: a sequence of
// number+unit pairs, units ms, s, m, h, d ("30s", "1m30s", "250ms", "1.5s").
// Returns nullopt and sets `error` for anything else, including negative or
// overflowing values.
std::optional<Millis> parse_duration(std::string_view text, std::string* error = nullptr);

// The shortest exact spelling of `d` in the same syntax ("1m30s", "250ms").
std::string format_duration(Millis d);

}  // namespace wacht::runtime
