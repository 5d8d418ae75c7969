// The outbox's recovery promise as a property: take a journal of valid
// entries, written by enqueueing through the Outbox API, apply corruptions the
// fuzzer chooses (truncate anywhere, flip bytes, insert garbage or garbage
// lines, cut out a range), replay it, and require that
//   - every intact entry (its line, newline included, is byte-identical to
//     the original) is recovered exactly, and nothing else is;
//   - every other non-empty line, and a torn tail, is counted as skipped;
//   - a notification enqueued afterwards survives the next replay alongside
//     them (the repaired tail does not swallow it).
// A corruption that happens to forge a record with a correct checksum is a
// valid record, not damage: such inputs are only checked for not crashing.
// tests/alerts/outbox_test.cpp replays the same property deterministically.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "outbox_util.hpp"

namespace {

using namespace wacht;

struct Base {
  std::string journal;
  std::vector<std::string> lines;                       // without '\n', in journal order
  std::map<std::string, alerts::Notification> by_line;  // what each line replays to
};

Base make_base() {
  std::vector<alerts::Notification> ns;
  auto add = [&](std::string id, auto&& tweak) {
    alerts::Notification n;
    n.receiver = "mail";
    n.thread_key = "check:" + id;
    n.message_id = "<" + id + "@wacht.test>";
    n.subject = "[wacht] CRITICAL " + id;
    n.body = "Check " + id + " is CRITICAL.\n";
    n.kind = "firing";
    n.alert_ids = {id};
    tweak(n);
    ns.push_back(std::move(n));
  };
  add("plain", [](auto&) {});
  add("umlaut", [](auto& n) {
    n.subject = "Störung: Rathaus Schwerin – Übertragung \"langsam\"";
    n.body = "Zeile 1\nZeile 2\twith tab \\ backslash\r\n";
  });
  add("long", [](auto& n) { n.body = std::string(700, 'x') + "\n" + std::string(300, 'y'); });
  add("pager", [](auto& n) {
    n.receiver = "pager";
    n.to = {"anna@example.org", "bereitschaft@lup.example"};
  });
  add("resolved", [](auto& n) {
    n.kind = "resolved";
    n.in_reply_to = "<plain@wacht.test>";
    n.thread_key = "check:plain";
  });
  add("empty", [](auto& n) {
    n.subject.clear();
    n.body.clear();
    n.alert_ids.clear();
  });
  add("lookalike", [](auto& n) {
    n.body = "00000000 {\"op\":\"done\",\"seq\":1}\n";  // escaped: stays inside its line
  });
  add("binary", [](auto& n) { n.body = std::string("probe said \xff\xfe\x00 garbage", 22); });

  fuzz::write_journal("");
  auto box = fuzz::open_outbox();
  for (auto& n : ns) box->enqueue(n);
  box->stop();
  fuzz::close_outbox(box);

  Base base;
  base.journal = fuzz::read_journal();
  for (size_t at = 0; at < base.journal.size();) {
    size_t nl = base.journal.find('\n', at);
    FUZZ_CHECK(nl != std::string::npos, "the base journal ends in a torn line");
    base.lines.push_back(base.journal.substr(at, nl - at));
    at = nl + 1;
  }
  FUZZ_CHECK(base.lines.size() == ns.size(), "one journal line per notification");
  box = fuzz::open_outbox();
  std::vector<alerts::Notification> replayed = box->pending_list();
  FUZZ_CHECK(box->corrupt_entries_skipped() == 0, "the pristine journal has damage");
  fuzz::close_outbox(box);
  FUZZ_CHECK(replayed.size() == ns.size(), "the pristine journal loses entries");
  for (size_t i = 0; i < ns.size(); ++i) {
    // Line i holds seq i + 1; invalid UTF-8 was replaced when it was written.
    FUZZ_CHECK(replayed[i].seq == i + 1, "seqs are not 1..n in journal order");
    FUZZ_CHECK(replayed[i].message_id == ns[i].message_id, "replayed out of order");
    base.by_line.emplace(base.lines[i], replayed[i]);
  }
  return base;
}

const Base& base() {
  static const Base b = make_base();
  return b;
}

std::string corrupt(std::string journal, FuzzedDataProvider& fdp) {
  const int ops = fdp.ConsumeIntegralInRange(1, 8);
  for (int i = 0; i < ops && fdp.remaining_bytes() > 0; ++i) {
    const size_t pos = fdp.ConsumeIntegralInRange<size_t>(0, journal.size());
    switch (fdp.ConsumeIntegralInRange(0, 4)) {
      case 0: journal.resize(pos); break;
      case 1:
        if (pos < journal.size())
          journal[pos] = static_cast<char>(journal[pos] ^ fdp.ConsumeIntegralInRange(1, 255));
        break;
      case 2: journal.insert(pos, fdp.ConsumeRandomLengthString(64)); break;
      case 3: {
        // A garbage line at the start of the line that holds pos.
        size_t start = journal.rfind('\n', pos == 0 ? 0 : pos - 1);
        start = (start == std::string::npos || pos == 0) ? 0 : start + 1;
        journal.insert(start, fdp.ConsumeRandomLengthString(64) + "\n");
        break;
      }
      case 4: journal.erase(pos, fdp.ConsumeIntegralInRange<size_t>(0, 64)); break;
    }
  }
  return journal;
}

void sort(std::vector<alerts::Notification>& list) {
  std::sort(list.begin(), list.end(), [](const auto& a, const auto& b) {
    return std::tie(a.seq, a.receiver, a.message_id) < std::tie(b.seq, b.receiver, b.message_id);
  });
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  base();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider fdp(data, size);
  const Base& b = base();
  const std::string journal = corrupt(b.journal, fdp);

  // What the replay must find: the intact lines' entries, once each.
  std::vector<alerts::Notification> want;
  std::set<std::string_view> found;
  size_t damaged = 0;
  bool forged = false;
  size_t at = 0;
  for (size_t nl; (nl = journal.find('\n', at)) != std::string::npos; at = nl + 1) {
    std::string_view line(journal.data() + at, nl - at);
    if (line.empty()) continue;
    auto it = b.by_line.find(std::string(line));
    if (it != b.by_line.end()) {
      if (found.insert(it->first).second) want.push_back(it->second);
    } else if (fuzz::checksummed(line)) {
      forged = true;
    } else {
      ++damaged;
    }
  }
  const bool torn_tail = at < journal.size();

  fuzz::write_journal(journal);
  auto box = fuzz::open_outbox();
  std::vector<alerts::Notification> got = box->pending_list();
  const size_t skipped = box->corrupt_entries_skipped();
  box->enqueue(fuzz::notification("after"));
  std::vector<alerts::Notification> live = box->pending_list();
  box->stop();
  fuzz::close_outbox(box);
  box = fuzz::open_outbox();
  std::vector<alerts::Notification> again = box->pending_list();
  fuzz::close_outbox(box);
  FUZZ_CHECK(live.size() == got.size() + 1, "the notification enqueued after replay is missing");
  sort(live);
  sort(again);
  FUZZ_CHECK(again.size() == live.size(), "the next replay lost or gained entries");
  for (size_t i = 0; i < live.size(); ++i)
    FUZZ_CHECK(fuzz::same(live[i], again[i]), "the next replay changed an entry");
  if (forged) return 0;

  sort(want);
  sort(got);
  FUZZ_CHECK(got.size() == want.size(), "recovered " + std::to_string(got.size()) +
                                            " entries, intact are " + std::to_string(want.size()));
  for (size_t i = 0; i < got.size(); ++i)
    FUZZ_CHECK(fuzz::same(got[i], want[i]), "an intact entry was not recovered exactly");
  FUZZ_CHECK(skipped == damaged + (torn_tail ? 1 : 0),
             "skipped " + std::to_string(skipped) + ", damaged are " + std::to_string(damaged) +
                 (torn_tail ? " plus a torn tail" : ""));
  return 0;
}
