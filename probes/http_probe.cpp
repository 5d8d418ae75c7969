#include "probes/http_probe.hpp"

#include "probes/common_metrics.hpp"

#include <curl/curl.h>
#include <fmt/format.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <chrono>
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

struct HttpSpec final : ProbeSpec {
  std::string url;                        // what curl requests (host replaced by tls_server_name)
  std::string connect_to;                 // CURLOPT_CONNECT_TO entry for tls_server_name
  std::vector<std::string> header_lines;  // "Name: value", including a Host for tls_server_name
  std::string method = "GET";
  std::optional<std::string> body;
  std::vector<int64_t> valid_status;  // empty: any 2xx
  std::vector<runtime::Regex> must_match;
  std::vector<runtime::Regex> must_not_match;
  bool follow_redirects = true;
  int64_t max_redirects = 10;
  long ip_resolve = CURL_IPRESOLVE_WHATEVER;  // from ip_protocol
  bool tls_insecure = false;
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string basic_auth_user;
  std::string basic_auth_password;  // secret: never log or format it
  int64_t max_body_bytes = kDefaultMaxBodyBytes;
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
    spec_.header_lines.push_back("Host: " + host + (explicit_port ? ":" + *explicit_port : ""));
    spec_.connect_to = fmt::format("{}:{}:{}:{}", *server_name, port, host, port);
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
          std::erase_if(spec_.header_lines,
                        [](const std::string& l) { return l.starts_with("Host: "); });
        // "Name;" is curl's way to send a header with an empty value.
        spec_.header_lines.push_back(value.empty() ? name + ";" : name + ": " + value);
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
  bool ok_ = true;
};

std::shared_ptr<const ProbeSpec> parse(runtime::TableReader& reader, const std::string& target) {
  auto spec = std::make_shared<HttpSpec>();
  SpecParser p(reader, *spec);

  p.target(target, p.string("tls_server_name"));
  p.headers();

  if (auto method = p.string("method")) {
    if (!is_token(*method)) p.error("method", fmt::format("'{}' is not an HTTP method", *method));
    spec->method = *method;
  }
  spec->body = p.string("body");
  if (auto codes = p.checked("valid_status", reader.get_int_array("valid_status", 100, 599))) {
    if (codes->empty()) p.error("valid_status", "'valid_status' must not be empty");
    spec->valid_status = std::move(*codes);
  }
  p.regexes("body_must_match", spec->must_match);
  p.regexes("body_must_not_match", spec->must_not_match);

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
  spec->tls_ca_file = p.readable_file("tls_ca_file");
  spec->tls_cert_file = p.readable_file("tls_cert_file");
  spec->tls_key_file = p.readable_file("tls_key_file");
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
    spec->basic_auth_user = *user;
    if (auto password = p.read_password(*password_file))
      spec->basic_auth_password = std::move(*password);
  }

  if (auto v = p.checked("max_body_bytes", reader.get_int("max_body_bytes", 1, int64_t{1} << 30)))
    spec->max_body_bytes = *v;

  if (!p.ok()) return nullptr;
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

class HttpProbe final : public Probe {
 public:
  HttpProbe(const ProbeContext& ctx, const CheckTarget& check, const HttpSpec& spec);
  ~HttpProbe() override;
  HttpProbe(const HttpProbe&) = delete;
  HttpProbe& operator=(const HttpProbe&) = delete;

  void start(DoneCallback done) override;
  void cancel() override;
  std::string_view phase() const override { return phase_name(phase_); }

 private:
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

  void configure();
  void finish(CURLcode code);
  ProbeResult result(CURLcode code) const;
  std::string error_summary(CURLcode code) const;
  std::string expected_status() const;

  runtime::CurlMulti& curl_;
  const std::chrono::milliseconds timeout_;
  const HttpSpec spec_;
  const bool keep_body_;  // only regexes need the body itself
  CURL* easy_ = nullptr;  // from the pool while a run is in flight
  curl_slist* headers_ = nullptr;
  curl_slist* connect_to_ = nullptr;
  char error_[CURL_ERROR_SIZE] = {};

  // State of the current run, reset by start().
  DoneCallback done_;
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
};

HttpProbe::HttpProbe(const ProbeContext& ctx, const CheckTarget& check, const HttpSpec& spec)
    : curl_(*ctx.curl),
      timeout_(check.timeout),
      spec_(spec),
      keep_body_(!spec.must_match.empty() || !spec.must_not_match.empty()) {
  for (const auto& line : spec_.header_lines) headers_ = curl_slist_append(headers_, line.c_str());
  if (!spec_.connect_to.empty())
    connect_to_ = curl_slist_append(connect_to_, spec_.connect_to.c_str());
}

HttpProbe::~HttpProbe() {
  cancel();
  curl_slist_free_all(headers_);
  curl_slist_free_all(connect_to_);
}

// Sets up a pooled easy handle for this check; done for every run because the
// handle is shared with other checks between runs.
void HttpProbe::configure() {
  CURL* e = easy_;
  curl_easy_setopt(e, CURLOPT_URL, spec_.url.c_str());
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, error_);
  // The scheduler cancels at the check's timeout; this is the safety net.
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_.count()));
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
  if (spec_.method == "HEAD") {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (spec_.method != (spec_.body ? "POST" : "GET")) {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, spec_.method.c_str());
  }
  if (spec_.body) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(spec_.body->size()));
    curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, spec_.body->c_str());
  }
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers_);
  if (connect_to_) curl_easy_setopt(e, CURLOPT_CONNECT_TO, connect_to_);

  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, spec_.follow_redirects ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_MAXREDIRS, static_cast<long>(spec_.max_redirects));
  curl_easy_setopt(e, CURLOPT_IPRESOLVE, spec_.ip_resolve);

  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, spec_.tls_insecure ? 0L : 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, spec_.tls_insecure ? 0L : 2L);
  if (!spec_.tls_ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, spec_.tls_ca_file.c_str());
  if (!spec_.tls_cert_file.empty())
    curl_easy_setopt(e, CURLOPT_SSLCERT, spec_.tls_cert_file.c_str());
  if (!spec_.tls_key_file.empty()) curl_easy_setopt(e, CURLOPT_SSLKEY, spec_.tls_key_file.c_str());

  if (!spec_.basic_auth_user.empty()) {
    curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(e, CURLOPT_USERNAME, spec_.basic_auth_user.c_str());
    curl_easy_setopt(e, CURLOPT_PASSWORD, spec_.basic_auth_password.c_str());
  }
  // Refuses a declared Content-Length above the limit before reading; on_write
  // enforces it for bodies of unknown length. A HEAD response declares the
  // length of a body it does not have.
  if (spec_.method != "HEAD")
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(spec_.max_body_bytes));
}

void HttpProbe::start(DoneCallback done) {
  // The scheduler never overlaps runs; a second start would lose the first done.
  if (running_) cancel();
  done_ = std::move(done);
  running_ = true;
  phase_ = Phase::kResolving;
  started_ns_ = uv_hrtime();
  body_.clear();
  body_bytes_ = 0;
  body_too_large_ = false;
  reason_.clear();
  tls_version_ = {};
  family_ = AF_UNSPEC;
  expiry_.clear();
  error_[0] = '\0';
  easy_ = curl_.acquire();
  configure();
  curl_.add(easy_, [this](int code) { finish(static_cast<CURLcode>(code)); });
}

void HttpProbe::cancel() {
  if (!running_) return;
  curl_.remove(easy_);
  curl_.release(easy_);
  easy_ = nullptr;
  running_ = false;
  phase_ = Phase::kIdle;
  done_ = nullptr;
}

void HttpProbe::finish(CURLcode code) {
  ProbeResult r = result(code);
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
  if (self->body_bytes_ + static_cast<int64_t>(len) > self->spec_.max_body_bytes) {
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
  if (spec_.valid_status.empty()) return "2xx";
  return fmt::format("{}", fmt::join(spec_.valid_status, ", "));
}

std::string HttpProbe::error_summary(CURLcode code) const {
  const std::string detail = one_line(error_[0] ? error_ : curl_easy_strerror(code));
  long os_errno = 0;
  curl_easy_getinfo(easy_, CURLINFO_OS_ERRNO, &os_errno);
  switch (code) {
    case CURLE_WRITE_ERROR:
    case CURLE_FILESIZE_EXCEEDED:
      if (body_too_large_ || code == CURLE_FILESIZE_EXCEEDED)
        return fmt::format("body larger than {} bytes", spec_.max_body_bytes);
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
      break;
    case CURLE_OPERATION_TIMEDOUT:
      return fmt::format("timed out after {} ms while {}", timeout_.count(), phase_name(phase_));
    case CURLE_TOO_MANY_REDIRECTS:
      return fmt::format("more than {} redirects", spec_.max_redirects);
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_WEIRD_SERVER_REPLY:
      if (reason_.empty() && phase_ != Phase::kBody)
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

ProbeResult HttpProbe::result(CURLcode code) const {
  ProbeResult r;
  r.duration_seconds = static_cast<double>(uv_hrtime() - started_ns_) / 1e9;

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
  // each request, summed over redirects by curl, as blackbox sums them).
  auto seconds = [](curl_off_t us) { return us > 0 ? static_cast<double>(us) / 1e6 : 0.0; };
  const double resolve = seconds(t_dns);
  const double connect = t_connect > 0 ? seconds(t_connect - t_dns) : 0;
  const double tls = t_tls > 0 ? seconds(t_tls - t_connect) : 0;
  const double processing = t_first > 0 ? seconds(t_first - t_pretransfer) : 0;
  const double transfer = t_first > 0 ? seconds(t_total - t_first) : 0;
  r.add(kPhaseDuration, resolve, "resolve");
  r.add(kPhaseDuration, connect, "connect");
  r.add(kPhaseDuration, tls, "tls");
  r.add(kPhaseDuration, processing, "processing");
  r.add(kPhaseDuration, transfer, "transfer");
  r.add(metrics::kDnsLookupTime, resolve);
  if (ip && *ip) {
    r.add(metrics::kIpProtocol, std::strchr(ip, ':') ? 6 : 4);
  } else if (family_ == AF_INET || family_ == AF_INET6) {
    r.add(metrics::kIpProtocol, family_ == AF_INET6 ? 6 : 4);  // the connection failed
  }

  const bool responded = status > 0;
  r.add(kStatusCode, static_cast<double>(status));
  r.add(kContentLength, responded ? static_cast<double>(content_length) : 0);
  r.add(kBodyLength, static_cast<double>(body_bytes_));
  r.add(kRedirects, static_cast<double>(redirects));
  r.add(kSsl, responded && scheme && iequals(scheme, "https") ? 1 : 0);
  double http_version = 0;
  switch (version) {
    case CURL_HTTP_VERSION_1_0: http_version = 1.0; break;
    case CURL_HTTP_VERSION_1_1: http_version = 1.1; break;
    case CURL_HTTP_VERSION_2_0: http_version = 2; break;
    case CURL_HTTP_VERSION_3: http_version = 3; break;
  }
  r.add(kHttpVersion, http_version);
  if (responded && last_modified >= 0) r.add(kLastModified, static_cast<double>(last_modified));
  if (!tls_version_.empty()) r.add(metrics::kTlsVersion, 1, std::string(tls_version_));
  expiry_.add_samples(r);

  bool regex_failed = false;
  if (code != CURLE_OK) {
    r.summary = error_summary(code);
    r.timed_out = code == CURLE_OPERATION_TIMEDOUT;
  } else if (spec_.valid_status.empty()
                 ? status < 200 || status > 299
                 : std::find(spec_.valid_status.begin(), spec_.valid_status.end(), status) ==
                       spec_.valid_status.end()) {
    r.summary = fmt::format("HTTP {}{}{} (expected {})", status, reason_.empty() ? "" : " ",
                            one_line(reason_), expected_status());
  } else {
    for (const auto& re : spec_.must_match) {
      std::string why;
      if (re.search(body_, &why)) continue;
      r.summary = why.empty() ? fmt::format("body does not match \"{}\"", re.pattern())
                              : fmt::format("body check \"{}\" failed: {}", re.pattern(), why);
      regex_failed = true;
      break;
    }
    for (const auto& re : spec_.must_not_match) {
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
      r.summary =
          fmt::format("HTTP {}{}{} in {} ms", status, reason_.empty() ? "" : " ", one_line(reason_),
                      static_cast<int64_t>(r.duration_seconds * 1000 + 0.5));
      if (redirects > 0)
        r.summary += fmt::format(" after {} redirect{}", redirects, redirects == 1 ? "" : "s");
    }
  }
  r.add(metrics::kFailedDueToRegex, regex_failed ? 1 : 0);
  r.state = r.success ? State::kOk : State::kCritical;
  return r;
}

std::unique_ptr<Probe> create(const ProbeContext& ctx, const CheckTarget& check,
                              const ProbeSpec& spec) {
  return std::make_unique<HttpProbe>(ctx, check, static_cast<const HttpSpec&>(spec));
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
