#include "state_file.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "runtime/files.hpp"

namespace wacht {

namespace {

using nlohmann::json;
constexpr const char* kFile = "state.json";
constexpr int kVersion = 1;

json to_json(const alerts::AlertEngine::Saved& s) {
  return json{{"state", static_cast<int>(s.state.state)},
              {"hard_state", static_cast<int>(s.state.hard_state)},
              {"soft", s.state.type == alerts::StateType::kSoft},
              {"attempt", s.state.attempt},
              {"ok_streak", s.state.ok_streak},
              {"flapping", s.state.flapping},
              {"history", s.state.history},
              {"last_hard_change_ms", s.state.last_hard_change_ms},
              {"last_change_ms", s.state.last_change_ms},
              {"summary", s.summary},
              {"has_result", s.has_result},
              {"last_result", static_cast<int>(s.last_result)},
              {"firing", s.firing},
              {"notified_state", static_cast<int>(s.notified_state)},
              {"flapping_notified", s.flapping_notified}};
}

probes::State state_of(const json& j, const char* key) {
  int v = j.at(key).get<int>();
  if (v < 0 || v > 3) throw std::out_of_range(std::string("bad state in ") + key);
  return static_cast<probes::State>(v);
}

alerts::AlertEngine::Saved check_from_json(const json& j) {
  alerts::AlertEngine::Saved s;
  s.state.state = state_of(j, "state");
  s.state.hard_state = state_of(j, "hard_state");
  s.state.type = j.at("soft").get<bool>() ? alerts::StateType::kSoft : alerts::StateType::kHard;
  s.state.attempt = j.at("attempt").get<int>();
  s.state.ok_streak = j.at("ok_streak").get<int>();
  s.state.flapping = j.at("flapping").get<bool>();
  s.state.history = j.at("history").get<std::string>();
  s.state.last_hard_change_ms = j.at("last_hard_change_ms").get<int64_t>();
  s.state.last_change_ms = j.at("last_change_ms").get<int64_t>();
  s.summary = j.at("summary").get<std::string>();
  s.has_result = j.at("has_result").get<bool>();
  s.last_result = state_of(j, "last_result");
  s.firing = j.at("firing").get<bool>();
  s.notified_state = state_of(j, "notified_state");
  s.flapping_notified = j.at("flapping_notified").get<bool>();
  return s;
}

}  // namespace

bool save_snapshot(const std::string& dir, const Snapshot& s, std::string* error) {
  json checks = json::object();
  for (const auto& [id, c] : s.checks) checks[id] = to_json(c);
  json groups = json::array();
  for (const auto& g : s.groups) {
    json alerts = json::array();
    for (const auto& a : g.alerts)
      alerts.push_back(
          {{"id", a.id}, {"notified", a.notified}, {"resolved", a.resolved}, {"news", a.news}});
    groups.push_back({{"route", g.route},
                      {"key", g.key},
                      {"group_labels", g.group_labels},
                      {"thread", g.thread},
                      {"number", g.number},
                      {"last_flush_ms", g.last_flush_ms},
                      {"next_flush_ms", g.next_flush_ms},
                      {"changed", g.changed},
                      {"level", g.level},
                      {"escalation_start_ms", g.escalation_start_ms},
                      {"alerts", alerts}});
  }
  json acks = json::object();
  for (const auto& [id, a] : s.acks)
    acks[id] = {{"by", a.by}, {"comment", a.comment}, {"at_ms", a.at_ms}, {"since_ms", a.since_ms}};
  std::string text =
      json{{"version", kVersion}, {"checks", checks}, {"groups", groups}, {"acks", acks}}.dump();
  return runtime::write_file_atomically(dir + "/" + kFile, text, error);
}

std::optional<Snapshot> load_snapshot(const std::string& dir, std::string* error) {
  std::string path = dir + "/" + kFile;
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return Snapshot{};
    if (error) *error = "cannot read " + path + ": " + std::strerror(errno);
    return std::nullopt;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    json j = json::parse(ss.str());
    if (j.at("version").get<int>() != kVersion) throw std::runtime_error("unknown version");
    Snapshot s;
    for (const auto& [id, c] : j.at("checks").items()) s.checks[id] = check_from_json(c);
    for (const auto& g : j.at("groups")) {
      alerts::Router::SavedGroup sg;
      sg.route = g.at("route").get<int>();
      sg.key = g.at("key").get<std::string>();
      sg.group_labels = g.at("group_labels").get<alerts::Labels>();
      sg.thread = g.at("thread").get<std::string>();
      sg.number = g.at("number").get<uint64_t>();
      sg.last_flush_ms = g.at("last_flush_ms").get<int64_t>();
      sg.next_flush_ms = g.at("next_flush_ms").get<int64_t>();
      sg.changed = g.at("changed").get<bool>();
      sg.level = g.value("level", 0);
      sg.escalation_start_ms = g.value("escalation_start_ms", int64_t{-1});
      for (const auto& a : g.at("alerts")) {
        bool notified = a.at("notified").get<bool>();
        sg.alerts.push_back({a.at("id").get<std::string>(), notified, a.at("resolved").get<bool>(),
                             a.value("news", !notified)});
      }
      s.groups.push_back(std::move(sg));
    }
    if (j.contains("acks")) {
      for (const auto& [id, a] : j.at("acks").items())
        s.acks[id] = Ack{a.at("by").get<std::string>(), a.at("comment").get<std::string>(),
                         a.at("at_ms").get<int64_t>(), a.at("since_ms").get<int64_t>()};
    }
    return s;
  } catch (const std::exception& e) {
    if (error) *error = path + " is corrupt: " + e.what();
    return std::nullopt;
  }
}

}  // namespace wacht
