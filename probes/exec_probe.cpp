#include "probes/exec_probe.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <csignal>
#include <cstring>
#include <exception>
#include <set>
#include <utility>

#include "runtime/timer.hpp"

namespace wacht::probes {

namespace {

constexpr int64_t kDefaultMaxOutputBytes = 65536;
constexpr size_t kMaxSummaryBytes = 512;
// Between SIGTERM and SIGKILL: time for a plugin to clean up (remove temp
// files, close sessions) after a timeout.
constexpr uint64_t kKillGraceMs = 1000;

// The reference documentation is generated from this table.
constexpr runtime::KeySpec kKeys[] = {
    {"command", "array of strings", "",
     "The plugin and its arguments, e.g. [\"/usr/lib/nagios/plugins/check_tcp\", \"-H\", "
     "\"{target}\", \"-p\", \"22\"]. Run directly, never through a shell; the first element is "
     "the absolute path of an executable file. \"{target}\" in an argument is replaced by the "
     "check's target, which for exec checks is free text (e.g. the host the plugin checks). "
     "Exit code 0/1/2/3 is OK/WARNING/CRITICAL/UNKNOWN; any other exit code or death by a "
     "signal is UNKNOWN. The first output line (before '|') is the summary; stdout and stderr "
     "are read together."},
    {"env", "table of strings", "",
     "Environment variables for the plugin, e.g. { NAGIOS_PLUGIN_TIMEOUT = \"10\" }, added to "
     "the minimal environment PATH=/usr/sbin:/usr/bin:/sbin:/bin and LC_ALL=C (which they may "
     "override). Nothing of wachtd's own environment is passed on."},
    {"working_dir", "string", "wachtd's working directory",
     "Absolute path of the directory the plugin runs in."},
    {"max_output_bytes", "integer", "65536",
     "Most bytes of output (stdout and stderr) kept per run; the rest is read and discarded, "
     "the summary says so, and perfdata cut off at the limit is ignored."},
};

// Perfdata items become one series per plugin label in the family of their
// unit (see unit_scale); the limits have families of their own.
constexpr std::string_view kLabel = "label";
const MetricDef kPerfData[4][5] = {
    {
        {"wacht_plugin_perfdata_seconds", "Plugin performance data in s, ms or us, in seconds.",
         kLabel},
        {"wacht_plugin_perfdata_warning_seconds", "Warning threshold of a perfdata item, seconds.",
         kLabel},
        {"wacht_plugin_perfdata_critical_seconds",
         "Critical threshold of a perfdata item, seconds.", kLabel},
        {"wacht_plugin_perfdata_min_seconds", "Minimum of a perfdata item, seconds.", kLabel},
        {"wacht_plugin_perfdata_max_seconds", "Maximum of a perfdata item, seconds.", kLabel},
    },
    {
        {"wacht_plugin_perfdata_bytes",
         "Plugin performance data in B, KB, MB, GB or TB (1024-based), in bytes.", kLabel},
        {"wacht_plugin_perfdata_warning_bytes", "Warning threshold of a perfdata item, bytes.",
         kLabel},
        {"wacht_plugin_perfdata_critical_bytes", "Critical threshold of a perfdata item, bytes.",
         kLabel},
        {"wacht_plugin_perfdata_min_bytes", "Minimum of a perfdata item, bytes.", kLabel},
        {"wacht_plugin_perfdata_max_bytes", "Maximum of a perfdata item, bytes.", kLabel},
    },
    {
        {"wacht_plugin_perfdata_ratio", "Plugin performance data in %, as a ratio (0-1).", kLabel},
        {"wacht_plugin_perfdata_warning_ratio", "Warning threshold of a perfdata item, ratio.",
         kLabel},
        {"wacht_plugin_perfdata_critical_ratio", "Critical threshold of a perfdata item, ratio.",
         kLabel},
        {"wacht_plugin_perfdata_min_ratio", "Minimum of a perfdata item, ratio.", kLabel},
        {"wacht_plugin_perfdata_max_ratio", "Maximum of a perfdata item, ratio.", kLabel},
    },
    {
        {"wacht_plugin_perfdata_value",
         "Plugin performance data without a unit, a counter (c) or another unit, unconverted.",
         kLabel},
        {"wacht_plugin_perfdata_warning", "Warning threshold of a perfdata item, unconverted.",
         kLabel},
        {"wacht_plugin_perfdata_critical", "Critical threshold of a perfdata item, unconverted.",
         kLabel},
        {"wacht_plugin_perfdata_min", "Minimum of a perfdata item, unconverted.", kLabel},
        {"wacht_plugin_perfdata_max", "Maximum of a perfdata item, unconverted.", kLabel},
    },
};
const MetricDef kExitCode{"wacht_plugin_exit_code",
                          "Exit code of the plugin; 128+N if killed by signal N, -1 if it could "
                          "not be started."};
const MetricDef kOutputBytes{"wacht_plugin_output_bytes",
                             "Bytes the plugin wrote to stdout and stderr, including any beyond "
                             "max_output_bytes."};
const MetricDef kPerfDataErrors{"wacht_plugin_perfdata_errors",
                                "Perfdata items of the last run that were skipped: malformed, a "
                                "duplicate label, or more than 100 items."};
const MetricDef kSlotWait{"wacht_plugin_slot_wait_seconds",
                          "Time the run waited for a plugin slot (max_concurrent_plugins)."};

constexpr std::string_view kIdle = "idle";
constexpr std::string_view kWaitingForSlot = "waiting for a plugin slot";

// Immutable, shared by the probe and its runs, so a run that outlives its probe
// (reaping a killed plugin) still has what it needs.
struct ExecSettings {
  std::vector<std::string> argv;  // {target} already replaced
  std::vector<std::string> env;   // "NAME=value"
  std::string working_dir;        // empty: wachtd's
  size_t max_output_bytes = kDefaultMaxOutputBytes;
  std::string running_phase;  // "running <path>"
};

struct ExecSpec final : ProbeSpec {
  std::shared_ptr<const ExecSettings> settings;
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// The label becomes a Prometheus label value, which must be valid UTF-8 and
// should be printable.
bool valid_label(std::string_view s) {
  if (s.empty() || s.size() > kMaxPerfDataLabelBytes) return false;
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) return false;
    const int more = c < 0x80             ? 0
                     : (c & 0xe0) == 0xc0 ? 1
                     : (c & 0xf0) == 0xe0 ? 2
                     : (c & 0xf8) == 0xf0 ? 3
                                          : -1;
    // A stray continuation byte, a truncated sequence, or an overlong two-byte form.
    if (more < 0 || i + static_cast<size_t>(more) >= s.size() || (more == 1 && c < 0xc2))
      return false;
    uint32_t cp = more == 0 ? c : c & (0x3f >> more);
    for (int k = 1; k <= more; ++k) {
      auto cc = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    // Overlong three- and four-byte forms, surrogates, beyond Unicode.
    if ((more == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (more == 3 && (cp < 0x10000 || cp > 0x10ffff)))
      return false;
    i += static_cast<size_t>(more) + 1;
  }
  return true;
}

// A whole field as a finite number, or nullopt.
std::optional<double> number(std::string_view s) {
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v))
    return std::nullopt;
  return v;
}

// Warning/critical: a plain number is exported; a Nagios range ([@][start:][end],
// ~ for -infinity) is accepted without being exported; anything else is malformed.
bool threshold(std::string_view s, std::optional<double>& out) {
  if (s.empty()) return true;
  if ((out = number(s))) return true;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || std::strchr("@~:.-+eE", c) != nullptr;
  });
}

// Parses the data after '=': value[UOM];[warn];[crit];[min];[max]. Returns
// false when malformed; `unknown` is set for the value "U".
bool parse_data(std::string_view data, PerfData& out, bool& unknown) {
  std::string_view fields[5];
  size_t n = 0;
  for (size_t at = 0; n < 5; ++n) {
    size_t semi = data.find(';', at);
    fields[n] = data.substr(at, semi == data.npos ? data.npos : semi - at);
    if (semi == data.npos) {
      ++n;
      break;
    }
    at = semi + 1;
  }
  std::string_view value = fields[0];
  if (value == "U") {
    unknown = true;
    return true;
  }
  double v = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (value.empty() || ec != std::errc() || !std::isfinite(v)) return false;
  std::string_view unit = value.substr(static_cast<size_t>(end - value.data()));
  // Letters, '%' and '/' only: "0,5" (a decimal comma) must not pass as 0 in unit ",5".
  if (!std::all_of(unit.begin(), unit.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '%' || c == '/';
      }))
    return false;
  out.value = v;
  out.unit = unit;
  if (!threshold(n > 1 ? fields[1] : "", out.warning)) return false;
  if (!threshold(n > 2 ? fields[2] : "", out.critical)) return false;
  for (size_t i = 3; i < 5; ++i) {
    if (n <= i || fields[i].empty()) continue;
    auto limit = number(fields[i]);
    if (!limit) return false;
    (i == 3 ? out.min : out.max) = limit;
  }
  return true;
}

}  // namespace

PerfDataList parse_perfdata(std::string_view text) {
  PerfDataList out;
  std::set<std::string, std::less<>> seen;
  size_t at = 0;
  auto skip_token = [&] {
    while (at < text.size() && !is_space(text[at])) ++at;
  };
  while (true) {
    while (at < text.size() && is_space(text[at])) ++at;
    if (at >= text.size()) break;
    PerfData item;
    bool ok = true;
    if (text[at] == '\'') {
      // 'label with spaces'='it''s' — '' is a literal quote.
      ++at;
      bool closed = false;
      while (at < text.size()) {
        if (text[at] == '\'') {
          if (at + 1 < text.size() && text[at + 1] == '\'') {
            item.label += '\'';
            at += 2;
            continue;
          }
          ++at;
          closed = true;
          break;
        }
        item.label += text[at++];
      }
      ok = closed && at < text.size() && text[at] == '=';
    } else {
      size_t begin = at;
      while (at < text.size() && text[at] != '=' && !is_space(text[at])) ++at;
      item.label = text.substr(begin, at - begin);
      ok = at < text.size() && text[at] == '=';
    }
    if (!ok) {
      skip_token();
      ++out.errors;
      continue;
    }
    ++at;  // '='
    size_t begin = at;
    skip_token();
    bool unknown = false;
    if (!valid_label(item.label) || !parse_data(text.substr(begin, at - begin), item, unknown)) {
      ++out.errors;
      continue;
    }
    if (unknown) continue;
    if (out.items.size() >= kMaxPerfDataItems || !seen.insert(item.label).second) {
      ++out.errors;
      continue;
    }
    out.items.push_back(std::move(item));
  }
  return out;
}

UnitScale unit_scale(std::string_view unit) {
  constexpr double kKi = 1024;
  struct Entry {
    std::string_view unit;
    UnitScale scale;
  };
  static constexpr Entry kUnits[] = {
      {"s", {PerfKind::kSeconds, 1}},
      {"ms", {PerfKind::kSeconds, 1e-3}},
      {"us", {PerfKind::kSeconds, 1e-6}},
      {"%", {PerfKind::kRatio, 0.01}},
      {"B", {PerfKind::kBytes, 1}},
      {"KB", {PerfKind::kBytes, kKi}},
      {"MB", {PerfKind::kBytes, kKi * kKi}},
      {"GB", {PerfKind::kBytes, kKi * kKi * kKi}},
      {"TB", {PerfKind::kBytes, kKi * kKi * kKi * kKi}},
      {"KiB", {PerfKind::kBytes, kKi}},
      {"MiB", {PerfKind::kBytes, kKi * kKi}},
      {"GiB", {PerfKind::kBytes, kKi * kKi * kKi}},
      {"TiB", {PerfKind::kBytes, kKi * kKi * kKi * kKi}},
  };
  for (const auto& e : kUnits)
    if (e.unit == unit) return e.scale;
  return {PerfKind::kPlain, 1};
}

PluginOutput split_plugin_output(std::string_view output) {
  PluginOutput out;
  size_t eol = output.find('\n');
  std::string_view first = output.substr(0, eol);
  std::string_view rest = eol == output.npos ? std::string_view() : output.substr(eol + 1);
  size_t bar = first.find('|');
  out.summary = trim(first.substr(0, bar));
  if (bar != first.npos) out.perfdata = first.substr(bar + 1);
  if (size_t more = rest.find('|'); more != rest.npos) {
    if (!out.perfdata.empty()) out.perfdata += ' ';
    out.perfdata += rest.substr(more + 1);
  }
  return out;
}

namespace {

class ExecProbe final : public Probe {
 public:
  ExecProbe(uv_loop_t* loop, ExecLimiter* limiter, std::shared_ptr<const ExecSettings> settings)
      : loop_(loop), limiter_(limiter), settings_(std::move(settings)) {}
  ~ExecProbe() override { cancel(); }

  void start(DoneCallback done) override;
  void cancel() override;
  std::string_view phase() const override { return phase_; }

 private:
  friend class wacht::probes::ExecRun;

  uv_loop_t* loop_;
  ExecLimiter* limiter_;  // null: no cap
  std::shared_ptr<const ExecSettings> settings_;
  ExecRun* run_ = nullptr;  // owned by its own close path, see ExecRun
  std::string_view phase_ = kIdle;
};

std::string signal_name(int sig) {
  const char* text = strsignal(sig);
  return fmt::format("signal {} ({})", sig, text ? text : "unknown");
}

// Cuts at a UTF-8 character boundary.
std::string_view cap(std::string_view s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80) --n;
  return s.substr(0, n);
}

}  // namespace

// One run of a plugin: waits for a slot, spawns it in a new session (its own
// process group, so a timeout kills everything it started), reads stdout and
// stderr through one pipe, and reports when the plugin has exited and the pipe
// is at EOF. It is not owned by the probe, because libuv calls back into it
// after the probe may be gone (a killed plugin must still be reaped): it
// deletes itself once all its handles are closed. While the probe wants the
// result, probe_ points to it.
class ExecRun {
 public:
  ExecRun(ExecProbe* probe, DoneCallback done)
      : probe_(probe),
        done_(std::move(done)),
        loop_(probe->loop_),
        limiter_(probe->limiter_),
        settings_(probe->settings_),
        start_ns_(uv_hrtime()) {}
  ExecRun(const ExecRun&) = delete;
  ExecRun& operator=(const ExecRun&) = delete;

  void begin() {
    if (!limiter_) return launch();
    set_phase(kWaitingForSlot);
    limiter_->submit(this);
  }

  // Called by the limiter when the run has a slot (or by begin without one).
  void launch();
  // The probe no longer wants the result: kill the plugin, never call done,
  // free once the plugin is reaped.
  void abandon();
  // The limiter is going away; the slot no longer needs releasing.
  void detach_limiter() { limiter_ = nullptr; }

 private:
  void spawn_failed(std::string why);
  // posix_spawn and a pidfd: a vfork-style spawn costs the parent a tenth of
  // the fork() that uv_spawn does, which copies wachtd's page tables. Returns
  // a libuv error code (0 on success); falls back to uv_spawn without pidfds.
  int spawn(char** argv, char** env, int out_fd);
  void received(ssize_t nread, const char* data);
  void exited(int64_t status, int term_signal);
  void kill_group(int sig);
  void release_slot();
  void maybe_complete();
  void close_all();
  void handle_closed();
  ProbeResult result() const;
  void set_phase(std::string_view phase) {
    if (probe_) probe_->phase_ = phase;
  }
  void close_handle(uv_handle_t* h) { uv_close(h, &on_closed); }

  static void on_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf) noexcept;
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t*) noexcept;
  static void on_exit(uv_process_t* process, int64_t status, int term_signal) noexcept;
  static void on_pidfd(uv_poll_t* poll, int status, int events) noexcept;
  static void on_closed(uv_handle_t* handle) noexcept;

  ExecProbe* probe_;
  DoneCallback done_;
  uv_loop_t* loop_;
  ExecLimiter* limiter_;
  std::shared_ptr<const ExecSettings> settings_;
  uint64_t start_ns_;
  uint64_t launch_ns_ = 0;

  uv_process_t process_{};  // uv_spawn, where pidfds are not available
  uv_poll_t exit_poll_{};   // readable when the plugin exits (pidfd)
  int pidfd_ = -1;
  pid_t pid_ = 0;
  uv_pipe_t pipe_{};
  int open_handles_ = 0;
  bool pipe_open_ = false;     // pipe_ initialised and not yet closing
  bool process_open_ = false;  // process_ initialised and not yet closing
  bool holds_slot_ = false;
  bool spawned_ = false;  // process_.pid is (or was) our plugin
  bool exited_ = false;   // reaped (or never started)
  bool eof_ = false;
  bool completing_ = false;  // the result is settled, handles are closing
  std::unique_ptr<runtime::Timer> kill_timer_;

  std::string output_;
  size_t output_bytes_ = 0;  // all bytes read, including discarded ones
  int64_t exit_status_ = 0;
  int term_signal_ = 0;
  std::string spawn_error_;
};

namespace {

// What one read takes from a plugin's pipe; consumed at once, so one buffer
// serves every run on the loop thread.
constexpr size_t kReadBufferBytes = 64 * 1024;

char* read_buffer() {
  thread_local std::unique_ptr<char[]> buf(new char[kReadBufferBytes]);
  // The analyzer takes the thread_local for a local destroyed on return.
  return buf.get();  // NOLINT(clang-analyzer-cplusplus.NewDelete)
}

// glibc 2.36's <sys/pidfd.h> lacks extern "C"; the system call is simple enough.
int pidfd_open(pid_t pid, unsigned flags) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, flags));
}

bool have_pidfd() {
  static const bool ok = [] {
    int fd = pidfd_open(getpid(), 0);
    if (fd < 0) return false;
    ::close(fd);
    return true;
  }();
  return ok;
}

}  // namespace

int ExecRun::spawn(char** argv, char** env, int out_fd) {
  const ExecSettings& s = *settings_;
  if (!have_pidfd()) {
    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE;  // libuv opens /dev/null
    stdio[1].flags = UV_INHERIT_FD;
    stdio[1].data.fd = out_fd;
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = out_fd;
    uv_process_options_t options{};
    options.exit_cb = &on_exit;
    options.file = argv[0];
    options.args = argv;
    options.env = env;
    options.cwd = s.working_dir.empty() ? nullptr : s.working_dir.c_str();
    // setsid(): the plugin leads a new process group that cancel() can kill as a
    // whole, and it has no controlling terminal to read from.
    options.flags = UV_PROCESS_DETACHED;
    options.stdio_count = 3;
    options.stdio = stdio;
    process_.data = this;
    int rc = uv_spawn(loop_, &process_, &options);
    // uv_spawn registers the handle even when it fails, so it is closed either way.
    ++open_handles_;
    process_open_ = true;
    if (rc == 0) pid_ = process_.pid;
    return rc;
  }
  // What uv_spawn does in the child, done by posix_spawn: stdin from
  // /dev/null, stdout and stderr into the pipe, a new session, default signal
  // dispositions (wachtd ignores SIGPIPE) and an empty signal mask.
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
  posix_spawn_file_actions_adddup2(&actions, out_fd, 2);
  if (!s.working_dir.empty()) posix_spawn_file_actions_addchdir_np(&actions, s.working_dir.c_str());
  sigset_t all, none;
  sigemptyset(&all);
  for (int sig = 1; sig < 32; ++sig)
    if (sig != SIGKILL && sig != SIGSTOP) sigaddset(&all, sig);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  pid_t pid = 0;
  int err = posix_spawn(&pid, argv[0], &actions, &attr, argv, env);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (err != 0) return -err;  // libuv's codes are negated errnos
  pid_ = pid;
  pidfd_ = pidfd_open(pid, 0);
  if (pidfd_ < 0 || uv_poll_init(loop_, &exit_poll_, pidfd_) != 0) {
    // Cannot watch it: do not leave it running unsupervised.
    int why = errno;
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    if (pidfd_ >= 0) ::close(pidfd_);
    pidfd_ = -1;
    pid_ = 0;
    return -why;
  }
  exit_poll_.data = this;
  ++open_handles_;
  process_open_ = true;
  uv_poll_start(&exit_poll_, UV_READABLE, &on_pidfd);
  return 0;
}

void ExecRun::launch() {
  launch_ns_ = uv_hrtime();
  holds_slot_ = limiter_ != nullptr;
  set_phase(settings_->running_phase);
  // The pipe handle exists from here on, so every failure below completes
  // through a close callback: done is always asynchronous.
  uv_pipe_init(loop_, &pipe_, 0);
  pipe_.data = this;
  ++open_handles_;
  pipe_open_ = true;

  // One pipe for stdout and stderr, as Icinga 2 reads plugins: the order of
  // their lines is kept. Both ends are O_CLOEXEC; libuv dup2s the write end
  // onto the child's fds 1 and 2.
  uv_file fds[2];
  if (int rc = uv_pipe(fds, UV_NONBLOCK_PIPE, 0); rc < 0)
    return spawn_failed(fmt::format("cannot create a pipe: {}", uv_strerror(rc)));

  const ExecSettings& s = *settings_;
  std::vector<char*> argv, env;
  for (const auto& a : s.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : s.env) env.push_back(const_cast<char*>(e.c_str()));
  env.push_back(nullptr);
  int rc = spawn(argv.data(), env.data(), fds[1]);
  ::close(fds[1]);  // the child has its copies
  if (rc < 0) {
    ::close(fds[0]);
    return spawn_failed(fmt::format("cannot run {}: {}", s.argv[0], uv_strerror(rc)));
  }
  spawned_ = true;
  // Cannot fail for a fresh pipe fd.
  uv_pipe_open(&pipe_, fds[0]);
  if (rc = uv_read_start(reinterpret_cast<uv_stream_t*>(&pipe_), &on_alloc, &on_read); rc < 0) {
    // Keep running to reap the plugin; the output is lost.
    spdlog::warn("exec probe: cannot read the output of {}: {}", s.argv[0], uv_strerror(rc));
    eof_ = true;
  }
}

void ExecRun::spawn_failed(std::string why) {
  spawn_error_ = std::move(why);
  exited_ = eof_ = true;
  release_slot();
  maybe_complete();
}

void ExecRun::abandon() {
  probe_ = nullptr;
  done_ = nullptr;
  if (!launch_ns_) {
    // Still queued: no handle, no process.
    if (limiter_) limiter_->withdraw(this);
    delete this;
    return;
  }
  if (completing_) return;
  if (exited_) {
    close_all();
    return;
  }
  // The output no longer matters, and a writer outside the group (a
  // grandchild that called setsid) could hold the pipe open forever.
  eof_ = true;
  if (pipe_open_) {
    pipe_open_ = false;
    close_handle(reinterpret_cast<uv_handle_t*>(&pipe_));
  }
  kill_group(SIGTERM);
  kill_timer_ = std::make_unique<runtime::Timer>(loop_, [this] { kill_group(SIGKILL); });
  kill_timer_->start(kKillGraceMs);
}

void ExecRun::kill_group(int sig) {
  // Negative pid: the whole process group; the plugin leads it (setsid).
  // ESRCH when nothing is left in it is fine.
  if (spawned_ && pid_ > 0) ::kill(-pid_, sig);
}

void ExecRun::release_slot() {
  if (!holds_slot_) return;
  holds_slot_ = false;
  if (limiter_) limiter_->release(this);
}

void ExecRun::received(ssize_t nread, const char* data) {
  if (nread == 0) return;  // EAGAIN
  if (nread < 0) {
    // EOF, or a read error: either way nothing more will come.
    eof_ = true;
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&pipe_));
    maybe_complete();
    return;
  }
  const auto n = static_cast<size_t>(nread);
  output_bytes_ += n;
  // Beyond the limit the output is read and dropped, so a flooding plugin
  // neither blocks on a full pipe nor grows our memory.
  if (output_.size() < settings_->max_output_bytes)
    output_.append(data, std::min(n, settings_->max_output_bytes - output_.size()));
}

void ExecRun::exited(int64_t status, int term_signal) {
  exited_ = true;
  exit_status_ = status;
  term_signal_ = term_signal;
  kill_timer_.reset();
  // The plugin's result is final when it exits. Whatever it left running in
  // its group would hold the pipe open and live on unsupervised. The group
  // id stays reserved while any member lives, so this cannot hit a stranger;
  // with no member left it fails with ESRCH.
  kill_group(SIGKILL);
  release_slot();
  if (!probe_) {
    close_all();
    return;
  }
  maybe_complete();
}

void ExecRun::maybe_complete() {
  if (completing_ || !exited_ || !eof_) return;
  close_all();
}

void ExecRun::close_all() {
  completing_ = true;
  kill_timer_.reset();
  if (pipe_open_) {
    pipe_open_ = false;
    close_handle(reinterpret_cast<uv_handle_t*>(&pipe_));
  }
  if (process_open_) {
    process_open_ = false;
    if (pidfd_ >= 0) {
      close_handle(reinterpret_cast<uv_handle_t*>(&exit_poll_));
      ::close(pidfd_);  // the handle is stopped; libuv no longer watches it
      pidfd_ = -1;
    } else {
      close_handle(reinterpret_cast<uv_handle_t*>(&process_));
    }
  }
}

void ExecRun::handle_closed() {
  if (--open_handles_ > 0) return;
  ExecProbe* probe = probe_;
  DoneCallback done = std::move(done_);
  std::optional<ProbeResult> r;
  if (probe) {
    r = result();
    probe->run_ = nullptr;
    probe->phase_ = kIdle;
  }
  delete this;
  // Last: done may destroy the probe or start the next run.
  if (probe) done(std::move(*r));
}

ProbeResult ExecRun::result() const {
  ProbeResult r;
  const uint64_t now = uv_hrtime();
  r.duration_seconds = static_cast<double>(now - launch_ns_) / 1e9;
  r.add(kSlotWait, static_cast<double>(launch_ns_ - start_ns_) / 1e9);
  r.state = State::kUnknown;
  if (!spawn_error_.empty()) {
    r.summary = spawn_error_;
    r.add(kExitCode, -1);
    return r;
  }
  r.add(kOutputBytes, static_cast<double>(output_bytes_));
  const bool truncated = output_bytes_ > output_.size();
  PluginOutput out = split_plugin_output(output_);
  if (truncated) {
    // Perfdata cut at the limit could read "12" for "1234": without the last,
    // possibly partial item. The summary keeps what there is.
    const std::string_view kept = output_;
    out.perfdata = split_plugin_output(kept.substr(0, kept.find_last_of(" \t\r\n") + 1)).perfdata;
  }
  std::string text(cap(out.summary, kMaxSummaryBytes));

  std::string reason;
  if (term_signal_ != 0) {
    r.add(kExitCode, 128 + term_signal_);
    reason = "killed by " + signal_name(term_signal_);
  } else {
    r.add(kExitCode, static_cast<double>(exit_status_));
    switch (exit_status_) {
      case 0: r.state = State::kOk; break;
      case 1: r.state = State::kWarning; break;
      case 2: r.state = State::kCritical; break;
      case 3: r.state = State::kUnknown; break;
      // The shell's conventions, which plugin wrappers follow.
      case 126: reason = "exit code 126: command not executable"; break;
      case 127: reason = "exit code 127: command not found"; break;
      default: reason = fmt::format("exit code {} (a plugin exits with 0-3)", exit_status_);
    }
  }
  r.success = r.state == State::kOk;
  if (reason.empty())
    r.summary = text.empty() ? fmt::format("no output (exit code {})", exit_status_) : text;
  else
    r.summary = text.empty() ? reason : reason + ": " + text;
  if (truncated)
    r.summary += fmt::format(" [output truncated: {} bytes, max_output_bytes = {}]", output_bytes_,
                             settings_->max_output_bytes);

  PerfDataList perf = parse_perfdata(out.perfdata);
  r.add(kPerfDataErrors, static_cast<double>(perf.errors));
  for (const auto& p : perf.items) {
    UnitScale scale = unit_scale(p.unit);
    const MetricDef* defs = kPerfData[static_cast<int>(scale.kind)];
    r.add(defs[0], p.value * scale.factor, p.label);
    const std::optional<double>* limits[] = {&p.warning, &p.critical, &p.min, &p.max};
    for (size_t i = 0; i < 4; ++i)
      if (*limits[i]) r.add(defs[i + 1], **limits[i] * scale.factor, p.label);
  }
  return r;
}

void ExecRun::on_alloc(uv_handle_t*, size_t, uv_buf_t* buf) noexcept {
  *buf = uv_buf_init(read_buffer(), kReadBufferBytes);
}

void ExecRun::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) noexcept {
  auto* run = static_cast<ExecRun*>(stream->data);
  try {
    run->received(nread, buf ? buf->base : nullptr);
  } catch (const std::exception& e) {
    // Out of memory for the kept output: keep reading (and dropping) the rest.
    spdlog::error("exec probe: {}", e.what());
  }
}

void ExecRun::on_exit(uv_process_t* process, int64_t status, int term_signal) noexcept {
  auto* run = static_cast<ExecRun*>(process->data);
  try {
    run->exited(status, term_signal);
  } catch (const std::exception& e) {
    // Only the limiter's queue can throw (bad_alloc); the handles still close.
    spdlog::error("exec probe: {}", e.what());
    run->close_all();
  }
}

void ExecRun::on_pidfd(uv_poll_t* poll, int, int) noexcept {
  auto* run = static_cast<ExecRun*>(poll->data);
  int status = 0;
  pid_t got = ::waitpid(run->pid_, &status, WNOHANG);
  if (got == 0) return;  // not yet (a spurious wake-up)
  uv_poll_stop(poll);
  int64_t code = 0;
  int sig = 0;
  if (got < 0) {
    code = -1;  // reaped elsewhere: the status is lost
  } else if (WIFSIGNALED(status)) {
    sig = WTERMSIG(status);
  } else if (WIFEXITED(status)) {
    code = WEXITSTATUS(status);
  }
  try {
    run->exited(code, sig);
  } catch (const std::exception& e) {
    spdlog::error("exec probe: {}", e.what());
    run->close_all();
  }
}

void ExecRun::on_closed(uv_handle_t* handle) noexcept {
  auto* run = static_cast<ExecRun*>(handle->data);
  try {
    run->handle_closed();
  } catch (const std::exception& e) {
    spdlog::error("exec probe: exception from the done callback: {}", e.what());
  } catch (...) {
    spdlog::error("exec probe: unknown exception from the done callback");
  }
}

namespace {

void ExecProbe::start(DoneCallback done) {
  // A new run supersedes one still in progress.
  cancel();
  run_ = new ExecRun(this, std::move(done));
  run_->begin();
}

void ExecProbe::cancel() {
  ExecRun* run = std::exchange(run_, nullptr);
  phase_ = kIdle;
  if (run) run->abandon();
}

bool is_env_name(std::string_view s) {
  if (s.empty() || (s[0] >= '0' && s[0] <= '9')) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

std::string replace_target(std::string arg, const std::string& target) {
  constexpr std::string_view kPlaceholder = "{target}";
  for (size_t at = 0; (at = arg.find(kPlaceholder, at)) != std::string::npos; at += target.size())
    arg.replace(at, kPlaceholder.size(), target);
  return arg;
}

void parse_command(runtime::TableReader& reader, const std::string& target, ExecSettings& out) {
  if (!reader.has("command")) {
    reader.error("command",
                 "'command' is required, e.g. command = [\"/usr/lib/nagios/plugins/check_tcp\", "
                 "\"-H\", \"{target}\", \"-p\", \"22\"]");
    return;
  }
  auto command = reader.get_string_array("command");
  if (!command) return;
  if (command->empty()) {
    reader.error("command", "'command' must not be empty");
    return;
  }
  for (const auto& arg : *command) {
    if (arg.find('\0') != std::string::npos) {
      reader.error("command", "arguments in 'command' must not contain NUL characters");
      return;
    }
  }
  const std::string& path = command->front();
  if (!path.starts_with('/')) {
    reader.error("command",
                 fmt::format("the plugin '{}' must be an absolute path, e.g. "
                             "/usr/lib/nagios/plugins/{}; commands are not searched in PATH",
                             path, path.empty() ? "check_tcp" : path));
    return;
  }
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    reader.error("command", errno == ENOENT ? fmt::format("'{}' does not exist", path)
                                            : fmt::format("cannot access '{}': {}", path,
                                                          std::strerror(errno)));
    return;
  }
  if (!S_ISREG(st.st_mode)) {
    reader.error("command", fmt::format("'{}' is not a regular file", path));
    return;
  }
  if (access(path.c_str(), X_OK) != 0) {
    reader.error("command", fmt::format("'{}' is not executable", path));
    return;
  }
  out.argv.push_back(path);
  for (size_t i = 1; i < command->size(); ++i)
    out.argv.push_back(replace_target((*command)[i], target));
  out.running_phase = "running " + path;
}

void parse_env(runtime::TableReader& reader, ExecSettings& out) {
  std::vector<std::pair<std::string, std::string>> vars = {
      {"PATH", "/usr/sbin:/usr/bin:/sbin:/bin"}, {"LC_ALL", "C"}};
  if (auto env = reader.get_string_table("env")) {
    for (auto& [name, value] : *env) {
      if (!is_env_name(name)) {
        reader.error("env", fmt::format("'{}' is not a valid environment variable name "
                                        "(letters, digits and '_', not starting with a digit)",
                                        name));
      } else if (value.find('\0') != std::string::npos) {
        reader.error("env", fmt::format("the value of '{}' must not contain NUL characters", name));
      } else {
        std::erase_if(vars, [&key = name](const auto& v) { return v.first == key; });
        vars.emplace_back(name, value);
      }
    }
  }
  for (const auto& [name, value] : vars) out.env.push_back(name + "=" + value);
}

void parse_working_dir(runtime::TableReader& reader, ExecSettings& out) {
  auto dir = reader.get_string("working_dir");
  if (!dir) return;
  struct stat st {};
  if (!dir->starts_with('/')) {
    reader.error("working_dir",
                 fmt::format("'working_dir' must be an absolute path, not '{}'", *dir));
  } else if (stat(dir->c_str(), &st) != 0) {
    reader.error("working_dir", errno == ENOENT ? fmt::format("'{}' does not exist", *dir)
                                                : fmt::format("cannot access '{}': {}", *dir,
                                                              std::strerror(errno)));
  } else if (!S_ISDIR(st.st_mode)) {
    reader.error("working_dir", fmt::format("'{}' is not a directory", *dir));
  } else {
    out.working_dir = *dir;
  }
}

std::shared_ptr<const ProbeSpec> parse(runtime::TableReader& reader, const std::string& target) {
  size_t errors_before = reader.diagnostics().error_count();
  ExecSettings settings;
  // Every key is read even after an error, so that all problems are reported at once.
  parse_command(reader, target, settings);
  parse_env(reader, settings);
  parse_working_dir(reader, settings);
  if (auto max = reader.get_int("max_output_bytes", 1024, 64 * 1024 * 1024))
    settings.max_output_bytes = static_cast<size_t>(*max);
  if (reader.diagnostics().error_count() > errors_before) return nullptr;
  auto spec = std::make_shared<ExecSpec>();
  spec->settings = std::make_shared<const ExecSettings>(std::move(settings));
  return spec;
}

std::unique_ptr<Probe> create(const ProbeContext& ctx, const CheckTarget&, const ProbeSpec& spec) {
  // The registry hands back the spec this type's parse() made.
  return std::make_unique<ExecProbe>(ctx.loop, ctx.exec,
                                     static_cast<const ExecSpec&>(spec).settings);
}

}  // namespace

ExecLimiter::~ExecLimiter() {
  // Runs reaping killed plugins finish without it. Queued runs exist only if
  // probes outlive the limiter against the contract; they then wait for the
  // scheduler's timeout instead of touching freed memory.
  for (ExecRun* run : running_) run->detach_limiter();
  for (ExecRun* run : queue_) run->detach_limiter();
}

void ExecLimiter::submit(ExecRun* run) {
  if (running_.size() < max_running_) {
    running_.push_back(run);
    run->launch();
  } else {
    queue_.push_back(run);
  }
}

void ExecLimiter::withdraw(ExecRun* run) { std::erase(queue_, run); }

void ExecLimiter::release(ExecRun* run) {
  std::erase(running_, run);
  // A launch that fails at once (no file descriptors left, no such plugin)
  // releases its slot from inside launch(). The loop below, further up the
  // stack, refills it: recursing instead took one launch() frame per failing
  // queued run, thousands deep when every spawn fails.
  if (refilling_) return;
  refilling_ = true;
  struct Done {
    bool& flag;
    ~Done() { flag = false; }
  } done{refilling_};
  while (running_.size() < max_running_ && !queue_.empty()) {
    ExecRun* next = queue_.front();
    queue_.pop_front();
    running_.push_back(next);
    next->launch();
  }
}

ExecLimiterPtr make_exec_limiter(uv_loop_t*, size_t max_running) {
  return ExecLimiterPtr(new ExecLimiter(max_running), [](ExecLimiter* l) { delete l; });
}

ProbeType exec_probe_type() {
  return ProbeType{"exec",
                   "Runs a Nagios plugin (monitoring-plugins): exit code is the state, "
                   "performance data becomes metrics",
                   kKeys, &parse, &create};
}

}  // namespace wacht::probes
