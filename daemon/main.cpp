// wachtd: the only place that catches everything; see wachtd(8) for the CLI.
#include <getopt.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <optional>
#include <string>

#include "alerts/silences.hpp"
#include "app.hpp"
#include "config.hpp"
#include "log.hpp"
#include "oncall_report.hpp"
#include "version.hpp"

namespace {

constexpr const char* kDefaultConfig = "/etc/wacht/wacht.toml";

void usage(FILE* out) {
  std::fprintf(
      out,
      "Usage: wachtd [--config FILE] [--check-config] [--log-level LEVEL]\n"
      "       wachtd [--config FILE] --oncall TENANT|ROTATION [--at TIME] [--days N]\n"
      "       wachtd --version\n"
      "\n"
      "  -c, --config FILE      config file (default %s)\n"
      "  -n, --check-config     validate the config, print every error, exit\n"
      "  -l, --log-level LEVEL  trace, debug, info, warn or error (overrides the config)\n"
      "      --oncall NAME      print who is paged for a tenant's alerts, or a\n"
      "                         rotation's shifts, and exit\n"
      "      --at TIME          for --oncall: RFC 3339 time, e.g. 2026-03-29T02:30:00+01:00\n"
      "                         (default now)\n"
      "      --days N           for --oncall with a rotation: shifts shown (default 14)\n"
      "  -V, --version          print the version and exit\n"
      "  -h, --help             print this help and exit\n"
      "\n"
      "Exit codes: 0 ok, 1 config invalid, 2 usage error, 3 startup failed.\n",
      kDefaultConfig);
}

// `name` is a tenant or, failing that, a rotation.
int print_oncall(const std::string& path, const std::string& name,
                 const std::optional<std::string>& at_text, int days) {
  auto result = wacht::config::load(path);
  if (!result.config) {
    std::fputs(result.diagnostics.render().c_str(), stderr);
    return wacht::kExitConfigInvalid;
  }
  int64_t at = std::time(nullptr);
  if (at_text) {
    auto ms = wacht::alerts::parse_rfc3339(*at_text);
    if (!ms) {
      std::fprintf(stderr, "wachtd: --at: not an RFC 3339 time: \"%s\"\n", at_text->c_str());
      return wacht::kExitUsage;
    }
    at = *ms / 1000;
  }
  const auto& cfg = *result.config;
  // A name may be both a tenant and a rotation (tenant lup, rotation lup): show both.
  bool any = false;
  for (bool tenant : {true, false}) {
    std::string error;
    auto report =
        wacht::oncall_report(cfg, tenant ? name : "", tenant ? "" : name, at, &error, days);
    if (!report) continue;
    if (any) std::fputs("\n", stdout);
    std::fputs(wacht::oncall_text(cfg, *report).c_str(), stdout);
    any = true;
  }
  if (!any) {
    std::fprintf(stderr, "wachtd: --oncall: '%s' is neither a tenant nor a rotation\n",
                 name.c_str());
    return wacht::kExitUsage;
  }
  return wacht::kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  static const option kOptions[] = {{"config", required_argument, nullptr, 'c'},
                                    {"check-config", no_argument, nullptr, 'n'},
                                    {"log-level", required_argument, nullptr, 'l'},
                                    {"version", no_argument, nullptr, 'V'},
                                    {"oncall", required_argument, nullptr, 'O'},
                                    {"at", required_argument, nullptr, 'A'},
                                    {"days", required_argument, nullptr, 'D'},
                                    {"help", no_argument, nullptr, 'h'},
                                    {nullptr, 0, nullptr, 0}};
  wacht::App::Options options{kDefaultConfig, std::nullopt};
  bool check_only = false;
  std::optional<std::string> oncall, at;
  int days = 14;
  int c;
  while ((c = getopt_long(argc, argv, "c:nl:Vh", kOptions, nullptr)) != -1) {
    switch (c) {
      case 'c': options.config_path = optarg; break;
      case 'n': check_only = true; break;
      case 'l': options.log_level = optarg; break;
      case 'O': oncall = optarg; break;
      case 'A': at = optarg; break;
      case 'D':
        // The whole argument must be a number: atoi took "7d" as 7.
        if (auto [end, ec] = std::from_chars(optarg, optarg + std::strlen(optarg), days);
            ec != std::errc() || *end != '\0' || days < 1 || days > 366) {
          std::fprintf(stderr, "wachtd: --days must be 1 to 366\n");
          return wacht::kExitUsage;
        }
        break;
      case 'V': std::printf("wachtd %s (%s)\n", wacht::kVersion, wacht::kRevision); return 0;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return wacht::kExitUsage;
    }
  }
  if (optind < argc) {
    std::fprintf(stderr, "wachtd: unexpected argument '%s'\n", argv[optind]);
    usage(stderr);
    return wacht::kExitUsage;
  }

  if ((at || days != 14) && !oncall) {
    std::fprintf(stderr, "wachtd: --at and --days go with --oncall\n");
    return wacht::kExitUsage;
  }
  try {
    if (oncall) return print_oncall(options.config_path, *oncall, at, days);
    if (check_only) {
      auto result = wacht::config::load(options.config_path);
      std::fputs(result.diagnostics.render().c_str(), stderr);
      if (!result.config) {
        std::fprintf(stderr, "%s: %zu error(s)\n", options.config_path.c_str(),
                     result.diagnostics.error_count());
        return wacht::kExitConfigInvalid;
      }
      std::printf("%s: OK, %zu checks in %zu file(s)\n", options.config_path.c_str(),
                  result.config->checks.size(), result.config->files.size());
      return wacht::kExitOk;
    }
    wacht::log::setup();
    if (options.log_level && !wacht::log::set_level(*options.log_level)) {
      std::fprintf(stderr, "wachtd: unknown log level '%s'\n", options.log_level->c_str());
      return wacht::kExitUsage;
    }
    wacht::App app(std::move(options));
    return app.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "wachtd: fatal: %s\n", e.what());
    return wacht::kExitStartupFailed;
  }
}
