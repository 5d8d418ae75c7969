// Label matchers as the API and amtool write them (alerts::parse_matcher):
// never throws; an accepted matcher spells back through Matcher::str()
// unchanged, and matching any labels neither crashes nor stalls (the regex
// search is bounded).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "alerts/silences.hpp"
#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace wacht::alerts;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  // A matcher, optionally followed by a line with a label value to match.
  size_t nl = text.find('\n');
  std::string_view value = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
  std::string error;
  std::optional<Matcher> m = parse_matcher(text.substr(0, nl), &error);
  if (!m) {
    FUZZ_CHECK(!error.empty(), "rejected without a reason");
    return 0;
  }
  FUZZ_CHECK(!m->name.empty(), "matcher without a name");
  std::string why;
  std::optional<Matcher> again = parse_matcher(m->str(), &why);
  FUZZ_CHECK(again && *again == *m, m->str() + ": " + why);
  m->matches({});
  m->matches({{m->name, std::string(value)}});
  const bool eq = m->matches({{m->name, m->value}});
  if (m->op == Matcher::Op::kEq) FUZZ_CHECK(eq, "name=\"v\" does not match v");
  if (m->op == Matcher::Op::kNe) FUZZ_CHECK(!eq, "name!=\"v\" matches v");
  validate_matchers({*m}, &why);
  return 0;
}
