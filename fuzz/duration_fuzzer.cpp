// Duration parsing (runtime::parse_duration) and its inverse: never crashes,
// accepts only non-negative whole milliseconds, and whatever it accepts
// format_duration spells so that it parses back to the same value, as does
// the decimal number of seconds ("1.001s").
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "runtime/duration.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using wacht::runtime::Millis;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string error;
  std::optional<Millis> d = wacht::runtime::parse_duration(text, &error);
  if (!d) {
    FUZZ_CHECK(!error.empty(), "rejected without a reason");
    return 0;
  }
  FUZZ_CHECK(d->count() >= 0, "negative duration accepted");
  const std::string spelled = wacht::runtime::format_duration(*d);
  std::optional<Millis> again = wacht::runtime::parse_duration(spelled, &error);
  FUZZ_CHECK(again && *again == *d, spelled + ": format_duration does not round-trip: " + error);
  // The same value as a decimal number of seconds, as admins also write it.
  const std::string seconds = std::to_string(d->count() / 1000) + "." +
                              std::to_string(1000 + d->count() % 1000).substr(1) + "s";
  again = wacht::runtime::parse_duration(seconds, &error);
  FUZZ_CHECK(again && *again == *d, seconds + ": a decimal spelling is not read exactly: " + error);
  return 0;
}
