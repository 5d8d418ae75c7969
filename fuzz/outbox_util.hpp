// Shared by the outbox fuzz targets: a private state directory on tmpfs (so
// the outbox's fsyncs cost nothing), a loop, and the journal's line format.
#pragma once

#include <spdlog/spdlog.h>
#include <unistd.h>
#include <uv.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "alerts/notification.hpp"
#include "alerts/outbox.hpp"
#include "fuzz_check.hpp"

namespace wacht::fuzz {

// The state directory of every run, removed at exit.
inline const std::string& state_dir() {
  static const std::string dir = [] {
    std::string base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
    std::string tmpl = base + "/wacht-outbox-fuzz.XXXXXX";
    if (!mkdtemp(tmpl.data())) std::abort();
    return tmpl;
  }();
  static struct Cleanup {
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup;
  return dir;
}

inline std::string journal_path() { return state_dir() + "/outbox.journal"; }

inline void write_journal(std::string_view content) {
  std::ofstream out(journal_path(), std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  FUZZ_CHECK(out.good(), "cannot write the journal");
}

inline std::string read_journal() {
  std::ifstream in(journal_path(), std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline uv_loop_t* loop() {
  static uv_loop_t* l = [] {
    // Every replay of a damaged journal logs a warning.
    spdlog::set_level(spdlog::level::off);
    auto* lp = new uv_loop_t;
    uv_loop_init(lp);
    return lp;
  }();
  return l;
}

// An outbox on state_dir() without receivers: open() replays the journal.
inline std::unique_ptr<alerts::Outbox> open_outbox() {
  alerts::OutboxOptions o;
  o.dir = state_dir();
  o.now_ms = [] { return int64_t{1790000000000}; };
  auto box = std::make_unique<alerts::Outbox>(loop(), std::move(o), alerts::OutboxObserver{});
  std::string error;
  FUZZ_CHECK(box->open(&error), "open failed: " + error);
  return box;
}

// Destroys an outbox and lets libuv free its timers.
inline void close_outbox(std::unique_ptr<alerts::Outbox>& box) {
  box.reset();
  uv_run(loop(), UV_RUN_NOWAIT);
}

// CRC-32 (IEEE) as the journal's line prefix carries it, written out again.
inline uint32_t crc32(std::string_view data) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : data) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
  }
  return c ^ 0xFFFFFFFFu;
}

// Whether `line` (without its '\n') has a correct checksum prefix.
inline bool checksummed(std::string_view line) {
  if (line.size() < 10 || line[8] != ' ') return false;
  char want[9];
  std::snprintf(want, sizeof want, "%08x", crc32(line.substr(9)));
  return line.substr(0, 8) == want;
}

inline bool same(const alerts::Notification& a, const alerts::Notification& b) {
  return a.seq == b.seq && a.receiver == b.receiver && a.to == b.to &&
         a.thread_key == b.thread_key && a.message_id == b.message_id &&
         a.in_reply_to == b.in_reply_to && a.subject == b.subject && a.body == b.body &&
         a.created_ms == b.created_ms && a.kind == b.kind && a.alert_ids == b.alert_ids;
}

inline alerts::Notification notification(const std::string& id) {
  alerts::Notification n;
  n.receiver = "mail";
  n.thread_key = "fuzz";
  n.message_id = "<" + id + "@wacht.fuzz>";
  n.subject = "fuzz " + id;
  n.body = "appended after a replay\n";
  // Not "firing": the outbox drops an alert message whose Message-ID is
  // already in the journal, and a fuzzed journal may hold this one.
  n.kind = "fuzz";
  n.alert_ids = {id};
  return n;
}

}  // namespace wacht::fuzz
