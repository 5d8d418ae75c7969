#include "alerts/outbox.hpp"

#include <sched.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>

#include "runtime/timer.hpp"
#include "support/loop_fixture.hpp"
#include "support/process.hpp"

namespace wacht::alerts {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using test::read_text;

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

Notification make(const std::string& receiver, const std::string& thread, const std::string& id) {
  Notification n;
  n.receiver = receiver;
  n.thread_key = thread;
  n.message_id = "<" + id + "@wacht.test>";
  n.subject = "Störung " + id;
  n.body = "body of " + id + "\n";
  n.kind = "firing";
  n.alert_ids = {"check-" + id};
  return n;
}

std::vector<std::string> ids_of(const std::vector<Notification>& list) {
  std::vector<std::string> ids;
  for (const auto& n : list) ids.push_back(n.message_id);
  return ids;
}

// What a FakeNotifier saw. Shared with the test because the outbox owns the
// notifier and destroys it in stop().
struct SendLog {
  struct Send {
    std::string message_id;
    double at;  // seconds, monotonic
  };
  std::vector<Send> sends;
  std::vector<std::string> delivered;  // message ids in delivery order
  int cancels = 0;
  std::function<void(const Notification&)> on_send;

  size_t sends_of(const std::string& id) const {
    return static_cast<size_t>(std::count_if(sends.begin(), sends.end(),
                                             [&](const Send& s) { return s.message_id == id; }));
  }
  size_t position(const std::string& id) const {
    return static_cast<size_t>(std::find(delivered.begin(), delivered.end(), id) -
                               delivered.begin());
  }
};

// A transport with scripted results that answers on the next loop iteration,
// as a real one does. A script returning nullopt never answers (a hung server).
class FakeNotifier : public Notifier {
 public:
  using Script = std::function<std::optional<Delivery>(const Notification&, int attempt)>;

  FakeNotifier(uv_loop_t* loop, std::shared_ptr<SendLog> log, Script script = nullptr)
      : log_(std::move(log)), script_(std::move(script)), timer_(loop, [this] { answer(); }) {}

  void send(const Notification& n, Done done) override {
    log_->sends.push_back({n.message_id, test::now_seconds()});
    if (log_->on_send) log_->on_send(n);
    const int attempt = ++attempts_[n.message_id];
    std::optional<Delivery> result = script_ ? script_(n, attempt) : Delivery::kDelivered;
    if (!result) return;
    result_ = *result;
    current_ = n.message_id;
    done_ = std::move(done);
    timer_.start(0);
  }

  void cancel() override {
    ++log_->cancels;
    timer_.stop();
    done_ = nullptr;
  }

 private:
  void answer() {
    Done done = std::move(done_);
    done_ = nullptr;
    if (result_ == Delivery::kDelivered) log_->delivered.push_back(current_);
    if (done) done(result_, "fake");
  }

  std::shared_ptr<SendLog> log_;
  Script script_;
  runtime::Timer timer_;
  std::map<std::string, int> attempts_;
  Delivery result_ = Delivery::kDelivered;
  std::string current_;
  Done done_;
};

struct Events {
  std::vector<std::pair<std::string, std::string>> attempts;  // receiver, result
  std::vector<std::pair<Notification, std::string>> dead_letters;
  std::vector<std::string> journal_errors;

  OutboxObserver observer() {
    return {[this](const std::string& r, const std::string& result) {
              attempts.emplace_back(r, result);
            },
            [this](const Notification& n, const std::string& reason) {
              dead_letters.emplace_back(n, reason);
            },
            [this](const std::string& error) { journal_errors.push_back(error); }};
  }
  size_t count(const std::string& result) const {
    return static_cast<size_t>(std::count_if(attempts.begin(), attempts.end(),
                                             [&](const auto& a) { return a.second == result; }));
  }
};

class OutboxTest : public test::LoopTest {
 protected:
  void SetUp() override {
    LoopTest::SetUp();
    dir_ = test::make_temp_dir();
  }
  void TearDown() override {
    LoopTest::TearDown();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  OutboxOptions options(const std::string& dir = {}) {
    OutboxOptions o;
    o.dir = dir.empty() ? dir_ : dir;
    o.initial_backoff = 20ms;
    o.max_backoff = 100ms;
    o.max_age = 1h;
    return o;
  }
  std::string journal(const std::string& dir = {}) {
    return (dir.empty() ? dir_ : dir) + "/outbox.journal";
  }
  void open(Outbox& box) {
    std::string error;
    ASSERT_TRUE(box.open(&error)) << error;
  }
  std::unique_ptr<Notifier> fake(std::shared_ptr<SendLog> log,
                                 FakeNotifier::Script script = nullptr) {
    return std::make_unique<FakeNotifier>(loop(), std::move(log), std::move(script));
  }

  std::string dir_;
  Events events_;
};

TEST_F(OutboxTest, EntryIsInTheJournalBeforeItsFirstSend) {
  auto log = std::make_shared<SendLog>();
  std::vector<std::string> journaled_at_send;
  log->on_send = [&](const Notification& n) {
    if (read_text(journal()).find(n.message_id) != std::string::npos) {
      journaled_at_send.push_back(n.message_id);
    }
  };
  {
    Outbox box(loop(), options(), events_.observer());
    open(box);
    box.add_receiver("mail", fake(log));
    for (const char* id : {"a", "b", "c"}) box.enqueue(make("mail", id, id));
    EXPECT_EQ(box.pending(), 3u);
    EXPECT_TRUE(log->sends.empty()) << "no send before the journal was synced";
    ASSERT_TRUE(run_until([&] { return lines_of(read_text(journal())).size() == 6; }));
    EXPECT_EQ(box.pending(), 0u);
    EXPECT_EQ(journaled_at_send, log->delivered);
    EXPECT_EQ(log->delivered.size(), 3u);
    EXPECT_EQ(events_.count("delivered"), 3u);
  }
  // The format: "<crc32> <json>", three enqueue records, then three done records.
  auto well_formed = [](const std::string& line) {
    return line.size() > 10 && line.find_first_not_of("0123456789abcdef") == 8 && line[8] == ' ' &&
           (line.rfind(R"({"op":"enqueue",)", 9) == 9 || line.rfind(R"({"op":"done",)", 9) == 9) &&
           line.back() == '}';
  };
  std::vector<std::string> lines = lines_of(read_text(journal()));
  ASSERT_EQ(lines.size(), 6u);
  for (const auto& line : lines) EXPECT_TRUE(well_formed(line)) << line;
  EXPECT_NE(lines[0].find("\"subject\":\"Störung a\""), std::string::npos) << lines[0];
  EXPECT_NE(lines[5].find("\"result\":\"delivered\""), std::string::npos) << lines[5];

  Outbox again(loop(), options(), events_.observer());
  open(again);
  EXPECT_EQ(again.pending(), 0u);
  EXPECT_EQ(again.corrupt_entries_skipped(), 0u);
}

TEST_F(OutboxTest, BurstIsDeliveredOnceInQueueOrder) {
  auto log = std::make_shared<SendLog>();
  Outbox box(loop(), options(), events_.observer());
  open(box);
  box.add_receiver("mail", fake(log));
  std::vector<std::string> expected;
  for (int i = 0; i < 100; ++i) {
    box.enqueue(make("mail", "one-thread", "n" + std::to_string(i)));
    expected.push_back("<n" + std::to_string(i) + "@wacht.test>");
  }
  ASSERT_TRUE(run_until([&] { return box.pending() == 0; }));
  EXPECT_EQ(log->delivered, expected);
  EXPECT_EQ(log->sends.size(), 100u);
}

TEST_F(OutboxTest, RetryingThreadDoesNotBlockOtherThreads) {
  auto log = std::make_shared<SendLog>();
  OutboxOptions o = options();
  o.initial_backoff = 150ms;
  o.max_backoff = 150ms;
  Outbox box(loop(), o, events_.observer());
  open(box);
  // The first mail of thread A fails twice; thread B must not wait for it,
  // and A's second mail must.
  box.add_receiver("mail", fake(log, [](const Notification& n, int attempt) {
                     return n.message_id == "<a1@wacht.test>" && attempt <= 2
                                ? Delivery::kRetry
                                : Delivery::kDelivered;
                   }));
  box.enqueue(make("mail", "A", "a1"));
  box.enqueue(make("mail", "B", "b1"));
  box.enqueue(make("mail", "A", "a2"));
  box.enqueue(make("mail", "B", "b2"));
  box.enqueue(make("mail", "B", "b3"));
  ASSERT_TRUE(run_until([&] { return box.pending() == 0; }));
  ASSERT_EQ(log->delivered.size(), 5u);
  EXPECT_LT(log->position("<b3@wacht.test>"), log->position("<a1@wacht.test>"));
  EXPECT_LT(log->position("<a1@wacht.test>"), log->position("<a2@wacht.test>"));
  EXPECT_EQ(log->sends_of("<a1@wacht.test>"), 3u);
  EXPECT_EQ(log->sends_of("<a2@wacht.test>"), 1u) << "a2 was sent before a1 was through";
  EXPECT_EQ(events_.count("retry"), 2u);
  EXPECT_EQ(events_.count("delivered"), 5u);
}

TEST_F(OutboxTest, RetriesBackOffExponentiallyWithJitterThenExpire) {
  auto log = std::make_shared<SendLog>();
  OutboxOptions o = options();
  o.initial_backoff = 40ms;
  o.max_backoff = 160ms;
  o.max_age = 1000ms;
  Outbox box(loop(), o, events_.observer());
  open(box);
  box.add_receiver("mail", fake(log, [](const Notification&, int) { return Delivery::kRetry; }));
  box.enqueue(make("mail", "t", "down"));
  ASSERT_TRUE(run_until([&] { return !events_.dead_letters.empty(); }, 5s));
  EXPECT_EQ(box.pending(), 0u);
  EXPECT_EQ(events_.dead_letters[0].first.message_id, "<down@wacht.test>");
  EXPECT_NE(events_.dead_letters[0].second.find("expired"), std::string::npos);
  ASSERT_EQ(events_.attempts.back().second, "expired");
  EXPECT_EQ(events_.count("expired"), 1u);
  // Every send was answered with a retry, except possibly the last, whose
  // retry came after max_age and was reported as the expiry.
  EXPECT_GE(events_.count("retry") + 1, log->sends.size());
  EXPECT_LE(events_.count("retry"), log->sends.size());

  // Gaps double from 40 ms to the 160 ms cap, each within ±20% (plus slack
  // for timer granularity; a loaded machine only makes gaps longer).
  ASSERT_GE(log->sends.size(), 5u);
  const double expected[] = {0.040, 0.080, 0.160, 0.160};
  for (size_t i = 0; i < 4; ++i) {
    double gap = log->sends[i + 1].at - log->sends[i].at;
    EXPECT_GE(gap, expected[i] * 0.8 - 0.005) << "gap " << i;
    EXPECT_LE(gap, expected[i] * 1.2 + 0.150) << "gap " << i;
  }
  double last = log->sends.back().at - log->sends.front().at;
  EXPECT_LT(last, 1.0) << "sent after max_age";
}

TEST_F(OutboxTest, SecondOutboxOnTheSameJournalIsRefused) {
  Outbox box(loop(), options(), events_.observer());
  open(box);
  Outbox second(loop(), options(), events_.observer());
  std::string error;
  EXPECT_FALSE(second.open(&error));
  EXPECT_NE(error.find("in use by another process"), std::string::npos) << error;
}

TEST_F(OutboxTest, EntryPastMaxAgeIsDeadLetteredWithoutAnAttempt) {
  auto log = std::make_shared<SendLog>();
  OutboxOptions o = options();
  const int64_t now = 1'764'125'447'000;
  o.now_ms = [now] { return now; };
  Outbox box(loop(), o, events_.observer());
  open(box);
  box.add_receiver("mail", fake(log));
  Notification old = make("mail", "t", "old");
  old.created_ms = now - 3'600'001;
  box.enqueue(old);
  Notification fresh = make("mail", "t", "fresh");
  box.enqueue(fresh);
  EXPECT_DOUBLE_EQ(box.oldest_age_seconds(), 3600.001);
  ASSERT_TRUE(run_until([&] { return box.pending() == 0; }));
  ASSERT_EQ(events_.dead_letters.size(), 1u);
  EXPECT_EQ(events_.dead_letters[0].first.message_id, "<old@wacht.test>");
  EXPECT_EQ(log->sends_of("<old@wacht.test>"), 0u);
  EXPECT_EQ(log->delivered, std::vector<std::string>{"<fresh@wacht.test>"});
  EXPECT_EQ(box.oldest_age_seconds(), 0.0);
}

TEST_F(OutboxTest, RateLimitSpreadsSendsOverTheWindowAndDropsNothing) {
  auto log = std::make_shared<SendLog>();
  OutboxOptions o = options();
  o.rate_limit_window = 200ms;
  Outbox box(loop(), o, events_.observer());
  open(box);
  box.add_receiver("mail", fake(log), 2);
  for (int i = 0; i < 6; ++i) box.enqueue(make("mail", std::to_string(i), std::to_string(i)));
  ASSERT_TRUE(run_until([&] { return box.pending() == 0; }));
  ASSERT_EQ(log->delivered.size(), 6u);
  // At most 2 sends in any 200 ms: send i+2 starts a window after send i.
  for (size_t i = 0; i + 2 < log->sends.size(); ++i) {
    EXPECT_GE(log->sends[i + 2].at - log->sends[i].at, 0.200 - 0.005) << "send " << i + 2;
  }
}

TEST_F(OutboxTest, PendingEntriesSurviveACrashAndAreSentOnceWithTheSameMessageId) {
  auto hung = std::make_shared<SendLog>();
  const std::string crash_dir = dir_ + "/crash-image";
  {
    Outbox box(loop(), options(), events_.observer());
    open(box);
    // The server hangs: the first entry stays in flight; "pager" has no
    // transport yet (a receiver removed from the config, say).
    box.add_receiver("mail", fake(hung, [](const Notification&, int) { return std::nullopt; }));
    box.enqueue(make("mail", "t", "m1"));
    box.enqueue(make("mail", "t", "m2"));
    box.enqueue(make("pager", "t", "p1"));
    ASSERT_TRUE(run_until([&] { return hung->sends.size() == 1; }));
    // What kill -9 leaves behind: the journal as it is on disk right now.
    fs::create_directory(crash_dir);
    fs::copy_file(journal(), journal(crash_dir));
    box.stop();
    EXPECT_EQ(hung->cancels, 1);
    EXPECT_EQ(box.pending(), 3u);
  }
  for (const std::string& dir : {dir_, crash_dir}) {
    SCOPED_TRACE(dir);
    auto log = std::make_shared<SendLog>();
    {
      Outbox box(loop(), options(dir), events_.observer());
      open(box);
      EXPECT_EQ(
          ids_of(box.pending_list()),
          (std::vector<std::string>{"<m1@wacht.test>", "<m2@wacht.test>", "<p1@wacht.test>"}));
      box.add_receiver("mail", fake(log));
      box.add_receiver("pager", fake(log));
      ASSERT_TRUE(run_until([&] { return box.pending() == 0; }));
    }
    std::vector<std::string> delivered = log->delivered;
    std::sort(delivered.begin(), delivered.end());
    EXPECT_EQ(delivered,
              (std::vector<std::string>{"<m1@wacht.test>", "<m2@wacht.test>", "<p1@wacht.test>"}));
    Outbox again(loop(), options(dir), events_.observer());
    open(again);
    EXPECT_EQ(again.pending(), 0u) << "delivered entries would be sent twice";
  }
}

TEST_F(OutboxTest, TornTailAndCorruptMiddleRecordLoseOnlyThemselves) {
  {
    Outbox box(loop(), options(), events_.observer());
    open(box);
    for (int i = 1; i <= 6; ++i) box.enqueue(make("mail", "t", "e" + std::to_string(i)));
    ASSERT_TRUE(run_until([&] { return lines_of(read_text(journal())).size() == 6; }));
  }
  std::string text = read_text(journal());
  // A flipped bit inside record 2 and record 6 cut short, as a crash in the
  // middle of a write leaves it.
  size_t second = text.find('\n') + 1;
  size_t flip = text.find("e2@", second);
  ASSERT_NE(flip, std::string::npos);
  text[flip] = 'E';
  text.resize(text.size() - 25);
  write_text(journal(), text);
  {
    Outbox box(loop(), options(), events_.observer());
    open(box);
    EXPECT_EQ(box.corrupt_entries_skipped(), 2u);
    EXPECT_EQ(ids_of(box.pending_list()),
              (std::vector<std::string>{"<e1@wacht.test>", "<e3@wacht.test>", "<e4@wacht.test>",
                                        "<e5@wacht.test>"}));
    // A new record must start on a line of its own, not continue the torn one.
    box.enqueue(make("mail", "t", "e7"));
    ASSERT_TRUE(run_until([&] {
      std::string now = read_text(journal());
      return now.find("e7@") != std::string::npos && now.back() == '\n';
    }));
  }
  Outbox box(loop(), options(), events_.observer());
  open(box);
  EXPECT_EQ(box.corrupt_entries_skipped(), 1u) << "only the damaged middle record is left";
  EXPECT_EQ(ids_of(box.pending_list()),
            (std::vector<std::string>{"<e1@wacht.test>", "<e3@wacht.test>", "<e4@wacht.test>",
                                      "<e5@wacht.test>", "<e7@wacht.test>"}));
}

TEST_F(OutboxTest, CompactionKeepsPendingEntriesAndShrinksTheJournal) {
  auto log = std::make_shared<SendLog>();
  std::vector<std::string> waiting;
  {
    Outbox box(loop(), options(), events_.observer());
    open(box);
    for (int i = 0; i < 10; ++i) {
      box.enqueue(make("later", "w", "w" + std::to_string(i)));
      waiting.push_back("<w" + std::to_string(i) + "@wacht.test>");
    }
    // 1001 deliveries: the last done record crosses the threshold of 1000, so
    // the compacted journal holds nothing of them but the next sequence
    // number. Eleven receivers deliver in parallel, so this takes 91 loop
    // iterations rather than 1001.
    for (int r = 0; r < 11; ++r) {
      box.add_receiver("fast" + std::to_string(r), fake(log));
      for (int i = 0; i < 91; ++i) {
        box.enqueue(
            make("fast" + std::to_string(r), "t", std::to_string(r) + "-" + std::to_string(i)));
      }
    }
    ASSERT_TRUE(run_until([&] { return box.pending() == 10; }, 60s));
    ASSERT_TRUE(run_until([&] { return lines_of(read_text(journal())).size() == 11; }))
        << "not compacted: " << lines_of(read_text(journal())).size() << " records";
  }
  EXPECT_EQ(log->delivered.size(), 1001u);
  std::vector<std::string> lines = lines_of(read_text(journal()));
  EXPECT_NE(lines[0].find(R"({"op":"meta")"), std::string::npos) << lines[0];

  Outbox box(loop(), options(), events_.observer());
  open(box);
  EXPECT_EQ(box.corrupt_entries_skipped(), 0u);
  EXPECT_EQ(ids_of(box.pending_list()), waiting);
  box.enqueue(make("later", "w", "new"));
  EXPECT_EQ(box.pending_list().back().seq, 1012u) << "sequence numbers must never be reused";
}

// Makes journal writes fail for real: a 64 KiB tmpfs filled to the last page
// (ENOSPC) where this process may mount one (root, as in CI; the mount lives
// in a private mount namespace and disappears with the process), otherwise a
// file size limit just above the journal's size (EFBIG), which any user can
// set. Either way write() fails part-way through a record.
class FullDisk {
 public:
  explicit FullDisk(const std::string& base) : dir_(base + "/state") {
    fs::create_directory(dir_);
    tmpfs_ = ::unshare(CLONE_NEWNS) == 0 &&
             ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0 &&
             ::mount("tmpfs", dir_.c_str(), "tmpfs", 0, "size=64k,mode=0700") == 0;
  }
  ~FullDisk() {
    release();
    if (tmpfs_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  const std::string& dir() const { return dir_; }
  std::string how() const { return tmpfs_ ? "ENOSPC on a full tmpfs" : "EFBIG over RLIMIT_FSIZE"; }

  void fill(const std::string& journal) {
    if (tmpfs_) {
      std::ofstream filler(dir_ + "/filler", std::ios::binary);
      std::string block(4096, 'f');
      while (filler.write(block.data(), block.size()) && filler.flush()) {
      }
      return;
    }
    // Over the limit, write() fails with EFBIG instead of raising SIGXFSZ.
    std::signal(SIGXFSZ, SIG_IGN);
    ::getrlimit(RLIMIT_FSIZE, &saved_);
    rlimit limit = saved_;
    limit.rlim_cur = fs::file_size(journal) + 100;
    ::setrlimit(RLIMIT_FSIZE, &limit);
    limited_ = true;
  }

  void release() {
    if (tmpfs_) ::unlink((dir_ + "/filler").c_str());
    if (limited_) ::setrlimit(RLIMIT_FSIZE, &saved_);
    limited_ = false;
  }

 private:
  std::string dir_;
  bool tmpfs_ = false;
  bool limited_ = false;
  rlimit saved_{};
};

TEST_F(OutboxTest, JournalWriteFailureDelaysButNeverLosesANotification) {
  FullDisk disk(dir_);
  SCOPED_TRACE(disk.how());
  RecordProperty("journal_failure", disk.how());
  auto log = std::make_shared<SendLog>();
  {
    Outbox box(loop(), options(disk.dir()), events_.observer());
    open(box);
    box.add_receiver("mail", fake(log));
    box.enqueue(make("mail", "t", "before"));
    ASSERT_TRUE(run_until([&] { return lines_of(read_text(journal(disk.dir()))).size() == 2; }));

    disk.fill(journal(disk.dir()));
    Notification big = make("mail", "t", "during");
    big.body = std::string(16384, 'x');  // needs pages the full disk does not have
    box.enqueue(big);
    ASSERT_TRUE(run_until([&] { return events_.journal_errors.size() >= 3; }));
    EXPECT_EQ(log->sends.size(), 1u) << "sent before it was durable";
    EXPECT_EQ(box.pending(), 1u);
    EXPECT_NE(events_.journal_errors[0].find("cannot write"), std::string::npos)
        << events_.journal_errors[0];

    disk.release();
    ASSERT_TRUE(run_until([&] { return box.pending() == 0; }));
    EXPECT_EQ(log->delivered,
              (std::vector<std::string>{"<before@wacht.test>", "<during@wacht.test>"}));
  }
  Outbox again(loop(), options(disk.dir()), events_.observer());
  open(again);
  EXPECT_EQ(again.pending(), 0u);
  EXPECT_EQ(again.corrupt_entries_skipped(), 0u) << "the partial record was not cut off";
}

// --- corrupted journals: the property fuzz/outbox_recovery_fuzzer checks ------

// CRC-32 (IEEE) as the journal's line prefix carries it, for records written
// by hand.
uint32_t journal_crc32(std::string_view data) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : data) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
  }
  return c ^ 0xFFFFFFFFu;
}

std::string journal_line(const std::string& json) {
  char prefix[10];
  std::snprintf(prefix, sizeof prefix, "%08x ", journal_crc32(json));
  return prefix + json + "\n";
}

bool same_notification(const Notification& a, const Notification& b) {
  return a.seq == b.seq && a.receiver == b.receiver && a.to == b.to &&
         a.thread_key == b.thread_key && a.message_id == b.message_id &&
         a.in_reply_to == b.in_reply_to && a.subject == b.subject && a.body == b.body &&
         a.created_ms == b.created_ms && a.kind == b.kind && a.alert_ids == b.alert_ids;
}

// Silences the outbox's warnings about damaged records while it lives.
struct QuietLog {
  QuietLog() : level(spdlog::get_level()) { spdlog::set_level(spdlog::level::off); }
  ~QuietLog() { spdlog::set_level(level); }
  spdlog::level::level_enum level;
};

// A state directory on tmpfs where there is one: the test below opens the
// journal thousands of times, which costs a millisecond each on a disk.
struct FastDir {
  explicit FastDir(const std::string& fallback) : path(fallback) {
    std::string tmpl = "/dev/shm/wacht-outbox-test.XXXXXX";
    if (fs::is_directory("/dev/shm") && mkdtemp(tmpl.data())) path = owned = tmpl;
  }
  ~FastDir() {
    std::error_code ec;
    if (!owned.empty()) fs::remove_all(owned, ec);
  }
  std::string path, owned;
};

TEST_F(OutboxTest, CorruptedJournalRecoversEveryIntactEntryAndNothingElse) {
  QuietLog quiet;
  FastDir fast(dir_);
  const std::string dir = fast.path;
  std::vector<Notification> queued = {make("mail", "t1", "e1"),  make("mail", "t2", "e2"),
                                      make("pager", "t1", "e3"), make("mail", "t1", "e4"),
                                      make("mail", "t3", "e5"),  make("pager", "t4", "e6")};
  queued[1].body = "Zeile 1\nZeile 2 \"zitiert\" \\ \t\r\n" + std::string(300, 'x');
  queued[2].to = {"anna@lup.example"};
  queued[3].kind = "resolved";
  queued[3].in_reply_to = "<e1@wacht.test>";
  queued[4].subject.clear();
  queued[4].body = "00000000 {\"op\":\"done\",\"seq\":1}\n";  // escaped: stays in its line
  queued[5].body = std::string("probe said \xff\xfe garbage", 21);
  {
    Outbox box(loop(), options(dir), events_.observer());
    open(box);
    for (const auto& n : queued) box.enqueue(n);
    box.stop();
  }
  const std::string original = read_text(journal(dir));
  const std::vector<std::string> lines = lines_of(original);
  ASSERT_EQ(lines.size(), queued.size());
  // What each intact line replays to.
  std::map<std::string, Notification> by_line;
  {
    Outbox box(loop(), options(dir), events_.observer());
    open(box);
    std::vector<Notification> replayed = box.pending_list();
    ASSERT_EQ(ids_of(replayed), ids_of(queued));
    EXPECT_EQ(box.corrupt_entries_skipped(), 0u);
    for (size_t i = 0; i < lines.size(); ++i) by_line.emplace(lines[i], replayed[i]);
  }

  size_t checked = 0;
  auto check = [&](const std::string& damaged, const std::string& what) {
    SCOPED_TRACE(what);
    // Intact: an original line, byte for byte, newline included.
    std::vector<Notification> want;
    size_t skipped = 0;
    size_t at = 0;
    for (size_t nl; (nl = damaged.find('\n', at)) != std::string::npos; at = nl + 1) {
      const std::string line = damaged.substr(at, nl - at);
      if (line.empty()) continue;
      auto it = by_line.find(line);
      if (it == by_line.end())
        ++skipped;
      else if (std::none_of(want.begin(), want.end(),
                            [&](const auto& n) { return n.seq == it->second.seq; }))
        want.push_back(it->second);
    }
    if (at < damaged.size()) ++skipped;  // the torn tail
    std::sort(want.begin(), want.end(), [](const auto& a, const auto& b) { return a.seq < b.seq; });

    write_text(journal(dir), damaged);
    Outbox box(loop(), options(dir), events_.observer());
    open(box);
    std::vector<Notification> got = box.pending_list();
    ASSERT_EQ(ids_of(got), ids_of(want));
    for (size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(same_notification(got[i], want[i]));
    EXPECT_EQ(box.corrupt_entries_skipped(), skipped);
    ++checked;
  };

  for (size_t n = 0; n <= original.size(); ++n)
    check(original.substr(0, n), "truncated to " + std::to_string(n) + " bytes");
  for (size_t i = 0; i < original.size(); ++i) {
    const int bits = std::array{0x01, 0x20, 0xff}[i % 3];
    std::string damaged = original;
    damaged[i] = static_cast<char>(damaged[i] ^ bits);
    check(damaged, "byte " + std::to_string(i) + " ^ " + std::to_string(bits));
  }
  const std::string garbage[] = {"",
                                 "\r",
                                 "garbage",
                                 std::string("\0\0\0", 3),
                                 "00000000 {}",
                                 lines[0].substr(0, 40),
                                 lines[1].substr(9),
                                 "deadbeef " + lines[2].substr(9)};
  for (size_t i = 0, at = 0; i <= lines.size(); ++i) {
    for (const std::string& g : garbage) {
      std::string damaged = original;
      damaged.insert(at, g + "\n");
      check(damaged, "garbage line before line " + std::to_string(i));
      damaged = original;
      damaged.insert(at, g);
      check(damaged, "garbage glued to line " + std::to_string(i));
    }
    if (i < lines.size()) at += lines[i].size() + 1;
  }
  // Several corruptions at once, as the fuzzer makes them (fixed seed).
  std::mt19937 rng(20261126);
  for (int round = 0; round < 500; ++round) {
    std::string damaged = original;
    for (int ops = 1 + static_cast<int>(rng() % 4); ops > 0; --ops) {
      const size_t pos = rng() % (damaged.size() + 1);
      switch (rng() % 4) {
        case 0: damaged.resize(pos); break;
        case 1:
          if (pos < damaged.size())
            damaged[pos] = static_cast<char>(damaged[pos] ^ (1 + rng() % 255));
          break;
        case 2: damaged.insert(pos, garbage[rng() % std::size(garbage)] + "\n"); break;
        case 3: damaged.erase(pos, rng() % 80); break;
      }
    }
    check(damaged, "random round " + std::to_string(round));
  }
  // Every check ran to its end (an ASSERT in it would have returned early).
  EXPECT_EQ(checked, (original.size() + 1) + original.size() +
                         2 * std::size(garbage) * (lines.size() + 1) + 500);
}

// A hand-written enqueue record whose numbers are given as JSON text.
std::string enqueue_record(const std::string& seq, const std::string& id,
                           const std::string& created_ms = "1790000000000") {
  return R"({"op":"enqueue","n":{"seq":)" + seq + R"(,"receiver":"mail","message_id":"<)" + id +
         R"(@wacht.test>","created_ms":)" + created_ms + "}}";
}

// Found by fuzz/outbox_journal_fuzzer: a record with a number that is not an
// integer ("seq": 1e300, or 2^64, which JSON parsers read as a float) was
// converted with undefined behaviour. Such a record is malformed.
TEST_F(OutboxTest, RecordWithANonIntegerNumberIsSkippedAsCorrupt) {
  QuietLog quiet;
  write_text(journal(),
             journal_line(enqueue_record("1", "a", "1790000000000")) +
                 journal_line(enqueue_record("1.5", "b", "1790000000000")) +
                 journal_line(enqueue_record("18446744073709551616", "c", "1790000000000")) +
                 journal_line(enqueue_record("4", "d", "1e300")) +
                 journal_line(R"({"op":"done","seq":1e300})") +
                 journal_line(R"({"op":"done","seq":1.0})") +
                 journal_line(R"({"op":"meta","next_seq":1e300})"));
  Outbox box(loop(), options(), events_.observer());
  open(box);
  EXPECT_EQ(ids_of(box.pending_list()), std::vector<std::string>{"<a@wacht.test>"});
  EXPECT_EQ(box.corrupt_entries_skipped(), 6u);
  box.enqueue(make("mail", "t", "next"));
  EXPECT_EQ(box.pending_list().back().seq, 2u);
}

// Found by fuzz/outbox_journal_fuzzer: a record with seq 2^64-1 (a valid
// integer) wrapped the next sequence number to 0, and the next notification
// was not pending. Numbers that large are forged records.
TEST_F(OutboxTest, ASequenceNumberNoCounterReachesIsSkippedAsCorrupt) {
  QuietLog quiet;
  write_text(journal(), journal_line(enqueue_record("3", "a")) +
                            journal_line(enqueue_record("18446744073709551615", "b")) +
                            journal_line(enqueue_record("9007199254740992", "c")) +
                            journal_line(R"({"op":"done","seq":18446744073709551615})") +
                            journal_line(R"({"op":"meta","next_seq":18446744073709551615})"));
  Outbox box(loop(), options(), events_.observer());
  open(box);
  EXPECT_EQ(ids_of(box.pending_list()), std::vector<std::string>{"<a@wacht.test>"});
  EXPECT_EQ(box.corrupt_entries_skipped(), 4u);
  box.enqueue(make("mail", "t", "next"));
  ASSERT_EQ(box.pending_list().size(), 2u);
  EXPECT_EQ(box.pending_list().back().seq, 4u);
}

}  // namespace
}  // namespace wacht::alerts
