#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

struct mg_context;
struct mg_connection;

namespace wacht::exporters {

// The daemon's HTTP endpoint (civetweb): /metrics, /-/healthy, /-/ready and,
// later, the status and API pages. Handlers run on civetweb's worker threads,
// so they may only read thread-safe state (metrics, atomics, published
// snapshots); anything that changes state must be handed to the loop.
class HttpServer {
 public:
  struct Response {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
  };
  using Handler = std::function<Response()>;

  // Binds host:port (port 0 picks a free one). Throws std::runtime_error with
  // civetweb's reason if the address cannot be bound.
  HttpServer(const std::string& host, uint16_t port, std::map<std::string, Handler> routes);
  ~HttpServer();  // stops the worker threads
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  uint16_t port() const { return port_; }

 private:
  static int dispatch(mg_connection* conn, void* self) noexcept;

  std::map<std::string, Handler> routes_;
  std::string host_;
  mg_context* ctx_ = nullptr;
  uint16_t port_ = 0;
};

}  // namespace wacht::exporters
