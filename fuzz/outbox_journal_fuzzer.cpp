// Outbox journal replay (alerts::Outbox::open) on arbitrary bytes written as
// <state_dir>/outbox.journal. The first byte picks the mode: odd gives every
// line of the rest a correct CRC-32 prefix, so the records' JSON reaches the
// replay itself; even writes the rest as it is.
//
// Properties: open() succeeds and never throws, whatever the journal holds;
// after a notification is enqueued on the replayed outbox and it is closed, a
// second replay finds exactly what the first one did plus the new
// notification (the repaired tail must not swallow or corrupt it).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <tuple>

#include "outbox_util.hpp"

namespace {

using namespace wacht;

std::string with_checksums(std::string_view text) {
  std::string out;
  for (size_t at = 0; at < text.size();) {
    size_t nl = text.find('\n', at);
    std::string_view line = text.substr(at, nl == std::string_view::npos ? nl : nl - at);
    char prefix[10];
    std::snprintf(prefix, sizeof prefix, "%08x ", fuzz::crc32(line));
    out.append(prefix).append(line);
    if (nl == std::string_view::npos) break;
    out += '\n';
    at = nl + 1;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  fuzz::write_journal((data[0] & 1) ? with_checksums(rest) : std::string(rest));

  auto box = fuzz::open_outbox();
  std::vector<alerts::Notification> first = box->pending_list();
  FUZZ_CHECK(box->pending() == first.size(), "pending() and pending_list() disagree");
  box->oldest_age_seconds();
  box->enqueue(fuzz::notification("added"));
  std::vector<alerts::Notification> live = box->pending_list();
  auto is_added = [](const alerts::Notification& n) {
    return n.message_id == "<added@wacht.fuzz>";
  };
  FUZZ_CHECK(live.size() == first.size() + 1, "the enqueued notification is not pending");
  auto added = std::find_if(live.begin(), live.end(), is_added);
  FUZZ_CHECK(added != live.end(), "the enqueued notification is not pending");
  box->stop();
  fuzz::close_outbox(box);

  box = fuzz::open_outbox();
  std::vector<alerts::Notification> second = box->pending_list();
  fuzz::close_outbox(box);
  // pending_list() orders by seq only; a forged journal may repeat a seq.
  auto order = [](const alerts::Notification& a, const alerts::Notification& b) {
    return std::tie(a.seq, a.receiver) < std::tie(b.seq, b.receiver);
  };
  std::sort(live.begin(), live.end(), order);
  std::sort(second.begin(), second.end(), order);
  FUZZ_CHECK(second.size() == live.size(), "the second replay finds " +
                                               std::to_string(second.size()) + " entries, not " +
                                               std::to_string(live.size()));
  for (size_t i = 0; i < live.size(); ++i)
    FUZZ_CHECK(fuzz::same(live[i], second[i]), "entry " + std::to_string(i) + " changed");
  return 0;
}
