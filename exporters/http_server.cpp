#include "exporters/http_server.hpp"

#include <civetweb.h>
#include <fmt/format.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <set>
#include <stdexcept>
#include <thread>

namespace wacht::exporters {

namespace {

using Response = HttpServer::Response;

const char* reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return status < 300 ? "OK" : status < 400 ? "Redirect" : "Error";
  }
}

std::string json_quote(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20)
          out += fmt::format("\\u{:04x}", c);
        else
          out += ch;
    }
  }
  return out + "\"";
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Lenient: a '%' not followed by two hex digits stays as it is.
std::string percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
      i += 2;
    } else if (s[i] == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// "/a/b" -> {"a", "b"}; "/" -> {""}. Segments stay encoded so that %2F
// cannot make two of them.
std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  path.remove_prefix(1);
  for (;;) {
    size_t slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) return out;
    path.remove_prefix(slash + 1);
  }
}

bool is_param(std::string_view segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

bool is_json(std::string_view content_type) {
  std::string_view media = content_type.substr(0, content_type.find(';'));
  while (!media.empty() && (media.back() == ' ' || media.back() == '\t')) media.remove_suffix(1);
  while (!media.empty() && (media.front() == ' ' || media.front() == '\t')) media.remove_prefix(1);
  constexpr std::string_view kJson = "application/json";
  return media.size() == kJson.size() &&
         std::equal(media.begin(), media.end(), kJson.begin(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) == b;
         });
}

bool valid_header(std::string_view name, std::string_view value) {
  return !name.empty() && name.find_first_of(":\r\n \t") == std::string_view::npos &&
         value.find_first_of("\r\n") == std::string_view::npos;
}

bool valid_response(const Response& r) {
  if (r.status < 200 || r.status > 599 || !valid_header("Content-Type", r.content_type))
    return false;
  return std::all_of(r.headers.begin(), r.headers.end(),
                     [](const auto& h) { return valid_header(h.first, h.second); });
}

// `close`: the request's body was not read, so the connection cannot carry
// another request. Left alone, civetweb would read and discard the body for
// up to request_timeout_ms, holding a worker: a Content-Length of 1 GiB with
// nothing behind it would block one for 10 s.
void send(mg_connection* conn, const Response& response, bool head, bool close) {
  const Response invalid = Response::error(500, "the handler produced an invalid response");
  const Response& r = valid_response(response) ? response : invalid;
  const bool bodiless = r.status == 204 || r.status == 304;
  std::string out = fmt::format("HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
  if (!bodiless)
    out += fmt::format("Content-Type: {}\r\nContent-Length: {}\r\n", r.content_type, r.body.size());
  out += "Cache-Control: no-store\r\n";
  for (const auto& [name, value] : r.headers) out += fmt::format("{}: {}\r\n", name, value);
  if (close) out += "Connection: close\r\n";
  out += "\r\n";
  if (!head && !bodiless) out += r.body;
  mg_write(conn, out.data(), out.size());
  // civetweb 1.15 has no call to drop keep-alive, but mg_send_http_error
  // marks the connection must-close. Once a response is on the wire it sends
  // no status line or headers of its own, and a 304 has no body, so this adds
  // nothing to what the client receives (the 413 test checks both).
  if (close) mg_send_http_error(conn, 304, "%s", "");
}

// Reads the body, at most `limit` bytes: 0 when done, 413 when longer, 400
// when the client stopped sending early.
int read_body(mg_connection* conn, size_t limit, std::string* body) {
  char buf[16384];
  for (;;) {
    int n = mg_read(conn, buf, sizeof buf);
    if (n == 0) return 0;
    if (n < 0) return 400;
    body->append(buf, static_cast<size_t>(n));
    if (body->size() > limit) return 413;
  }
}

Response stopping_response() { return Response::error(503, "the server is stopping"); }

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
  // Non-blocking: the attempt alone wakes the listener, whatever the result.
  (void)connect(fd, reinterpret_cast<sockaddr*>(&addr), len);
  close(fd);
}

}  // namespace

std::vector<std::pair<std::string, std::string>> HttpServer::Request::query_params() const {
  std::vector<std::pair<std::string, std::string>> out;
  std::string_view q = query;
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    out.emplace_back(percent_decode(pair.substr(0, eq), true),
                     eq == std::string_view::npos ? "" : percent_decode(pair.substr(eq + 1), true));
  }
  return out;
}

std::optional<std::string> HttpServer::Request::query_param(std::string_view name) const {
  for (auto& [k, v] : query_params())
    if (k == name) return v;
  return std::nullopt;
}

Response HttpServer::Response::json(int status, std::string body) {
  return Response{status, "application/json", std::move(body)};
}

Response HttpServer::Response::error(int status, std::string_view message) {
  return json(status, "{\"error\": " + json_quote(message) + "}\n");
}

HttpServer::HttpServer(Options options)
    : host_(options.host),
      max_body_(options.max_body),
      loop_timeout_(options.loop_timeout),
      tokens_(std::move(options.tokens)),
      read_access_(options.read_access) {
  bool needs_loop = false;
  for (auto& route : options.routes) {
    CompiledRoute c{std::move(route), {}, 0};
    const std::string& p = c.route.pattern;
    if (!p.starts_with('/') || c.route.method.empty() || !c.route.handler)
      throw std::invalid_argument("bad route '" + c.route.method + " " + p + "'");
    std::set<std::string_view> names;
    for (std::string_view s : split_path(p)) {
      if (is_param(s) ? !names.insert(s).second : s.find_first_of("{}") != std::string_view::npos)
        throw std::invalid_argument("bad route pattern '" + p + "'");
      c.param_count += is_param(s);
      c.segments.emplace_back(s);
    }
    needs_loop |= c.route.runs == Runs::loop;
    routes_.push_back(std::move(c));
  }
  if (needs_loop) {
    if (!options.loop)
      throw std::invalid_argument("a route runs on the loop but no loop was given");
    async_ = new uv_async_t;
    if (int rc = uv_async_init(options.loop, async_, &HttpServer::on_async); rc != 0) {
      delete async_;
      throw std::runtime_error(std::string("cannot create the loop wake-up: ") + uv_strerror(rc));
    }
    async_->data = this;
    // Waiting for requests is no reason for the loop to keep running.
    uv_unref(reinterpret_cast<uv_handle_t*>(async_));
  }

  static const bool initialised = [] {
    mg_init_library(MG_FEATURES_IPV6);
    return true;
  }();
  (void)initialised;
  bool v6 = host_.find(':') != std::string::npos;
  std::string listen =
      v6 ? fmt::format("[{}]:{}", host_, options.port) : fmt::format("{}:{}", host_, options.port);
  // decode_url=no: routes see raw segments, so an encoded '/' in a parameter
  // stays inside it.
  const char* civet_options[] = {"listening_ports",
                                 listen.c_str(),
                                 "num_threads",
                                 "4",
                                 "request_timeout_ms",
                                 "10000",
                                 "enable_keep_alive",
                                 "yes",
                                 "decode_url",
                                 "no",
                                 nullptr};
  mg_callbacks callbacks{};
  // Keep civetweb from printing to stderr; errors come back through mg_start2.
  callbacks.log_message = [](const mg_connection*, const char*) { return 1; };
  mg_init_data init{&callbacks, this, civet_options};
  char error_text[256] = "";
  mg_error_data error{nullptr, error_text, sizeof error_text};
  ctx_ = mg_start2(&init, &error);
  if (!ctx_) {
    if (async_)
      uv_close(reinterpret_cast<uv_handle_t*>(async_),
               [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
    throw std::runtime_error(fmt::format("cannot listen on {}: {}", listen,
                                         error_text[0] ? error_text : "unknown error"));
  }
  mg_server_port ports[4]{};
  int n = mg_get_server_ports(ctx_, 4, ports);
  port_ = n > 0 ? static_cast<uint16_t>(ports[0].port) : options.port;
  mg_set_request_handler(ctx_, "/", &HttpServer::dispatch, this);
}

HttpServer::HttpServer(const std::string& host, uint16_t port,
                       // cppcheck-suppress passedByValue ; the handlers are moved out of it
                       std::map<std::string, Handler> routes)
    : HttpServer([&] {
        Options o;
        o.host = host;
        o.port = port;
        for (auto& [path, handler] : routes)
          o.routes.push_back({"GET", path, [h = std::move(handler)](const Request&) { return h(); },
                              Runs::worker, Access::open, false});
        return o;
      }()) {}

HttpServer::~HttpServer() {
  // Waiting workers must return before mg_stop can join them; the loop is
  // this thread, so nothing queued will run any more.
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    for (Pending* p : queue_) {
      p->response = stopping_response();
      p->state = Pending::State::done;
    }
    queue_.clear();
  }
  answered_.notify_all();
  {
    // Let the workers just answered write their 503s (bounded, in case a
    // client does not read).
    std::unique_lock lock(mutex_);
    answered_.wait_for(lock, std::chrono::seconds(2), [this] { return replying_ == 0; });
  }
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
  // Every worker is gone, so nobody calls uv_async_send any more.
  if (async_)
    uv_close(reinterpret_cast<uv_handle_t*>(async_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
}

void HttpServer::set_auth(std::shared_ptr<const Tokens> tokens, ReadAccess read_access) {
  std::lock_guard lock(mutex_);
  tokens_ = std::move(tokens);
  read_access_ = read_access;
}

size_t HttpServer::queued() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

int HttpServer::dispatch(mg_connection* conn, void* data) noexcept {
  auto* self = static_cast<HttpServer*>(data);
  try {
    self->handle(conn);
  } catch (const std::exception& e) {
    send(conn, Response::error(500, std::string("internal error: ") + e.what()), false, true);
  } catch (...) {
    send(conn, Response::error(500, "internal error"), false, true);
  }
  return 1;
}

void HttpServer::handle(mg_connection* conn) {
  const mg_request_info* info = mg_get_request_info(conn);
  auto header = [conn](const char* name) {
    const char* v = mg_get_header(conn, name);
    return std::string(v ? v : "");
  };
  Request req;
  req.method = info->request_method;
  req.path = info->local_uri_raw ? info->local_uri_raw : "";
  req.query = info->query_string ? info->query_string : "";
  req.authorization = header("Authorization");
  req.content_type = header("Content-Type");
  req.accept = header("Accept");
  req.remote_addr = info->remote_addr;
  req.loopback = is_loopback_address(req.remote_addr);

  const bool head = req.method == "HEAD";
  bool body_read = false;
  const bool has_body = info->content_length > 0 || !header("Transfer-Encoding").empty();
  auto reply = [&](const Response& r) { send(conn, r, head, has_body && !body_read); };

  const CompiledRoute* route = nullptr;
  std::set<std::string> allowed;
  if (req.path.starts_with('/')) {
    const auto segments = split_path(req.path);
    for (const auto& c : routes_) {
      if (c.segments.size() != segments.size()) continue;
      std::map<std::string, std::string> params;
      bool match = true;
      for (size_t i = 0; match && i < segments.size(); ++i) {
        std::string value = percent_decode(segments[i], false);
        if (!is_param(c.segments[i])) {
          match = value == c.segments[i];
        } else if (value.empty()) {
          match = false;
        } else {
          params[c.segments[i].substr(1, c.segments[i].size() - 2)] = std::move(value);
        }
      }
      if (!match) continue;
      allowed.insert(c.route.method);
      if (c.route.method == "GET") allowed.insert("HEAD");
      bool method_ok = c.route.method == req.method || (head && c.route.method == "GET");
      if (method_ok && (!route || c.param_count < route->param_count)) {
        route = &c;
        req.params = std::move(params);
      }
    }
  }
  if (!route) {
    if (allowed.empty()) return reply(Response::error(404, "not found"));
    Response r = Response::error(405, "method not allowed");
    std::string list;
    for (const auto& m : allowed) list += (list.empty() ? "" : ", ") + m;
    r.headers.emplace_back("Allow", list);
    return reply(r);
  }

  std::shared_ptr<const Tokens> tokens;
  ReadAccess read_access;
  {
    std::lock_guard lock(mutex_);
    tokens = tokens_;
    read_access = read_access_;
  }
  auto principal = authorize(tokens ? *tokens : Tokens{}, read_access, route->route.access,
                             req.authorization, req.loopback);
  if (!principal) {
    Response r = Response::error(401, "a valid API token is needed");
    r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"wacht\"");
    return reply(r);
  }
  req.principal = std::move(*principal);

  if (route->route.json_body && !is_json(req.content_type))
    return reply(Response::error(415, "Content-Type must be application/json"));
  auto too_large = [&] { return fmt::format("the body is longer than {} bytes", max_body_); };
  if (info->content_length > static_cast<long long>(max_body_))
    return reply(Response::error(413, too_large()));
  if (has_body) {
    int status = read_body(conn, max_body_, &req.body);
    if (status == 413) return reply(Response::error(413, too_large()));
    if (status == 400) return reply(Response::error(400, "the body ended early"));
    body_read = true;
  }

  if (route->route.runs != Runs::loop) return reply(route->route.handler(req));
  // Counted until the reply is written: once mg_stop begins, civetweb drops
  // whatever a worker still writes.
  struct Replying {
    HttpServer* self;
    explicit Replying(HttpServer* s) : self(s) {
      std::lock_guard lock(self->mutex_);
      ++self->replying_;
    }
    ~Replying() {
      {
        std::lock_guard lock(self->mutex_);
        --self->replying_;
      }
      self->answered_.notify_all();
    }
  } replying(this);
  reply(run_on_loop(*route, std::move(req)));
}

Response HttpServer::run_on_loop(const CompiledRoute& route, Request request) {
  Pending p{&route, std::move(request), {}, Pending::State::queued};
  std::unique_lock lock(mutex_);
  if (stopping_) return stopping_response();
  queue_.push_back(&p);
  uv_async_send(async_);
  if (!answered_.wait_for(lock, loop_timeout_, [&] { return p.state != Pending::State::queued; })) {
    // Withdrawn before it started: 503 means nothing changed.
    queue_.erase(std::find(queue_.begin(), queue_.end(), &p));
    return Response::error(503, "the daemon did not get to the request in time; nothing changed");
  }
  // Started: the handler runs to its end on the loop, and the destructor (on
  // the same thread) cannot run before it has.
  answered_.wait(lock, [&] { return p.state == Pending::State::done; });
  return std::move(p.response);
}

void HttpServer::on_async(uv_async_t* async) {
  auto* self = static_cast<HttpServer*>(async->data);
  for (;;) {
    Pending* p;
    {
      std::lock_guard lock(self->mutex_);
      if (self->queue_.empty()) return;
      p = self->queue_.front();
      self->queue_.pop_front();
      p->state = Pending::State::running;
    }
    // The worker waits without touching `p` until it is done.
    Response r;
    try {
      r = p->route->route.handler(p->request);
    } catch (const std::exception& e) {
      r = Response::error(500, std::string("internal error: ") + e.what());
    } catch (...) {
      r = Response::error(500, "internal error");
    }
    {
      std::lock_guard lock(self->mutex_);
      p->response = std::move(r);
      p->state = Pending::State::done;
    }
    self->answered_.notify_all();
  }
}

}  // namespace wacht::exporters
