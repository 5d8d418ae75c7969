// TCP send/expect dialogues against arbitrary server bytes. The matching code
// (check_expect, consumed_by_match, the 64 KiB window) is private to
// tcp_probe.cpp, so this drives the smallest public entry point: the tcp probe
// type's parse() and create(), and a real run against a server in the same
// libuv loop on 127.0.0.1 that sends the input's bytes, then FIN.
//
// Input (text, so that seeds stay readable):
//   line 1:  "preset <name>"  (smtp-plain, imap-plain, pop3-plain, ssh, smtp,
//            imap, pop3, ldap, smtps)  or  "steps"
//   "steps": one TOML inline table per line, e.g. { expect = "^220 ", fail = "^5" },
//            up to a line "--"
//   then:    what the server sends; each byte 0x1e splits it into separate writes.
//
// Properties: the run ends (the server's FIN ends every wait), its result
// comes exactly once, no exception reaches the probe's guard ("internal
// error"), and the summary is one line.
#include <toml++/toml.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "probes/registry.hpp"
#include "probes/tcp_probe.hpp"
#include "runtime/diagnostics.hpp"
#include "runtime/toml_reader.hpp"

namespace {

using wacht::probes::ProbeResult;
using wacht::probes::ProbeSpec;

uv_loop_t g_loop;
uv_tcp_t g_listener;
int g_port = 0;

// What the server of the current run sends, and how far it got.
struct ServerRun {
  std::vector<std::string> chunks;
  size_t next = 0;
  bool accepted = false;
  bool closed = false;
};
ServerRun g_server;

struct ServerConn {
  uv_tcp_t tcp;
  uv_timer_t pause;  // one loop iteration between writes, so that they arrive apart
  uv_shutdown_t shutdown;
  char buf[4096];
  int open = 2;
};

void server_closed(uv_handle_t* h) {
  auto* c = static_cast<ServerConn*>(h->data);
  if (--c->open == 0) {
    delete c;
    g_server.closed = true;
  }
}

void server_close(ServerConn* c) {
  if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&c->tcp))) return;
  uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), server_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&c->pause), server_closed);
}

void server_write_next(ServerConn* c);

void server_written(uv_write_t* req, int status) {
  auto* c = static_cast<ServerConn*>(req->data);
  delete req;
  if (status < 0) return;  // the probe hung up early; reading sees it
  uv_timer_start(
      &c->pause, [](uv_timer_t* t) { server_write_next(static_cast<ServerConn*>(t->data)); }, 0, 0);
}

void server_write_next(ServerConn* c) {
  if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&c->tcp))) return;
  if (g_server.next == g_server.chunks.size()) {
    c->shutdown.data = c;
    uv_shutdown(&c->shutdown, reinterpret_cast<uv_stream_t*>(&c->tcp), [](uv_shutdown_t*, int) {});
    return;
  }
  std::string& chunk = g_server.chunks[g_server.next++];
  auto* req = new uv_write_t;
  req->data = c;
  uv_buf_t buf = uv_buf_init(chunk.data(), static_cast<unsigned>(chunk.size()));
  if (uv_write(req, reinterpret_cast<uv_stream_t*>(&c->tcp), &buf, 1, server_written) < 0)
    delete req;
}

void server_accept(uv_stream_t* listener, int status) {
  if (status < 0) return;
  auto* c = new ServerConn;
  uv_tcp_init(&g_loop, &c->tcp);
  uv_timer_init(&g_loop, &c->pause);
  c->tcp.data = c->pause.data = c;
  g_server.accepted = true;
  if (uv_accept(listener, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
    server_close(c);
    return;
  }
  // Reads and drops what the probe sends, until it closes.
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&c->tcp),
      [](uv_handle_t* h, size_t, uv_buf_t* buf) {
        auto* conn = static_cast<ServerConn*>(h->data);
        *buf = uv_buf_init(conn->buf, sizeof conn->buf);
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t*) {
        if (n < 0) server_close(static_cast<ServerConn*>(s->data));
      });
  server_write_next(c);
}

// A check's table parsed as the config loader does; null when the loader
// would report an error.
std::shared_ptr<const ProbeSpec> parse_spec(const std::string& text) {
  static const auto file = std::make_shared<const std::string>("fuzz.toml");
  toml::table table;
  try {
    table = toml::parse(text, std::string_view(*file));
  } catch (const toml::parse_error&) {
    return nullptr;
  }
  wacht::runtime::Diagnostics diag;
  diag.add_source(file, text);
  wacht::runtime::TableReader reader(diag, "check 'fuzz'", wacht::runtime::SourceLoc{file, 1, 1});
  reader.add_layer(table);
  static constexpr wacht::runtime::KeySpec kTarget[] = {{"target", "string", "", ""}};
  const wacht::probes::ProbeType type = wacht::probes::tcp_probe_type();
  reader.declare(kTarget);
  reader.declare(type.keys);
  std::string target = reader.get_string("target").value_or("");
  auto spec = type.parse(reader, target);
  reader.finish();
  diag.render();
  return diag.has_errors() ? nullptr : spec;
}

std::string target() { return "127.0.0.1:" + std::to_string(g_port); }

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  uv_loop_init(&g_loop);
  uv_tcp_init(&g_loop, &g_listener);
  sockaddr_in addr{};
  uv_ip4_addr("127.0.0.1", 0, &addr);
  if (uv_tcp_bind(&g_listener, reinterpret_cast<const sockaddr*>(&addr), 0) != 0 ||
      uv_listen(reinterpret_cast<uv_stream_t*>(&g_listener), 16, server_accept) != 0)
    std::abort();
  sockaddr_storage bound{};
  int len = sizeof bound;
  uv_tcp_getsockname(&g_listener, reinterpret_cast<sockaddr*>(&bound), &len);
  g_port = ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto next_line = [&]() -> std::string_view {
    size_t nl = in.find('\n');
    std::string_view line = in.substr(0, nl);
    in = nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
    return line;
  };

  std::shared_ptr<const ProbeSpec> spec;
  std::string_view mode = next_line();
  if (mode.starts_with("preset ")) {
    // Parsed once: presets with STARTTLS load the system CAs. imaps, pop3s
    // and ldaps would only repeat the TLS handshake smtps already covers.
    static std::map<std::string, std::shared_ptr<const ProbeSpec>, std::less<>> presets = [] {
      std::map<std::string, std::shared_ptr<const ProbeSpec>, std::less<>> out;
      for (const char* name : {"smtp-plain", "imap-plain", "pop3-plain", "ssh", "smtp", "imap",
                               "pop3", "ldap", "smtps"})
        out[name] = parse_spec("target = \"" + target() + "\"\npreset = \"" + name + "\"\n");
      return out;
    }();
    auto it = presets.find(mode.substr(7));
    if (it == presets.end()) return -1;
    FUZZ_CHECK(it->second, "preset " + it->first + " does not parse");
    spec = it->second;
  } else if (mode == "steps") {
    std::string text = "target = \"" + target() + "\"\nsteps = [\n";
    for (std::string_view line = next_line(); line != "--"; line = next_line()) {
      // A STARTTLS step would load the system CAs on every run: presets cover TLS.
      if (line.find("tls") != std::string_view::npos) return -1;
      text.append(line).append(",\n");
      if (in.empty()) break;
    }
    text += "]\n";
    spec = parse_spec(text);
  } else {
    return -1;
  }
  if (!spec) return 0;

  g_server = ServerRun{};
  for (size_t at = 0;;) {
    size_t sep = in.find('\x1e', at);
    std::string_view chunk = in.substr(at, sep == std::string_view::npos ? sep : sep - at);
    if (!chunk.empty()) g_server.chunks.emplace_back(chunk);
    if (sep == std::string_view::npos) break;
    at = sep + 1;
  }

  wacht::probes::ProbeContext ctx;
  ctx.loop = &g_loop;
  wacht::probes::CheckTarget check{"fuzz", target(), std::chrono::seconds(10)};
  std::unique_ptr<wacht::probes::Probe> probe =
      wacht::probes::tcp_probe_type().create(ctx, check, *spec);
  int results = 0;
  ProbeResult result;
  probe->start([&](ProbeResult r) {
    ++results;
    result = std::move(r);
  });
  // The libFuzzer -timeout catches a run that never ends.
  while (results == 0 || !g_server.accepted || !g_server.closed) uv_run(&g_loop, UV_RUN_ONCE);
  probe.reset();
  uv_run(&g_loop, UV_RUN_NOWAIT);

  FUZZ_CHECK(results == 1, "the result came more than once");
  FUZZ_CHECK(!result.summary.starts_with("internal error"), result.summary);
  FUZZ_CHECK(result.summary.find_first_of("\r\n") == std::string::npos, result.summary);
  return 0;
}
