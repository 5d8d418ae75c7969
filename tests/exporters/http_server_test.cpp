#include "exporters/http_server.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <future>
#include <thread>

#include "support/loop_fixture.hpp"

namespace wacht::exporters {
namespace {

using namespace std::chrono_literals;
using Request = HttpServer::Request;
using Response = HttpServer::Response;
using Route = HttpServer::Route;
using Runs = HttpServer::Runs;

const std::string kToken = "ci-token-0123456789";
const std::string kBearer = "Bearer " + kToken;
const std::string kJson = "application/json";

struct Reply {
  int status = 0;
  std::string status_line;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
};

// Sends `bytes` to 127.0.0.1:port and reads until the server closes.
Reply raw_exchange(int port, const std::string& bytes, int timeout_ms = 5000) {
  Reply r;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return r;
  }
  for (size_t sent = 0; sent < bytes.size();) {
    ssize_t n = send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may answer and close before taking it all
    sent += static_cast<size_t>(n);
  }
  std::string resp;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) resp.append(buf, static_cast<size_t>(n));
  close(fd);
  size_t end = resp.find("\r\n\r\n");
  if (!resp.starts_with("HTTP/1.") || end == std::string::npos) return r;
  size_t eol = resp.find("\r\n");
  r.status_line = resp.substr(0, eol);
  if (eol > 9) std::from_chars(resp.data() + 9, resp.data() + eol, r.status);  // "HTTP/1.1 200"
  for (size_t pos = eol + 2; pos < end;) {
    size_t next = resp.find("\r\n", pos);
    std::string line = resp.substr(pos, next - pos);
    size_t colon = line.find(':');
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(), ::tolower);
    r.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
    pos = next + 2;
  }
  r.body = resp.substr(end + 4);
  return r;
}

Reply call(int port, const std::string& method, const std::string& target,
           const std::vector<std::pair<std::string, std::string>>& headers = {},
           const std::optional<std::string>& body = std::nullopt) {
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
  if (body) req += "Content-Length: " + std::to_string(body->size()) + "\r\n";
  req += "\r\n" + body.value_or("");
  return raw_exchange(port, req);
}

class HttpServerTest : public test::LoopTest {
 protected:
  struct Seen {
    std::string principal;
    std::thread::id thread;
  };

  // The API the on-call layer will have, with handlers that record who ran them where.
  HttpServer::Options options() {
    HttpServer::Options o;
    o.loop = loop();
    o.tokens = std::make_shared<const Tokens>(Tokens{{"ci", kToken}});
    auto seen = [this](const Request& r) {
      std::lock_guard lock(mutex_);
      calls_.push_back({r.principal, std::this_thread::get_id()});
    };
    auto describe = [seen](const Request& r) {
      seen(r);
      std::string out = r.method + " " + r.principal;
      for (const auto& [k, v] : r.params) out += " " + k + "=" + v;
      return Response{200, "text/plain", out};
    };
    o.routes = {
        {"GET", "/hello", describe},
        {"GET", "/metrics", describe, Runs::worker, Access::open},
        {"GET", "/api/v1/silences", describe, Runs::loop},
        {"POST", "/api/v1/silences",
         [seen](const Request& r) {
           seen(r);
           Response resp = Response::json(201, "{\"size\": " + std::to_string(r.body.size()) + "}");
           resp.headers.emplace_back("Location", "/api/v1/silences/7");
           return resp;
         },
         Runs::loop, Access::write, true},
        {"GET", "/api/v1/silences/{id}", describe, Runs::loop},
        {"GET", "/api/v1/silences/expired", describe, Runs::loop},
        {"DELETE", "/api/v1/silences/{id}",
         [seen](const Request& r) {
           seen(r);
           return Response{204, "", ""};
         },
         Runs::loop, Access::write},
        {"POST", "/api/v1/alerts/{check}/ack", describe, Runs::loop, Access::write, true},
        {"GET", "/ack", describe, Runs::loop, Access::open},
        {"GET", "/echo",
         [](const Request& r) {
           std::string out = r.remote_addr + (r.loopback ? " loopback" : " remote") + "\n";
           for (const auto& [k, v] : r.query_params()) out += k + "=" + v + "\n";
           out += "a? " + r.query_param("a").value_or("-") + "\n";
           out += "zz? " + r.query_param("zz").value_or("-") + "\n";
           return Response{200, "text/plain", out};
         },
         Runs::worker, Access::open},
        {"GET", "/status",
         [](const Request& r) {
           return Response{std::stoi(r.query_param("code").value_or("200")), "text/plain", "x"};
         },
         Runs::worker, Access::open},
        {"GET", "/bad-header",
         [](const Request&) {
           return Response{200, "text/plain", "x", {{"Location", "/a\r\nSet-Cookie: x=1"}}};
         },
         Runs::worker, Access::open},
        {"GET", "/throws", [](const Request&) -> Response { throw std::runtime_error("boom"); },
         Runs::worker, Access::open},
        {"GET", "/loop-throws",
         [](const Request&) -> Response { throw std::runtime_error("bang"); }, Runs::loop,
         Access::open},
    };
    return o;
  }

  // Runs `client` on another thread while this thread runs the loop.
  template <class F>
  auto while_looping(F client) {
    auto done = std::async(std::launch::async, client);
    EXPECT_TRUE(run_until([&] { return done.wait_for(0s) == std::future_status::ready; }));
    return done.get();
  }

  std::vector<Seen> calls() {
    std::lock_guard lock(mutex_);
    return calls_;
  }

  std::mutex mutex_;
  std::vector<Seen> calls_;
};

TEST_F(HttpServerTest, RoutesByMethodAndPatternWithDecodedParams) {
  HttpServer server(options());
  const int port = server.port();
  auto r = while_looping([&] { return call(port, "GET", "/api/v1/silences/abc"); });
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "GET loopback id=abc");
  r = while_looping([&] { return call(port, "GET", "/api/v1/silences/lup%2Fportal%20a"); });
  EXPECT_EQ(r.body, "GET loopback id=lup/portal a");
  // A literal segment wins over a parameter.
  r = while_looping([&] { return call(port, "GET", "/api/v1/silences/expired"); });
  EXPECT_EQ(r.body, "GET loopback");
  r = while_looping([&] {
    return call(port, "POST", "/api/v1/alerts/lup-ldap/ack",
                {{"Authorization", kBearer}, {"Content-Type", kJson}}, "{}");
  });
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "POST ci check=lup-ldap");
  r = while_looping([&] {
    return call(port, "DELETE", "/api/v1/silences/7", {{"Authorization", kBearer}});
  });
  EXPECT_EQ(r.status_line, "HTTP/1.1 204 No Content");
  EXPECT_EQ(r.headers.count("content-length"), 0u);
  EXPECT_EQ(r.body, "");

  r = call(port, "GET", "/echo?a=1&b=x+y&c=%C3%BC%2B&&a=2&flag&bad=%zz");
  EXPECT_EQ(r.body, "127.0.0.1 loopback\na=1\nb=x y\nc=ü+\na=2\nflag=\nbad=%zz\na? 1\nzz? -\n");
}

TEST_F(HttpServerTest, UnknownPathsAre404AndWrongMethods405WithAllow) {
  HttpServer server(options());
  const int port = server.port();
  for (const char* path : {"/nope", "/api/v1/silences/", "/api/v1/silences/a/b", "/hello/"}) {
    auto r = call(port, "GET", path);
    EXPECT_EQ(r.status_line, "HTTP/1.1 404 Not Found") << path;
    EXPECT_EQ(r.headers["content-type"], kJson) << path;
    EXPECT_EQ(r.body, "{\"error\": \"not found\"}\n") << path;
  }
  auto r = call(port, "PUT", "/api/v1/silences/x", {{"Authorization", kBearer}}, "{}");
  EXPECT_EQ(r.status_line, "HTTP/1.1 405 Method Not Allowed");
  EXPECT_EQ(r.headers["allow"], "DELETE, GET, HEAD");
  r = call(port, "POST", "/hello", {}, "x");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.headers["allow"], "GET, HEAD");
  EXPECT_TRUE(calls().empty());
}

TEST_F(HttpServerTest, HeadAnswersGetRoutesWithoutABody) {
  HttpServer server(options());
  auto r = call(server.port(), "HEAD", "/hello");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["content-length"], "13");  // "HEAD loopback"
  EXPECT_EQ(r.body, "");
}

TEST_F(HttpServerTest, StatusLinesHaveTheirReasonPhrases) {
  HttpServer server(options());
  const std::vector<std::pair<int, std::string>> cases = {{200, "OK"},
                                                          {201, "Created"},
                                                          {204, "No Content"},
                                                          {400, "Bad Request"},
                                                          {401, "Unauthorized"},
                                                          {403, "Forbidden"},
                                                          {404, "Not Found"},
                                                          {405, "Method Not Allowed"},
                                                          {409, "Conflict"},
                                                          {413, "Content Too Large"},
                                                          {415, "Unsupported Media Type"},
                                                          {500, "Internal Server Error"},
                                                          {503, "Service Unavailable"}};
  for (const auto& [code, phrase] : cases)
    EXPECT_EQ(call(server.port(), "GET", "/status?code=" + std::to_string(code)).status_line,
              "HTTP/1.1 " + std::to_string(code) + " " + phrase);
}

TEST_F(HttpServerTest, HandlerFailuresAre500s) {
  HttpServer server(options());
  auto r = call(server.port(), "GET", "/throws");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.body, "{\"error\": \"internal error: boom\"}\n");
  r = while_looping([&] { return call(server.port(), "GET", "/loop-throws"); });
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.body, "{\"error\": \"internal error: bang\"}\n");
  // A CR/LF in a header would split the response: refused as a whole.
  r = call(server.port(), "GET", "/bad-header");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.headers.count("set-cookie"), 0u);
  EXPECT_EQ(r.headers.count("location"), 0u);
}

TEST_F(HttpServerTest, JsonRoutesRefuseOtherContentTypes) {
  HttpServer server(options());
  const int port = server.port();
  for (const std::string& type : {std::string("text/plain"), std::string("application/jsonx"),
                                  std::string("multipart/form-data; boundary=x")}) {
    auto r = call(port, "POST", "/api/v1/silences",
                  {{"Authorization", kBearer}, {"Content-Type", type}}, "{}");
    EXPECT_EQ(r.status, 415) << type;
    EXPECT_EQ(r.body, "{\"error\": \"Content-Type must be application/json\"}\n");
  }
  EXPECT_EQ(call(port, "POST", "/api/v1/silences", {{"Authorization", kBearer}}, "{}").status, 415);
  EXPECT_TRUE(calls().empty());
  auto r = while_looping([&] {
    return call(port, "POST", "/api/v1/silences",
                {{"Authorization", kBearer}, {"Content-Type", "Application/JSON; charset=utf-8"}},
                "{}");
  });
  EXPECT_EQ(r.status_line, "HTTP/1.1 201 Created");
  EXPECT_EQ(r.headers["location"], "/api/v1/silences/7");
  EXPECT_EQ(r.body, "{\"size\": 2}");
}

TEST_F(HttpServerTest, LongBodiesAre413WithoutBeingRead) {
  HttpServer server(options());
  const int port = server.port();
  const std::string head =
      "POST /api/v1/silences HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + kBearer +
      "\r\nContent-Type: application/json\r\n";
  // Only the headers are sent: the answer must not wait for 10 MiB.
  double start = test::now_seconds();
  auto r = raw_exchange(port, head + "Content-Length: 10485760\r\n\r\n");
  EXPECT_EQ(r.status_line, "HTTP/1.1 413 Content Too Large");
  EXPECT_EQ(r.headers["connection"], "close");
  EXPECT_EQ(r.body, "{\"error\": \"the body is longer than 65536 bytes\"}\n");
  EXPECT_LT(test::now_seconds() - start, 3.0);
  // Chunked bodies have no length up front: reading stops at the limit.
  std::string chunk(40000, 'x');
  std::string chunked = head + "Transfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 2; ++i) chunked += "9c40\r\n" + chunk + "\r\n";
  r = raw_exchange(port, chunked + "0\r\n\r\n");
  EXPECT_EQ(r.status, 413);
  EXPECT_TRUE(calls().empty());

  r = while_looping([&] {
    return call(port, "POST", "/api/v1/silences",
                {{"Authorization", kBearer}, {"Content-Type", kJson}}, std::string(65536, ' '));
  });
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.body, "{\"size\": 65536}");
  r = while_looping([&] {
    return raw_exchange(port, head + "Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n" +
                                  "5\r\n{  }\n\r\n0\r\n\r\n");
  });
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.body, "{\"size\": 5}");
}

TEST_F(HttpServerTest, LoopHandlersRunOnTheLoopThreadAndOthersOnWorkers) {
  HttpServer server(options());
  const int port = server.port();
  EXPECT_EQ(while_looping([&] { return call(port, "GET", "/api/v1/silences"); }).status, 200);
  EXPECT_EQ(call(port, "GET", "/hello").status, 200);
  auto seen = calls();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].thread, std::this_thread::get_id());
  EXPECT_NE(seen[1].thread, std::this_thread::get_id());
  // Concurrent requests are all answered, one at a time on the loop.
  auto many = while_looping([&] {
    std::vector<std::future<Reply>> replies;
    for (int i = 0; i < 8; ++i)
      replies.push_back(std::async(std::launch::async, [&, i] {
        return call(port, "GET", "/api/v1/silences/" + std::to_string(i));
      }));
    std::string out;
    for (auto& f : replies) out += f.get().body + ";";
    return out;
  });
  EXPECT_EQ(many,
            "GET loopback id=0;GET loopback id=1;GET loopback id=2;GET loopback id=3;GET loopback "
            "id=4;GET loopback id=5;GET loopback id=6;GET loopback id=7;");
  EXPECT_EQ(server.queued(), 0u);
}

TEST_F(HttpServerTest, ABusyLoopGets503AndTheRequestNeverRuns) {
  auto o = options();
  o.loop_timeout = 200ms;
  HttpServer server(std::move(o));
  // The loop is not run while the client waits.
  double start = test::now_seconds();
  auto r = call(server.port(), "DELETE", "/api/v1/silences/7", {{"Authorization", kBearer}});
  EXPECT_EQ(r.status_line, "HTTP/1.1 503 Service Unavailable");
  EXPECT_EQ(r.body,
            "{\"error\": \"the daemon did not get to the request in time; nothing changed\"}\n");
  EXPECT_GE(test::now_seconds() - start, 0.2);
  EXPECT_EQ(server.queued(), 0u);
  drain();
  EXPECT_TRUE(calls().empty());
  EXPECT_EQ(while_looping([&] { return call(server.port(), "GET", "/api/v1/silences"); }).status,
            200);
}

TEST_F(HttpServerTest, StoppingAnswersWaitingRequestsWith503) {
  auto server = std::make_unique<HttpServer>(options());
  const int port = server->port();
  auto waiting = std::async(std::launch::async, [&] {
    return call(port, "DELETE", "/api/v1/silences/7", {{"Authorization", kBearer}});
  });
  for (int i = 0; i < 500 && server->queued() == 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(server->queued(), 1u);
  double start = test::now_seconds();
  server.reset();  // on the loop thread, as App::shutdown does
  EXPECT_LT(test::now_seconds() - start, 2.0);
  auto r = waiting.get();
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "{\"error\": \"the server is stopping\"}\n");
  drain();  // the wake-up handle closes; TearDown checks that nothing is left
  EXPECT_TRUE(calls().empty());
}

TEST_F(HttpServerTest, WritesNeedATokenAndNothingRunsWithoutOne) {
  HttpServer server(options());
  const int port = server.port();
  for (const std::string& auth : {std::string(), std::string("Bearer wrong-token-0123456789"),
                                  "Basic " + kToken, kBearer + "x"}) {
    std::vector<std::pair<std::string, std::string>> headers = {{"Content-Type", kJson}};
    if (!auth.empty()) headers.emplace_back("Authorization", auth);
    auto r = while_looping([&] { return call(port, "POST", "/api/v1/silences", headers, "{}"); });
    EXPECT_EQ(r.status_line, "HTTP/1.1 401 Unauthorized") << auth;
    EXPECT_EQ(r.headers["www-authenticate"], "Bearer realm=\"wacht\"") << auth;
    EXPECT_EQ(r.body, "{\"error\": \"a valid API token is needed\"}\n");
  }
  // Refused before anything else about the request is looked at.
  EXPECT_EQ(call(port, "POST", "/api/v1/silences", {{"Content-Type", "text/plain"}}, "x").status,
            401);
  EXPECT_TRUE(calls().empty());
  auto r = while_looping([&] {
    return call(port, "POST", "/api/v1/silences",
                {{"Authorization", kBearer}, {"Content-Type", kJson}}, "{}");
  });
  EXPECT_EQ(r.status, 201);
  ASSERT_EQ(calls().size(), 1u);
  EXPECT_EQ(calls()[0].principal, "ci");

  // Without a tokens file nobody may write.
  server.set_auth(nullptr, ReadAccess::loopback);
  r = call(port, "DELETE", "/api/v1/silences/7", {{"Authorization", kBearer}});
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(calls().size(), 1u);
}

TEST_F(HttpServerTest, ReadsAreOpenOnLoopbackUnlessTokensAreRequired) {
  HttpServer server(options());
  const int port = server.port();
  auto get = [&](const std::string& path, const std::string& auth = "") {
    std::vector<std::pair<std::string, std::string>> headers;
    if (!auth.empty()) headers.emplace_back("Authorization", auth);
    return while_looping([&] { return call(port, "GET", path, headers); });
  };
  EXPECT_EQ(get("/api/v1/silences").body, "GET loopback");
  EXPECT_EQ(get("/api/v1/silences", kBearer).body, "GET ci");
  EXPECT_EQ(get("/api/v1/silences", "Bearer wrong-token-0123456789").status, 401);

  server.set_auth(std::make_shared<const Tokens>(Tokens{{"ci", kToken}}), ReadAccess::token);
  auto r = get("/api/v1/silences");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.headers["www-authenticate"], "Bearer realm=\"wacht\"");
  EXPECT_EQ(get("/api/v1/silences/3", kBearer).body, "GET ci id=3");
  // Open routes stay open: Prometheus scrapes and mailed links carry no token.
  EXPECT_EQ(get("/metrics").body, "GET loopback");
  EXPECT_EQ(get("/metrics", "Bearer wrong-token-0123456789").status, 200);
  EXPECT_EQ(get("/ack?t=x").body, "GET loopback");

  server.set_auth(std::make_shared<const Tokens>(Tokens{{"ci", kToken}}), ReadAccess::open);
  EXPECT_EQ(get("/api/v1/silences").body, "GET loopback");
}

TEST_F(HttpServerTest, ExistingGetRoutesKeepWorking) {
  HttpServer server("127.0.0.1", 0,
                    {{"/metrics",
                      [] {
                        return Response{200, "text/plain; version=0.0.4", "m 1\n"};
                      }},
                     {"/", [] {
                        return Response{200, "text/html", "<html></html>"};
                      }}});
  auto r = call(server.port(), "GET", "/metrics", {{"Authorization", "Bearer nonsense"}});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["content-type"], "text/plain; version=0.0.4");
  EXPECT_EQ(r.body, "m 1\n");
  EXPECT_EQ(call(server.port(), "GET", "/").body, "<html></html>");
  EXPECT_EQ(call(server.port(), "POST", "/metrics", {}, "").headers["allow"], "GET, HEAD");
}

TEST_F(HttpServerTest, BadRoutesAreRefusedAtConstruction) {
  auto make = [](Route route, uv_loop_t* loop) {
    HttpServer::Options o;
    o.routes.push_back(std::move(route));
    o.loop = loop;
    HttpServer server(std::move(o));
  };
  auto ok = [](const Request&) { return Response{}; };
  EXPECT_THROW(make({"GET", "api", ok}, nullptr), std::invalid_argument);
  EXPECT_THROW(make({"GET", "/a/{x}/{x}", ok}, nullptr), std::invalid_argument);
  EXPECT_THROW(make({"GET", "/a{x}", ok}, nullptr), std::invalid_argument);
  EXPECT_THROW(make({"GET", "/a", nullptr}, nullptr), std::invalid_argument);
  EXPECT_THROW(make({"GET", "/a", ok, Runs::loop}, nullptr), std::invalid_argument);
  EXPECT_NO_THROW(make({"GET", "/a/{x}/b/{y}", ok, Runs::loop}, loop()));
}

TEST(HttpResponse, ErrorBodiesAreJson) {
  auto r = Response::error(400, "bad \"until\"\n\\ \x01");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(r.body, "{\"error\": \"bad \\\"until\\\"\\n\\\\ \\u0001\"}\n");
}

}  // namespace
}  // namespace wacht::exporters
