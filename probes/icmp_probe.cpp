#include "probes/icmp_probe.hpp"

#include "probes/common_metrics.hpp"

#include "probes/ip_protocol.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <ctime>
#include <exception>
#include <iterator>
#include <optional>
#include <random>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "runtime/timer.hpp"

namespace wacht::probes {

// The reference documentation is generated from this table.
static constexpr runtime::KeySpec kIcmpKeys[] = {
    {"ip_protocol", "string", "any",
     "Address family to ping: \"ip4\", \"ip6\", or \"any\" for the first address the resolver "
     "returns. With \"ip4\" or \"ip6\" a name without an address of that family fails to "
     "resolve."},
    {"count", "integer", "5",
     "Echo requests per run (1 to 1000). Loss and round-trip statistics are computed over this "
     "round, as SmokePing does."},
    {"packet_gap", "duration", "\"200ms\"",
     "Time between two echo requests of a round (ping's -i), at least 1ms. The requests go out "
     "over (count - 1) × packet_gap, which must fit in the check's timeout: requests not sent "
     "before the round ends count as lost."},
    {"packet_timeout", "duration", "",
     "How long to wait for each reply; a later reply counts as lost. Default: replies count until "
     "the round ends, shortly before the check's timeout (a tenth of it, at most 500ms)."},
    {"payload_size", "integer", "56",
     "Bytes of ICMP payload after the 8-byte header (ping's -s), 16 to 65507. The first 16 carry "
     "a nonce and the send time, which tell this round's replies from stale or foreign ones."},
    {"dont_fragment", "boolean", "false",
     "Forbid fragmentation (IPv4 DF bit, IPV6_DONTFRAG): a request larger than the path MTU then "
     "fails to send and counts as lost, which with a large payload_size checks the path MTU."},
};

namespace {

// Help texts of the probe_* families are blackbox_exporter's, so the families
// match when the exporter merges them with the other probes'.
const MetricDef kIcmpDuration{"probe_icmp_duration_seconds", "Duration of icmp request by phase",
                              "phase"};
const MetricDef kLoss{"wacht_icmp_packet_loss_ratio",
                      "Share of the last round's echo requests without a reply in time, 0 to 1."};
const MetricDef kSent{"wacht_icmp_packets_sent",
                      "Echo requests the kernel accepted for sending in the last round."};
const MetricDef kReceived{"wacht_icmp_packets_received",
                          "Echo replies received in time in the last round."};
const MetricDef kRttStat{"wacht_icmp_rtt_seconds",
                         "Round-trip time statistics of the last round in seconds.", "stat"};
// Doubling from 0.5 ms (a LAN) to about 4 s (a saturated mobile link).
constexpr double kRoundTripBuckets[] = {0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032,
                                        0.064,  0.128, 0.256, 0.512, 1.024, 2.048, 4.096};
const MetricDef kRoundTrip{"wacht_icmp_round_trip_seconds",
                           "Round-trip times of ICMP echo replies in seconds.",
                           {},
                           kRoundTripBuckets};

constexpr std::string_view kIdle = "idle";
constexpr std::string_view kResolving = "resolving";
constexpr std::string_view kSending = "sending echo requests";
constexpr std::string_view kWaiting = "waiting for replies";

constexpr size_t kHeaderSize = 8;
constexpr size_t kStampSize = 16;  // nonce and send time at the start of the payload
constexpr int kMaxCount = 1000;
// ICMP_FILTER and struct icmp_filter from <linux/icmp.h>, which clashes with glibc's headers.
constexpr int kIcmpFilter = 1;
constexpr uint8_t kEchoRequest4 = 8, kEchoReply4 = 0;

struct IcmpSettings {
  std::string host;        // without brackets
  int literal_family = 0;  // AF_INET or AF_INET6 if host is an IP address (no resolution)
  // The address of a literal host, parsed once (not for an IPv6 zone, whose
  // interface index is looked up per round).
  sockaddr_storage literal_addr{};
  bool literal_parsed = false;
  IpProtocol ip_protocol = IpProtocol::kAny;
  int count = 5;
  uint64_t packet_gap_ms = 200;
  std::optional<uint64_t> packet_timeout_ms;
  size_t payload_size = 56;
  bool dont_fragment = false;
};

struct IcmpSpec final : ProbeSpec {
  std::shared_ptr<const IcmpSettings> settings;
};

std::string ip_text(const sockaddr_storage& addr) {
  char ip[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET6)
    uv_ip6_name(reinterpret_cast<const sockaddr_in6*>(&addr), ip, sizeof ip);
  else
    uv_ip4_name(reinterpret_cast<const sockaddr_in*>(&addr), ip, sizeof ip);
  return ip;
}

bool same_address(const sockaddr_storage& a, const sockaddr_storage& b) {
  if (a.ss_family != b.ss_family) return false;
  if (a.ss_family == AF_INET)
    return reinterpret_cast<const sockaddr_in&>(a).sin_addr.s_addr ==
           reinterpret_cast<const sockaddr_in&>(b).sin_addr.s_addr;
  return std::memcmp(&reinterpret_cast<const sockaddr_in6&>(a).sin6_addr,
                     &reinterpret_cast<const sockaddr_in6&>(b).sin6_addr, sizeof(in6_addr)) == 0;
}

uint16_t read16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

void write16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

// RFC 1071; the kernel fills it in on every socket but an IPv4 raw one.
uint16_t checksum(const uint8_t* data, size_t len) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) sum += read16(data + i);
  if (len % 2) sum += static_cast<uint32_t>(data[len - 1]) << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

uint64_t realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Runs a callback libuv invoked; no exception crosses into C.
template <typename F>
void guarded(F&& f) noexcept {
  try {
    f();
  } catch (const std::exception& e) {
    spdlog::error("icmp probe: {}", e.what());
  } catch (...) {
    spdlog::error("icmp probe: unknown exception");
  }
}

class IcmpProbe;
class Round;

}  // namespace

class IcmpService {
 public:
  struct Socket {
    int family = 0;
    IcmpSocketKind kind = IcmpSocketKind::kNone;
    int fd = -1;
    uv_poll_t* poll = nullptr;
    int default_pmtu = IP_PMTUDISC_WANT;  // IPv4: the socket's own setting, restored after DF
    bool df = false;                      // whether DF is currently set on the socket
    size_t in_flight = 0;                 // polled only while non-zero
    std::string unavailable;              // why kind is kNone
  };

  explicit IcmpService(uv_loop_t* loop)
      : loop_(loop), rng_(std::random_device{}()), buf_(70000), packet_(kHeaderSize) {
    sockets_[0].family = AF_INET;
    sockets_[1].family = AF_INET6;
    // Only raw sockets carry it; datagram sockets get the kernel's per-socket id.
    identifier_ = static_cast<uint16_t>(rng_());
    next_seq_ = static_cast<uint16_t>(rng_());
  }
  ~IcmpService();
  IcmpService(const IcmpService&) = delete;
  IcmpService& operator=(const IcmpService&) = delete;

  // Returns the errno of the datagram and the raw attempt if both fail.
  std::pair<int, int> open(Socket& s, const IcmpServiceOptions& options);
  Socket& socket_for(int family) { return sockets_[family == AF_INET6 ? 1 : 0]; }
  const Socket& socket_for(int family) const { return sockets_[family == AF_INET6 ? 1 : 0]; }
  size_t in_flight() const { return slots_.size(); }

  void adopt(IcmpProbe* probe) { probes_.insert(probe); }
  void forget(IcmpProbe* probe) { probes_.erase(probe); }

  // Sends packet `index` of `round` to `dst`; returns the sequence number it
  // holds until release() or the reply, or -1 with `error` set.
  int send(Round* round, int index, const sockaddr_storage& dst, const IcmpSettings& settings,
           std::string* error);
  void release(uint16_t seq);

 private:
  // One echo in flight.
  struct Slot {
    Round* round;
    int index;
    uint64_t nonce;
    uint64_t sent_realtime_ns;  // compared with the kernel's receive timestamp
    uint64_t sent_ns;           // uv_hrtime, the fallback
    sockaddr_storage dst;
  };

  bool set_dont_fragment(Socket& s, bool df, std::string* error);
  void readable(Socket& s);
  void received(Socket& s, const uint8_t* p, size_t len, const sockaddr_storage& from,
                std::optional<uint64_t> kernel_realtime_ns, uint64_t now_ns);
  void erase(std::unordered_map<uint16_t, Slot>::iterator it);
  static void on_poll(uv_poll_t* handle, int status, int events) noexcept;

  uv_loop_t* loop_;
  std::mt19937_64 rng_;
  Socket sockets_[2];
  uint16_t identifier_ = 0;
  uint16_t next_seq_ = 0;
  std::unordered_map<uint16_t, Slot> slots_;
  std::unordered_set<IcmpProbe*> probes_;
  std::vector<uint8_t> buf_;     // one received datagram, with an IPv4 header on raw sockets
  std::vector<uint8_t> packet_;  // the request being sent
};

namespace {

// One round of echo requests. Owned by its probe; destroying it releases its
// sequence numbers, stops its timers and abandons a pending resolution.
class Round {
 public:
  Round(IcmpProbe& probe, DoneCallback done);
  ~Round();
  Round(const Round&) = delete;
  Round& operator=(const Round&) = delete;

  void begin();
  // A reply to packet `index` (its sequence number is already released).
  // Never completes the round synchronously: the service is mid-read.
  void on_reply(int index, double rtt_seconds);
  DoneCallback take_done() { return std::move(done_); }
  // From the probe's timers.
  void send_next();
  void conclude();

 private:
  enum class Packet { kUnsent, kFailed, kWaiting, kReplied, kLate };
  struct PacketState {
    Packet state = Packet::kUnsent;
    int seq = -1;
    double rtt = 0;
  };
  struct ResolveRequest {
    uv_getaddrinfo_t req;
    Round* round;  // null once the round is gone; the callback then only frees
  };

  void resolved(int status, addrinfo* res);
  void start_sending(const sockaddr_storage& addr);
  void fail(std::string summary);
  // Ends the round from the deadline timer, so that done always fires from a
  // timer callback, never from inside the service's read loop.
  void finish_soon();
  ProbeResult result();
  void set_phase(std::string_view phase);
  static void on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res) noexcept;

  IcmpProbe& probe_;
  std::shared_ptr<const IcmpSettings> settings_;
  DoneCallback done_;
  ResolveRequest* resolve_ = nullptr;
  ProbeResult result_;
  sockaddr_storage addr_{};
  std::vector<PacketState> packets_;
  int next_ = 0;  // the next packet to send
  int sent_ = 0;
  int waiting_ = 0;
  int received_ = 0;
  std::string send_error_;  // the first failed send, for the summary
  std::string error_;       // set when the round failed before sending
  uint64_t start_ns_ = 0;
};

class IcmpProbe final : public Probe {
 public:
  IcmpProbe(uv_loop_t* loop, IcmpService* service, std::shared_ptr<const IcmpSettings> settings,
            uint64_t budget_ms)
      : loop_(loop), service_(service), settings_(std::move(settings)), budget_ms_(budget_ms) {
    if (service_) service_->adopt(this);
  }
  ~IcmpProbe() override {
    cancel();
    if (service_) service_->forget(this);
  }

  void start(DoneCallback done) override {
    // A new run supersedes one still in progress.
    cancel();
    if (!tick_) {
      // Created once per probe, not per round: two handles fewer to open and
      // close for every echo round.
      tick_ = std::make_unique<runtime::Timer>(loop_, [this] { on_tick(); });
      deadline_ = std::make_unique<runtime::Timer>(loop_, [this] { on_deadline(); });
    }
    round_ = std::make_unique<Round>(*this, std::move(done));
    round_->begin();
  }
  void cancel() override {
    stop_timers();
    round_.reset();
    phase_ = kIdle;
  }
  std::string_view phase() const override { return phase_; }

  // The service is going away: later runs fail.
  void detach() {
    cancel();
    service_ = nullptr;
  }

  // Called by the round as its last act: it is destroyed here.
  void complete(ProbeResult result) {
    DoneCallback done = round_->take_done();
    stop_timers();
    round_.reset();
    phase_ = kIdle;
    // Last: done may destroy the probe or start the next run.
    done(std::move(result));
  }

  uv_loop_t* loop_;
  IcmpService* service_;
  std::shared_ptr<const IcmpSettings> settings_;
  uint64_t budget_ms_;  // how long a round may take
  std::unique_ptr<Round> round_;
  std::string_view phase_ = kIdle;
  std::unique_ptr<runtime::Timer> tick_;      // paces the requests of the round
  std::unique_ptr<runtime::Timer> deadline_;  // ends the round

 private:
  void stop_timers() {
    if (!tick_) return;
    tick_->stop();
    deadline_->stop();
  }
  void on_tick();
  void on_deadline();
};

Round::Round(IcmpProbe& probe, DoneCallback done)
    : probe_(probe),
      settings_(probe.settings_),
      done_(std::move(done)),
      packets_(static_cast<size_t>(settings_->count)) {}

void IcmpProbe::on_tick() {
  if (round_) guarded([&] { round_->send_next(); });
}

void IcmpProbe::on_deadline() {
  if (round_) guarded([&] { round_->conclude(); });
}

void Round::finish_soon() { probe_.deadline_->start(0); }

Round::~Round() {
  if (resolve_) {
    resolve_->round = nullptr;
    uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_->req));
  }
  // The service may be gone already (detach() cancels before it is).
  if (!probe_.service_) return;
  for (const PacketState& p : packets_)
    if (p.state == Packet::kWaiting) probe_.service_->release(static_cast<uint16_t>(p.seq));
}

void Round::begin() {
  start_ns_ = uv_hrtime();
  // The round ends here at the latest, before the scheduler's timeout.
  probe_.deadline_->start(probe_.budget_ms_);
  const IcmpSettings& s = *settings_;
  if (!probe_.service_) {
    fail("no ICMP socket: the ICMP service is not running");
    return;
  }
  if (s.literal_parsed) {
    result_.add(kIcmpDuration, 0, "resolve");
    result_.add(metrics::kDnsLookupTime, 0);
    start_sending(s.literal_addr);
    return;
  }
  if (s.literal_family) {
    sockaddr_storage addr{};
    if (s.literal_family == AF_INET6)
      uv_ip6_addr(s.host.c_str(), 0, reinterpret_cast<sockaddr_in6*>(&addr));
    else
      uv_ip4_addr(s.host.c_str(), 0, reinterpret_cast<sockaddr_in*>(&addr));
    result_.add(kIcmpDuration, 0, "resolve");
    result_.add(metrics::kDnsLookupTime, 0);
    start_sending(addr);
    return;
  }
  set_phase(kResolving);
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;  // one entry per address
  hints.ai_family = address_family(s.ip_protocol);
  // With either family allowed, skip a family this host has no address in.
  if (s.ip_protocol == IpProtocol::kAny) hints.ai_flags = AI_ADDRCONFIG;
  auto* req = new ResolveRequest{{}, this};
  int rc = uv_getaddrinfo(probe_.loop_, &req->req, &on_resolved, s.host.c_str(), nullptr, &hints);
  if (rc < 0) {
    delete req;
    fail("resolve: " + resolve_error(rc));
    return;
  }
  resolve_ = req;
}

void Round::on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res) noexcept {
  auto* r = reinterpret_cast<ResolveRequest*>(req);
  Round* round = r->round;
  delete r;
  if (!round) {
    uv_freeaddrinfo(res);
    return;
  }
  round->resolve_ = nullptr;
  guarded([&] { round->resolved(status, res); });
}

void Round::resolved(int status, addrinfo* res) {
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> owned(res, &uv_freeaddrinfo);
  double seconds = static_cast<double>(uv_hrtime() - start_ns_) / 1e9;
  result_.add(kIcmpDuration, seconds, "resolve");
  result_.add(metrics::kDnsLookupTime, seconds);
  if (status < 0) {
    fail("resolve: " + resolve_error(status));
    return;
  }
  // The resolver's order already reflects address selection (RFC 6724).
  for (const addrinfo* ai = res; ai; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    sockaddr_storage addr{};
    std::memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    start_sending(addr);
    return;
  }
  fail("resolve: no IP address for " + settings_->host);
}

void Round::start_sending(const sockaddr_storage& addr) {
  addr_ = addr;
  result_.add(metrics::kIpProtocol, addr.ss_family == AF_INET6 ? 6 : 4);
  set_phase(kSending);
  // The first request goes out now; the tick paces the others.
  send_next();
  if (next_ < settings_->count)
    probe_.tick_->start(settings_->packet_gap_ms, settings_->packet_gap_ms);
}

void Round::send_next() {
  const IcmpSettings& s = *settings_;
  if (next_ >= s.count || !probe_.service_) return;
  PacketState& p = packets_[static_cast<size_t>(next_)];
  std::string error;
  int seq = probe_.service_->send(this, next_, addr_, s, &error);
  if (seq < 0) {
    p.state = Packet::kFailed;
    if (send_error_.empty()) send_error_ = std::move(error);
  } else {
    p.state = Packet::kWaiting;
    p.seq = seq;
    ++sent_;
    ++waiting_;
  }
  if (++next_ < s.count) return;
  probe_.tick_->stop();
  set_phase(kWaiting);
  if (waiting_ == 0) {
    finish_soon();
  } else if (s.packet_timeout_ms) {
    // Every earlier packet has had longer than the last one.
    uint64_t elapsed_ms = (uv_hrtime() - start_ns_) / 1000000;
    uint64_t left_ms = probe_.budget_ms_ > elapsed_ms ? probe_.budget_ms_ - elapsed_ms : 0;
    probe_.deadline_->start(std::min(left_ms, *s.packet_timeout_ms));
  }
}

void Round::on_reply(int index, double rtt_seconds) {
  PacketState& p = packets_[static_cast<size_t>(index)];
  p.seq = -1;
  --waiting_;
  const auto& timeout = settings_->packet_timeout_ms;
  if (timeout && rtt_seconds * 1000 > static_cast<double>(*timeout)) {
    p.state = Packet::kLate;
  } else {
    p.state = Packet::kReplied;
    p.rtt = rtt_seconds;
    ++received_;
  }
  if (next_ == settings_->count && waiting_ == 0) finish_soon();
}

void Round::fail(std::string summary) {
  error_ = std::move(summary);
  finish_soon();
}

void Round::conclude() {
  ProbeResult r = result();
  // Last: destroys this round.
  probe_.complete(std::move(r));
}

// `v` with two decimals, as fmt's {:.2f} but without its general float
// formatting, which was a fifth of the instructions of a round.
void append_2f(std::string& out, double v) {
  if (!(v >= 0) || v > 1e15) {
    fmt::format_to(std::back_inserter(out), "{:.2f}", v);
    return;
  }
  auto hundredths = static_cast<uint64_t>(std::llround(v * 100));
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, hundredths / 100);
  out.append(buf, end);
  out.push_back('.');
  out.push_back(static_cast<char>('0' + hundredths % 100 / 10));
  out.push_back(static_cast<char>('0' + hundredths % 10));
}

// The loss as a percentage with three significant digits ({:.3g}); the usual
// 0 % and 100 % without a float formatter.
std::string loss_text(double loss) {
  if (loss == 0) return "0%";
  if (loss == 1) return "100%";
  return fmt::format("{:.3g}%", loss * 100);
}

ProbeResult Round::result() {
  ProbeResult r = std::move(result_);
  r.samples.reserve(r.samples.size() + 12 + static_cast<size_t>(received_));
  r.duration_seconds = static_cast<double>(uv_hrtime() - start_ns_) / 1e9;
  r.success = false;
  r.state = State::kCritical;
  if (!error_.empty()) {
    r.summary = error_;
    return r;
  }
  const int count = settings_->count;
  std::vector<double> rtts;
  for (const PacketState& p : packets_)
    if (p.state == Packet::kReplied) rtts.push_back(p.rtt);
  double loss = 1.0 - static_cast<double>(received_) / count;
  r.add(kSent, sent_);
  r.add(kReceived, received_);
  r.add(kLoss, loss);
  if (rtts.empty()) {
    r.summary =
        fmt::format("{} loss (0/{} replies) from {}", loss_text(loss), count, ip_text(addr_));
  } else {
    r.success = true;
    r.state = State::kOk;
    for (double v : rtts) r.add(kRoundTrip, v);
    std::sort(rtts.begin(), rtts.end());
    size_t n = rtts.size();
    double median = n % 2 ? rtts[n / 2] : (rtts[n / 2 - 1] + rtts[n / 2]) / 2;
    double mean = 0;
    for (double v : rtts) mean += v;
    mean /= static_cast<double>(n);
    double variance = 0;
    for (double v : rtts) variance += (v - mean) * (v - mean);
    // Population deviation over the round, as ping's mdev.
    double stddev = std::sqrt(variance / static_cast<double>(n));
    r.add(kIcmpDuration, median, "rtt");
    r.add(kRttStat, rtts.front(), "min");
    r.add(kRttStat, median, "median");
    r.add(kRttStat, rtts.back(), "max");
    r.add(kRttStat, mean, "mean");
    r.add(kRttStat, stddev, "stddev");
    std::string& t = r.summary;
    t.reserve(64);
    t.append(std::to_string(received_)).append("/").append(std::to_string(count));
    t.append(" replies, rtt min/median/max ");
    append_2f(t, rtts.front() * 1e3);
    t.push_back('/');
    append_2f(t, median * 1e3);
    t.push_back('/');
    append_2f(t, rtts.back() * 1e3);
    t.append(" ms, ").append(loss_text(loss)).append(" loss");
  }
  int failed = 0, unsent = 0;
  for (const PacketState& p : packets_) {
    failed += p.state == Packet::kFailed;
    unsent += p.state == Packet::kUnsent;
  }
  if (failed) r.summary += fmt::format("; {} not sent: {}", failed, send_error_);
  if (unsent)
    r.summary += fmt::format(
        "; {} not sent before the round's deadline (count × packet_gap is "
        "too long for the timeout)",
        unsent);
  return r;
}

void Round::set_phase(std::string_view phase) { probe_.phase_ = phase; }

}  // namespace

std::pair<int, int> IcmpService::open(Socket& s, const IcmpServiceOptions& options) {
  auto create = [&](int type) {
    int protocol = s.family == AF_INET ? int{IPPROTO_ICMP} : int{IPPROTO_ICMPV6};
    type |= SOCK_NONBLOCK | SOCK_CLOEXEC;
    return options.open_socket ? options.open_socket(s.family, type, protocol)
                               : ::socket(s.family, type, protocol);
  };
  // The datagram socket first: it needs no privilege beyond the group range,
  // and the kernel hands it only its own replies.
  int dgram_errno = 0, raw_errno = 0;
  s.fd = create(SOCK_DGRAM);
  if (s.fd >= 0) {
    s.kind = IcmpSocketKind::kDatagram;
  } else {
    dgram_errno = errno;
    s.fd = create(SOCK_RAW);
    if (s.fd >= 0) {
      s.kind = IcmpSocketKind::kRaw;
    } else {
      raw_errno = errno;
      s.unavailable = fmt::format("no {} socket: {}", s.family == AF_INET ? "ICMP" : "ICMPv6",
                                  std::strerror(raw_errno));
      return {dgram_errno, raw_errno};
    }
  }
  // Kernel receive timestamps keep a busy loop's delay out of the round trips.
  int one = 1;
  setsockopt(s.fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
  if (s.family == AF_INET) {
    socklen_t len = sizeof s.default_pmtu;
    getsockopt(s.fd, IPPROTO_IP, IP_MTU_DISCOVER, &s.default_pmtu, &len);
  }
  if (s.kind == IcmpSocketKind::kRaw) {
    // A raw socket sees every ICMP message the host receives: let only echo
    // replies through, in the kernel.
    if (s.family == AF_INET) {
      uint32_t blocked = ~(1u << kEchoReply4);
      setsockopt(s.fd, SOL_RAW, kIcmpFilter, &blocked, sizeof blocked);
    } else {
      icmp6_filter filter{};
      ICMP6_FILTER_SETBLOCKALL(&filter);
      ICMP6_FILTER_SETPASS(ICMP6_ECHO_REPLY, &filter);
      setsockopt(s.fd, IPPROTO_ICMPV6, ICMP6_FILTER, &filter, sizeof filter);
    }
  }
  s.poll = new uv_poll_t;
  int rc = uv_poll_init_socket(loop_, s.poll, s.fd);
  if (rc < 0) {
    delete s.poll;
    s.poll = nullptr;
    ::close(s.fd);
    s.fd = -1;
    s.kind = IcmpSocketKind::kNone;
    s.unavailable = fmt::format("cannot poll the ICMP socket: {}", uv_strerror(rc));
    return {EINVAL, EINVAL};
  }
  s.poll->data = this;
  return {0, 0};
}

IcmpService::~IcmpService() {
  // Probes may outlive the service (they belong to the scheduler).
  auto probes = probes_;
  for (IcmpProbe* p : probes) p->detach();
  for (Socket& s : sockets_) {
    if (!s.poll) continue;
    // The descriptor is closed with the handle, in the close callback.
    // NOLINTNEXTLINE(performance-no-int-to-ptr): the fd rides in data, never dereferenced
    s.poll->data = reinterpret_cast<void*>(static_cast<intptr_t>(s.fd));
    uv_close(reinterpret_cast<uv_handle_t*>(s.poll), [](uv_handle_t* h) {
      ::close(static_cast<int>(reinterpret_cast<intptr_t>(h->data)));
      delete reinterpret_cast<uv_poll_t*>(h);
    });
  }
}

bool IcmpService::set_dont_fragment(Socket& s, bool df, std::string* error) {
  // The socket is shared, so DF is switched per send; the kernel applies the
  // setting when sendto() builds the packet, which is synchronous.
  int rc;
  if (s.family == AF_INET) {
    int v = df ? IP_PMTUDISC_DO : s.default_pmtu;
    rc = setsockopt(s.fd, IPPROTO_IP, IP_MTU_DISCOVER, &v, sizeof v);
  } else {
    int v = df ? 1 : 0;
    rc = setsockopt(s.fd, IPPROTO_IPV6, IPV6_DONTFRAG, &v, sizeof v);
  }
  if (rc < 0) {
    *error = fmt::format("setting dont_fragment: {}", std::strerror(errno));
    return false;
  }
  s.df = df;
  return true;
}

int IcmpService::send(Round* round, int index, const sockaddr_storage& dst,
                      const IcmpSettings& settings, std::string* error) {
  Socket& s = socket_for(dst.ss_family);
  if (s.kind == IcmpSocketKind::kNone) {
    *error = s.unavailable;
    return -1;
  }
  if (slots_.size() > 0xffff) {
    *error = "all 65536 ICMP sequence numbers are in flight";
    return -1;
  }
  if (settings.dont_fragment != s.df && !set_dont_fragment(s, settings.dont_fragment, error))
    return -1;
  // Rotating rather than reusing the lowest free number keeps a late reply
  // from an earlier round from meeting a new echo with its number.
  while (slots_.contains(next_seq_)) ++next_seq_;
  uint16_t seq = next_seq_++;

  Slot slot{round, index, rng_(), 0, 0, dst};
  packet_.assign(kHeaderSize + settings.payload_size, 0);
  uint8_t* p = packet_.data();
  p[0] = s.family == AF_INET ? kEchoRequest4 : ICMP6_ECHO_REQUEST;
  write16(p + 4, identifier_);  // replaced by the kernel on datagram sockets
  write16(p + 6, seq);
  std::memcpy(p + kHeaderSize, &slot.nonce, 8);
  for (size_t i = kHeaderSize + kStampSize; i < packet_.size(); ++i) p[i] = static_cast<uint8_t>(i);
  slot.sent_realtime_ns = realtime_ns();
  // The send time, as ping carries it: readable in a packet capture.
  std::memcpy(p + kHeaderSize + 8, &slot.sent_realtime_ns, 8);
  if (s.family == AF_INET) write16(p + 2, checksum(p, packet_.size()));
  socklen_t len = dst.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  slot.sent_ns = uv_hrtime();
  ssize_t rc =
      ::sendto(s.fd, p, packet_.size(), MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&dst), len);
  if (rc < 0) {
    *error = fmt::format("sendto: {}", std::strerror(errno));
    return -1;
  }
  slots_.emplace(seq, slot);
  if (s.in_flight++ == 0) uv_poll_start(s.poll, UV_READABLE, &on_poll);
  return seq;
}

void IcmpService::erase(std::unordered_map<uint16_t, Slot>::iterator it) {
  // Idle sockets are not polled: a raw socket would otherwise wake the loop
  // for every echo reply meant for another pinger on the host.
  Socket& s = socket_for(it->second.dst.ss_family);
  if (--s.in_flight == 0) uv_poll_stop(s.poll);
  slots_.erase(it);
}

void IcmpService::release(uint16_t seq) {
  auto it = slots_.find(seq);
  if (it != slots_.end()) erase(it);
}

void IcmpService::on_poll(uv_poll_t* handle, int status, int) noexcept {
  auto* self = static_cast<IcmpService*>(handle->data);
  guarded([&] {
    for (Socket& s : self->sockets_) {
      if (s.poll != handle) continue;
      if (status < 0) {
        spdlog::warn("icmp: polling the {} socket failed: {}",
                     s.family == AF_INET ? "ICMP" : "ICMPv6", uv_strerror(status));
        return;
      }
      self->readable(s);
    }
  });
}

void IcmpService::readable(Socket& s) {
  // Bounded, so that a flood of ICMP cannot starve the rest of the loop; the
  // poll fires again for what is left.
  for (int i = 0; i < 256 && s.in_flight > 0; ++i) {
    sockaddr_storage from{};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(timespec)) + 64];
    iovec iov{buf_.data(), buf_.size()};
    msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(s.fd, &msg, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      // Errors queued by ICMP errors for our requests also land here; those
      // requests count as lost when the round ends.
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        spdlog::debug("icmp: recvmsg: {}", std::strerror(errno));
      return;
    }
    uint64_t now_ns = uv_hrtime();
    std::optional<uint64_t> kernel_ns;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_TIMESTAMPNS) continue;
      timespec ts{};
      std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
      kernel_ns =
          static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
    }
    received(s, buf_.data(), static_cast<size_t>(n), from, kernel_ns, now_ns);
  }
}

void IcmpService::received(Socket& s, const uint8_t* p, size_t len, const sockaddr_storage& from,
                           std::optional<uint64_t> kernel_realtime_ns, uint64_t now_ns) {
  if (s.family == AF_INET && s.kind == IcmpSocketKind::kRaw) {
    // IPv4 raw sockets deliver the IP header.
    size_t ihl = len ? static_cast<size_t>(p[0] & 0x0f) * 4 : 0;
    if (ihl < 20 || len < ihl) return;
    p += ihl;
    len -= ihl;
  }
  if (len < kHeaderSize + kStampSize) return;
  uint8_t reply = s.family == AF_INET ? kEchoReply4 : ICMP6_ECHO_REPLY;
  if (p[0] != reply || p[1] != 0) return;
  // Datagram sockets only get replies to their own identifier; on a raw
  // socket the replies to other pingers arrive too.
  if (s.kind == IcmpSocketKind::kRaw && read16(p + 4) != identifier_) return;
  auto it = slots_.find(read16(p + 6));
  if (it == slots_.end()) return;
  const Slot& slot = it->second;
  uint64_t nonce = 0;
  std::memcpy(&nonce, p + kHeaderSize, 8);
  // A stale reply (the number was reused) or another host's: not this echo's.
  if (!same_address(from, slot.dst) || nonce != slot.nonce) return;
  double rtt = static_cast<double>(now_ns - slot.sent_ns) / 1e9;
  // The kernel's arrival time excludes the loop's delay. The wall clock can
  // step between send and receipt; then the loop's monotonic measure stands.
  if (kernel_realtime_ns && *kernel_realtime_ns >= slot.sent_realtime_ns) {
    double kernel = static_cast<double>(*kernel_realtime_ns - slot.sent_realtime_ns) / 1e9;
    if (kernel <= rtt) rtt = kernel;
  }
  Round* round = slot.round;
  int index = slot.index;
  erase(it);
  round->on_reply(index, rtt);
}

namespace {

bool parse_target(runtime::TableReader& reader, const std::string& target, IcmpSettings& out) {
  auto bad = [&](std::string_view why) {
    reader.error("target", fmt::format("invalid target '{}': {}", target, why));
    return false;
  };
  std::string host = target;
  if (host.starts_with('[') && host.ends_with(']')) host = host.substr(1, host.size() - 2);
  if (host.empty()) return bad("write a host name or an IP address");
  if (host.find_first_of("/ \t") != std::string::npos)
    return bad("write a host name or an IP address, not a URL or path");
  sockaddr_in6 a6{};
  sockaddr_in a4{};
  if (uv_ip6_addr(host.c_str(), 0, &a6) == 0) {
    out.literal_family = AF_INET6;
    if (host.find('%') == std::string::npos) {
      std::memcpy(&out.literal_addr, &a6, sizeof a6);
      out.literal_parsed = true;
    }
  } else if (uv_ip4_addr(host.c_str(), 0, &a4) == 0) {
    out.literal_family = AF_INET;
    std::memcpy(&out.literal_addr, &a4, sizeof a4);
    out.literal_parsed = true;
  } else if (host.find(':') != std::string::npos) {
    return bad("ICMP has no ports; write a host name or an IP address");
  }
  out.host = std::move(host);
  return true;
}

std::shared_ptr<const ProbeSpec> parse(runtime::TableReader& reader, const std::string& target) {
  size_t errors_before = reader.diagnostics().error_count();
  IcmpSettings s;
  // Keys are read even after a bad target, so that every problem is reported at once.
  bool target_ok = parse_target(reader, target, s);
  s.ip_protocol = read_ip_protocol(reader, s.literal_family, target_ok);
  if (auto count = reader.get_int("count", 1, kMaxCount)) s.count = static_cast<int>(*count);
  if (auto gap = reader.get_duration("packet_gap")) {
    if (gap->count() < 1)
      reader.error("packet_gap", "'packet_gap' must be at least 1ms");
    else
      s.packet_gap_ms = static_cast<uint64_t>(gap->count());
  }
  if (auto timeout = reader.get_duration("packet_timeout")) {
    if (timeout->count() < 1)
      reader.error("packet_timeout", "'packet_timeout' must be at least 1ms");
    else
      s.packet_timeout_ms = static_cast<uint64_t>(timeout->count());
  }
  if (auto size = reader.get_int("payload_size", static_cast<int64_t>(kStampSize), 65507))
    s.payload_size = static_cast<size_t>(*size);
  s.dont_fragment = reader.get_bool("dont_fragment").value_or(false);
  if (reader.diagnostics().error_count() > errors_before) return nullptr;
  auto spec = std::make_shared<IcmpSpec>();
  spec->settings = std::make_shared<const IcmpSettings>(std::move(s));
  return spec;
}

std::unique_ptr<Probe> create(const ProbeContext& ctx, const CheckTarget& check,
                              const ProbeSpec& spec) {
  // The registry hands back the spec this type's parse() made.
  const auto& settings = static_cast<const IcmpSpec&>(spec).settings;
  auto timeout_ms = static_cast<uint64_t>(std::max<int64_t>(check.timeout.count(), 1));
  // The round ends before the scheduler's timeout, so that its loss and
  // round trips are reported rather than a bare timeout.
  uint64_t margin_ms = std::clamp<uint64_t>(timeout_ms / 10, 1, 500);
  uint64_t budget_ms = timeout_ms > margin_ms ? timeout_ms - margin_ms : timeout_ms;
  uint64_t sending_ms = static_cast<uint64_t>(settings->count - 1) * settings->packet_gap_ms;
  if (sending_ms >= budget_ms)
    spdlog::warn(
        "check '{}': {} echo requests {}ms apart do not fit in the round's {}ms; the rest count "
        "as lost",
        check.id, settings->count, settings->packet_gap_ms, budget_ms);
  return std::make_unique<IcmpProbe>(ctx.loop, ctx.icmp, settings, budget_ms);
}

void destroy(IcmpService* service) { delete service; }

std::string permission_error(int dgram_errno, int raw_errno) {
  return fmt::format(
      "no ICMP socket may be opened: an unprivileged ICMP datagram socket is not permitted for "
      "group {} ({}), and a raw socket needs CAP_NET_RAW ({}). Either allow unprivileged ping "
      "with sysctl net.ipv4.ping_group_range=\"0 2147483647\" (persist it in /etc/sysctl.d/), "
      "or grant wachtd the capability CAP_NET_RAW (systemd: AmbientCapabilities=CAP_NET_RAW)",
      getegid(), std::strerror(dgram_errno), std::strerror(raw_errno));
}

}  // namespace

ProbeType icmp_probe_type() {
  return ProbeType{"icmp",
                   "Sends rounds of ICMP echo requests and reports loss and round-trip times",
                   kIcmpKeys, &parse, &create};
}

IcmpServicePtr make_icmp_service(uv_loop_t* loop, std::string* error) {
  return make_icmp_service(loop, error, {});
}

IcmpServicePtr make_icmp_service(uv_loop_t* loop, std::string* error,
                                 const IcmpServiceOptions& options) {
  IcmpServicePtr service(new IcmpService(loop), &destroy);
  auto [dgram4, raw4] = service->open(service->socket_for(AF_INET), options);
  auto [dgram6, raw6] = service->open(service->socket_for(AF_INET6), options);
  bool v4 = service->socket_for(AF_INET).kind != IcmpSocketKind::kNone;
  bool v6 = service->socket_for(AF_INET6).kind != IcmpSocketKind::kNone;
  if (v4 || v6) {
    // A host without IPv6 still pings IPv4; IPv6 checks then say why they cannot.
    for (int family : {AF_INET, AF_INET6}) {
      const auto& s = service->socket_for(family);
      if (s.kind == IcmpSocketKind::kNone) spdlog::warn("icmp: {}", s.unavailable);
    }
    return service;
  }
  // Without IPv4 in the kernel, IPv6's attempts tell what was refused.
  bool no_ip4 = dgram4 == EAFNOSUPPORT;
  *error = permission_error(no_ip4 ? dgram6 : dgram4, no_ip4 ? raw6 : raw4);
  return IcmpServicePtr(nullptr, &destroy);
}

IcmpSocketKind icmp_socket_kind(const IcmpService& service, int family) {
  return service.socket_for(family).kind;
}

size_t icmp_in_flight(const IcmpService& service) { return service.in_flight(); }

}  // namespace wacht::probes
