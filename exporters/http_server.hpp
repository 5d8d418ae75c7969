#pragma once

#include <uv.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "exporters/api_auth.hpp"

struct mg_context;
struct mg_connection;

namespace wacht::exporters {

// The daemon's HTTP endpoint (civetweb): /metrics, /-/healthy, /-/ready and
// the API. Worker handlers run on civetweb's threads, so they may only read
// thread-safe state (metrics, atomics, published snapshots). Loop handlers
// run on the libuv loop thread, where the alert state lives: the worker
// queues the request, wakes the loop and waits for the answer.
class HttpServer {
 public:
  struct Request {
    std::string method;  // as sent; GET routes also get "HEAD"
    std::string path;    // as sent, still percent-encoded, without the query
    std::string query;   // as sent, after '?'
    // The route's {name} segments, percent-decoded.
    std::map<std::string, std::string> params;
    std::string authorization;
    std::string content_type;
    std::string accept;
    std::string body;
    std::string remote_addr;
    bool loopback = false;
    // Who is calling: a token name, or "loopback" / "anonymous" where the
    // route's access lets requests without a token through.
    std::string principal;

    // The query's name=value pairs in order, '+' and %XX decoded.
    std::vector<std::pair<std::string, std::string>> query_params() const;
    // The first value of `name` in the query.
    std::optional<std::string> query_param(std::string_view name) const;
  };

  struct Response {
    // A constructor rather than an aggregate, so that the common
    // {status, content_type, body} needs no headers.
    Response() = default;
    Response(int status, std::string content_type, std::string body,
             std::vector<std::pair<std::string, std::string>> headers = {})
        : status(status),
          content_type(std::move(content_type)),
          body(std::move(body)),
          headers(std::move(headers)) {}

    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
    // Extra headers (Location, Allow, WWW-Authenticate, ...). A CR or LF in
    // one turns the response into a 500 instead of splitting it.
    std::vector<std::pair<std::string, std::string>> headers;

    static Response json(int status, std::string body);
    // {"error": message}, for validation errors (400), conflicts (409), ...
    static Response error(int status, std::string_view message);
  };

  using Handler = std::function<Response()>;
  using RequestHandler = std::function<Response(const Request&)>;

  enum class Runs { worker, loop };

  struct Route {
    std::string method;   // "GET" (also answers HEAD), "POST", "PUT", "DELETE", ...
    std::string pattern;  // "/api/v1/alerts/{check}/ack": {name} matches one segment
    RequestHandler handler;
    Runs runs = Runs::worker;
    Access access = Access::read;
    // Refuse with 415 unless Content-Type is application/json.
    bool json_body = false;
  };

  struct Options {
    std::string host = "127.0.0.1";
    uint16_t port = 0;  // 0 picks a free one
    // Where several patterns match, the one with the fewest {params} wins.
    std::vector<Route> routes;
    // Required when a route runs on the loop; the server must then be
    // constructed and destroyed on that loop's thread, not from a handler.
    uv_loop_t* loop = nullptr;
    std::shared_ptr<const Tokens> tokens;  // null: no tokens, every write is refused
    ReadAccess read_access = ReadAccess::loopback;
    // Longer bodies get 413 before they are read.
    size_t max_body = 64 * 1024;
    // A request the loop has not started on by then gets 503 and never runs.
    std::chrono::milliseconds loop_timeout = std::chrono::seconds(10);
  };

  // Binds options.host:port. Throws std::runtime_error with civetweb's reason
  // if the address cannot be bound, std::invalid_argument for a bad route.
  explicit HttpServer(Options options);
  // GET routes on worker threads, open to everyone: /metrics and friends.
  HttpServer(const std::string& host, uint16_t port, std::map<std::string, Handler> routes);
  // Answers requests waiting for the loop with 503, stops the worker threads
  // and closes the loop wake-up handle (its memory is freed by the loop).
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  uint16_t port() const { return port_; }
  // Replaces tokens and read policy (reload); any thread.
  void set_auth(std::shared_ptr<const Tokens> tokens, ReadAccess read_access);
  // Requests waiting for the loop to start on them.
  size_t queued() const;

 private:
  struct CompiledRoute {
    Route route;
    std::vector<std::string> segments;
    size_t param_count = 0;
  };
  // A loop request, owned by the waiting worker's stack frame.
  struct Pending {
    const CompiledRoute* route;
    Request request;
    Response response;
    enum class State { queued, running, done } state = State::queued;
  };

  static int dispatch(mg_connection* conn, void* self) noexcept;
  static void on_async(uv_async_t* async);
  void handle(mg_connection* conn);
  Response run_on_loop(const CompiledRoute& route, Request request);

  std::vector<CompiledRoute> routes_;
  std::string host_;
  size_t max_body_;
  std::chrono::milliseconds loop_timeout_;
  // Heap-allocated: its close callback runs on the loop after we are gone.
  uv_async_t* async_ = nullptr;

  mutable std::mutex mutex_;  // guards the members below
  std::condition_variable answered_;
  std::deque<Pending*> queue_;
  size_t replying_ = 0;  // workers serving a loop route, until their reply is written
  bool stopping_ = false;
  std::shared_ptr<const Tokens> tokens_;
  ReadAccess read_access_;

  mg_context* ctx_ = nullptr;
  uint16_t port_ = 0;
};

}  // namespace wacht::exporters
