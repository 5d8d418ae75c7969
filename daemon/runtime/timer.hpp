#pragma once

#include <cstdint>
#include <functional>

typedef struct uv_loop_s uv_loop_t;
typedef struct uv_timer_s uv_timer_t;

namespace wacht::runtime {

// An owned libuv timer. Destroying it stops the timer and closes the handle;
// the handle's memory is released in libuv's close callback, so a Timer may be
// destroyed from inside its own callback.
class Timer {
 public:
  using Callback = std::function<void()>;

  Timer(uv_loop_t* loop, Callback cb);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // (Re)arms the timer to fire once after `delay_ms`, or every `repeat_ms` if non-zero.
  void start(uint64_t delay_ms, uint64_t repeat_ms = 0);
  void stop();
  bool active() const;
  // Lets the loop exit while only this timer is left (for housekeeping timers).
  void unref();

 private:
  static void on_timer(uv_timer_t* handle);
  uv_timer_t* handle_;
  Callback cb_;
};

}  // namespace wacht::runtime
