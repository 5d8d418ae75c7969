#include "support/loop_fixture.hpp"

namespace wacht::test {

void LoopTest::SetUp() { ASSERT_EQ(uv_loop_init(&loop_), 0); }

void LoopTest::TearDown() {
  drain();
  int rc = uv_loop_close(&loop_);
  if (rc != 0) {
    uv_walk(
        &loop_,
        [](uv_handle_t* h, void*) {
          ADD_FAILURE() << "handle left open: " << uv_handle_type_name(uv_handle_get_type(h));
        },
        nullptr);
  }
  EXPECT_EQ(rc, 0) << "handles left open at uv_loop_close";
}

bool LoopTest::run_until(const std::function<bool()>& done, std::chrono::milliseconds limit) {
  uint64_t deadline = uv_hrtime() + static_cast<uint64_t>(limit.count()) * 1000000ull;
  // A short repeating check timer keeps the loop alive while the condition is polled.
  uv_timer_t check;
  uv_timer_init(&loop_, &check);
  struct Ctx {
    const std::function<bool()>* done;
    uint64_t deadline;
  } ctx{&done, deadline};
  check.data = &ctx;
  uv_timer_start(
      &check,
      [](uv_timer_t* t) {
        auto* c = static_cast<Ctx*>(t->data);
        if ((*c->done)() || uv_hrtime() > c->deadline) uv_stop(t->loop);
      },
      1, 1);
  while (!done() && uv_hrtime() < deadline) {
    uv_run(&loop_, UV_RUN_DEFAULT);
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&check), nullptr);
  uv_run(&loop_, UV_RUN_NOWAIT);
  bool ok = done();
  if (!ok) ADD_FAILURE() << "watchdog: condition not reached within " << limit.count() << " ms";
  return ok;
}

void LoopTest::drain() {
  // Bounded: close callbacks need one iteration; a leaked active handle must
  // show up in TearDown, not hang the test.
  for (int i = 0; i < 50 && uv_run(&loop_, UV_RUN_NOWAIT) != 0; ++i) uv_sleep(5);
}

double now_seconds() { return static_cast<double>(uv_hrtime()) / 1e9; }

}  // namespace wacht::test
