#include "log.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <string>

namespace wacht::log {

void setup() {
  auto logger = spdlog::stderr_logger_st("wachtd");
  if (std::getenv("JOURNAL_STREAM"))
    logger->set_pattern("%l: %v");
  else
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %l: %v");
  spdlog::set_default_logger(logger);
  logger->flush_on(spdlog::level::trace);
}

bool set_level(std::string_view level) {
  auto l = spdlog::level::from_str(std::string(level));
  // from_str maps anything unknown to "off"; only accept real names.
  if (l == spdlog::level::off && level != "off") return false;
  spdlog::set_level(l);
  return true;
}

}  // namespace wacht::log
