#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "alerts/notification.hpp"

typedef struct uv_loop_s uv_loop_t;
namespace wacht::runtime {
class CurlMulti;
}

namespace wacht::alerts {

struct SmtpSettings {
  std::string host;
  uint16_t port = 587;
  enum class Tls {
    kStartTls,
    kImplicit,
    kNone
  } tls = Tls::kStartTls;  // STARTTLS required by default
  bool tls_insecure = false;
  std::string tls_ca_file;
  std::string username;  // AUTH only if set
  std::string password;  // read from a file by the config loader; never logged
  std::string from;      // "wacht <wacht@example.org>" or a bare address
  std::vector<std::string> to;
  std::string reply_to;
  std::string hello_name;  // EHLO name; empty = curl's default
  std::chrono::milliseconds timeout{30000};
};

// Email through libcurl's SMTP on the loop (CurlMulti). Builds an RFC 5322
// message (UTF-8 subject per RFC 2047, Date, Message-ID, In-Reply-To and
// References for threading, Reply-To) and classifies the result: a 5xx reply
// is kRejected, a 4xx reply, a connection or TLS failure or a timeout is
// kRetry. The notifier must be destroyed before `curl`.
std::unique_ptr<Notifier> make_smtp_notifier(uv_loop_t* loop, runtime::CurlMulti* curl,
                                             SmtpSettings settings);

// The full message as sent (headers + body), for tests and previews.
std::string render_email(const SmtpSettings& s, const Notification& n, int64_t now_ms);

// Writes each notification as one log line (spdlog, warn level) and always
// delivers: the receiver of the shipped default config, which has no SMTP.
std::unique_ptr<Notifier> make_log_notifier(uv_loop_t* loop);

}  // namespace wacht::alerts
