#pragma once

#include <string>
#include <vector>

#include "alerts/check_state.hpp"

namespace wacht::alerts {

// What a message says about one alert.
struct AlertView {
  std::string check;
  std::string target;
  std::string type;
  std::string state;                  // OK, WARNING, CRITICAL, UNKNOWN
  std::string summary;                // the last probe output
  std::string description;            // the check's own description, may be empty
  std::string link;                   // e.g. a Grafana panel, may be empty
  TimePoint since{};                  // when it became a (hard) problem or recovered
  std::vector<std::string> affected;  // dependent checks it took down
  std::string acked_by;               // who acknowledged it, empty if nobody
  std::string ack_comment;
  std::string ack_link;  // signed link that acknowledges it, may be empty
};

// One notification: a group's firing and resolved alerts.
struct MessageView {
  std::string tenant;
  std::string tenant_name;
  std::vector<AlertView> firing;
  std::vector<AlertView> resolved;
  TimePoint now{};
  int level = 0;        // > 0: an escalation to that level
  bool digest = false;  // a storm digest of several groups
};

struct Rendered {
  std::string subject;
  std::string body;
};

// Templates with {placeholders}. Message level: {prefix} (escalation level or
// digest, with a trailing space, else empty) {tenant} {TENANT}
// {tenant_name} {status} {count} {checks} {first_check} {first_target}
// {first_state} {alerts}. Per alert (the block repeated in {alerts}): {check}
// {target} {type} {state} {state_text} {since} {for} {summary} {description}
// {affected_count} {affected} {link} {acknowledged} {ack_link}. Lines of an alert block whose
// placeholders are all empty are left out.
struct Templates {
  std::string subject;
  std::string body;
  std::string alert;  // one alert's block
  std::string language;
};

// The shipped templates: "de" (German) and "en" (English).
const Templates& builtin_templates(const std::string& language);
bool known_language(const std::string& language);

Rendered render(const MessageView& m, const Templates& t);

// The connectivity guard's one message when wachtd cannot see (`blind`) and
// its all-clear; `reason` says which guard checks failed or how many checks.
Rendered render_blind(bool blind, const std::string& reason, size_t held, const Templates& t);

// The one notice when a check starts flapping (`started`) and the one when it
// settles, in the templates' language.
Rendered render_flapping(const AlertView& a, const std::string& tenant, bool started,
                         const Templates& t);

}  // namespace wacht::alerts
