#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "alerts/alert_engine.hpp"
#include "alerts/router.hpp"

namespace wacht {

// Alert state that must survive a restart or kill -9: every check's state
// machine and notification bookkeeping, and the router's groups (what was
// announced, in which thread, and when the next message is due).
// An acknowledgement: it holds while the check stays in the hard problem it
// was given for (the problem that started at `since_ms`).
struct Ack {
  std::string by;
  std::string comment;
  int64_t at_ms = 0;
  int64_t since_ms = 0;
};

struct Snapshot {
  std::map<std::string, alerts::AlertEngine::Saved> checks;
  std::vector<alerts::Router::SavedGroup> groups;
  std::map<std::string, Ack> acks;  // by check id
};

// Writes `state.json` in `dir` atomically (temp file, fsync, rename, fsync of
// the directory): after a crash the old or the new snapshot is there, whole.
bool save_snapshot(const std::string& dir, const Snapshot& s, std::string* error);
// A missing file is an empty snapshot; an unreadable or corrupt one is an
// error (the caller starts empty and says so loudly).
std::optional<Snapshot> load_snapshot(const std::string& dir, std::string* error);

}  // namespace wacht
