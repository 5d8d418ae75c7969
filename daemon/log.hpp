#pragma once

#include <string_view>

namespace wacht::log {

// Logs go to stderr, one line each. Under systemd (JOURNAL_STREAM set) the
// journal adds timestamps, so lines carry only the level.
void setup();
// Returns false for an unknown level name.
bool set_level(std::string_view level);

}  // namespace wacht::log
