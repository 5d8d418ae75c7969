#include "exporters/http_server.hpp"

#include <civetweb.h>
#include <fmt/format.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <vector>

namespace wacht::exporters {

namespace {

const char* reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 503: return "Service Unavailable";
    default: return status < 400 ? "OK" : "Error";
  }
}

void send(mg_connection* conn, const HttpServer::Response& r) {
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
            "Cache-Control: no-store\r\n\r\n",
            r.status, reason(r.status), r.content_type.c_str(), r.body.size());
  if (std::strcmp(mg_get_request_info(conn)->request_method, "HEAD") != 0)
    mg_write(conn, r.body.data(), r.body.size());
}

void wake_listener(const std::string& host, uint16_t port) {
  sockaddr_storage addr{};
  socklen_t len;
  if (host.find(':') != std::string::npos) {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&addr);
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    if (inet_pton(AF_INET6, host.c_str(), &a6->sin6_addr) != 1) a6->sin6_addr = in6addr_loopback;
    len = sizeof *a6;
  } else {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&addr);
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    // A wildcard or name listener is reachable on loopback.
    if (inet_pton(AF_INET, host.c_str(), &a4->sin_addr) != 1 || a4->sin_addr.s_addr == 0)
      a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof *a4;
  }
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  connect(fd, reinterpret_cast<sockaddr*>(&addr), len);
  close(fd);
}

}  // namespace

HttpServer::HttpServer(const std::string& host, uint16_t port,
                       std::map<std::string, Handler> routes)
    : routes_(std::move(routes)), host_(host) {
  static const bool initialised = [] {
    mg_init_library(MG_FEATURES_IPV6);
    return true;
  }();
  (void)initialised;
  bool v6 = host.find(':') != std::string::npos;
  std::string listen = v6 ? fmt::format("[{}]:{}", host, port) : fmt::format("{}:{}", host, port);
  const char* options[] = {
      "listening_ports", listen.c_str(),      "num_threads", "4",    "request_timeout_ms",
      "10000",           "enable_keep_alive", "yes",         nullptr};
  mg_callbacks callbacks{};
  // Keep civetweb from printing to stderr; errors come back through mg_start2.
  callbacks.log_message = [](const mg_connection*, const char*) { return 1; };
  mg_init_data init{&callbacks, this, options};
  char error_text[256] = "";
  mg_error_data error{nullptr, error_text, sizeof error_text};
  ctx_ = mg_start2(&init, &error);
  if (!ctx_)
    throw std::runtime_error(fmt::format("cannot listen on {}: {}", listen,
                                         error_text[0] ? error_text : "unknown error"));
  mg_server_port ports[4]{};
  int n = mg_get_server_ports(ctx_, 4, ports);
  port_ = n > 0 ? static_cast<uint16_t>(ports[0].port) : port;
  mg_set_request_handler(ctx_, "/", &HttpServer::dispatch, this);
}

HttpServer::~HttpServer() {
  if (!ctx_) return;
  // civetweb's listener polls with a 2 s quantum before it sees the stop flag
  // (Debian builds it with SOCKET_TIMEOUT_QUANTUM 2000). Connecting to our own
  // port wakes it, so shutdown takes milliseconds instead of up to 2 s.
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    mg_stop(ctx_);
    stopped = true;
  });
  for (int i = 0; i < 100 && !stopped; ++i) {
    wake_listener(host_, port_);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  stopper.join();
}

int HttpServer::dispatch(mg_connection* conn, void* data) noexcept {
  auto* self = static_cast<HttpServer*>(data);
  const mg_request_info* info = mg_get_request_info(conn);
  try {
    auto it = self->routes_.find(info->local_uri ? info->local_uri : "");
    if (it == self->routes_.end()) {
      send(conn, {404, "text/plain; charset=utf-8", "not found\n"});
    } else if (std::strcmp(info->request_method, "GET") != 0 &&
               std::strcmp(info->request_method, "HEAD") != 0) {
      send(conn, {405, "text/plain; charset=utf-8", "method not allowed\n"});
    } else {
      send(conn, it->second());
    }
  } catch (const std::exception& e) {
    send(conn, {500, "text/plain; charset=utf-8", std::string("internal error: ") + e.what()});
  }
  return 1;
}

}  // namespace wacht::exporters
