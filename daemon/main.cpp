// wachtd: the only place that catches everything; see wachtd(8) for the CLI.
#include <getopt.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <exception>
#include <string>

#include "app.hpp"
#include "config.hpp"
#include "log.hpp"
#include "version.hpp"

namespace {

constexpr const char* kDefaultConfig = "/etc/wacht/wacht.toml";

void usage(FILE* out) {
  std::fprintf(out,
               "Usage: wachtd [--config FILE] [--check-config] [--log-level LEVEL]\n"
               "       wachtd --version\n"
               "\n"
               "  -c, --config FILE      config file (default %s)\n"
               "  -n, --check-config     validate the config, print every error, exit\n"
               "  -l, --log-level LEVEL  trace, debug, info, warn or error (overrides the config)\n"
               "  -V, --version          print the version and exit\n"
               "  -h, --help             print this help and exit\n"
               "\n"
               "Exit codes: 0 ok, 1 config invalid, 2 usage error, 3 startup failed.\n",
               kDefaultConfig);
}

}  // namespace

int main(int argc, char** argv) {
  static const option kOptions[] = {{"config", required_argument, nullptr, 'c'},
                                    {"check-config", no_argument, nullptr, 'n'},
                                    {"log-level", required_argument, nullptr, 'l'},
                                    {"version", no_argument, nullptr, 'V'},
                                    {"help", no_argument, nullptr, 'h'},
                                    {nullptr, 0, nullptr, 0}};
  wacht::App::Options options{kDefaultConfig, std::nullopt};
  bool check_only = false;
  int c;
  while ((c = getopt_long(argc, argv, "c:nl:Vh", kOptions, nullptr)) != -1) {
    switch (c) {
      case 'c': options.config_path = optarg; break;
      case 'n': check_only = true; break;
      case 'l': options.log_level = optarg; break;
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

  try {
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
