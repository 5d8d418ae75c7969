#include "exporters/process_collector.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

namespace wacht::exporters {

namespace {

double boot_time() {
  std::ifstream f("/proc/stat");
  std::string key;
  double value = 0;
  while (f >> key) {
    if (key == "btime") {
      f >> value;
      return value;
    }
    f.ignore(1 << 20, '\n');
  }
  return 0;
}

struct Stat {
  double utime_ticks = 0, stime_ticks = 0, start_ticks = 0, vsize = 0, rss_pages = 0;
};

Stat read_stat() {
  Stat s;
  std::ifstream f("/proc/self/stat");
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  // The command name may hold spaces and parentheses; fields resume after the last ')'.
  size_t close = text.rfind(')');
  if (close == std::string::npos) return s;
  std::istringstream in(text.substr(close + 2));
  std::string field;
  for (int i = 3; in >> field; ++i) {
    double v = std::strtod(field.c_str(), nullptr);
    if (i == 14)
      s.utime_ticks = v;
    else if (i == 15)
      s.stime_ticks = v;
    else if (i == 22)
      s.start_ticks = v;
    else if (i == 23)
      s.vsize = v;
    else if (i == 24) {
      s.rss_pages = v;
      break;
    }
  }
  return s;
}

double open_fds() {
  double n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (struct dirent* e = readdir(d))
      if (e->d_name[0] != '.') ++n;
    closedir(d);
    --n;  // the directory stream itself
  }
  return n;
}

prometheus::MetricFamily family(const char* name, const char* help, prometheus::MetricType type,
                                double value) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter)
    m.counter.value = value;
  else
    m.gauge.value = value;
  f.metric.push_back(m);
  return f;
}

}  // namespace

ProcessCollector::ProcessCollector() {
  double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  start_time_ = boot_time() + read_stat().start_ticks / ticks;
}

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  using prometheus::MetricType;
  Stat s = read_stat();
  double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  return {
      family("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
             MetricType::Counter, (s.utime_ticks + s.stime_ticks) / ticks),
      family("process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::Gauge,
             s.rss_pages * page),
      family("process_virtual_memory_bytes", "Virtual memory size in bytes.", MetricType::Gauge,
             s.vsize),
      family("process_open_fds", "Number of open file descriptors.", MetricType::Gauge, open_fds()),
      family("process_max_fds", "Maximum number of open file descriptors.", MetricType::Gauge,
             static_cast<double>(lim.rlim_cur)),
      family("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
             MetricType::Gauge, start_time_),
  };
}

}  // namespace wacht::exporters
