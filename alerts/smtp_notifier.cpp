#include "alerts/smtp_notifier.hpp"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <string_view>

#include "runtime/curl_multi.hpp"

namespace wacht::alerts {

namespace {

// The receiver's addresses and the message's own (the on-call person), once each.
std::vector<std::string> recipients(const SmtpSettings& s, const Notification& n) {
  std::vector<std::string> out = s.to;
  for (const auto& a : n.to)
    if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
  return out;
}

constexpr size_t kFoldAt = 78;     // RFC 5322's recommended line length
constexpr size_t kMaxReply = 200;  // of a server reply quoted in a detail
// 42 bytes make a 68-character encoded word ("=?UTF-8?B?" + 56 base64 + "?="),
// which fits a 78-character line even after "Reply-To: ".
constexpr size_t kEncodedWordBytes = 42;

bool is_ascii(std::string_view s) {
  for (unsigned char c : s) {
    if (c >= 0x80) return false;
  }
  return true;
}

// Header values come from config and alert text; a CR or LF in them would
// start a header of the attacker's choosing (or end the header block).
std::string one_line(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c == '\r' || c == '\n') c = ' ';
  }
  return out;
}

std::string without_space(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') out += c;
  }
  return out;
}

std::string base64(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(data.data()),
                          static_cast<int>(data.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

// RFC 2047 B-encoding in words that fit a folded line, split between UTF-8
// characters (never inside one, so each word decodes on its own), separated
// by spaces where the header may be folded.
std::string encode_words(std::string_view text) {
  auto continuation = [](char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; };
  std::string out;
  while (!text.empty()) {
    size_t n = std::min(text.size(), kEncodedWordBytes);
    while (n > 0 && n < text.size() && continuation(text[n])) --n;
    // Invalid UTF-8 (a run of continuation bytes) is split anywhere.
    if (n == 0) n = std::min(text.size(), kEncodedWordBytes);
    if (!out.empty()) out += ' ';
    out += "=?UTF-8?B?" + base64(text.substr(0, n)) + "?=";
    text.remove_prefix(n);
  }
  return out;
}

// A phrase (subject, display name) as it may appear in a header: unchanged
// if it is short-worded ASCII, else encoded words.
std::string encode_phrase(std::string_view text) {
  bool long_word = false;
  size_t run = 0;
  for (char c : text) {
    run = c == ' ' ? 0 : run + 1;
    long_word = long_word || run > kFoldAt - 10;
  }
  return is_ascii(text) && !long_word ? std::string(text) : encode_words(text);
}

// Folds a header at spaces so lines stay near 78 characters (the hard limit
// is 998); CRLF line ends.
std::string header(std::string_view name, std::string_view value) {
  std::string out(name);
  out += ':';
  size_t line = out.size();
  size_t pos = 0;
  while (pos <= value.size()) {
    size_t space = value.find(' ', pos);
    std::string_view word =
        value.substr(pos, space == std::string_view::npos ? value.npos : space - pos);
    if (line + 1 + word.size() > kFoldAt && line > name.size() + 1) {
      out += "\r\n";
      line = 0;
    }
    out += ' ';
    out += word;
    line += 1 + word.size();
    if (space == std::string_view::npos) break;
    pos = space + 1;
  }
  out += "\r\n";
  return out;
}

// The address part of "Name <addr>" or a bare address.
std::string address_of(std::string_view mailbox) {
  size_t open = mailbox.rfind('<');
  size_t close = mailbox.rfind('>');
  if (open != std::string_view::npos && close != std::string_view::npos && close > open) {
    return without_space(mailbox.substr(open + 1, close - open - 1));
  }
  return without_space(mailbox);
}

// "Name <addr>" with a non-ASCII name encoded and an ASCII name quoted when
// it holds characters that RFC 5322 does not allow in a bare phrase.
std::string format_mailbox(std::string_view mailbox) {
  std::string address = address_of(mailbox);  // not const: returned by move
  size_t open = mailbox.rfind('<');
  if (open == std::string_view::npos) return address;
  std::string name = one_line(mailbox.substr(0, open));
  while (!name.empty() && name.back() == ' ') name.pop_back();
  while (!name.empty() && name.front() == ' ') name.erase(0, 1);
  if (name.size() >= 2 && name.front() == '"' && name.back() == '"') {
    name = name.substr(1, name.size() - 2);
  }
  if (name.empty()) return "<" + address + ">";
  if (!is_ascii(name)) return encode_words(name) + " <" + address + ">";
  if (name.find_first_of("()<>[]:;@\\,.\"") != std::string::npos) {
    std::string quoted = "\"";
    for (char c : name) {
      if (c == '"' || c == '\\') quoted += '\\';
      quoted += c;
    }
    name = quoted + "\"";
  }
  return name + " <" + address + ">";
}

std::string rfc5322_date(int64_t unix_ms) {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  time_t t = static_cast<time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{}, {:02d} {} {:04d} {:02d}:{:02d}:{:02d} +0000", kDays[tm.tm_wday],
                     tm.tm_mday, kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                     tm.tm_sec);
}

// Quoted-printable (RFC 2045): 7-bit clean, so it passes servers without
// 8BITMIME, lines at most 76 characters, CRLF line ends whatever the body used.
std::string quoted_printable(std::string_view text) {
  std::string out;
  size_t line = 0;
  auto put = [&](std::string_view token) {
    if (line + token.size() > 75) {
      out += "=\r\n";  // soft line break
      line = 0;
    }
    out += token;
    line += token.size();
  };
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view row = text.substr(pos, nl == std::string_view::npos ? text.npos : nl - pos);
    if (!row.empty() && row.back() == '\r') row.remove_suffix(1);
    for (size_t i = 0; i < row.size(); ++i) {
      unsigned char c = static_cast<unsigned char>(row[i]);
      const bool last = i + 1 == row.size();
      // Trailing blanks are encoded because transports may strip them.
      if ((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !last)) {
        put(std::string_view(&row[i], 1));
      } else {
        put(fmt::format("={:02X}", c));
      }
    }
    out += "\r\n";
    line = 0;
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  return out;
}

// Classifies one finished transfer for the outbox. The detail is one short
// line for the operator: the server's own words where it refused, and never
// the password.
std::pair<Delivery, std::string> classify(CURLcode code, long smtp_code, std::string_view error,
                                          std::string_view reply, const SmtpSettings& s) {
  const std::string server = fmt::format("{}:{}", s.host, s.port);
  if (code == CURLE_OK) return {Delivery::kDelivered, fmt::format("accepted by {}", server)};
  const std::string why = error.empty() ? curl_easy_strerror(code) : std::string(error);
  // The reply line is only worth quoting if it is the refusal itself.
  const bool refused = smtp_code >= 400 && reply.rfind(std::to_string(smtp_code), 0) == 0;
  std::string detail;
  Delivery delivery = Delivery::kRetry;
  if (code == CURLE_USE_SSL_FAILED) {
    // Sending in plaintext instead would expose the password and the alert.
    detail = fmt::format(
        "{}: STARTTLS is required but the server does not offer it or refused it; not sending "
        "in plaintext",
        server);
  } else if (code == CURLE_LOGIN_DENIED) {
    // A wrong password is a configuration error: the notification stays
    // pending until it is fixed instead of being dropped as undeliverable.
    detail = fmt::format("{}: authentication as {} failed: {}", server, s.username,
                         refused ? std::string(reply) : why);
  } else {
    detail = refused ? fmt::format("{}: {} ({})", server, reply, why)
                     : fmt::format("{}: {}", server, why);
    if (smtp_code >= 500 && smtp_code < 600) delivery = Delivery::kRejected;
  }
  if (!s.password.empty()) {
    for (size_t at = detail.find(s.password); at != std::string::npos;
         at = detail.find(s.password)) {
      detail.replace(at, s.password.size(), "***");
    }
  }
  return {delivery, detail};
}

class SmtpNotifier final : public Notifier {
 public:
  SmtpNotifier(runtime::CurlMulti* curl, SmtpSettings settings)
      : curl_(curl), settings_(std::move(settings)) {
    const bool implicit = settings_.tls == SmtpSettings::Tls::kImplicit;
    const std::string host =
        settings_.host.find(':') != std::string::npos ? "[" + settings_.host + "]" : settings_.host;
    // curl takes the EHLO name from the URL path.
    url_ = fmt::format("{}://{}:{}/{}", implicit ? "smtps" : "smtp", host, settings_.port,
                       settings_.hello_name);
  }

  ~SmtpNotifier() override { cancel(); }

  void send(const Notification& n, Done done) override {
    cancel();
    // The Date is the alert's own time, so a notification delayed by an
    // outage shows when it happened, and every retry sends the same bytes.
    const int64_t date_ms = n.created_ms > 0
                                ? n.created_ms
                                : std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count();
    payload_ = render_email(settings_, n, date_ms);
    offset_ = 0;
    error_[0] = '\0';
    last_refusal_.clear();
    easy_ = curl_easy_init();
    if (!easy_) throw std::runtime_error("curl_easy_init failed");
    configure(n);
    done_ = std::move(done);
    curl_->add(easy_, [this](int code) { finish(static_cast<CURLcode>(code)); });
  }

  void cancel() override {
    if (!easy_) return;
    curl_->remove(easy_);
    release();
    done_ = nullptr;
  }

 private:
  void configure(const Notification& n) {
    const SmtpSettings& s = settings_;
    curl_easy_setopt(easy_, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(easy_, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    curl_easy_setopt(easy_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy_, CURLOPT_ERRORBUFFER, error_);
    curl_easy_setopt(easy_, CURLOPT_TIMEOUT_MS, static_cast<long>(s.timeout.count()));
    // One connection per mail, closed with QUIT right after the server's
    // answer: an idle cached SMTP connection would be closed later, while the
    // loop waits for a QUIT reply from a server that may have gone away.
    curl_easy_setopt(easy_, CURLOPT_FORBID_REUSE, 1L);
    if (s.tls != SmtpSettings::Tls::kNone) {
      // For smtp:// this makes STARTTLS mandatory: never a plaintext fallback.
      curl_easy_setopt(easy_, CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_ALL));
      curl_easy_setopt(easy_, CURLOPT_SSL_VERIFYPEER, s.tls_insecure ? 0L : 1L);
      curl_easy_setopt(easy_, CURLOPT_SSL_VERIFYHOST, s.tls_insecure ? 0L : 2L);
      if (!s.tls_ca_file.empty()) curl_easy_setopt(easy_, CURLOPT_CAINFO, s.tls_ca_file.c_str());
    }
    if (!s.username.empty()) {
      curl_easy_setopt(easy_, CURLOPT_USERNAME, s.username.c_str());
      curl_easy_setopt(easy_, CURLOPT_PASSWORD, s.password.c_str());
    }
    mail_from_ = "<" + address_of(s.from) + ">";
    curl_easy_setopt(easy_, CURLOPT_MAIL_FROM, mail_from_.c_str());
    for (const std::string& to : recipients(s, n)) {
      rcpt_ = curl_slist_append(rcpt_, ("<" + address_of(to) + ">").c_str());
    }
    curl_easy_setopt(easy_, CURLOPT_MAIL_RCPT, rcpt_);
    // One unknown address must not keep the alert from the other on-call
    // staff; the send fails only if every recipient is refused. (Debian 12's
    // curl spells the option with three Ls.)
    curl_easy_setopt(easy_, CURLOPT_MAIL_RCPT_ALLLOWFAILS, 1L);
    curl_easy_setopt(easy_, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(easy_, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(payload_.size()));
    curl_easy_setopt(easy_, CURLOPT_READFUNCTION, &SmtpNotifier::read_payload);
    curl_easy_setopt(easy_, CURLOPT_READDATA, this);
    // curl hands every SMTP reply line to the header callback.
    curl_easy_setopt(easy_, CURLOPT_HEADERFUNCTION, &SmtpNotifier::on_reply);
    curl_easy_setopt(easy_, CURLOPT_HEADERDATA, this);
  }

  static size_t read_payload(char* buffer, size_t size, size_t count, void* userp) noexcept {
    auto* self = static_cast<SmtpNotifier*>(userp);
    size_t n = std::min(size * count, self->payload_.size() - self->offset_);
    // curl's buffer holds bytes and a length, not a C string.
    // NOLINTNEXTLINE(bugprone-not-null-terminated-result)
    std::memcpy(buffer, self->payload_.data() + self->offset_, n);
    self->offset_ += n;
    return n;
  }

  // Keeps the server's last 4xx or 5xx reply line, to quote it when it
  // refuses the mail (the QUIT that follows would overwrite a plain "last line").
  static size_t on_reply(char* buffer, size_t size, size_t count, void* userp) noexcept {
    auto* self = static_cast<SmtpNotifier*>(userp);
    std::string_view line(buffer, size * count);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
    if (!line.empty() && (line[0] == '4' || line[0] == '5')) {
      self->last_refusal_.assign(line.substr(0, kMaxReply));
    }
    return size * count;
  }

  void finish(CURLcode code) {
    long smtp_code = 0;
    curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &smtp_code);
    auto [delivery, detail] = classify(code, smtp_code, error_, last_refusal_, settings_);
    release();
    Done done = std::move(done_);
    done_ = nullptr;
    if (done) done(delivery, std::move(detail));
  }

  void release() {
    curl_easy_cleanup(easy_);
    easy_ = nullptr;
    curl_slist_free_all(rcpt_);
    rcpt_ = nullptr;
  }

  runtime::CurlMulti* curl_;
  SmtpSettings settings_;
  std::string url_;
  std::string mail_from_;
  std::string payload_;
  size_t offset_ = 0;
  CURL* easy_ = nullptr;  // only while a send is in flight
  curl_slist* rcpt_ = nullptr;
  char error_[CURL_ERROR_SIZE] = {};
  std::string last_refusal_;
  Done done_;
};

}  // namespace

std::string render_email(const SmtpSettings& s, const Notification& n, int64_t now_ms) {
  std::string to;
  for (const std::string& rcpt : recipients(s, n))
    to += (to.empty() ? "" : ", ") + format_mailbox(rcpt);
  std::string m;
  m += header("From", format_mailbox(s.from));
  m += header("To", to);
  if (!s.reply_to.empty()) m += header("Reply-To", format_mailbox(s.reply_to));
  m += header("Subject", encode_phrase(one_line(n.subject)));
  m += header("Date", rfc5322_date(now_ms));
  m += header("Message-ID", without_space(n.message_id));
  if (!n.in_reply_to.empty()) {
    m += header("In-Reply-To", without_space(n.in_reply_to));
    m += header("References", without_space(n.in_reply_to));
  }
  // RFC 3834: tells vacation responders and ticket systems not to answer.
  m += header("Auto-Submitted", "auto-generated");
  m += header("MIME-Version", "1.0");
  m += header("Content-Type", "text/plain; charset=utf-8");
  m += header("Content-Transfer-Encoding", "quoted-printable");
  m += "\r\n";
  m += quoted_printable(n.body);
  return m;
}

std::unique_ptr<Notifier> make_smtp_notifier(uv_loop_t* /*loop*/, runtime::CurlMulti* curl,
                                             SmtpSettings settings) {
  return std::make_unique<SmtpNotifier>(curl, std::move(settings));
}

}  // namespace wacht::alerts
