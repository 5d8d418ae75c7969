#include "probes/http_probe.hpp"

#include "probes/common_metrics.hpp"

#include <curl/curl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>

#include "probes/tls.hpp"
#include "runtime/curl_multi.hpp"
#include "runtime/files.hpp"
#include "runtime/regex.hpp"
#include "version.hpp"

namespace wacht::probes {

namespace {

constexpr int64_t kDefaultMaxBodyBytes = 10 * 1024 * 1024;

constexpr runtime::KeySpec kKeys[] = {
    {"method", "string", "GET",
     "HTTP method of the request, e.g. GET, HEAD, POST. HEAD fetches no body."},
    {"headers", "table of strings", "",
     "Request headers, e.g. headers = { Accept = \"text/html\" }. A Host or User-Agent "
     "given here replaces the default (User-Agent: wacht/<version>)."},
    {"body", "string", "",
     "Request body, e.g. for POST or PUT. Sent as is, with no Content-Type "
     "unless 'headers' sets one."},
    {"valid_status", "array of integers", "any 2xx",
     "Status codes that count as success, e.g. [200, 301]. The status is the one of the last "
     "response, after following redirects."},
    {"body_must_match", "array of strings", "",
     "Regular expressions (PCRE2) that must each match somewhere in the response body, e.g. "
     "[\"Anmelden\"]. The check fails if one does not. Use (?i) for case-insensitive matching."},
    {"body_must_not_match", "array of strings", "",
     "Regular expressions (PCRE2) none of which may match the response body, e.g. "
     "[\"Wartungsarbeiten\", \"(?i)internal server error\"]."},
    {"follow_redirects", "boolean", "true",
     "Follow 3xx redirects (to http and https URLs only). When false, a redirect is the final "
     "response and fails unless its status is in 'valid_status'."},
    {"max_redirects", "integer", "10",
     "Most redirects to follow; one more fails the check with \"more than N redirects\"."},
    {"ip_protocol", "string", "any",
     "Address family to connect with: \"any\" (what the name resolves to), \"ip4\" or \"ip6\"."},
    {"tls_insecure", "boolean", "false",
     "Skip verification of the server's certificate and name. Expiry is still reported. Only "
     "for servers whose certificate cannot be verified at all; prefer 'tls_ca_file'."},
    {"tls_ca_file", "string", "system trust store",
     "PEM file with the CA certificates to verify the server against, instead of the system's "
     "trust store (e.g. an internal CA)."},
    {"tls_cert_file", "string", "",
     "PEM file with a client certificate, for servers that require one. The key is read from "
     "'tls_key_file', or from this file if that is not set."},
    {"tls_key_file", "string", "", "PEM file with the unencrypted key of 'tls_cert_file'."},
    {"tls_server_name", "string", "host of the target",
     "Name to send as SNI and to verify the certificate against, when it differs from the "
     "target's host (e.g. a target given by IP address). The request still goes to the "
     "target's address and keeps its Host header."},
    {"basic_auth_user", "string", "",
     "User name for HTTP Basic authentication; requires 'basic_auth_password_file'. "
     "Credentials are not sent to other hosts after a redirect."},
    {"basic_auth_password_file", "string", "",
     "File holding the Basic authentication password (one trailing newline is ignored). Read "
     "when the configuration is loaded; the password never appears in logs or metrics. Keep the "
     "file readable by wachtd only."},
    {"max_body_bytes", "integer", "10485760",
     "Largest response body to read, in bytes. A larger body fails the check (\"body larger "
     "than N bytes\") without reading the rest."},
};

// Metric names and help strings are blackbox_exporter's, so its dashboards work.
const MetricDef kStatusCode{"probe_http_status_code", "Response HTTP status code"};
const MetricDef kPhaseDuration{"probe_http_duration_seconds",
                               "Duration of http request by phase, summed over all redirects",
                               "phase"};
const MetricDef kContentLength{"probe_http_content_length", "Length of http content response"};
const MetricDef kBodyLength{"probe_http_uncompressed_body_length",
                            "Length of uncompressed response body"};
const MetricDef kRedirects{"probe_http_redirects", "The number of redirects"};
const MetricDef kSsl{"probe_http_ssl", "Indicates if SSL was used for the final redirect"};
const MetricDef kHttpVersion{"probe_http_version",
                             "Returns the version of HTTP of the probe response"};
const MetricDef kLastModified{"probe_http_last_modified_timestamp_seconds",
                              "Returns the Last-Modified HTTP response header in unixtime"};

// Shared by every probe of the check (probes hold it through shared_from_this).
// The keys most checks leave unset, kept apart so that a check without them
// does not carry their empty strings and vectors (~330 bytes).
struct HttpExtras {
  std::string connect_to;                 // CURLOPT_CONNECT_TO entry for tls_server_name
  std::vector<std::string> header_lines;  // "Name: value", including a Host for tls_server_name
  std::optional<std::string> body;
  std::vector<int64_t> valid_status;  // empty: any 2xx
  std::vector<runtime::Regex> must_match;
  std::vector<runtime::Regex> must_not_match;
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string basic_auth_user;
  std::string basic_auth_password;  // secret: never log or format it
};

struct HttpSpec final : ProbeSpec, std::enable_shared_from_this<HttpSpec> {
  std::string url;  // what curl requests (host replaced by tls_server_name)
  std::string method = "GET";
  bool follow_redirects = true;
  bool tls_insecure = false;
  int64_t max_redirects = 10;
  long ip_resolve = CURL_IPRESOLVE_WHATEVER;  // from ip_protocol
  int64_t max_body_bytes = kDefaultMaxBodyBytes;
  std::unique_ptr<HttpExtras> extras;  // null: all of them unset

  const HttpExtras& x() const {
    static const HttpExtras kNone;
    return extras ? *extras : kNone;
  }
  HttpExtras& mx() {
    if (!extras) extras = std::make_unique<HttpExtras>();
    return *extras;
  }

  // Plain http:// to an IP address with an idempotent method, without a
  // request body or credentials: the probe sends this request itself on libuv
  // (see Direct) instead of setting up a libcurl transfer, which costs five
  // times the CPU. A redirect hands over to libcurl for the following hops.
  bool direct = false;
  union {
    sockaddr sa;
    sockaddr_in v4;
    sockaddr_in6 v6;
  } direct_addr{};
  std::string direct_request;  // the bytes libcurl would send for this check
};

// The parts of the target URL the direct path needs, as libcurl parsed them.
struct UrlParts {
  std::string scheme, host, port, path, query, zone;
};

// RFC 9110 token characters, for method and header names.
bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) || std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
  });
}

bool is_host_name(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '-' || c == '.' || c == '_';
  });
}

// "Name: value", or "Name;" (curl's way to send an empty value).
std::string_view header_name(std::string_view line) {
  return line.substr(0, line.find_first_of(":;"));
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

struct CurlUrl {
  CURLU* u = curl_url();
  ~CurlUrl() { curl_url_cleanup(u); }
  std::optional<std::string> get(CURLUPart part, unsigned flags = 0) const {
    char* v = nullptr;
    if (curl_url_get(u, part, &v, flags) != CURLUE_OK) return std::nullopt;
    std::string out(v);
    curl_free(v);
    return out;
  }
};

// Reads the type-specific keys, collecting every problem before giving up.
class SpecParser {
 public:
  SpecParser(runtime::TableReader& reader, HttpSpec& spec) : r_(reader), spec_(spec) {}

  bool ok() const { return ok_; }
  const UrlParts& url_parts() const { return parts_; }

  void error(std::string_view key, std::string message) {
    r_.error(key, std::move(message));
    ok_ = false;
  }

  // Getter results: nullopt for both "not set" and "wrong type"; only the latter
  // was reported and fails the parse.
  template <typename T>
  std::optional<T> checked(std::string_view key, std::optional<T> value) {
    if (!value && r_.has(key)) ok_ = false;
    return value;
  }
  std::optional<std::string> string(std::string_view key) {
    return checked(key, r_.get_string(key));
  }

  void target(const std::string& target, std::optional<std::string> server_name) {
    CurlUrl url;
    if (CURLUcode rc = curl_url_set(url.u, CURLUPART_URL, target.c_str(), 0); rc != CURLUE_OK) {
      if (target.find("://") == std::string::npos) {
        error("target", fmt::format("'{}' is not a URL; write it as 'https://{}' or 'http://{}'",
                                    target, target, target));
      } else {
        error("target", fmt::format("'{}' is not a valid URL: {}", target, curl_url_strerror(rc)));
      }
      return;
    }
    const std::string scheme = url.get(CURLUPART_SCHEME).value_or("");
    if (scheme != "http" && scheme != "https") {
      error("target", fmt::format("'{}' must be an http:// or https:// URL", target));
      return;
    }
    const std::string host = url.get(CURLUPART_HOST).value_or("");
    if (host.empty()) {
      error("target", fmt::format("'{}' has no host", target));
      return;
    }
    if (url.get(CURLUPART_USER) || url.get(CURLUPART_PASSWORD)) {
      // The target is a metric label and appears in logs and notifications.
      error("target",
            "credentials in the URL would be shown in metrics and logs; use "
            "'basic_auth_user' and 'basic_auth_password_file'");
      return;
    }
    const std::string port = url.get(CURLUPART_PORT, CURLU_DEFAULT_PORT).value_or("");
    if (port == "0") {
      error("target", fmt::format("'{}' has port 0", target));
      return;
    }
    spec_.url = target;
    parts_.scheme = scheme;
    parts_.host = host;
    parts_.port = port;
    parts_.path = url.get(CURLUPART_PATH).value_or("/");
    parts_.query = url.get(CURLUPART_QUERY).value_or("");
    parts_.zone = url.get(CURLUPART_ZONEID).value_or("");
    if (!server_name) return;
    if (!is_host_name(*server_name)) {
      error("tls_server_name",
            fmt::format("'tls_server_name' must be a host name, not '{}'", *server_name));
      return;
    }
    // curl sends SNI and verifies for the URL's host, so the URL names the
    // server name and CONNECT_TO sends the connection to the real host. The
    // Host header keeps naming the target, as without tls_server_name.
    const std::optional<std::string> explicit_port = url.get(CURLUPART_PORT);
    spec_.mx().header_lines.push_back("Host: " + host +
                                      (explicit_port ? ":" + *explicit_port : ""));
    spec_.mx().connect_to = fmt::format("{}:{}:{}:{}", *server_name, port, host, port);
    curl_url_set(url.u, CURLUPART_HOST, server_name->c_str(), 0);
    spec_.url = url.get(CURLUPART_URL).value_or(target);
  }

  void headers() {
    auto headers = checked("headers", r_.get_string_table("headers"));
    if (!headers) return;
    for (const auto& [name, value] : *headers) {
      if (!is_token(name)) {
        error("headers", fmt::format("'{}' is not a valid header name", name));
      } else if (value.find_first_of("\r\n") != std::string::npos ||
                 value.find('\0') != std::string::npos) {
        error("headers", fmt::format("the value of header '{}' must be one line", name));
      } else {
        // A header given here replaces the one tls_server_name added.
        if (iequals(name, "Host"))
          std::erase_if(spec_.mx().header_lines,
                        [](const std::string& l) { return l.starts_with("Host: "); });
        // "Name;" is curl's way to send a header with an empty value.
        spec_.mx().header_lines.push_back(value.empty() ? name + ";" : name + ": " + value);
      }
    }
  }

  void regexes(std::string_view key, std::vector<runtime::Regex>& out) {
    auto patterns = checked(key, r_.get_string_array(key));
    if (!patterns) return;
    for (const auto& p : *patterns) {
      std::string why;
      if (auto re = runtime::Regex::compile(p, &why)) {
        out.push_back(std::move(*re));
      } else {
        error(key, fmt::format("invalid regular expression \"{}\" in '{}': {}", p, key, why));
      }
    }
  }

  // A file wachtd will open for every TLS connection: unreadable is a config error now,
  // not a failing check later.
  std::string readable_file(std::string_view key) {
    auto path = string(key);
    if (!path) return {};
    if (access(path->c_str(), R_OK) != 0) {
      error(key, fmt::format("cannot read '{}' ({}): {}", *path, key, std::strerror(errno)));
      return {};
    }
    return *path;
  }

  // The password file's content is a secret: messages name the file, never what is in it.
  std::optional<std::string> read_password(const std::string& path) {
    std::string reason;
    auto text = runtime::read_secret_file(path, &reason);
    if (!text) {
      error("basic_auth_password_file",
            fmt::format("cannot read password file '{}': {}", path, reason));
      return std::nullopt;
    }
    if (text->empty()) {
      error("basic_auth_password_file", fmt::format("password file '{}' is empty", path));
      return std::nullopt;
    }
    return text;
  }

 private:
  runtime::TableReader& r_;
  HttpSpec& spec_;
  UrlParts parts_;
  bool ok_ = true;
};

// Decides whether the check can take the direct path and builds its request
// as libcurl 7.88 would: request line, Host (a custom one in its place),
// User-Agent and Accept unless given, then the custom headers in order.
void plan_direct(HttpSpec& spec, const UrlParts& u) {
  const HttpExtras& x = spec.x();
  if (u.scheme != "http" || !u.zone.empty() || x.body || !x.basic_auth_user.empty() ||
      !x.connect_to.empty())
    return;
  // Idempotent methods only (RFC 9110 9.2.2): libcurl asks again when a response
  // comes in a transfer coding the direct client does not decode (Direct::head).
  constexpr std::string_view kIdempotent[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
  if (std::find(std::begin(kIdempotent), std::end(kIdempotent), spec.method) ==
      std::end(kIdempotent))
    return;
  const bool bracketed = u.host.size() > 2 && u.host.front() == '[' && u.host.back() == ']';
  const std::string bare = bracketed ? u.host.substr(1, u.host.size() - 2) : u.host;
  int port = 0;
  auto [end, ec] = std::from_chars(u.port.data(), u.port.data() + u.port.size(), port);
  if (ec != std::errc() || end != u.port.data() + u.port.size() || port <= 0 || port > 65535)
    return;
  if (uv_ip4_addr(bare.c_str(), port, &spec.direct_addr.v4) == 0) {
    if (spec.ip_resolve == CURL_IPRESOLVE_V6) return;  // libcurl reports the mismatch
  } else if (uv_ip6_addr(bare.c_str(), port, &spec.direct_addr.v6) == 0) {
    if (spec.ip_resolve == CURL_IPRESOLVE_V4) return;
  } else {
    return;  // a name: libcurl resolves it (happy eyeballs, every address)
  }
  auto custom = [&](std::string_view name) -> const std::string* {
    for (const auto& line : x.header_lines) {
      if (iequals(header_name(line), name)) return &line;
    }
    return nullptr;
  };
  std::string& req = spec.direct_request;
  req = spec.method + " " + u.path + (u.query.empty() ? "" : "?" + u.query) + " HTTP/1.1\r\n";
  if (const std::string* host = custom("Host")) {
    // "Host: x" replaces the default; "Host;" sends it empty.
    req += "Host:" + host->substr(5) + "\r\n";
  } else {
    req += "Host: " + u.host + (port == 80 ? "" : ":" + u.port) + "\r\n";
  }
  if (!custom("User-Agent")) req += std::string("User-Agent: wacht/") + kVersion + "\r\n";
  if (!custom("Accept")) req += "Accept: */*\r\n";
  for (const auto& line : x.header_lines) {
    const std::string_view name = header_name(line);
    if (iequals(name, "Host")) continue;
    if (line[name.size()] == ';')
      req += std::string(name) + ":\r\n";  // curl's way to send an empty value
    else
      req += line + "\r\n";
  }
  req += "\r\n";
  spec.direct = true;
}

std::shared_ptr<const ProbeSpec> parse(runtime::TableReader& reader, const std::string& target) {
  auto spec = std::make_shared<HttpSpec>();
  SpecParser p(reader, *spec);

  p.target(target, p.string("tls_server_name"));
  p.headers();

  if (auto method = p.string("method")) {
    if (!is_token(*method)) p.error("method", fmt::format("'{}' is not an HTTP method", *method));
    spec->method = *method;
  }
  if (auto body = p.string("body")) spec->mx().body = std::move(body);
  if (auto codes = p.checked("valid_status", reader.get_int_array("valid_status", 100, 599))) {
    if (codes->empty()) p.error("valid_status", "'valid_status' must not be empty");
    spec->mx().valid_status = std::move(*codes);
  }
  if (reader.has("body_must_match")) p.regexes("body_must_match", spec->mx().must_match);
  if (reader.has("body_must_not_match"))
    p.regexes("body_must_not_match", spec->mx().must_not_match);

  if (auto v = p.checked("follow_redirects", reader.get_bool("follow_redirects")))
    spec->follow_redirects = *v;
  if (auto v = p.checked("max_redirects", reader.get_int("max_redirects", 0, 100)))
    spec->max_redirects = *v;
  if (auto v = p.string("ip_protocol")) {
    if (*v == "ip4") {
      spec->ip_resolve = CURL_IPRESOLVE_V4;
    } else if (*v == "ip6") {
      spec->ip_resolve = CURL_IPRESOLVE_V6;
    } else if (*v != "any") {
      p.error("ip_protocol",
              fmt::format("'ip_protocol' must be \"any\", \"ip4\" or \"ip6\", not \"{}\"", *v));
    }
  }

  if (auto v = p.checked("tls_insecure", reader.get_bool("tls_insecure"))) spec->tls_insecure = *v;
  for (auto [key, field] : {std::pair{"tls_ca_file", &HttpExtras::tls_ca_file},
                            std::pair{"tls_cert_file", &HttpExtras::tls_cert_file},
                            std::pair{"tls_key_file", &HttpExtras::tls_key_file}}) {
    if (std::string path = p.readable_file(key); !path.empty()) spec->mx().*field = path;
  }
  if (reader.has("tls_key_file") && !reader.has("tls_cert_file"))
    p.error("tls_key_file", "'tls_key_file' needs 'tls_cert_file'");

  auto user = p.string("basic_auth_user");
  auto password_file = p.string("basic_auth_password_file");
  if (user && user->find(':') != std::string::npos)
    p.error("basic_auth_user", "'basic_auth_user' must not contain ':'");
  if (user && !password_file && !reader.has("basic_auth_password_file"))
    p.error("basic_auth_user", "'basic_auth_user' needs 'basic_auth_password_file'");
  if (password_file && !user && !reader.has("basic_auth_user"))
    p.error("basic_auth_password_file", "'basic_auth_password_file' needs 'basic_auth_user'");
  if (user && password_file) {
    spec->mx().basic_auth_user = *user;
    if (auto password = p.read_password(*password_file))
      spec->mx().basic_auth_password = std::move(*password);
  }

  if (auto v = p.checked("max_body_bytes", reader.get_int("max_body_bytes", 1, int64_t{1} << 30)))
    spec->max_body_bytes = *v;

  if (!p.ok()) return nullptr;
  plan_direct(*spec, p.url_parts());
  return spec;
}

// "Empty reply from server" reads as "empty reply from server" in a summary;
// words like "SSL" or "OpenSSL" keep their case.
std::string lower_first(std::string s) {
  const size_t word_end = std::min(s.find(' '), s.size());
  const bool capitalized =
      word_end > 1 && std::isupper(static_cast<unsigned char>(s[0])) &&
      std::all_of(s.begin() + 1, s.begin() + static_cast<std::ptrdiff_t>(word_end),
                  [](unsigned char c) { return !std::isupper(c); });
  if (capitalized) s[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[0])));
  return s;
}

// Summaries are one line: curl messages can carry a server's text.
std::string one_line(std::string s) {
  std::replace_if(
      s.begin(), s.end(), [](char c) { return c == '\r' || c == '\n'; }, ' ');
  while (!s.empty() && (s.back() == ' ' || s.back() == '.')) s.pop_back();
  return s;
}

std::string_view tls_version_name(int version) {
  switch (version) {
    case TLS1_VERSION: return "TLS 1.0";
    case TLS1_1_VERSION: return "TLS 1.1";
    case TLS1_2_VERSION: return "TLS 1.2";
    case TLS1_3_VERSION: return "TLS 1.3";
  }
  return {};
}

// The reason in one of curl's TLS messages, without the wrapping meant for
// developers: "OpenSSL SSL_read: OpenSSL/3.0.22: error:0A00045C:SSL
// routines::tlsv13 alert certificate required, errno 0" becomes "tlsv13 alert
// certificate required".
std::string_view tls_detail(std::string_view d) {
  for (std::string_view prefix : {"SSL certificate problem: ", "SSL: ", "OpenSSL SSL_read: ",
                                  "OpenSSL SSL_write: ", "OpenSSL SSL_connect: "}) {
    if (d.starts_with(prefix)) d.remove_prefix(prefix.size());
  }
  if (d.starts_with("OpenSSL/")) {
    if (size_t colon = d.find(": "); colon != d.npos) d.remove_prefix(colon + 2);
  }
  if (d.starts_with("error:")) {
    if (size_t routines = d.find("::"); routines != d.npos) d.remove_prefix(routines + 2);
  }
  if (d.ends_with(", errno 0")) d.remove_suffix(9);
  return d;
}

bool is_tls_error(CURLcode code) {
  switch (code) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED: return true;
    default: return false;
  }
}

// What a run measured, from libcurl's counters or from the direct client.
struct Outcome {
  std::string error;  // empty if a response arrived; else the summary of the failure
  bool timed_out = false;
  long status = 0;
  double http_version = 0;
  long redirects = 0;
  int64_t content_length = -1;
  int64_t last_modified = -1;
  double resolve = 0, connect = 0, tls = 0, processing = 0, transfer = 0;
  int family = AF_UNSPEC;
  bool https = false;
};

// Where libcurl goes on from a direct hop, compared with the target.
enum class Onward { kSameOrigin, kSameHost, kOtherHost };

// What a direct first hop measured before a redirect handed over to libcurl.
struct Carry {
  double resolve = 0, connect = 0, processing = 0, transfer = 0;
  long redirects = 0;
};

class Direct;

class HttpProbe final : public Probe {
 public:
  HttpProbe(const ProbeContext& ctx, const CheckTarget& check,
            std::shared_ptr<const HttpSpec> spec);
  ~HttpProbe() override;
  HttpProbe(const HttpProbe&) = delete;
  HttpProbe& operator=(const HttpProbe&) = delete;

  void start(DoneCallback done) override;
  void cancel() override;
  std::string_view phase() const override { return phase_name(phase_); }

 private:
  friend class Direct;
  enum class Phase { kIdle, kResolving, kConnecting, kTls, kWaiting, kHeaders, kBody };
  static std::string_view phase_name(Phase p);

  // curl callbacks, all on the loop thread inside curl_multi_socket_action.
  static size_t on_write(char* data, size_t size, size_t n, void* self) noexcept;
  static size_t on_header(char* data, size_t size, size_t n, void* self) noexcept;
  static curl_socket_t on_open_socket(void* self, curlsocktype purpose,
                                      curl_sockaddr* address) noexcept;
  static CURLcode on_ssl_ctx(CURL* easy, void* ssl_ctx, void* self) noexcept;
  static int on_prereq(void* self, char* remote_ip, char* local_ip, int remote_port,
                       int local_port) noexcept;

  void reset_run_state();
  // Starts a libcurl transfer for this run: the whole run, or the rest of it
  // after a direct hop. Throws if it cannot, with no handle held.
  void start_curl(const std::string& url, long max_redirects, int64_t timeout_ms, Onward onward);
  void configure(const std::string& url, long max_redirects, int64_t timeout_ms, Onward onward);
  curl_slist* onward_headers(Onward onward);
  // The direct client hands the run to libcurl at `url`: a redirect it got
  // (`carry`, the first hop's phases, is added to what libcurl measures), or
  // the target again. Takes `done` only once libcurl runs: if this throws,
  // the direct client still reports the run.
  void continue_with_curl(const std::string& url, Onward onward, const Outcome& carry,
                          DoneCallback& done);
  void finish(CURLcode code);
  ProbeResult curl_result(CURLcode code) const;
  // The result of a run: samples, success and summary.
  ProbeResult evaluate(const Outcome& o) const;
  std::string error_summary(CURLcode code, long status) const;
  std::string expected_status() const;

  runtime::CurlMulti& curl_;
  uv_loop_t* loop_;
  const std::chrono::milliseconds timeout_;
  const std::shared_ptr<const HttpSpec> spec_;
  const bool keep_body_;                  // only regexes need the body itself
  CURL* easy_ = nullptr;                  // from the pool while a libcurl transfer is in flight
  curl_slist* headers_ = nullptr;         // built on the first libcurl transfer
  curl_slist* connect_to_ = nullptr;      // likewise
  curl_slist* onward_headers_ = nullptr;  // of the last handover to another origin
  bool curl_lists_built_ = false;
  std::unique_ptr<char[]> error_;  // CURL_ERROR_SIZE bytes, for libcurl transfers only

  // State of the current run, reset by start().
  DoneCallback done_;
  Direct* direct_ = nullptr;  // the direct client's run in flight
  bool running_ = false;
  Phase phase_ = Phase::kIdle;
  uint64_t started_ns_ = 0;
  std::string body_;
  int64_t body_bytes_ = 0;
  bool body_too_large_ = false;
  std::string reason_;            // reason phrase of the last status line
  int family_ = AF_UNSPEC;        // of the last connection attempt
  std::string_view tls_version_;  // of the last connection, empty if not TLS
  tls::ChainExpiry expiry_;       // of the last connection's certificates
  Carry carry_;                   // a direct hop before libcurl took over, if any
};

// The direct client: one request on a fresh connection to an IP address,
// written with one write, the response parsed here (status line, headers,
// Content-Length, chunked or until EOF). Like the TCP probe's Connection it is
// not owned by the probe: it deletes itself once its handles are closed, and
// delivers the result from the last close callback, so done is asynchronous
// and the handles are gone by then. While the probe wants the result, probe_
// points to it.
class Direct {
 public:
  Direct(HttpProbe* probe, DoneCallback done)
      : probe_(probe), done_(std::move(done)), spec_(probe->spec_) {}
  Direct(const Direct&) = delete;
  Direct& operator=(const Direct&) = delete;

  void begin(uv_loop_t* loop, std::chrono::milliseconds timeout);
  // The probe no longer wants the result: close, never call done.
  void abandon();

 private:
  enum class State {
    kHead,
    kBody,
    kBodyToEof,
    kChunkSize,  // its hex digits
    kChunkExt,   // the rest of the chunk-size line
    kChunkData,
    kChunkEnd,     // the line end after the data
    kTrailers,     // at the start of a trailer line
    kTrailer,      // in one
    kTrailersEnd,  // the LF after the CR that ends them
  };

  void connected(int status);
  void received(const char* data, size_t len);
  void eof();
  // Parses head_ up to line_start_ as a header block (`ended` by a blank line,
  // or by the connection), then clears it; false if the run is over.
  bool end_head(bool ended);
  // The first line of a header block; false if it failed the run.
  bool status_line(std::string_view line);
  bool head(std::string_view block, bool ended);
  bool body(const char* data, size_t len);
  void chunked(const char*& data, size_t& len);
  void complete();
  void fail(std::string summary, bool timed_out = false);
  // After an exception: fails the run without throwing again.
  void fail_internal(const char* what) noexcept;
  void redirect(const std::string& location);
  void handover(const std::string& url, Onward onward, const Outcome& carry);
  void finish(const Outcome& o);
  void close_handles();
  void closed();
  Outcome measured() const;
  void set_phase(HttpProbe::Phase p) {
    if (probe_) probe_->phase_ = p;
  }

  static void on_connected(uv_connect_t* req, int status) noexcept;
  static void on_alloc(uv_handle_t*, size_t, uv_buf_t* buf) noexcept;
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) noexcept;
  static void on_written(uv_write_t* req, int status) noexcept;
  static void on_timer(uv_timer_t* timer) noexcept;
  static void on_closed(uv_handle_t* handle) noexcept;
  template <typename F>
  static void guarded(Direct* self, F&& f) noexcept;

  HttpProbe* probe_;
  DoneCallback done_;
  std::shared_ptr<const HttpSpec> spec_;
  std::chrono::milliseconds timeout_{0};
  uv_tcp_t tcp_{};
  uv_timer_t timer_{};
  uv_connect_t connect_req_{};
  uv_write_t write_req_{};
  ProbeResult result_;
  int open_handles_ = 0;
  bool closing_ = false;
  bool deliver_ = false;  // closed() hands result_ to done_
  State state_ = State::kHead;
  uint64_t connect_ns_ = 0, connected_ns_ = 0, first_byte_ns_ = 0;
  std::string head_;         // the header block so far
  size_t line_start_ = 0;    // of its last, incomplete line
  size_t header_bytes_ = 0;  // of the complete header lines, interim responses included
  int64_t remaining_ = 0;    // of a Content-Length body or of the current chunk
  uint64_t chunk_size_ = 0;  // the hex digits of a chunk size so far
  int chunk_digits_ = 0;
  // From the final header block.
  long status_ = 0;
  double version_ = 0;
  int64_t content_length_ = -1;
  int64_t last_modified_ = -1;
};

// libcurl's limits on response headers, and the summaries of both paths: a
// line, with its LF, must fit a 100 KiB buffer with a terminating NUL, and the
// lines of a response add up to at most 300 KiB (Debian's 7.88.1 has the fix
// for CVE-2023-38039).
constexpr size_t kMaxHeaderLine = 100 * 1024;
constexpr size_t kMaxHeaderBytes = 300 * 1024;
constexpr std::string_view kHeaderLineTooLong = "response header line of 100 KiB or more";
constexpr std::string_view kHeadersTooLarge = "response headers larger than 300 KiB";
constexpr size_t kReadBufferBytes = 64 * 1024;

// libuv fills this and the read callback consumes it at once, so one buffer
// serves every direct connection on the loop thread.
char* read_buffer() {
  thread_local std::unique_ptr<char[]> buf(new char[kReadBufferBytes]);
  // The analyzer takes the thread_local for a local destroyed on return.
  return buf.get();  // NOLINT(clang-analyzer-cplusplus.NewDelete)
}

double seconds(uint64_t from_ns, uint64_t to_ns) {
  return from_ns && to_ns > from_ns ? static_cast<double>(to_ns - from_ns) / 1e9 : 0.0;
}

std::string_view trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t' || v.back() == '\r'))
    v.remove_suffix(1);
  return v;
}

template <typename F>
void Direct::guarded(Direct* self, F&& f) noexcept {
  try {
    f();
  } catch (const std::exception& e) {
    self->fail_internal(e.what());
  } catch (...) {
    self->fail_internal(nullptr);
  }
}

void Direct::fail_internal(const char* what) noexcept {
  if (closing_) return;
  try {
    fail(what ? std::string("internal error: ") + what : std::string("internal error"));
  } catch (...) {
    // Out of memory while reporting: a bare result rather than no done at all.
    if (closing_) return;
    result_ = ProbeResult{};
    result_.summary = "internal error";  // fits the string's own buffer: no allocation
    deliver_ = true;
    close_handles();
  }
}

void Direct::begin(uv_loop_t* loop, std::chrono::milliseconds timeout) {
  timeout_ = timeout;
  uv_tcp_init(loop, &tcp_);
  tcp_.data = this;
  uv_timer_init(loop, &timer_);
  timer_.data = this;
  open_handles_ = 2;
  // The scheduler cancels at the check's timeout; this is the safety net, as
  // CURLOPT_TIMEOUT_MS is for libcurl transfers.
  uv_timer_start(&timer_, &on_timer, static_cast<uint64_t>(std::max<int64_t>(timeout.count(), 1)),
                 0);
  set_phase(HttpProbe::Phase::kConnecting);
  if (probe_) probe_->family_ = spec_->direct_addr.sa.sa_family;
  connect_ns_ = uv_hrtime();
  connect_req_.data = this;
  int rc = uv_tcp_connect(&connect_req_, &tcp_, &spec_->direct_addr.sa, &on_connected);
  if (rc < 0) connected(rc);
}

void Direct::abandon() {
  probe_ = nullptr;
  done_ = nullptr;
  deliver_ = false;
  if (!closing_) close_handles();
}

void Direct::connected(int status) {
  if (closing_) return;  // UV_ECANCELED from closing the handle
  if (status < 0) {
    if (status == UV_ECONNREFUSED) {
      fail("connection refused");
    } else {
      fail(fmt::format("cannot connect: {}", lower_first(std::strerror(-status))));
    }
    return;
  }
  connected_ns_ = uv_hrtime();
  set_phase(HttpProbe::Phase::kWaiting);
  auto* stream = reinterpret_cast<uv_stream_t*>(&tcp_);
  const std::string& req = spec_->direct_request;
  // A fresh connection's send buffer takes a request at once: one write(2),
  // no write request. Whatever it did not take goes the usual way.
  uv_buf_t buf = uv_buf_init(const_cast<char*>(req.data()), static_cast<unsigned>(req.size()));
  int n = uv_try_write(stream, &buf, 1);
  if (n < 0 && n != UV_EAGAIN) {
    fail(n == UV_ECONNRESET || n == UV_EPIPE ? "connection reset by peer"
                                             : fmt::format("send failure: {}", std::strerror(-n)));
    return;
  }
  if (static_cast<size_t>(std::max(n, 0)) < req.size()) {
    size_t sent = static_cast<size_t>(std::max(n, 0));
    buf =
        uv_buf_init(const_cast<char*>(req.data() + sent), static_cast<unsigned>(req.size() - sent));
    write_req_.data = this;
    int rc = uv_write(&write_req_, stream, &buf, 1, &on_written);
    if (rc < 0) {
      fail(fmt::format("send failure: {}", std::strerror(-rc)));
      return;
    }
  }
  int rc = uv_read_start(stream, &on_alloc, &on_read);
  if (rc < 0) fail(fmt::format("recv failure: {}", std::strerror(-rc)));
}

void Direct::received(const char* data, size_t len) {
  if (!first_byte_ns_) {
    first_byte_ns_ = uv_hrtime();
    set_phase(HttpProbe::Phase::kHeaders);
  }
  while (len > 0 && !closing_) {
    switch (state_) {
      case State::kHead: {
        // A line at a time, as libcurl reads headers, for its limits.
        const char* lf = static_cast<const char*>(std::memchr(data, '\n', len));
        const size_t take = lf ? static_cast<size_t>(lf - data) + 1 : len;
        if (head_.size() - line_start_ + take >= kMaxHeaderLine) {
          fail(std::string(kHeaderLineTooLong));
          return;
        }
        head_.append(data, take);
        data += take;
        len -= take;
        // As libcurl: bytes that do not start like a status line are HTTP/0.9.
        const size_t prefix = std::min<size_t>(head_.size(), 5);
        if (head_.compare(0, prefix, std::string_view("HTTP/").substr(0, prefix)) != 0) {
          fail("not an HTTP response (received HTTP/0.9 when not allowed)");
          return;
        }
        if (!lf) break;
        header_bytes_ += head_.size() - line_start_;
        if (line_start_ == 0) {
          // As libcurl, the status counts from here on, even if the headers never end.
          line_start_ = head_.size();
          if (!status_line(trim(std::string_view(head_).substr(0, head_.size() - 1)))) return;
          break;
        }
        // As libcurl: a line that starts with CR or LF ends the block, whatever
        // the lines before ended with. The bytes after it are the body (or the
        // next block).
        const bool blank = head_[line_start_] == '\r' || head_[line_start_] == '\n';
        if (!blank && header_bytes_ > kMaxHeaderBytes) {
          fail(std::string(kHeadersTooLarge));
          return;
        }
        line_start_ = head_.size();
        if (blank && !end_head(true)) return;
        break;
      }
      case State::kBody: {
        size_t n = static_cast<size_t>(std::min<int64_t>(remaining_, static_cast<int64_t>(len)));
        if (!body(data, n)) return;
        remaining_ -= static_cast<int64_t>(n);
        if (remaining_ == 0) {
          complete();
          return;
        }
        data += n;
        len -= n;
        break;
      }
      case State::kBodyToEof:
        if (!body(data, len)) return;
        len = 0;
        break;
      default: chunked(data, len); break;
    }
  }
}

bool Direct::end_head(bool ended) {
  head_.resize(line_start_);
  const bool more = head(head_, ended);
  head_.clear();
  line_start_ = 0;
  return more;
}

bool Direct::status_line(std::string_view line) {
  // "HTTP/1.1 200 OK"
  size_t sp = line.find(' ');
  std::string_view version = line.substr(5, sp == std::string_view::npos ? sp : sp - 5);
  double v = version == "1.1" ? 1.1 : version == "1.0" ? 1.0 : version == "2" ? 2 : 0;
  std::string_view rest = sp == std::string_view::npos ? "" : line.substr(sp + 1);
  long code = 0;
  auto [p, ec] = std::from_chars(rest.data(), rest.data() + std::min<size_t>(rest.size(), 3), code);
  if (v == 0) {
    fail("not an HTTP response (unsupported HTTP version in response)");
    return false;
  }
  if (ec != std::errc() || p != rest.data() + 3 || code < 100 ||
      (rest.size() > 3 && rest[3] != ' ')) {
    fail("not an HTTP response (invalid status line)");
    return false;
  }
  std::string_view reason = rest.size() > 4 ? trim(rest.substr(4)) : std::string_view();
  status_ = code;
  version_ = v;
  if (probe_) probe_->reason_.assign(reason.substr(0, 100));
  return true;
}

bool Direct::head(std::string_view block, bool ended) {
  const long code = status_;
  const bool head_request = spec_->method == "HEAD";
  // As libcurl: these have no body, so their Content-Length is not even read.
  const bool bodyless = code < 200 || code == 204 || code == 304;
  bool codings = false;  // any Transfer-Encoding: Content-Length does not count then
  bool chunked = false;  // "chunked" anywhere in it, as libcurl reads it
  bool decode = false;   // a coding libcurl decodes (gzip, ...) or fails on
  int64_t length = -1;
  std::string location;
  std::string last_modified;
  size_t at = block.find('\n') + 1;  // after the status line
  while (at < block.size()) {
    size_t next = block.find('\n', at);
    std::string_view line = block.substr(at, next == std::string_view::npos ? next : next - at);
    at = next == std::string_view::npos ? block.size() : next + 1;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = line.substr(0, colon);
    std::string_view value = trim(line.substr(colon + 1));
    if (iequals(name, "Content-Length") && !bodyless) {
      // As libcurl (strtoll): digits after an optional '+', the rest ignored;
      // the last one counts.
      if (value.starts_with('+')) value.remove_prefix(1);
      int64_t n = 0;
      auto [q, e] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (value.empty() || !std::isdigit(static_cast<unsigned char>(value[0])) ||
          (e != std::errc() && e != std::errc::result_out_of_range)) {
        fail("invalid Content-Length: value");
        return false;
      }
      if (e == std::errc::result_out_of_range) {
        // A HEAD request reads no body, so libcurl has no size limit to apply.
        if (head_request) continue;
        fail(fmt::format("body larger than {} bytes", spec_->max_body_bytes));
        return false;
      }
      length = n;
    } else if (iequals(name, "Transfer-Encoding")) {
      codings = true;
      for (size_t from = 0; from <= value.size();) {
        const size_t comma = std::min(value.find(',', from), value.size());
        const std::string_view coding = trim(value.substr(from, comma - from));
        from = comma + 1;
        if (iequals(coding, "chunked")) {
          chunked = true;
        } else if (!coding.empty() && !iequals(coding, "identity")) {
          decode = true;
        }
      }
    } else if (iequals(name, "Location")) {
      // As libcurl: the first one that is not empty.
      if (location.empty()) location.assign(value);
    } else if (iequals(name, "Last-Modified")) {
      last_modified.assign(value);
    }
  }
  // As libcurl: known once the headers end, unless with a transfer coding;
  // empty for 204 and 304.
  content_length_ = !ended || codings ? -1 : code == 204 || code == 304 ? 0 : length;
  // As libcurl, the blank line counts against the limit after the block is read.
  if (header_bytes_ > kMaxHeaderBytes) {
    fail(std::string(kHeadersTooLarge));
    return false;
  }
  if (code < 200 && code != 101) {
    return true;  // an interim response (100 Continue, 103 Early Hints): the next block follows
  }
  if (!last_modified.empty()) last_modified_ = curl_getdate(last_modified.c_str(), nullptr);
  set_phase(HttpProbe::Phase::kBody);
  if (spec_->follow_redirects && code >= 300 && code < 400 && !location.empty()) {
    redirect(location);
    return false;
  }
  if (head_request || bodyless) {
    complete();
    return false;
  }
  if (decode) {
    // libcurl decodes the body (or fails on a coding it does not know); the
    // direct client leaves that to it, asking again.
    handover(spec_->url, Onward::kSameOrigin, Outcome{});
    return false;
  }
  if (chunked) {
    state_ = State::kChunkSize;
  } else if (length >= 0 && !codings) {
    if (length > spec_->max_body_bytes) {
      fail(fmt::format("body larger than {} bytes", spec_->max_body_bytes));
      return false;
    }
    if (length == 0) {
      complete();
      return false;
    }
    remaining_ = length;
    state_ = State::kBody;
  } else {
    // Also a transfer coding without chunked, as libcurl and RFC 9112 6.3 say.
    state_ = State::kBodyToEof;
  }
  return true;
}

bool Direct::body(const char* data, size_t len) {
  if (!probe_ || len == 0) return true;
  if (probe_->body_bytes_ + static_cast<int64_t>(len) > spec_->max_body_bytes) {
    probe_->body_too_large_ = true;
    fail(fmt::format("body larger than {} bytes", spec_->max_body_bytes));
    return false;
  }
  if (probe_->keep_body_) probe_->body_.append(data, len);
  probe_->body_bytes_ += static_cast<int64_t>(len);
  return true;
}

// As libcurl's chunk parser, whose messages these are: up to 16 hex digits,
// anything else up to the LF, the data, any CRs and an LF, and after the last
// chunk trailer lines up to one that starts with CR or LF.
void Direct::chunked(const char*& data, size_t& len) {
  switch (state_) {
    case State::kChunkSize: {
      size_t n = 0;
      for (; n < len && std::isxdigit(static_cast<unsigned char>(data[n])); ++n) {
        if (++chunk_digits_ > 16) {
          fail("too long hexadecimal number in chunked-encoding");
          return;
        }
        const int c = static_cast<unsigned char>(data[n]);
        chunk_size_ =
            chunk_size_ * 16 + static_cast<uint64_t>(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
      }
      data += n;
      len -= n;
      if (len == 0) return;
      if (chunk_digits_ == 0 || chunk_size_ > static_cast<uint64_t>(INT64_MAX)) {
        fail("illegal or missing hexadecimal sequence in chunked-encoding");
        return;
      }
      state_ = State::kChunkExt;
      return;
    }
    case State::kChunkExt:
    case State::kTrailer: {
      const char* lf = static_cast<const char*>(std::memchr(data, '\n', len));
      const size_t skip = lf ? static_cast<size_t>(lf - data) + 1 : len;
      data += skip;
      len -= skip;
      if (!lf) return;
      if (state_ == State::kTrailer) {
        state_ = State::kTrailers;
        return;
      }
      remaining_ = static_cast<int64_t>(chunk_size_);
      chunk_size_ = 0;
      chunk_digits_ = 0;
      state_ = remaining_ == 0 ? State::kTrailers : State::kChunkData;
      return;
    }
    case State::kChunkData: {
      size_t n = static_cast<size_t>(std::min<int64_t>(remaining_, static_cast<int64_t>(len)));
      if (!body(data, n)) return;
      remaining_ -= static_cast<int64_t>(n);
      data += n;
      len -= n;
      if (remaining_ == 0) state_ = State::kChunkEnd;
      return;
    }
    default: break;
  }
  const char c = *data++;
  --len;
  switch (state_) {
    case State::kChunkEnd:
      if (c == '\n') {
        state_ = State::kChunkSize;
      } else if (c != '\r') {
        fail("malformed encoding found in chunked-encoding");
      }
      return;
    case State::kTrailers:
      if (c == '\n') {
        complete();
      } else {
        state_ = c == '\r' ? State::kTrailersEnd : State::kTrailer;
      }
      return;
    case State::kTrailersEnd:
      if (c == '\n') {
        complete();
      } else {
        fail("malformed encoding found in chunked-encoding");
      }
      return;
    default: return;
  }
}

void Direct::eof() {
  switch (state_) {
    case State::kHead:
      // As libcurl: without a complete status line the reply is empty; with
      // one, the complete lines are the response, Content-Length included.
      if (line_start_ == 0) {
        fail("empty reply from server");
      } else if (end_head(false)) {
        eof();
      }
      return;
    case State::kBodyToEof: complete(); return;
    case State::kBody:
      fail(fmt::format("transfer closed with {} bytes remaining to read", remaining_));
      return;
    default: fail("transfer closed with outstanding read data remaining"); return;
  }
}

Outcome Direct::measured() const {
  Outcome o;
  const uint64_t now = uv_hrtime();
  const uint64_t start = probe_ ? probe_->started_ns_ : connect_ns_;
  o.resolve = seconds(start, connect_ns_);
  o.connect = connected_ns_ ? seconds(connect_ns_, connected_ns_) : 0;
  o.processing = first_byte_ns_ ? seconds(connected_ns_, first_byte_ns_) : 0;
  o.transfer = first_byte_ns_ ? seconds(first_byte_ns_, now) : 0;
  o.family = spec_->direct_addr.sa.sa_family;
  return o;
}

void Direct::complete() {
  Outcome o = measured();
  o.status = status_;
  o.http_version = version_;
  o.content_length = content_length_;
  o.last_modified = last_modified_;
  finish(o);
}

void Direct::fail(std::string summary, bool timed_out) {
  if (closing_) return;
  Outcome o = measured();
  o.error = std::move(summary);
  o.timed_out = timed_out;
  o.status = status_;
  o.http_version = version_;
  o.content_length = content_length_;
  o.last_modified = last_modified_;
  finish(o);
}

void Direct::redirect(const std::string& location) {
  if (spec_->max_redirects == 0) {
    fail("more than 0 redirects");
    return;
  }
  CurlUrl next;
  curl_url_set(next.u, CURLUPART_URL, spec_->url.c_str(), 0);
  auto origin = [&] {
    return std::array{next.get(CURLUPART_SCHEME).value_or(""),
                      next.get(CURLUPART_HOST).value_or(""),
                      next.get(CURLUPART_PORT, CURLU_DEFAULT_PORT).value_or("")};
  };
  const auto from = origin();
  // As libcurl follows: relative to the URL of this hop, with spaces and other
  // bytes a URL cannot hold percent-encoded.
  if (curl_url_set(next.u, CURLUPART_URL, location.c_str(), CURLU_URLENCODE | CURLU_ALLOW_SPACE) !=
      CURLUE_OK) {
    fail(fmt::format("invalid redirect location \"{}\"", one_line(location.substr(0, 200))));
    return;
  }
  std::optional<std::string> url = next.get(CURLUPART_URL);
  if (!url) {
    fail("invalid redirect location");
    return;
  }
  const auto to = origin();
  Onward onward = Onward::kSameOrigin;
  if (!iequals(from[1], to[1])) {
    onward = Onward::kOtherHost;
  } else if (from[0] != to[0] || from[2] != to[2]) {
    onward = Onward::kSameHost;
  }
  Outcome carry = measured();
  carry.redirects = 1;
  handover(*url, onward, carry);
}

void Direct::handover(const std::string& url, Onward onward, const Outcome& carry) {
  // Until libcurl runs, the run is still this one's: an exception from here
  // fails it through guarded().
  if (probe_) {
    probe_->continue_with_curl(url, onward, carry, done_);
    probe_->direct_ = nullptr;
  }
  probe_ = nullptr;
  done_ = nullptr;
  close_handles();  // without a result: libcurl's transfer delivers it
}

void Direct::finish(const Outcome& o) {
  if (closing_) return;
  if (probe_) {
    result_ = probe_->evaluate(o);
    deliver_ = true;
  }
  close_handles();
}

void Direct::close_handles() {
  closing_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &on_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), &on_closed);
}

void Direct::closed() {
  if (--open_handles_ > 0) return;
  HttpProbe* probe = probe_;
  DoneCallback done = std::move(done_);
  ProbeResult result = std::move(result_);
  const bool deliver = deliver_ && probe && done;
  delete this;
  if (!deliver) return;
  probe->direct_ = nullptr;
  probe->running_ = false;
  probe->phase_ = HttpProbe::Phase::kIdle;
  done(std::move(result));  // last: the callback may destroy the probe
}

void Direct::on_connected(uv_connect_t* req, int status) noexcept {
  auto* self = static_cast<Direct*>(req->data);
  // guarded() catches everything the lambda throws.
  // cppcheck-suppress throwInNoexceptFunction
  guarded(self, [&] { self->connected(status); });
}

void Direct::on_alloc(uv_handle_t*, size_t, uv_buf_t* buf) noexcept {
  buf->base = read_buffer();
  buf->len = kReadBufferBytes;
}

void Direct::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) noexcept {
  auto* self = static_cast<Direct*>(stream->data);
  // guarded() catches everything the lambda throws.
  // cppcheck-suppress throwInNoexceptFunction
  guarded(self, [&] {
    if (self->closing_ || nread == 0) return;
    if (nread == UV_EOF) {
      self->eof();
    } else if (nread < 0) {
      self->fail(nread == UV_ECONNRESET
                     ? "connection reset by peer"
                     : fmt::format("recv failure: {}", std::strerror(-static_cast<int>(nread))));
    } else {
      self->received(buf->base, static_cast<size_t>(nread));
    }
  });
}

void Direct::on_written(uv_write_t* req, int status) noexcept {
  auto* self = static_cast<Direct*>(req->data);
  guarded(self, [&] {
    if (self->closing_ || status >= 0) return;
    self->fail(status == UV_ECONNRESET || status == UV_EPIPE
                   ? "connection reset by peer"
                   : fmt::format("send failure: {}", std::strerror(-status)));
  });
}

void Direct::on_timer(uv_timer_t* timer) noexcept {
  auto* self = static_cast<Direct*>(timer->data);
  guarded(self, [&] {
    std::string_view phase = self->probe_ ? self->probe_->phase() : "idle";
    self->fail(fmt::format("timed out after {} ms while {}", self->timeout_.count(), phase), true);
  });
}

void Direct::on_closed(uv_handle_t* handle) noexcept {
  static_cast<Direct*>(handle->data)->closed();
}

HttpProbe::HttpProbe(const ProbeContext& ctx, const CheckTarget& check,
                     std::shared_ptr<const HttpSpec> spec)
    : curl_(*ctx.curl),
      loop_(ctx.loop),
      timeout_(check.timeout),
      spec_(std::move(spec)),
      keep_body_(!spec_->x().must_match.empty() || !spec_->x().must_not_match.empty()) {}

HttpProbe::~HttpProbe() {
  cancel();
  curl_slist_free_all(headers_);
  curl_slist_free_all(connect_to_);
  curl_slist_free_all(onward_headers_);
}

// Sets up a pooled easy handle for this check; done for every run because the
// handle is shared with other checks between runs.
void HttpProbe::configure(const std::string& url, long max_redirects, int64_t timeout_ms,
                          Onward onward) {
  if (!curl_lists_built_) {
    for (const auto& line : spec_->x().header_lines)
      headers_ = curl_slist_append(headers_, line.c_str());
    if (!spec_->x().connect_to.empty())
      connect_to_ = curl_slist_append(connect_to_, spec_->x().connect_to.c_str());
    curl_lists_built_ = true;
  }
  if (!error_) error_ = std::make_unique<char[]>(CURL_ERROR_SIZE);
  error_[0] = '\0';
  CURL* e = easy_;
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, error_.get());
  // The scheduler cancels at the check's timeout; this is the safety net.
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms));
  // Each run measures a whole connection, DNS and TLS handshake included, and
  // sees the certificate: nothing is reused from the previous run.
  curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
  curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_SESSIONID_CACHE, 0L);
  curl_easy_setopt(e, CURLOPT_DNS_CACHE_TIMEOUT, 0L);
  curl_easy_setopt(e, CURLOPT_USERAGENT, (std::string("wacht/") + kVersion).c_str());
  curl_easy_setopt(e, CURLOPT_FILETIME, 1L);
  // Probes go straight to their target; a proxy from the environment would
  // measure the proxy (and costs five getenv calls per transfer).
  curl_easy_setopt(e, CURLOPT_NOPROXY, "*");

  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &HttpProbe::on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, this);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &HttpProbe::on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, this);
  curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, &HttpProbe::on_open_socket);
  curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, this);
  curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, &HttpProbe::on_ssl_ctx);
  curl_easy_setopt(e, CURLOPT_SSL_CTX_DATA, this);
  curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, &HttpProbe::on_prereq);
  curl_easy_setopt(e, CURLOPT_PREREQDATA, this);

  // curl's own method is GET, or POST with a body. Only a different one is
  // forced, because a forced method also sticks to every redirect.
  if (spec_->method == "HEAD") {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (spec_->method != (spec_->x().body ? "POST" : "GET")) {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, spec_->method.c_str());
  }
  if (spec_->x().body) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(spec_->x().body->size()));
    curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, spec_->x().body->c_str());
  }
  curl_easy_setopt(e, CURLOPT_HTTPHEADER,
                   onward == Onward::kSameOrigin ? headers_ : onward_headers(onward));
  if (connect_to_) curl_easy_setopt(e, CURLOPT_CONNECT_TO, connect_to_);

  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, spec_->follow_redirects ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_MAXREDIRS, max_redirects);
  curl_easy_setopt(e, CURLOPT_IPRESOLVE, spec_->ip_resolve);

  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, spec_->tls_insecure ? 0L : 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, spec_->tls_insecure ? 0L : 2L);
  if (!spec_->x().tls_ca_file.empty())
    curl_easy_setopt(e, CURLOPT_CAINFO, spec_->x().tls_ca_file.c_str());
  if (!spec_->x().tls_cert_file.empty())
    curl_easy_setopt(e, CURLOPT_SSLCERT, spec_->x().tls_cert_file.c_str());
  if (!spec_->x().tls_key_file.empty())
    curl_easy_setopt(e, CURLOPT_SSLKEY, spec_->x().tls_key_file.c_str());

  if (!spec_->x().basic_auth_user.empty()) {
    curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(e, CURLOPT_USERNAME, spec_->x().basic_auth_user.c_str());
    curl_easy_setopt(e, CURLOPT_PASSWORD, spec_->x().basic_auth_password.c_str());
  }
  // Refuses a declared Content-Length above the limit before reading; on_write
  // enforces it for bodies of unknown length. A HEAD response declares the
  // length of a body it does not have.
  if (spec_->method != "HEAD")
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(spec_->max_body_bytes));
}

// libcurl starts a transfer handed over from a direct hop as a first request
// and would send every custom header there. Following a redirect itself, it
// drops a custom Host for another host, and Authorization and Cookie for
// another host, port or scheme; so does this list.
curl_slist* HttpProbe::onward_headers(Onward onward) {
  curl_slist_free_all(std::exchange(onward_headers_, nullptr));
  for (const auto& line : spec_->x().header_lines) {
    const std::string_view name = header_name(line);
    if ((onward == Onward::kOtherHost && iequals(name, "Host")) || iequals(name, "Authorization") ||
        iequals(name, "Cookie"))
      continue;
    curl_slist* list = curl_slist_append(onward_headers_, line.c_str());
    if (!list) throw std::bad_alloc();
    onward_headers_ = list;
  }
  return onward_headers_;
}

void HttpProbe::reset_run_state() {
  phase_ = Phase::kResolving;
  body_.clear();
  body_bytes_ = 0;
  body_too_large_ = false;
  reason_.clear();
  tls_version_ = {};
  family_ = AF_UNSPEC;
  expiry_.clear();
  carry_ = Carry{};
}

void HttpProbe::start(DoneCallback done) {
  // The scheduler never overlaps runs; a second start would lose the first done.
  if (running_) cancel();
  running_ = true;
  started_ns_ = uv_hrtime();
  reset_run_state();
  if (spec_->direct) {
    direct_ = new Direct(this, std::move(done));
    direct_->begin(loop_, timeout_);
    return;
  }
  done_ = std::move(done);
  start_curl(spec_->url, spec_->max_redirects, timeout_.count(), Onward::kSameOrigin);
}

void HttpProbe::start_curl(const std::string& url, long max_redirects, int64_t timeout_ms,
                           Onward onward) {
  easy_ = curl_.acquire();
  try {
    configure(url, max_redirects, timeout_ms, onward);
    curl_.add(easy_, [this](int code) { finish(static_cast<CURLcode>(code)); });
  } catch (...) {
    curl_.release(std::exchange(easy_, nullptr));
    throw;
  }
}

void HttpProbe::continue_with_curl(const std::string& url, Onward onward, const Outcome& carry,
                                   DoneCallback& done) {
  carry_ = Carry{carry.resolve, carry.connect, carry.processing, carry.transfer, carry.redirects};
  phase_ = Phase::kResolving;
  const int64_t elapsed_ms = static_cast<int64_t>((uv_hrtime() - started_ns_) / 1000000);
  start_curl(url, spec_->max_redirects - carry.redirects,
             std::max<int64_t>(timeout_.count() - elapsed_ms, 1), onward);
  done_ = std::move(done);
}

void HttpProbe::cancel() {
  if (!running_) return;
  if (direct_) {
    direct_->abandon();
    direct_ = nullptr;
  } else if (easy_) {
    curl_.remove(easy_);
    curl_.release(easy_);
    easy_ = nullptr;
  }
  running_ = false;
  phase_ = Phase::kIdle;
  done_ = nullptr;
}

void HttpProbe::finish(CURLcode code) {
  ProbeResult r = curl_result(code);
  curl_.release(easy_);
  easy_ = nullptr;
  running_ = false;
  phase_ = Phase::kIdle;
  DoneCallback done = std::move(done_);
  done_ = nullptr;
  done(std::move(r));  // last: the callback may destroy this probe
}

std::string_view HttpProbe::phase_name(Phase p) {
  switch (p) {
    case Phase::kIdle: return "idle";
    case Phase::kResolving: return "resolving";
    case Phase::kConnecting: return "connecting";
    case Phase::kTls: return "TLS handshake";
    case Phase::kWaiting: return "waiting for response";
    case Phase::kHeaders: return "reading headers";
    case Phase::kBody: return "reading body";
  }
  return "idle";
}

size_t HttpProbe::on_write(char* data, size_t size, size_t n, void* p) noexcept {
  auto* self = static_cast<HttpProbe*>(p);
  const size_t len = size * n;
  self->phase_ = Phase::kBody;
  if (self->body_bytes_ + static_cast<int64_t>(len) > self->spec_->max_body_bytes) {
    self->body_too_large_ = true;
    return 0;  // curl aborts the transfer with CURLE_WRITE_ERROR
  }
  if (self->keep_body_) {
    try {
      self->body_.append(data, len);
    } catch (...) {
      return 0;
    }
  }
  self->body_bytes_ += static_cast<int64_t>(len);
  return len;
}

size_t HttpProbe::on_header(char* data, size_t size, size_t n, void* p) noexcept {
  auto* self = static_cast<HttpProbe*>(p);
  const std::string_view line(data, size * n);
  if (line.starts_with("HTTP/")) {
    // "HTTP/1.1 200 OK\r\n": every response of a redirect chain starts with one,
    // so the last one's reason phrase wins.
    self->phase_ = Phase::kHeaders;
    self->reason_.clear();
    size_t code_at = line.find(' ');
    size_t reason_at = code_at == line.npos ? line.npos : line.find(' ', code_at + 1);
    if (reason_at != line.npos) {
      std::string_view reason = line.substr(reason_at + 1);
      while (!reason.empty() &&
             (reason.back() == '\r' || reason.back() == '\n' || reason.back() == ' '))
        reason.remove_suffix(1);
      try {
        self->reason_.assign(reason.substr(0, 100));
      } catch (...) {
        // Out of memory: the summary goes without a reason phrase.
      }
    }
  } else if (line == "\r\n" || line == "\n") {
    self->phase_ = Phase::kBody;
  }
  return size * n;
}

curl_socket_t HttpProbe::on_open_socket(void* p, curlsocktype, curl_sockaddr* address) noexcept {
  // A new connection (the first, or one for a redirect): resolving is over, and
  // what is recorded about TLS must come from this connection only. The address
  // family is known here even if the connection then fails.
  auto* self = static_cast<HttpProbe*>(p);
  self->phase_ = Phase::kConnecting;
  self->family_ = address->family;
  self->tls_version_ = {};
  self->expiry_.clear();
  // CLOEXEC: exec probes spawn plugins, which must not inherit probe sockets.
  return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

CURLcode HttpProbe::on_ssl_ctx(CURL*, void* ssl_ctx, void* p) noexcept {
  // curl 7.88 with OpenSSL creates an SSL_CTX per connection, after TCP connect.
  auto* self = static_cast<HttpProbe*>(p);
  auto* ctx = static_cast<SSL_CTX*>(ssl_ctx);
  self->phase_ = Phase::kTls;
  tls::record_expiry(ctx);
  tls::attach(ctx, &self->expiry_);
  return CURLE_OK;
}

int HttpProbe::on_prereq(void* p, char*, char*, int, int) noexcept {
  // Connected (and handshaken): the live connection tells its TLS version.
  auto* self = static_cast<HttpProbe*>(p);
  self->phase_ = Phase::kWaiting;
  const curl_tlssessioninfo* info = nullptr;
  if (curl_easy_getinfo(self->easy_, CURLINFO_TLS_SSL_PTR, &info) == CURLE_OK && info &&
      info->backend == CURLSSLBACKEND_OPENSSL && info->internals) {
    self->tls_version_ = tls_version_name(SSL_version(static_cast<SSL*>(info->internals)));
  }
  return CURL_PREREQFUNC_OK;
}

std::string HttpProbe::expected_status() const {
  if (spec_->x().valid_status.empty()) return "2xx";
  return fmt::format("{}", fmt::join(spec_->x().valid_status, ", "));
}

std::string HttpProbe::error_summary(CURLcode code, long status) const {
  const std::string detail =
      one_line(error_ && error_[0] ? error_.get() : curl_easy_strerror(code));
  long os_errno = 0;
  curl_easy_getinfo(easy_, CURLINFO_OS_ERRNO, &os_errno);
  switch (code) {
    case CURLE_WRITE_ERROR:
    case CURLE_FILESIZE_EXCEEDED:
      if (body_too_large_ || code == CURLE_FILESIZE_EXCEEDED)
        return fmt::format("body larger than {} bytes", spec_->max_body_bytes);
      break;
    case CURLE_COULDNT_CONNECT:
      if (os_errno == ECONNREFUSED) return "connection refused";
      if (os_errno != 0)
        return fmt::format("cannot connect: {}",
                           lower_first(std::strerror(static_cast<int>(os_errno))));
      break;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
      if (os_errno == ECONNRESET) return "connection reset by peer";
      if (detail.starts_with("Too large response headers")) return std::string(kHeadersTooLarge);
      break;
    case CURLE_OUT_OF_MEMORY:
      // What libcurl returns for a header line that does not fit its buffer.
      if (phase_ == Phase::kWaiting || phase_ == Phase::kHeaders)
        return std::string(kHeaderLineTooLong);
      break;
    case CURLE_OPERATION_TIMEDOUT:
      return fmt::format("timed out after {} ms while {}", timeout_.count(), phase_name(phase_));
    case CURLE_TOO_MANY_REDIRECTS:
      return fmt::format("more than {} redirects", spec_->max_redirects);
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_WEIRD_SERVER_REPLY:
      // No status line (a status line without a reason phrase is one).
      if (status == 0 && phase_ != Phase::kBody)
        return fmt::format("not an HTTP response ({})", lower_first(detail));
      break;
    default: break;
  }
  // A TLS alert after the handshake (e.g. the server wants a client
  // certificate) surfaces as a failed SSL_read or SSL_write.
  if (is_tls_error(code) || detail.starts_with("OpenSSL SSL_"))
    return fmt::format("TLS: {}", tls_detail(detail));
  return lower_first(detail);
}

ProbeResult HttpProbe::curl_result(CURLcode code) const {
  Outcome o;
  long status = 0, version = 0, redirects = 0;
  curl_off_t content_length = -1, last_modified = -1;
  curl_off_t t_dns = 0, t_connect = 0, t_tls = 0, t_pretransfer = 0, t_first = 0, t_total = 0;
  const char* scheme = nullptr;
  const char* ip = nullptr;
  curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(easy_, CURLINFO_HTTP_VERSION, &version);
  curl_easy_getinfo(easy_, CURLINFO_REDIRECT_COUNT, &redirects);
  curl_easy_getinfo(easy_, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &content_length);
  curl_easy_getinfo(easy_, CURLINFO_FILETIME_T, &last_modified);
  curl_easy_getinfo(easy_, CURLINFO_NAMELOOKUP_TIME_T, &t_dns);
  curl_easy_getinfo(easy_, CURLINFO_CONNECT_TIME_T, &t_connect);
  curl_easy_getinfo(easy_, CURLINFO_APPCONNECT_TIME_T, &t_tls);
  curl_easy_getinfo(easy_, CURLINFO_PRETRANSFER_TIME_T, &t_pretransfer);
  curl_easy_getinfo(easy_, CURLINFO_STARTTRANSFER_TIME_T, &t_first);
  curl_easy_getinfo(easy_, CURLINFO_TOTAL_TIME_T, &t_total);
  curl_easy_getinfo(easy_, CURLINFO_SCHEME, &scheme);
  curl_easy_getinfo(easy_, CURLINFO_PRIMARY_IP, &ip);

  // blackbox phases from curl's cumulative timestamps (µs since the start of
  // each request, summed over redirects by curl, as blackbox sums them), plus
  // what a direct first hop measured before a redirect handed over to curl.
  auto seconds = [](curl_off_t us) { return us > 0 ? static_cast<double>(us) / 1e6 : 0.0; };
  o.resolve = carry_.resolve + seconds(t_dns);
  o.connect = carry_.connect + (t_connect > 0 ? seconds(t_connect - t_dns) : 0);
  o.tls = t_tls > 0 ? seconds(t_tls - t_connect) : 0;
  o.processing = carry_.processing + (t_first > 0 ? seconds(t_first - t_pretransfer) : 0);
  o.transfer = carry_.transfer + (t_first > 0 ? seconds(t_total - t_first) : 0);
  if (ip && *ip) {
    o.family = std::strchr(ip, ':') ? AF_INET6 : AF_INET;
  } else {
    o.family = family_;  // the connection failed
  }
  o.status = status;
  o.content_length = content_length;
  o.last_modified = last_modified;
  o.redirects = carry_.redirects + redirects;
  o.https = scheme && iequals(scheme, "https");
  switch (version) {
    case CURL_HTTP_VERSION_1_0: o.http_version = 1.0; break;
    case CURL_HTTP_VERSION_1_1: o.http_version = 1.1; break;
    case CURL_HTTP_VERSION_2_0: o.http_version = 2; break;
    case CURL_HTTP_VERSION_3: o.http_version = 3; break;
  }
  if (code != CURLE_OK) {
    o.error = error_summary(code, status);
    o.timed_out = code == CURLE_OPERATION_TIMEDOUT;
  }
  return evaluate(o);
}

ProbeResult HttpProbe::evaluate(const Outcome& o) const {
  ProbeResult r;
  r.samples.reserve(20);
  r.duration_seconds = static_cast<double>(uv_hrtime() - started_ns_) / 1e9;
  r.add(kPhaseDuration, o.resolve, "resolve");
  r.add(kPhaseDuration, o.connect, "connect");
  r.add(kPhaseDuration, o.tls, "tls");
  r.add(kPhaseDuration, o.processing, "processing");
  r.add(kPhaseDuration, o.transfer, "transfer");
  r.add(metrics::kDnsLookupTime, o.resolve);
  if (o.family == AF_INET || o.family == AF_INET6)
    r.add(metrics::kIpProtocol, o.family == AF_INET6 ? 6 : 4);

  const long status = o.status;
  const bool responded = status > 0;
  r.add(kStatusCode, static_cast<double>(status));
  r.add(kContentLength, responded ? static_cast<double>(o.content_length) : 0);
  r.add(kBodyLength, static_cast<double>(body_bytes_));
  r.add(kRedirects, static_cast<double>(o.redirects));
  r.add(kSsl, responded && o.https ? 1 : 0);
  r.add(kHttpVersion, o.http_version);
  if (responded && o.last_modified >= 0) r.add(kLastModified, static_cast<double>(o.last_modified));
  if (!tls_version_.empty()) r.add(metrics::kTlsVersion, 1, std::string(tls_version_));
  expiry_.add_samples(r);

  bool regex_failed = false;
  if (!o.error.empty()) {
    r.summary = o.error;
    r.timed_out = o.timed_out;
  } else if (spec_->x().valid_status.empty()
                 ? status < 200 || status > 299
                 : std::find(spec_->x().valid_status.begin(), spec_->x().valid_status.end(),
                             status) == spec_->x().valid_status.end()) {
    r.summary = fmt::format("HTTP {}{}{} (expected {})", status, reason_.empty() ? "" : " ",
                            one_line(reason_), expected_status());
  } else {
    for (const auto& re : spec_->x().must_match) {
      std::string why;
      if (re.search(body_, &why)) continue;
      r.summary = why.empty() ? fmt::format("body does not match \"{}\"", re.pattern())
                              : fmt::format("body check \"{}\" failed: {}", re.pattern(), why);
      regex_failed = true;
      break;
    }
    for (const auto& re : spec_->x().must_not_match) {
      if (regex_failed) break;
      std::string why;
      const bool found = re.search(body_, &why);
      if (!found && why.empty()) continue;
      r.summary = found ? fmt::format("body matches \"{}\"", re.pattern())
                        : fmt::format("body check \"{}\" failed: {}", re.pattern(), why);
      regex_failed = true;
    }
    if (!regex_failed) {
      r.success = true;
      r.summary = fmt::format("HTTP {}{}{} in {} ms", status, reason_.empty() ? "" : " ",
                              one_line(reason_), std::llround(r.duration_seconds * 1000));
      if (o.redirects > 0)
        r.summary += fmt::format(" after {} redirect{}", o.redirects, o.redirects == 1 ? "" : "s");
    }
  }
  r.add(metrics::kFailedDueToRegex, regex_failed ? 1 : 0);
  r.state = r.success ? State::kOk : State::kCritical;
  return r;
}

std::unique_ptr<Probe> create(const ProbeContext& ctx, const CheckTarget& check,
                              const ProbeSpec& spec) {
  // Probes share the parsed spec instead of copying it (~0.5 KiB per check).
  return std::make_unique<HttpProbe>(ctx, check,
                                     static_cast<const HttpSpec&>(spec).shared_from_this());
}

}  // namespace

ProbeType http_probe_type() {
  return ProbeType{
      .name = "http",
      .summary =
          "HTTP(S) request: status, body content, redirects, timings, TLS certificate expiry",
      .keys = kKeys,
      .parse = &parse,
      .create = &create,
  };
}

}  // namespace wacht::probes
