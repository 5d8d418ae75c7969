#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/regex.hpp"

namespace wacht::alerts {

using Labels = std::map<std::string, std::string>;  // as in router.hpp

// One label matcher of a silence, as Alertmanager and amtool write them:
// tenant="lup", site=~"hag.*", check!="x", host!~"db\d+". A missing label
// counts as the empty string, so name="" matches alerts without the label.
// Build with make_matcher or parse_matcher, which compile the regex.
struct Matcher {
  std::string name;
  enum class Op { kEq, kNe, kRe, kNre } op = Op::kEq;
  std::string value;
  // For kRe/kNre: `value` anchored at both ends like Alertmanager's, so
  // site=~"hag" does not match "hagenow".
  std::optional<runtime::Regex> regex;

  // A regex search that gives up (match limit) counts as no match for both
  // =~ and !~: a pathological pattern never silences anything.
  bool matches(const Labels& labels) const;
  // amtool's spelling, which parse_matcher reads back: name="value", name=~"re".
  std::string str() const;
  // The compiled regex follows from `value`.
  bool operator==(const Matcher& o) const {
    return name == o.name && op == o.op && value == o.value;
  }
};

// A matcher from its parts. Fails with `not a valid label name: "a-b"` or
// `invalid regex "hag(": missing closing parenthesis at offset 4`.
std::optional<Matcher> make_matcher(std::string name, Matcher::Op op, std::string value,
                                    std::string* error);

// One matcher as amtool's parser reads it: a label name, an operator (=, !=,
// =~, !~) and a value, optionally in double quotes, with whitespace around
// each. In the value \" is a quote, \\ a backslash, \n a line feed and any
// other backslash is literal (so "host\d+" needs no doubling). The value may
// be empty. Errors: "matcher 'x': expected name, operator (=, !=, =~, !~) and
// value", "matcher 'a=\"b': unterminated quoted value", "matcher 'a=b\"c':
// unescaped double quote in the value" and make_matcher's.
std::optional<Matcher> parse_matcher(std::string_view text, std::string* error);

// Alertmanager's rules for a silence's matchers: at least one, and at least
// one = or =~ that does not match the empty string (else the silence would
// cover nearly everything). Errors: "at least one matcher required", "at least
// one matcher must not match the empty string". For config silences too.
bool validate_matchers(const std::vector<Matcher>& matchers, std::string* error);

struct Silence {
  enum class State { kPending, kActive, kExpired };

  std::string id;  // random UUID v4 for API silences; "config:<name>" for configured ones
  std::vector<Matcher> matchers;  // all must match; a silence without matchers matches nothing
  int64_t starts_at_ms = 0;
  int64_t ends_at_ms = 0;
  std::string created_by;
  std::string comment;
  int64_t updated_at_ms = 0;
  bool from_config = false;

  // Active in [starts_at, ends_at): expired at ends_at, so expiring at `now`
  // takes effect at once.
  State state(int64_t now_ms) const;
  bool matches(const Labels& labels) const;
};

// "pending", "active", "expired": the API's status.state and the metric label.
const char* to_string(Silence::State state);

// RFC 3339 times as the API carries them: "2026-11-26T10:00:00Z",
// "2026-11-26T11:00:00.5+01:00" (any fraction, truncated to milliseconds).
std::optional<int64_t> parse_rfc3339(std::string_view text);
// UTC with milliseconds, as Alertmanager writes them: "2026-11-26T10:00:00.000Z".
std::string format_rfc3339(int64_t ms);

// The body of POST /api/v2/silences (Alertmanager's PostableSilence):
//   {"id": "...", "matchers": [{"name": "tenant", "value": "lup", "isRegex": false,
//    "isEqual": true}], "startsAt": "...", "endsAt": "...", "createdBy": "anna",
//    "comment": "..."}
// "id" (optional) asks to update that silence, isEqual defaults to true,
// createdBy is optional because the daemon sets it from the caller's token
// before add(); unknown fields are ignored. Only shapes are checked here, the
// rules in SilenceStore::add. Errors name the field: "body is not JSON: <parser
// message>", "matchers[1].name: must be a non-empty string", "endsAt: not an
// RFC 3339 time: \"tomorrow\"", "comment: required".
std::optional<Silence> parse_postable_silence(std::string_view body, std::string* error);

// Alertmanager's GettableSilence: id, status.state, updatedAt, matchers,
// startsAt, endsAt, createdBy, comment.
nlohmann::ordered_json to_json(const Silence& silence, int64_t now_ms);

struct SilenceLimits {
  // Longest an API silence may reach beyond its start (or now, when updating
  // an active one): a forgotten silence must run out.
  std::chrono::milliseconds max_duration = std::chrono::days(90);
  // How long an expired API silence stays listed before gc() drops it.
  std::chrono::milliseconds retention = std::chrono::days(5);
};

// The silences of the on-call layer: API silences (added, updated and expired
// through the HTTP API, saved across restarts) and config silences (one-off
// maintenance windows from the config file, replaced on every reload and
// read-only through the API). Pure: time is passed in. Loop thread only, since
// the matchers' regexes are (see runtime::Regex).
class SilenceStore {
 public:
  explicit SilenceStore(SilenceLimits limits = {});

  // Adds an API silence, or updates the one named by `silence.id` as
  // Alertmanager does: in place when only the comment, createdBy or the end
  // changes (or a pending one moves to a later start), otherwise the old one
  // expires and a new one with a new id replaces it. A start in the past
  // becomes now. Returns the id, or nullopt and `error`:
  // "matchers: at least one matcher required", "endsAt: must be after
  // startsAt", "endsAt: must be in the future", "endsAt: a silence may last at
  // most 90d", "createdBy: must not be empty", "comment: must not be empty",
  // "silence <id> not found", "silence <id> is from the config file; change it
  // there". The caller may check find() first to answer 404.
  std::optional<std::string> add(Silence silence, int64_t now_ms, std::string* error);

  // Ends an API silence now (a pending one gets start = end = now). Errors:
  // "silence <id> not found", "silence <id> is already expired", "silence <id>
  // is from the config file; change it there".
  bool expire(const std::string& id, int64_t now_ms, std::string* error);

  // Replaces all config silences (ids "config:<name>", validated by the config
  // loader). An unchanged one keeps its updatedAt; version() changes only if
  // something did.
  void set_config_silences(std::vector<Silence> silences, int64_t now_ms);

  const Silence* find(const std::string& id) const;

  // Whether an active silence matches; `by_id` names the one that ends last.
  bool silenced(const Labels& labels, int64_t now_ms, std::string* by_id = nullptr) const;

  // Everything kept, in Alertmanager's order: active by end, pending by start,
  // then expired, most recently ended first.
  std::vector<Silence> list(int64_t now_ms) const;

  struct Counts {
    size_t pending = 0, active = 0, expired = 0;
  };
  // For wacht_silences{state}.
  Counts counts(int64_t now_ms) const;

  // Drops API silences that ended at least `retention` ago; returns how many.
  size_t gc(int64_t now_ms);

  // The next start or end after `now`: silencing changes then without any call
  // here, so the daemon re-evaluates alerts at that time.
  std::optional<int64_t> next_change(int64_t now_ms) const;

  // Changes with every add, expire, effective reload, gc that dropped
  // something and load: re-evaluate alerts when it differs from last time.
  uint64_t version() const { return version_; }

  // API silences as JSON, written atomically.
  bool save(const std::string& path, std::string* error) const;
  // Replaces the API silences with those saved at `path`; a missing file holds
  // none. A file that cannot be read or parsed changes nothing and sets
  // `error`, e.g. "<path>: not JSON: ..." or "<path>: silences[2].endsAt: ...".
  bool load(const std::string& path, std::string* error);

 private:
  SilenceLimits limits_;
  std::map<std::string, Silence> api_;     // by id
  std::map<std::string, Silence> config_;  // by id
  uint64_t version_ = 0;
};

}  // namespace wacht::alerts
