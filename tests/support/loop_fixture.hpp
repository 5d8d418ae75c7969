#pragma once

#include <gtest/gtest.h>
#include <uv.h>

#include <chrono>
#include <functional>

namespace wacht::test {

// A real libuv loop per test. run_until() fails the test instead of hanging
// (a watchdog timer stops the loop), and TearDown asserts that every handle
// was closed: uv_loop_close() == 0.
class LoopTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Runs the loop until `done()` is true or `limit` passes; returns done().
  bool run_until(const std::function<bool()>& done,
                 std::chrono::milliseconds limit = std::chrono::seconds(10));
  // Runs the loop until no handle is left active (after closing objects).
  void drain();

  uv_loop_t* loop() { return &loop_; }

 private:
  uv_loop_t loop_{};
};

// Seconds since an arbitrary monotonic point, for measuring how long a run took.
double now_seconds();

}  // namespace wacht::test
