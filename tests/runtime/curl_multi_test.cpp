#include "runtime/curl_multi.hpp"

#include <curl/curl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/timer.hpp"
#include "support/loop_fixture.hpp"
#include "support/process.hpp"

namespace wacht::runtime {
namespace {

using test::ChildProcess;
using test::support_path;

// An easy handle that collects the response body.
class Easy {
 public:
  explicit Easy(const std::string& url) : easy_(curl_easy_init()) {
    curl_easy_setopt(easy_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy_, CURLOPT_WRITEFUNCTION, &Easy::on_write);
    curl_easy_setopt(easy_, CURLOPT_WRITEDATA, this);
    set_url(url);
  }
  ~Easy() { curl_easy_cleanup(easy_); }
  Easy(const Easy&) = delete;
  Easy& operator=(const Easy&) = delete;

  void set_url(const std::string& url) {
    curl_easy_setopt(easy_, CURLOPT_URL, url.c_str());
    body_.clear();
  }
  CURL* get() const { return easy_; }
  const std::string& body() const { return body_; }
  long status() const {
    long code = 0;
    curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &code);
    return code;
  }
  // True once the request went out, i.e. the transfer is past connecting.
  bool request_sent() const {
    curl_off_t t = 0;
    curl_easy_getinfo(easy_, CURLINFO_PRETRANSFER_TIME_T, &t);
    return t > 0;
  }

 private:
  static size_t on_write(char* data, size_t size, size_t n, void* self) {
    static_cast<Easy*>(self)->body_.append(data, size * n);
    return size * n;
  }
  CURL* easy_;
  std::string body_;
};

class CurlMultiTest : public test::LoopTest {
 protected:
  void SetUp() override {
    LoopTest::SetUp();
    server_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{"/usr/bin/python3", support_path("http_server.py")});
    base_ = "http://127.0.0.1:" + server_->first_line();
  }
  void TearDown() override {
    server_.reset();
    LoopTest::TearDown();
  }

  std::string url(const std::string& path) const { return base_ + path; }

  // Runs the loop for `ms` so that a callback that must not fire gets its chance.
  void run_for(uint64_t ms) {
    bool elapsed = false;
    Timer timer(loop(), [&] { elapsed = true; });
    timer.start(ms);
    run_until([&] { return elapsed; });
  }

  std::unique_ptr<ChildProcess> server_;
  std::string base_;
};

TEST_F(CurlMultiTest, CompletesTransferOnceAndAsynchronously) {
  CurlMulti multi(loop());
  Easy easy(url("/ok"));
  std::vector<int> codes;
  multi.add(easy.get(), [&](int code) { codes.push_back(code); });
  EXPECT_TRUE(codes.empty()) << "Done ran inside add()";
  EXPECT_EQ(multi.running(), 1u);

  ASSERT_TRUE(run_until([&] { return !codes.empty(); }));
  EXPECT_EQ(codes[0], CURLE_OK);
  EXPECT_EQ(easy.status(), 200);
  EXPECT_EQ(easy.body(), "hello from wacht test server\n");
  EXPECT_EQ(multi.running(), 0u);

  run_for(100);
  EXPECT_EQ(codes.size(), 1u);
}

TEST_F(CurlMultiTest, RunsTransfersConcurrently) {
  CurlMulti multi(loop());
  constexpr int kTransfers = 20;
  std::vector<std::unique_ptr<Easy>> easies;
  std::vector<int> codes;
  double start = test::now_seconds();
  for (int i = 0; i < kTransfers; ++i) {
    easies.push_back(std::make_unique<Easy>(url("/slow/200")));
    multi.add(easies.back()->get(), [&](int code) { codes.push_back(code); });
  }
  EXPECT_EQ(multi.running(), static_cast<size_t>(kTransfers));
  ASSERT_TRUE(run_until([&] { return codes.size() == kTransfers; }));
  double elapsed = test::now_seconds() - start;
  for (int code : codes) EXPECT_EQ(code, CURLE_OK);
  for (const auto& e : easies) EXPECT_EQ(e->status(), 200);
  // One after another they would take 4 s.
  EXPECT_LT(elapsed, 2.0);
  EXPECT_EQ(multi.running(), 0u);
}

TEST_F(CurlMultiTest, ReportsConnectionRefused) {
  CurlMulti multi(loop());
  Easy easy("http://127.0.0.1:" + std::to_string(test::free_port()) + "/");
  int code = -1;
  multi.add(easy.get(), [&](int c) { code = c; });
  ASSERT_TRUE(run_until([&] { return code != -1; }));
  EXPECT_EQ(code, CURLE_COULDNT_CONNECT);
}

TEST_F(CurlMultiTest, CurlTimeoutsFireFromTheUvTimer) {
  CurlMulti multi(loop());
  Easy easy(url("/hang"));
  curl_easy_setopt(easy.get(), CURLOPT_TIMEOUT_MS, 300L);
  int code = -1;
  double start = test::now_seconds();
  multi.add(easy.get(), [&](int c) { code = c; });
  ASSERT_TRUE(run_until([&] { return code != -1; }));
  EXPECT_EQ(code, CURLE_OPERATION_TIMEDOUT);
  EXPECT_GE(test::now_seconds() - start, 0.29);
}

TEST_F(CurlMultiTest, RemoveAbortsWithoutDoneAndHandleIsReusable) {
  CurlMulti multi(loop());
  Easy easy(url("/hang"));
  int calls = 0;
  multi.add(easy.get(), [&](int) { ++calls; });
  ASSERT_TRUE(run_until([&] { return easy.request_sent(); }));
  multi.remove(easy.get());
  EXPECT_EQ(multi.running(), 0u);
  multi.remove(easy.get());  // a second remove is a no-op
  run_for(100);
  EXPECT_EQ(calls, 0);

  easy.set_url(url("/ok"));
  int code = -1;
  multi.add(easy.get(), [&](int c) { code = c; });
  ASSERT_TRUE(run_until([&] { return code != -1; }));
  EXPECT_EQ(code, CURLE_OK);
  EXPECT_EQ(calls, 0);
}

TEST_F(CurlMultiTest, DestructorAbortsTransfersAndClosesHandles) {
  auto multi = std::make_unique<CurlMulti>(loop());
  std::vector<std::unique_ptr<Easy>> easies;
  int calls = 0;
  for (int i = 0; i < 3; ++i) {
    easies.push_back(std::make_unique<Easy>(url("/hang")));
    multi->add(easies.back()->get(), [&](int) { ++calls; });
  }
  ASSERT_TRUE(run_until([&] {
    for (const auto& e : easies)
      if (!e->request_sent()) return false;
    return true;
  }));
  multi.reset();
  run_for(50);
  EXPECT_EQ(calls, 0);
  // TearDown asserts that every uv_poll and the timer were closed.
}

TEST_F(CurlMultiTest, DoneMayStartTheNextTransfer) {
  CurlMulti multi(loop());
  Easy easy(url("/ok"));
  int completed = 0;
  std::function<void(int)> again = [&](int code) {
    EXPECT_EQ(code, CURLE_OK);
    if (++completed < 3) {
      easy.set_url(url("/status/204"));
      multi.add(easy.get(), again);
    }
  };
  multi.add(easy.get(), again);
  ASSERT_TRUE(run_until([&] { return completed == 3; }));
  EXPECT_EQ(easy.status(), 204);
  EXPECT_EQ(multi.running(), 0u);
}

TEST_F(CurlMultiTest, DoneMayRemoveAnotherTransfer) {
  CurlMulti multi(loop());
  Easy hanging(url("/hang"));
  Easy quick(url("/slow/100"));
  int hanging_calls = 0;
  bool quick_done = false;
  multi.add(hanging.get(), [&](int) { ++hanging_calls; });
  multi.add(quick.get(), [&](int) {
    quick_done = true;
    multi.remove(hanging.get());
  });
  ASSERT_TRUE(run_until([&] { return quick_done; }));
  EXPECT_EQ(multi.running(), 0u);
  run_for(100);
  EXPECT_EQ(hanging_calls, 0);
}

TEST_F(CurlMultiTest, DoneMayDestroyTheMulti) {
  auto multi = std::make_unique<CurlMulti>(loop());
  Easy hanging(url("/hang"));
  Easy quick(url("/ok"));
  int hanging_calls = 0;
  multi->add(hanging.get(), [&](int) { ++hanging_calls; });
  multi->add(quick.get(), [&](int) { multi.reset(); });
  ASSERT_TRUE(run_until([&] { return multi == nullptr; }));
  run_for(50);
  EXPECT_EQ(hanging_calls, 0);
}

TEST_F(CurlMultiTest, ExceptionFromDoneIsContained) {
  CurlMulti multi(loop());
  Easy first(url("/ok"));
  Easy second(url("/slow/100"));
  bool threw = false;
  int second_code = -1;
  multi.add(first.get(), [&](int) {
    threw = true;
    throw std::runtime_error("from a test Done");
  });
  multi.add(second.get(), [&](int c) { second_code = c; });
  ASSERT_TRUE(run_until([&] { return threw && second_code != -1; }));
  EXPECT_EQ(second_code, CURLE_OK);
}

TEST_F(CurlMultiTest, AddingARunningHandleTwiceThrows) {
  CurlMulti multi(loop());
  Easy easy(url("/ok"));
  int calls = 0;
  multi.add(easy.get(), [&](int) { ++calls; });
  EXPECT_THROW(multi.add(easy.get(), [&](int) { calls += 100; }), std::logic_error);
  ASSERT_TRUE(run_until([&] { return calls > 0; }));
  run_for(50);
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace wacht::runtime
