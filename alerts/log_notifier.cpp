#include <spdlog/spdlog.h>

#include <algorithm>

#include "alerts/smtp_notifier.hpp"
#include "runtime/timer.hpp"

namespace wacht::alerts {

namespace {

// The shipped default receiver: the notification goes to the daemon's log
// (journald), which always "delivers". The result still arrives on a later
// loop iteration, as the Notifier contract promises every caller.
class LogNotifier final : public Notifier {
 public:
  explicit LogNotifier(uv_loop_t* loop) : timer_(loop, [this] { deliver(); }) {}

  void send(const Notification& n, Done done) override {
    std::string body = n.body;
    body.erase(std::remove(body.begin(), body.end(), '\r'), body.end());
    // One line per notification, so that log tools see one event.
    for (size_t at = body.find('\n'); at != std::string::npos; at = body.find('\n', at)) {
      body.replace(at, 1, " | ");
    }
    std::string subject = n.subject;
    std::replace_if(
        subject.begin(), subject.end(), [](char c) { return c == '\r' || c == '\n'; }, ' ');
    line_ = fmt::format("notification to {} [{}] {}: {} {}", n.receiver, n.kind, subject, body,
                        n.message_id);
    done_ = std::move(done);
    // Not 0: libuv runs a timer armed with 0 from a timer callback in the same
    // pass, and the outbox sends the next notification from one too, so a
    // backlog of logged notifications would be drained without the loop ever
    // polling for I/O (probes, the API) in between. 1 ms puts the result on
    // the next loop iteration, after a poll, as the comment above promises.
    timer_.start(1);
  }

  void cancel() override {
    timer_.stop();
    done_ = nullptr;
  }

 private:
  void deliver() noexcept {
    try {
      spdlog::warn("{}", line_);
      Done done = std::move(done_);
      done_ = nullptr;
      if (done) done(Delivery::kDelivered, "logged");
    } catch (const std::exception& e) {
      spdlog::error("log notifier: {}", e.what());
    }
  }

  runtime::Timer timer_;
  std::string line_;
  Done done_;
};

}  // namespace

std::unique_ptr<Notifier> make_log_notifier(uv_loop_t* loop) {
  return std::make_unique<LogNotifier>(loop);
}

}  // namespace wacht::alerts
