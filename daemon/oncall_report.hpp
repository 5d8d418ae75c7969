#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config.hpp"

namespace wacht {

// Who gets paged at a given moment, for admins to check a schedule before
// relying on it: `wachtd --oncall` and GET /api/v1/oncall.
struct OnCallReport {
  int64_t at = 0;                               // unix seconds
  std::shared_ptr<const runtime::TimeZone> tz;  // for showing times
  std::string tenant;
  std::string rotation;
  struct Recipient {
    std::string severity;  // for a tenant: which alerts
    std::string route;
    int level = 1;            // 1: first message; 2, 3, ...: escalation levels
    config::Millis after{0};  // escalation delay
    std::string receiver;
    std::string type;
    std::vector<std::string> addresses;  // email: the fixed ones and the on-call person
    std::optional<alerts::Shift> shift;  // the on-call shift, if the receiver has a rotation
    std::string person_name;
  };
  std::vector<Recipient> recipients;     // for a tenant
  std::optional<alerts::Shift> current;  // for a rotation
  std::vector<alerts::Shift> upcoming;   // for a rotation: the next `days`
};

// Exactly one of `tenant` and `rotation` must be given. nullopt with `error`
// for an unknown name.
std::optional<OnCallReport> oncall_report(const config::Config& cfg, const std::string& tenant,
                                          const std::string& rotation, int64_t at,
                                          std::string* error, int days = 14);
nlohmann::ordered_json oncall_json(const OnCallReport& report);
std::string oncall_text(const config::Config& cfg, const OnCallReport& report);

}  // namespace wacht
