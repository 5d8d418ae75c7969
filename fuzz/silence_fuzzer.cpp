// POST /api/v2/silences bodies (alerts::parse_postable_silence) and what the
// API does with an accepted one. Never throws (std::bad_alloc aside): every
// rejection is an error message naming the field. An accepted body's matchers
// spell back through Matcher::str() and parse_matcher unchanged, its
// GettableSilence JSON serialises and parses back to the same silence, and
// SilenceStore::add either stores it or says why.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "alerts/silences.hpp"
#include "fuzz_check.hpp"

namespace {

using namespace wacht::alerts;

// The times parse_rfc3339 can spell: years 0000 to 9999.
constexpr int64_t kMinTime = -62167219200000;  // 0000-01-01T00:00:00Z
constexpr int64_t kMaxTime = 253402300799999;  // 9999-12-31T23:59:59.999Z
constexpr int64_t kNow = 1790000000000;        // 2026-09-21

bool spellable(int64_t ms) { return ms >= kMinTime && ms <= kMaxTime; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  std::string error;
  std::optional<Silence> s = parse_postable_silence(body, &error);
  if (!s) {
    FUZZ_CHECK(!error.empty(), "rejected without a reason");
    return 0;
  }
  for (const Matcher& m : s->matchers) {
    std::string why;
    std::optional<Matcher> again = parse_matcher(m.str(), &why);
    FUZZ_CHECK(again && *again == m, m.str() + ": " + why);
  }
  std::string why;
  validate_matchers(s->matchers, &why);

  const std::string gettable = to_json(*s, kNow).dump();
  std::optional<Silence> back = parse_postable_silence(gettable, &why);
  if (spellable(s->starts_at_ms) && spellable(s->ends_at_ms)) {
    FUZZ_CHECK(back, gettable + ": " + why);
    FUZZ_CHECK(back->id == s->id && back->matchers == s->matchers &&
                   back->starts_at_ms == s->starts_at_ms && back->ends_at_ms == s->ends_at_ms &&
                   back->created_by == s->created_by && back->comment == s->comment,
               gettable);
  }

  SilenceStore store;
  s->id.clear();
  if (s->created_by.empty()) s->created_by = "fuzz";
  std::optional<std::string> id = store.add(*s, kNow, &why);
  FUZZ_CHECK(id || !why.empty(), "add refused without a reason");
  if (id) {
    FUZZ_CHECK(store.find(*id) != nullptr, "added but not found");
    Labels labels;
    for (const Matcher& m : s->matchers) labels[m.name] = m.value;
    store.silenced(labels, kNow);
    store.silenced({}, s->starts_at_ms);
    store.list(kNow);
    store.next_change(kNow);
    store.expire(*id, kNow, &why);
  }
  return 0;
}
