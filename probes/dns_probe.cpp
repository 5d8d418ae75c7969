#include "probes/dns_probe.hpp"

#include "probes/common_metrics.hpp"

#include <ares.h>
#include <arpa/inet.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <uv.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/regex.hpp"
#include "runtime/timer.hpp"

namespace wacht::probes {

namespace {

// The reference documentation is generated from this table.
constexpr runtime::KeySpec kKeys[] = {
    {"query_type", "string", "A",
     "Record type to ask for: A, AAAA, CNAME, MX, NS, SOA, TXT, SRV or PTR. The target is the "
     "name asked for; with PTR it may also be an IPv4 or IPv6 address, which is turned into its "
     "in-addr.arpa or ip6.arpa name."},
    {"server", "string", "system resolver",
     "DNS server to ask, as an IP address with an optional port: \"198.51.100.53\", "
     "\"198.51.100.53:5353\", \"[2001:db8::53]:53\". Default: the nameservers of "
     "/etc/resolv.conf, read when the configuration is loaded."},
    {"transport", "string", "udp",
     "\"udp\" or \"tcp\". Over UDP, a truncated reply is asked again over TCP."},
    {"valid_rcodes", "array of strings", "[\"NOERROR\"]",
     "Response codes that count as success, e.g. [\"NOERROR\", \"NXDOMAIN\"] to accept a name "
     "that does not exist. Names: NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, "
     "YXDOMAIN, YXRRSET, NXRRSET, NOTAUTH, NOTZONE."},
    {"answers_must_match", "array of strings", "",
     "Regular expressions (PCRE2) that must each match at least one record of the answer "
     "section. Each record is matched in one line of text: its type and its data as in a zone "
     "file, without owner, TTL and class, and names ending in a dot (examples written as TOML "
     "strings): \"A 198.51.100.7\", "
     "\"AAAA 2001:db8::7\", \"CNAME www.example.org.\", \"MX 10 mail.example.org.\", "
     "\"NS ns1.example.org.\", \"PTR www.example.org.\", \"SRV 10 5 5060 sip.example.org.\", "
     "\"TXT \\\"v=spf1 -all\\\"\" (each string quoted), \"SOA ns1.example.org. "
     "hostmaster.example.org. 2024051501 7200 3600 1209600 300\"; other types as "
     "\"TYPE<n> \\\\# <length> <hex>\" (RFC 3597). Anchor with ^ and $ to match a whole "
     "record, e.g. [\"^A 198\\\\.51\\\\.100\\\\.7$\"]. Names are matched as the server "
     "sent them; use (?i) to ignore case."},
    {"answers_must_not_match", "array of strings", "",
     "Regular expressions (PCRE2) that no record of the answer section may match, in the form "
     "described under 'answers_must_match', e.g. [\"^A 10\\\\.\"]."},
    {"recursion_desired", "boolean", "true",
     "Set the RD flag, asking the server to resolve the name recursively. Set false to check "
     "what an authoritative server itself answers."},
};

// Names and help strings are blackbox_exporter's, so its dashboards work.
const MetricDef kAnswerRrs{"probe_dns_answer_rrs",
                           "Returns number of entries in the answer resource record list"};
const MetricDef kAuthorityRrs{"probe_dns_authority_rrs",
                              "Returns number of entries in the authority resource record list"};
const MetricDef kAdditionalRrs{"probe_dns_additional_rrs",
                               "Returns number of entries in the additional resource record list"};
const MetricDef kQuerySucceeded{"probe_dns_query_succeeded",
                                "Displays whether or not the query was executed successfully"};
const MetricDef kSerial{"probe_dns_serial", "Returns the serial number of the zone"};

constexpr std::string_view kIdle = "idle";
// Each server is asked twice (one retransmission over UDP); c-ares doubles the
// wait for the second round.
constexpr int kTries = 2;
constexpr int kClassIn = 1;

struct RecordType {
  std::string_view name;
  uint16_t code;
};
constexpr RecordType kTypes[] = {{"A", 1},   {"NS", 2},   {"CNAME", 5}, {"SOA", 6}, {"PTR", 12},
                                 {"MX", 15}, {"TXT", 16}, {"AAAA", 28}, {"SRV", 33}};
enum : uint16_t {
  kA = 1,
  kNs = 2,
  kCname = 5,
  kSoa = 6,
  kPtr = 12,
  kMx = 15,
  kTxt = 16,
  kAaaa = 28,
  kSrv = 33
};

// RFC 1035 and RFC 2136 response codes, indexed by value.
constexpr std::string_view kRcodes[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN",
                                        "NOTIMP",  "REFUSED", "YXDOMAIN", "YXRRSET",
                                        "NXRRSET", "NOTAUTH", "NOTZONE"};

std::string rcode_name(int rcode) {
  if (rcode >= 0 && rcode < static_cast<int>(std::size(kRcodes)))
    return std::string(kRcodes[rcode]);
  return fmt::format("RCODE{}", rcode);
}

std::string type_name(uint16_t code) {
  for (const auto& t : kTypes)
    if (t.code == code) return std::string(t.name);
  return fmt::format("TYPE{}", code);
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

struct ServerAddress {
  int family = AF_INET;
  in_addr addr4{};
  in6_addr addr6{};
  uint16_t port = 53;
  std::string text;  // "198.51.100.53:53" or "[2001:db8::53]:53"
};

struct DnsSpec final : ProbeSpec {
  std::string qname;    // the name asked for, as written (or reversed from an address)
  uint16_t qtype = kA;  // one of kTypes
  std::optional<ServerAddress> server;  // none: the system resolver
  bool tcp = false;
  std::vector<int> valid_rcodes = {0};
  std::vector<runtime::Regex> must_match;
  std::vector<runtime::Regex> must_not_match;
  bool recursion_desired = true;
};

// --- configuration --------------------------------------------------------------------------

// Why `name` is not a plausible DNS name, or empty. Host names, SRV owner names
// (_sip._tcp) and the root ".".
std::string name_problem(std::string_view name) {
  if (name == ".") return {};
  if (name.ends_with('.')) name.remove_suffix(1);
  if (name.empty()) return "the name is empty";
  if (name.size() > 253) return "longer than 253 characters";
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('.', start);
    if (end == std::string_view::npos) end = name.size();
    std::string_view label = name.substr(start, end - start);
    if (label.empty()) return "empty label (two dots in a row, or a leading dot)";
    if (label.size() > 63) return fmt::format("label '{}' is longer than 63 characters", label);
    for (char c : label) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_')
        return fmt::format("'{}' is not allowed in a name", c);
    }
    start = end + 1;
  }
  return {};
}

// The in-addr.arpa or ip6.arpa name of an address, or nullopt if `text` is none.
std::optional<std::string> reverse_name(const std::string& text) {
  unsigned char bytes[16];
  if (inet_pton(AF_INET, text.c_str(), bytes) == 1)
    return fmt::format("{}.{}.{}.{}.in-addr.arpa.", bytes[3], bytes[2], bytes[1], bytes[0]);
  if (inet_pton(AF_INET6, text.c_str(), bytes) == 1) {
    std::string out;
    constexpr char kHex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; --i) {
      out += kHex[bytes[i] & 0xf];
      out += '.';
      out += kHex[bytes[i] >> 4];
      out += '.';
    }
    return out + "ip6.arpa.";
  }
  return std::nullopt;
}

// Why `text` is not "address[:port]" or "[v6][:port]", or empty.
std::string parse_server(const std::string& text, ServerAddress& out) {
  std::string host;
  std::string_view port_text;
  bool has_port = false;
  if (text.starts_with('[')) {
    size_t close = text.find(']');
    if (close == std::string::npos) return "missing ']' after the IPv6 address";
    host = text.substr(1, close - 1);
    std::string_view rest = std::string_view(text).substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return "write [address]:port, e.g. [2001:db8::53]:53";
      port_text = rest.substr(1);
      has_port = true;
    }
    if (inet_pton(AF_INET6, host.c_str(), &out.addr6) != 1)
      return "brackets must enclose an IPv6 address";
    out.family = AF_INET6;
  } else if (inet_pton(AF_INET6, text.c_str(), &out.addr6) == 1) {
    out.family = AF_INET6;  // an IPv6 address without brackets has no port
  } else {
    size_t colon = text.find(':');
    host = text.substr(0, colon);
    if (colon != std::string::npos) {
      port_text = std::string_view(text).substr(colon + 1);
      has_port = true;
    }
    if (inet_pton(AF_INET, host.c_str(), &out.addr4) != 1)
      return "must be an IP address (a name would need a resolver to find the resolver), "
             "optionally with :port";
    out.family = AF_INET;
  }
  if (has_port) {
    unsigned port = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() ||
        port < 1 || port > 65535)
      return fmt::format("port must be a number between 1 and 65535, not '{}'", port_text);
    out.port = static_cast<uint16_t>(port);
  }
  char ip[INET6_ADDRSTRLEN] = {};
  if (out.family == AF_INET6) {
    inet_ntop(AF_INET6, &out.addr6, ip, sizeof ip);
    out.text = fmt::format("[{}]:{}", ip, out.port);
  } else {
    inet_ntop(AF_INET, &out.addr4, ip, sizeof ip);
    out.text = fmt::format("{}:{}", ip, out.port);
  }
  return {};
}

// Reads the type-specific keys, reporting every problem before giving up.
std::shared_ptr<const ProbeSpec> parse(runtime::TableReader& reader, const std::string& target) {
  const size_t errors_before = reader.diagnostics().error_count();
  auto spec = std::make_shared<DnsSpec>();

  if (auto type = reader.get_string("query_type")) {
    const std::string wanted = upper(*type);
    auto it = std::find_if(std::begin(kTypes), std::end(kTypes),
                           [&](const RecordType& t) { return t.name == wanted; });
    if (it == std::end(kTypes)) {
      reader.error("query_type",
                   fmt::format("'query_type' must be one of A, AAAA, CNAME, MX, NS, SOA, TXT, "
                               "SRV, PTR, not \"{}\"",
                               *type));
    } else {
      spec->qtype = it->code;
    }
  }

  if (auto reversed = spec->qtype == kPtr ? reverse_name(target) : std::nullopt) {
    spec->qname = *reversed;
  } else if (std::string why = name_problem(target); !why.empty()) {
    reader.error("target", fmt::format("'{}' is not a valid DNS name: {}", target, why));
  } else {
    spec->qname = target;
  }

  if (auto server = reader.get_string("server")) {
    ServerAddress address;
    if (std::string why = parse_server(*server, address); !why.empty())
      reader.error("server", fmt::format("invalid server '{}': {}", *server, why));
    else
      spec->server = std::move(address);
  }

  if (auto transport = reader.get_string("transport")) {
    if (*transport == "tcp") {
      spec->tcp = true;
    } else if (*transport != "udp") {
      reader.error("transport",
                   fmt::format("'transport' must be \"udp\" or \"tcp\", not \"{}\"", *transport));
    }
  }

  if (auto rcodes = reader.get_string_array("valid_rcodes")) {
    spec->valid_rcodes.clear();
    if (rcodes->empty()) reader.error("valid_rcodes", "'valid_rcodes' must not be empty");
    for (const auto& name : *rcodes) {
      const std::string wanted = upper(name);
      auto it = std::find(std::begin(kRcodes), std::end(kRcodes), wanted);
      if (it == std::end(kRcodes)) {
        reader.error("valid_rcodes",
                     fmt::format("unknown response code \"{}\" in 'valid_rcodes'; known: {}", name,
                                 fmt::join(kRcodes, ", ")));
      } else {
        spec->valid_rcodes.push_back(static_cast<int>(it - std::begin(kRcodes)));
      }
    }
  }

  auto regexes = [&](std::string_view key, std::vector<runtime::Regex>& out) {
    auto patterns = reader.get_string_array(key);
    if (!patterns) return;
    for (const auto& p : *patterns) {
      std::string why;
      if (auto re = runtime::Regex::compile(p, &why))
        out.push_back(std::move(*re));
      else
        reader.error(key,
                     fmt::format("invalid regular expression \"{}\" in '{}': {}", p, key, why));
    }
  };
  regexes("answers_must_match", spec->must_match);
  regexes("answers_must_not_match", spec->must_not_match);

  if (auto rd = reader.get_bool("recursion_desired")) spec->recursion_desired = *rd;

  if (reader.diagnostics().error_count() > errors_before) return nullptr;
  return spec;
}

// --- reply parsing --------------------------------------------------------------------------

// What the probe needs of a reply. Only the answer section is rendered as text.
struct Reply {
  int rcode = 0;
  std::vector<std::string> answers;  // canonical text, see kKeys
  size_t authority = 0;
  size_t additional = 0;
  std::optional<uint32_t> serial;  // of the first SOA in the answer section
};

// A bounds-checked cursor over a DNS message. Every read fails instead of
// reading past the end; names are expanded by c-ares, which detects pointer loops.
class WireReader {
 public:
  WireReader(const unsigned char* msg, size_t len) : msg_(msg), len_(len) {}

  size_t pos() const { return pos_; }
  bool skip(size_t n) {
    if (n > len_ - pos_) return false;
    pos_ += n;
    return true;
  }
  bool u16(uint16_t& v) {
    if (len_ - pos_ < 2) return false;
    v = static_cast<uint16_t>(msg_[pos_] << 8 | msg_[pos_ + 1]);
    pos_ += 2;
    return true;
  }
  bool u32(uint32_t& v) {
    if (len_ - pos_ < 4) return false;
    v = static_cast<uint32_t>(msg_[pos_]) << 24 | static_cast<uint32_t>(msg_[pos_ + 1]) << 16 |
        static_cast<uint32_t>(msg_[pos_ + 2]) << 8 | msg_[pos_ + 3];
    pos_ += 4;
    return true;
  }
  const unsigned char* bytes(size_t n) {
    if (n > len_ - pos_) return nullptr;
    const unsigned char* p = msg_ + pos_;
    pos_ += n;
    return p;
  }
  // A possibly compressed name whose encoding ends at or before `limit`, in
  // presentation form with a trailing dot ("." for the root).
  bool name(std::string& out, size_t limit) {
    if (pos_ >= limit || limit > len_) return false;
    char* expanded = nullptr;
    long used = 0;
    if (ares_expand_name(msg_ + pos_, msg_, static_cast<int>(len_), &expanded, &used) !=
        ARES_SUCCESS)
      return false;
    std::unique_ptr<char, decltype(&ares_free_string)> owned(expanded, &ares_free_string);
    if (used <= 0 || static_cast<size_t>(used) > limit - pos_) return false;
    pos_ += static_cast<size_t>(used);
    out = *expanded ? std::string(expanded) + "." : ".";
    return true;
  }

 private:
  const unsigned char* msg_;
  size_t len_;
  size_t pos_ = 0;
};

// TXT character-strings as zone files quote them.
void append_quoted(std::string& out, const unsigned char* p, size_t n) {
  out += '"';
  for (size_t i = 0; i < n; ++i) {
    const unsigned char c = p[i];
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      out += fmt::format("\\{:03d}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
}

// Renders the rdata of one record, which ends at `end`; false if it is malformed.
bool render_rdata(WireReader& r, uint16_t type, size_t end, std::string& out,
                  std::optional<uint32_t>& serial) {
  const size_t length = end - r.pos();
  std::string name, name2;
  uint16_t a = 0, b = 0, c = 0;
  out = type_name(type);
  switch (type) {
    case kA:
    case kAaaa: {
      const size_t want = type == kA ? 4 : 16;
      const unsigned char* p = length == want ? r.bytes(want) : nullptr;
      if (!p) return false;
      char ip[INET6_ADDRSTRLEN] = {};
      inet_ntop(type == kA ? AF_INET : AF_INET6, p, ip, sizeof ip);
      out += fmt::format(" {}", ip);
      return true;
    }
    case kNs:
    case kCname:
    case kPtr:
      if (!r.name(name, end)) return false;
      out += " " + name;
      return true;
    case kMx:
      if (!r.u16(a) || !r.name(name, end)) return false;
      out += fmt::format(" {} {}", a, name);
      return true;
    case kSrv:
      if (!r.u16(a) || !r.u16(b) || !r.u16(c) || !r.name(name, end)) return false;
      out += fmt::format(" {} {} {} {}", a, b, c, name);
      return true;
    case kSoa: {
      uint32_t v[5];
      if (!r.name(name, end) || !r.name(name2, end)) return false;
      for (auto& x : v)
        if (end - r.pos() < 4 || !r.u32(x)) return false;
      out += fmt::format(" {} {} {} {} {} {} {}", name, name2, v[0], v[1], v[2], v[3], v[4]);
      if (!serial) serial = v[0];
      return true;
    }
    case kTxt:
      if (length == 0) return false;  // at least one character-string
      while (r.pos() < end) {
        const unsigned char* len = r.bytes(1);
        const unsigned char* text = len && *len <= end - r.pos() ? r.bytes(*len) : nullptr;
        if (!text) return false;
        out += ' ';
        append_quoted(out, text, *len);
      }
      return true;
    default: {
      const unsigned char* p = r.bytes(length);
      if (!p) return false;
      out += fmt::format(" \\# {}", length);
      if (length > 0) out += ' ';
      for (size_t i = 0; i < length; ++i) out += fmt::format("{:02x}", p[i]);
      return true;
    }
  }
}

// Parses a whole reply. Returns why it is malformed, or empty.
std::string parse_reply(const unsigned char* msg, size_t len, Reply& out) {
  WireReader r(msg, len);
  uint16_t id = 0, flags = 0, counts[4] = {};
  if (!r.u16(id) || !r.u16(flags)) return "shorter than a DNS header";
  for (auto& n : counts)
    if (!r.u16(n)) return "shorter than a DNS header";
  if (!(flags & 0x8000)) return "not a response (QR flag clear)";
  out.rcode = flags & 0xf;
  std::string name;
  for (unsigned i = 0; i < counts[0]; ++i) {
    if (!r.name(name, len) || !r.skip(4)) return fmt::format("bad question {}", i + 1);
  }
  constexpr std::string_view kSections[] = {"answer", "authority", "additional"};
  for (int section = 0; section < 3; ++section) {
    const unsigned count = counts[section + 1];
    for (unsigned i = 0; i < count; ++i) {
      auto bad = [&](std::string_view what) {
        return fmt::format("{} of {} record {} of {}", what, kSections[section], i + 1, count);
      };
      uint16_t type = 0, klass = 0, rdlength = 0;  // the class is assumed to be IN
      uint32_t ttl = 0;
      if (!r.name(name, len)) return bad("bad owner name");
      if (!r.u16(type) || !r.u16(klass) || !r.u32(ttl) || !r.u16(rdlength))
        return bad("truncated header");
      const size_t end = r.pos() + rdlength;
      if (end > len) return bad("truncated data");
      if (section == 0) {
        std::string text;
        if (!render_rdata(r, type, end, text, out.serial) || r.pos() != end)
          return bad(fmt::format("malformed {} data", type_name(type)));
        out.answers.push_back(std::move(text));
      }
      if (!r.skip(end - r.pos())) return bad("truncated data");
    }
  }
  out.authority = counts[2];
  out.additional = counts[3];
  return {};
}

// --- the probe ------------------------------------------------------------------------------

std::string answers_text(const std::vector<std::string>& answers) {
  constexpr size_t kShown = 3;
  std::string out;
  for (size_t i = 0; i < answers.size() && i < kShown; ++i) out += (i ? ", " : "") + answers[i];
  if (answers.size() > kShown) out += fmt::format(" and {} more", answers.size() - kShown);
  return out;
}

// One check's DNS prober: one c-ares channel, reused for every run, driven
// from the loop. c-ares tells which sockets to watch through its socket-state
// callback (a uv_poll each) and when to wake up for retransmissions
// (ares_timeout, one uv_timer). c-ares calls back synchronously from ares_send,
// ares_process_fd, ares_cancel and ares_destroy, so the answer is only
// recorded there and done fires later from its own timer: never from start(),
// and never with c-ares on the stack, since done may destroy the probe.
class DnsProbe final : public Probe {
 public:
  DnsProbe(uv_loop_t* loop, std::shared_ptr<const DnsSpec> spec, std::chrono::milliseconds timeout);
  ~DnsProbe() override;
  DnsProbe(const DnsProbe&) = delete;
  DnsProbe& operator=(const DnsProbe&) = delete;

  void start(DoneCallback done) override;
  void cancel() override;
  std::string_view phase() const override { return running_ ? waiting_ : kIdle; }

 private:
  // A watched c-ares socket. Freed in its close callback, which may run after
  // the probe is gone; `owner` is only used while the handle is open.
  struct Poll {
    uv_poll_t handle;
    DnsProbe* owner;
    ares_socket_t fd;
    int events;
  };

  bool open_channel(int try_timeout_ms);
  void describe_servers();
  void socket_state(ares_socket_t fd, bool readable, bool writable);
  void polled(Poll* poll, int status, int events);
  void process(ares_socket_t read_fd, ares_socket_t write_fd);
  void schedule_timeout();
  void answered(int status, const unsigned char* abuf, int alen);
  ProbeResult evaluate(int status, const unsigned char* abuf, int alen) const;
  void complete(ProbeResult result);
  void deliver();
  void close_poll(Poll* poll);

  static void on_socket_state(void* data, ares_socket_t fd, int readable, int writable) noexcept;
  static void on_answer(void* arg, int status, int timeouts, unsigned char* abuf,
                        int alen) noexcept;
  static void on_poll(uv_poll_t* handle, int status, int events) noexcept;

  uv_loop_t* loop_;
  std::shared_ptr<const DnsSpec> spec_;
  std::chrono::milliseconds timeout_;
  ares_channel channel_ = nullptr;
  std::string channel_error_;  // why channel_ could not be made; every run reports it
  std::string server_;         // the server(s) asked, for summaries
  std::string waiting_;        // phase() while a run is in progress
  std::string query_label_;    // "www.example.org A"
  std::unordered_map<ares_socket_t, Poll*> polls_;
  runtime::Timer ares_timer_;
  runtime::Timer deliver_timer_;
  DoneCallback done_;
  std::optional<ProbeResult> result_;  // recorded, waiting for deliver_timer_
  bool running_ = false;
  uint64_t start_ns_ = 0;
};

DnsProbe::DnsProbe(uv_loop_t* loop, std::shared_ptr<const DnsSpec> spec,
                   std::chrono::milliseconds timeout)
    : loop_(loop),
      spec_(std::move(spec)),
      timeout_(timeout),
      ares_timer_(loop, [this] { process(ARES_SOCKET_BAD, ARES_SOCKET_BAD); }),
      deliver_timer_(loop, [this] { deliver(); }) {
  query_label_ = fmt::format("{} {}", spec_->qname, type_name(spec_->qtype));
  // c-ares gives up after 2 rounds over all servers, waiting t and then 2t per
  // server: 3·n·t. A quarter of the check timeout per try leaves the scheduler's
  // timeout as the backstop, and a silent server is reported as such first.
  const auto per_try = [&](int servers) {
    return std::max<int>(1, static_cast<int>(timeout_.count()) / (4 * servers));
  };
  if (!open_channel(per_try(1))) return;
  if (spec_->server) {
    ares_addr_port_node node{};
    node.family = spec_->server->family;
    if (node.family == AF_INET6)
      std::memcpy(&node.addr.addr6, &spec_->server->addr6, sizeof node.addr.addr6);
    else
      node.addr.addr4 = spec_->server->addr4;
    node.udp_port = node.tcp_port = spec_->server->port;
    if (int rc = ares_set_servers_ports(channel_, &node); rc != ARES_SUCCESS) {
      channel_error_ = fmt::format("cannot set DNS server: {}", ares_strerror(rc));
      ares_destroy(channel_);
      channel_ = nullptr;
      return;
    }
    server_ = spec_->server->text;
  } else {
    ares_addr_port_node* servers = nullptr;
    int count = 0;
    if (ares_get_servers_ports(channel_, &servers) == ARES_SUCCESS) {
      for (auto* s = servers; s; s = s->next) ++count;
      ares_free_data(servers);
    }
    if (count > 1) {
      ares_destroy(channel_);
      channel_ = nullptr;
      if (!open_channel(per_try(count))) return;
    }
    describe_servers();
  }
  waiting_ = "waiting for an answer from " + server_;
}

DnsProbe::~DnsProbe() {
  done_ = nullptr;
  running_ = false;
  // Calls on_answer (ignored: not running) and closes every socket, which
  // closes every poll through on_socket_state.
  if (channel_) ares_destroy(channel_);
  for (auto& [fd, poll] : polls_) close_poll(poll);
}

bool DnsProbe::open_channel(int try_timeout_ms) {
  ares_options options{};
  options.flags = ARES_FLAG_NOCHECKRESP | (spec_->tcp ? ARES_FLAG_USEVC : 0);
  options.timeout = try_timeout_ms;
  options.tries = kTries;
  options.sock_state_cb = &DnsProbe::on_socket_state;
  options.sock_state_cb_data = this;
  // NOCHECKRESP: without it c-ares hides SERVFAIL, NOTIMP and REFUSED replies
  // behind an error code, and the probe reports the server's own rcode.
  const int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB;
  if (int rc = ares_init_options(&channel_, &options, mask); rc != ARES_SUCCESS) {
    channel_ = nullptr;
    channel_error_ = fmt::format("cannot set up the resolver: {}", ares_strerror(rc));
    return false;
  }
  return true;
}

void DnsProbe::describe_servers() {
  ares_addr_port_node* servers = nullptr;
  std::vector<std::string> names;
  if (ares_get_servers_ports(channel_, &servers) == ARES_SUCCESS) {
    for (auto* s = servers; s; s = s->next) {
      char ip[INET6_ADDRSTRLEN] = {};
      inet_ntop(s->family, &s->addr, ip, sizeof ip);
      const int port = s->udp_port ? s->udp_port : 53;
      names.push_back(s->family == AF_INET6 ? fmt::format("[{}]:{}", ip, port)
                                            : fmt::format("{}:{}", ip, port));
    }
    ares_free_data(servers);
  }
  server_ = fmt::format("the system resolver ({})", fmt::join(names, ", "));
}

void DnsProbe::start(DoneCallback done) {
  // A new run supersedes one still in progress.
  cancel();
  done_ = std::move(done);
  running_ = true;
  start_ns_ = uv_hrtime();
  if (!channel_) {
    ProbeResult r;
    r.summary = channel_error_;
    r.add(kQuerySucceeded, 0);
    complete(std::move(r));
    return;
  }
  unsigned char* query = nullptr;
  int query_len = 0;
  // c-ares replaces the id with a random one of its own.
  int rc = ares_create_query(spec_->qname.c_str(), kClassIn, spec_->qtype, 0,
                             spec_->recursion_desired ? 1 : 0, &query, &query_len, 0);
  if (rc != ARES_SUCCESS) {
    ProbeResult r;
    r.summary = fmt::format("cannot build the query for {}: {}", query_label_, ares_strerror(rc));
    r.add(kQuerySucceeded, 0);
    complete(std::move(r));
    return;
  }
  ares_send(channel_, query, query_len, &DnsProbe::on_answer, this);
  ares_free_string(query);
  schedule_timeout();
}

void DnsProbe::cancel() {
  if (!running_) return;
  running_ = false;
  done_ = nullptr;
  result_.reset();
  deliver_timer_.stop();
  // Calls on_answer with ARES_ECANCELLED, ignored now, and closes the sockets.
  if (channel_) ares_cancel(channel_);
  ares_timer_.stop();
}

void DnsProbe::socket_state(ares_socket_t fd, bool readable, bool writable) {
  auto it = polls_.find(fd);
  if (!readable && !writable) {
    // c-ares closes the socket right after: stop polling it first.
    if (it != polls_.end()) {
      close_poll(it->second);
      polls_.erase(it);
    }
    return;
  }
  Poll* poll = nullptr;
  if (it == polls_.end()) {
    poll = new Poll{{}, this, fd, 0};
    poll->handle.data = poll;
    if (int rc = uv_poll_init_socket(loop_, &poll->handle, fd); rc < 0) {
      delete poll;
      // Reported now; deliver() cancels the query once c-ares is off the stack.
      if (running_ && !result_) {
        ProbeResult r;
        r.summary = fmt::format("cannot watch the DNS socket: {}", uv_strerror(rc));
        r.add(kQuerySucceeded, 0);
        complete(std::move(r));
      }
      return;
    }
    polls_.emplace(fd, poll);
  } else {
    poll = it->second;
  }
  poll->events = (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);
  uv_poll_start(&poll->handle, poll->events, &DnsProbe::on_poll);
}

void DnsProbe::close_poll(Poll* poll) {
  poll->owner = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&poll->handle),
           [](uv_handle_t* h) { delete static_cast<Poll*>(h->data); });
}

void DnsProbe::polled(Poll* poll, int status, int events) {
  const ares_socket_t fd = poll->fd;
  if (status < 0) {
    // A socket error (e.g. ICMP port unreachable): c-ares finds it by reading
    // and writing. libuv has stopped the handle.
    process(fd, fd);
    auto it = polls_.find(fd);
    if (it != polls_.end() && it->second == poll)
      uv_poll_start(&poll->handle, poll->events, &DnsProbe::on_poll);
    return;
  }
  process(events & UV_READABLE ? fd : ARES_SOCKET_BAD, events & UV_WRITABLE ? fd : ARES_SOCKET_BAD);
}

void DnsProbe::process(ares_socket_t read_fd, ares_socket_t write_fd) {
  ares_process_fd(channel_, read_fd, write_fd);
  schedule_timeout();
}

void DnsProbe::schedule_timeout() {
  timeval buf{};
  const timeval* next = ares_timeout(channel_, nullptr, &buf);
  if (!next) {
    ares_timer_.stop();
    return;
  }
  ares_timer_.start(static_cast<uint64_t>(next->tv_sec) * 1000 +
                    static_cast<uint64_t>(next->tv_usec + 999) / 1000);
}

void DnsProbe::answered(int status, const unsigned char* abuf, int alen) {
  if (!running_ || result_) return;
  complete(evaluate(status, abuf, alen));
}

void DnsProbe::complete(ProbeResult result) {
  result_ = std::move(result);
  deliver_timer_.start(0);
}

void DnsProbe::deliver() {
  if (!running_ || !result_) return;
  // A no-op unless the run ended without c-ares' answer (a socket it could not watch).
  if (channel_) ares_cancel(channel_);
  ares_timer_.stop();
  ProbeResult r = std::move(*result_);
  result_.reset();
  running_ = false;
  DoneCallback done = std::move(done_);
  done_ = nullptr;
  done(std::move(r));  // last: the callback may destroy this probe
}

ProbeResult DnsProbe::evaluate(int status, const unsigned char* abuf, int alen) const {
  ProbeResult r;
  r.duration_seconds = static_cast<double>(uv_hrtime() - start_ns_) / 1e9;
  r.add(metrics::kDnsLookupTime, r.duration_seconds);
  const int64_t ms = std::llround(r.duration_seconds * 1000);

  Reply reply;
  std::string malformed;
  if (status == ARES_SUCCESS) {
    malformed =
        abuf && alen > 0 ? parse_reply(abuf, static_cast<size_t>(alen), reply) : "empty reply";
  }
  if (status != ARES_SUCCESS || !malformed.empty()) {
    r.add(kQuerySucceeded, 0);
    switch (status) {
      case ARES_SUCCESS:
        r.summary = fmt::format("malformed reply from {}: {}", server_, malformed);
        break;
      case ARES_ETIMEOUT:
        r.timed_out = true;
        r.summary = fmt::format("no answer from {} within {} ms", server_, ms);
        break;
      // c-ares' classification of any socket error, including ICMP port
      // unreachable over UDP and a reset or closed TCP connection.
      case ARES_ECONNREFUSED: r.summary = fmt::format("connection refused by {}", server_); break;
      default: r.summary = fmt::format("query to {} failed: {}", server_, ares_strerror(status));
    }
    r.state = State::kCritical;
    return r;
  }

  r.add(kQuerySucceeded, 1);
  r.add(kAnswerRrs, static_cast<double>(reply.answers.size()));
  r.add(kAuthorityRrs, static_cast<double>(reply.authority));
  r.add(kAdditionalRrs, static_cast<double>(reply.additional));
  if (reply.serial) r.add(kSerial, static_cast<double>(*reply.serial));

  const auto& valid = spec_->valid_rcodes;
  if (std::find(valid.begin(), valid.end(), reply.rcode) == valid.end()) {
    std::vector<std::string> names;
    for (int code : valid) names.push_back(rcode_name(code));
    r.summary = fmt::format("{} for {} (expected {})", rcode_name(reply.rcode), query_label_,
                            fmt::join(names, " or "));
    r.state = State::kCritical;
    return r;
  }

  for (const auto& re : spec_->must_match) {
    std::string why;
    bool found = false;
    for (const auto& answer : reply.answers)
      if ((found = re.search(answer, &why)) || !why.empty()) break;
    if (found) continue;
    if (!why.empty()) {
      r.summary = fmt::format("answer check \"{}\" failed: {}", re.pattern(), why);
    } else if (reply.answers.empty()) {
      r.summary = fmt::format("no answers; expected one matching \"{}\"", re.pattern());
    } else if (reply.answers.size() == 1) {
      r.summary =
          fmt::format("answer \"{}\" does not match \"{}\"", reply.answers[0], re.pattern());
    } else {
      r.summary = fmt::format("none of {} answers matches \"{}\": {}", reply.answers.size(),
                              re.pattern(), answers_text(reply.answers));
    }
    r.state = State::kCritical;
    return r;
  }
  for (const auto& re : spec_->must_not_match) {
    for (const auto& answer : reply.answers) {
      std::string why;
      const bool found = re.search(answer, &why);
      if (!found && why.empty()) continue;
      r.summary = found ? fmt::format("answer \"{}\" matches \"{}\"", answer, re.pattern())
                        : fmt::format("answer check \"{}\" failed: {}", re.pattern(), why);
      r.state = State::kCritical;
      return r;
    }
  }

  r.success = true;
  r.state = State::kOk;
  r.summary = reply.answers.empty()
                  ? fmt::format("{} in {} ms, no answers", rcode_name(reply.rcode), ms)
                  : fmt::format("{} in {} ms: {}", rcode_name(reply.rcode), ms,
                                answers_text(reply.answers));
  return r;
}

// C trampolines: no exception crosses into c-ares or libuv. An exception here
// can only be out of memory while building a result.
void DnsProbe::on_socket_state(void* data, ares_socket_t fd, int readable, int writable) noexcept {
  try {
    static_cast<DnsProbe*>(data)->socket_state(fd, readable != 0, writable != 0);
  } catch (const std::exception& e) {
    spdlog::error("dns probe: {}", e.what());
  }
}

void DnsProbe::on_answer(void* arg, int status, int, unsigned char* abuf, int alen) noexcept {
  auto* self = static_cast<DnsProbe*>(arg);
  try {
    self->answered(status, abuf, alen);
  } catch (const std::exception& e) {
    // The run then ends at the scheduler's timeout.
    spdlog::error("dns probe: {}", e.what());
  }
}

void DnsProbe::on_poll(uv_poll_t* handle, int status, int events) noexcept {
  auto* poll = static_cast<Poll*>(handle->data);
  if (!poll->owner) return;
  try {
    poll->owner->polled(poll, status, events);
  } catch (const std::exception& e) {
    spdlog::error("dns probe: {}", e.what());
  }
}

std::unique_ptr<Probe> create(const ProbeContext& ctx, const CheckTarget& check,
                              const ProbeSpec& spec) {
  // The registry hands back the spec this type's parse() made, by reference
  // only: the probe keeps a copy (the regexes share their compiled code).
  return std::make_unique<DnsProbe>(
      ctx.loop, std::make_shared<const DnsSpec>(static_cast<const DnsSpec&>(spec)), check.timeout);
}

}  // namespace

ProbeType dns_probe_type() {
  return ProbeType{
      .name = "dns",
      .summary = "DNS query (target = the name asked for): response code, answers, SOA serial",
      .keys = kKeys,
      .parse = &parse,
      .create = &create,
  };
}

}  // namespace wacht::probes
