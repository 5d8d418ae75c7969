#include "alerts/webhook_notifier.hpp"

#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <ctime>
#include <new>
#include <nlohmann/json.hpp>
#include <string_view>

#include "runtime/curl_multi.hpp"
#include "version.hpp"

namespace wacht::alerts {

namespace {

constexpr size_t kMaxQuoted = 200;  // bytes of a response quoted in a detail

// Header values come from alert data and files; a CR or LF would start a
// header of someone else's choosing.
std::string header_value(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c != '\r' && c != '\n') out += c;
  }
  return out;
}

void redact(std::string& text, const std::string& secret) {
  if (secret.empty()) return;
  for (size_t at = text.find(secret); at != std::string::npos; at = text.find(secret, at + 3)) {
    text.replace(at, secret.size(), "***");
  }
}

// At most `max` bytes of `raw` fit for a one-line log: control characters
// become spaces, bytes that are not UTF-8 become '?', and no character is cut.
std::string printable(std::string_view raw, size_t max) {
  std::string out;
  size_t i = 0;
  while (i < raw.size()) {
    const auto c = static_cast<unsigned char>(raw[i]);
    size_t len = c < 0x80                 ? 1
                 : c >= 0xC2 && c <= 0xDF ? 2
                 : c >= 0xE0 && c <= 0xEF ? 3
                 : c >= 0xF0 && c <= 0xF4 ? 4
                                          : 0;
    for (size_t k = 1; k < len; ++k) {
      if (i + k >= raw.size() || (static_cast<unsigned char>(raw[i + k]) & 0xC0) != 0x80) len = 0;
    }
    if (out.size() + std::max<size_t>(len, 1) > max) break;
    if (len == 0) {
      out += '?';
      ++i;
    } else if (len == 1) {
      out += c < 0x20 || c == 0x7F ? ' ' : static_cast<char>(c);
      ++i;
    } else {
      out.append(raw.substr(i, len));
      i += len;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  while (!out.empty() && out.front() == ' ') out.erase(0, 1);
  return out;
}

// "https://hooks.example.org:443" of a URL: enough to tell receivers apart,
// without a path or query that may hold a secret.
std::string server_of(const std::string& url) {
  std::string out = "webhook";
  CURLU* u = curl_url();
  if (!u) return out;
  char* scheme = nullptr;
  char* host = nullptr;
  char* port = nullptr;
  if (curl_url_set(u, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
    out = fmt::format("{}://{}:{}", scheme, host, port);
  }
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_url_cleanup(u);
  return out;
}

Delivery classify_status(long status) {
  if (status >= 200 && status < 300) return Delivery::kDelivered;
  if (status >= 400 && status < 500 && status != 408 && status != 429) return Delivery::kRejected;
  // 408, 429, 5xx; and a 1xx or 3xx, which a working receiver does not send
  // to a POST: kept pending until the URL is fixed rather than dropped.
  return Delivery::kRetry;
}

class WebhookNotifier final : public Notifier {
 public:
  WebhookNotifier(runtime::CurlMulti* curl, WebhookSettings settings)
      : curl_(curl),
        settings_(std::move(settings)),
        server_(server_of(settings_.url)),
        user_agent_(std::string("wacht/") + kVersion) {}

  ~WebhookNotifier() override { cancel(); }

  void send(const Notification& n, Done done) override {
    cancel();
    body_ = n.body;
    response_.clear();
    response_bytes_ = 0;
    too_large_ = false;
    error_[0] = '\0';
    curl_slist* headers = append(nullptr, "Content-Type: application/json");
    // curl waits up to a second for "100 Continue" before sending a larger body.
    headers = append(headers, "Expect:");
    if (!n.message_id.empty()) {
      headers = append(headers, "Idempotency-Key: " + header_value(n.message_id));
    }
    if (!settings_.bearer_token.empty()) {
      headers = append(headers, "Authorization: Bearer " + header_value(settings_.bearer_token));
    }
    headers_ = headers;
    easy_ = curl_->acquire();
    configure();
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
  static curl_slist* append(curl_slist* list, const std::string& line) {
    curl_slist* out = curl_slist_append(list, line.c_str());
    if (!out) {
      curl_slist_free_all(list);
      throw std::bad_alloc();
    }
    return out;
  }

  void configure() {
    const WebhookSettings& s = settings_;
    CURL* e = easy_;
    curl_easy_setopt(e, CURLOPT_URL, s.url.c_str());
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, error_);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(s.timeout.count()));
    curl_easy_setopt(e, CURLOPT_USERAGENT, user_agent_.c_str());
    // No proxy is configured for a receiver, so none is taken from the
    // environment either: the alert goes where the config says.
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body_.data());
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body_.size()));
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers_);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &WebhookNotifier::on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, this);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, s.tls_insecure ? 0L : 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, s.tls_insecure ? 0L : 2L);
    if (!s.tls_ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, s.tls_ca_file.c_str());
  }

  // Keeps the start of the response, enough to quote 200 bytes even after a
  // token echoed by the receiver is cut out of it.
  static size_t on_write(char* data, size_t size, size_t n, void* p) noexcept {
    auto* self = static_cast<WebhookNotifier*>(p);
    const size_t len = size * n;
    const size_t keep = kMaxQuoted + self->settings_.bearer_token.size();
    if (self->response_.size() < keep) {
      try {
        self->response_.append(data, std::min(len, keep - self->response_.size()));
      } catch (...) {
        // Out of memory: the detail goes without the response.
      }
    }
    self->response_bytes_ += static_cast<int64_t>(len);
    if (self->response_bytes_ > self->settings_.max_body_bytes) {
      self->too_large_ = true;
      return 0;  // curl ends the transfer with CURLE_WRITE_ERROR
    }
    return len;
  }

  std::pair<Delivery, std::string> classify(CURLcode code) {
    long status = 0;
    curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &status);
    std::string detail;
    Delivery delivery = Delivery::kRetry;
    // A response cut at max_body_bytes still has its status.
    if ((code == CURLE_OK || (code == CURLE_WRITE_ERROR && too_large_)) && status > 0) {
      delivery = classify_status(status);
      std::string quoted = response_;
      redact(quoted, settings_.bearer_token);
      // A token prefix where the kept bytes end would escape the redaction.
      const std::string& token = settings_.bearer_token;
      for (size_t k = std::min(token.size(), quoted.size()); k > 0; --k) {
        if (quoted.compare(quoted.size() - k, k, token, 0, k) == 0) {
          quoted.resize(quoted.size() - k);
          break;
        }
      }
      quoted = printable(quoted, kMaxQuoted);
      detail = fmt::format("{}: HTTP {}", server_, status);
      if (!quoted.empty()) detail += ": " + quoted;
    } else {
      detail = fmt::format("{}: {}", server_,
                           printable(error_[0] ? error_ : curl_easy_strerror(code), kMaxQuoted));
    }
    redact(detail, settings_.bearer_token);
    return {delivery, detail};
  }

  void finish(CURLcode code) {
    auto [delivery, detail] = classify(code);
    release();
    Done done = std::move(done_);
    done_ = nullptr;
    if (done) done(delivery, std::move(detail));  // last: it may destroy this notifier
  }

  void release() {
    curl_->release(easy_);
    easy_ = nullptr;
    curl_slist_free_all(headers_);
    headers_ = nullptr;
  }

  runtime::CurlMulti* curl_;
  WebhookSettings settings_;
  std::string server_;
  std::string user_agent_;
  std::string body_;
  std::string response_;
  int64_t response_bytes_ = 0;
  bool too_large_ = false;
  CURL* easy_ = nullptr;  // only while a send is in flight
  curl_slist* headers_ = nullptr;
  char error_[CURL_ERROR_SIZE] = {};
  Done done_;
};

nlohmann::ordered_json labels_json(const Labels& labels) {
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  for (const auto& [name, value] : labels) out[name] = value;
  return out;
}

// The labels every alert has with the same value.
Labels common(const std::vector<WebhookAlert>& alerts, Labels WebhookAlert::*member) {
  if (alerts.empty()) return {};
  Labels out = alerts.front().*member;
  for (const WebhookAlert& a : alerts) {
    std::erase_if(out, [&](const auto& label) {
      auto it = (a.*member).find(label.first);
      return it == (a.*member).end() || it->second != label.second;
    });
  }
  return out;
}

}  // namespace

std::unique_ptr<Notifier> make_webhook_notifier(uv_loop_t* /*loop*/, runtime::CurlMulti* curl,
                                                WebhookSettings settings) {
  return std::make_unique<WebhookNotifier>(curl, std::move(settings));
}

std::string rfc3339(int64_t unix_ms) {
  const int64_t seconds = unix_ms >= 0 ? unix_ms / 1000 : (unix_ms - 999) / 1000;
  const int64_t ms = unix_ms - seconds * 1000;
  const time_t t = static_cast<time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::string out = fmt::format("{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}", tm.tm_year + 1900,
                                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  if (ms != 0) {
    std::string fraction = fmt::format(".{:03d}", ms);
    while (fraction.back() == '0') fraction.pop_back();
    out += fraction;
  }
  return out + "Z";
}

std::string alert_fingerprint(const Labels& labels) {
  // prometheus/common model.LabelSet.Fingerprint: FNV-1a with a 0xFF byte
  // after every name and value; a std::map iterates in sorted order.
  uint64_t hash = 14695981039346656037ull;
  auto add = [&hash](std::string_view bytes) {
    for (unsigned char c : bytes) {
      hash ^= c;
      hash *= 1099511628211ull;
    }
  };
  const std::string_view separator("\xff", 1);
  for (const auto& [name, value] : labels) {
    add(name);
    add(separator);
    add(value);
    add(separator);
  }
  return fmt::format("{:016x}", hash);
}

std::string webhook_payload(const WebhookMessage& m) {
  bool firing = false;
  nlohmann::ordered_json alerts = nlohmann::ordered_json::array();
  for (const WebhookAlert& a : m.alerts) {
    const bool resolved = a.ends_at_ms != 0;
    firing = firing || !resolved;
    alerts.push_back({
        {"status", resolved ? "resolved" : "firing"},
        {"labels", labels_json(a.labels)},
        {"annotations", labels_json(a.annotations)},
        {"startsAt", rfc3339(a.starts_at_ms)},
        {"endsAt", resolved ? rfc3339(a.ends_at_ms) : "0001-01-01T00:00:00Z"},
        {"generatorURL", a.generator_url},
        {"fingerprint", alert_fingerprint(a.labels)},
    });
  }
  // Alertmanager's field order, for people comparing the two.
  const nlohmann::ordered_json payload = {
      {"receiver", m.receiver},
      {"status", firing ? "firing" : "resolved"},
      {"alerts", std::move(alerts)},
      {"groupLabels", labels_json(m.group_labels)},
      {"commonLabels", labels_json(common(m.alerts, &WebhookAlert::labels))},
      {"commonAnnotations", labels_json(common(m.alerts, &WebhookAlert::annotations))},
      {"externalURL", m.external_url},
      {"version", "4"},
      {"groupKey", m.group_key},
      {"truncatedAlerts", 0},
  };
  return payload.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace wacht::alerts
