#!/usr/bin/env python3
"""An HTTP receiver that records what it is sent, for webhook and Alertmanager tests.

Listens on 127.0.0.1 port 0 and prints the chosen port as the first line on
stdout. Every connection is served in a thread of its own. Every request
except GET /requests is recorded; GET /requests answers with the JSON array of
the records so far: {"method", "path", "headers" (names in lower case), "body",
"in_flight" (requests being handled when it arrived, itself included)}.

The first path segment chooses the answer; the rest of the path is free, so
that a client which appends its own path (/api/v2/alerts) can be steered:

  /status/N/...   status N, body "status N"
  /echo/N/...     status N, body: the request's headers, one per line
  /ugly/N/...     status N, 10 KiB body with control characters and invalid UTF-8
  /flaky/N/...    503 for the first N requests to this path, then 200
  /slow/MS/...    waits MS milliseconds, then 200
  /hang/...       reads the request and never answers
  anything else   200, body {"status":"ok"}
"""

import http.server
import json
import sys
import threading
import time


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr):
        self.records = []
        self.in_flight = 0
        self.seen = {}
        self.lock = threading.Lock()
        super().__init__(addr, Handler)

    def handle_error(self, request, client_address):
        # Clients abort on purpose (timeouts, cancel); no tracebacks.
        pass


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        sys.stderr.write("%s\n" % (format % args))

    def answer(self, status, body, content_type="text/plain; charset=utf-8"):
        if status in (204, 304) or status < 200:
            body = b""  # these never have one; bytes sent anyway would end up in the next response
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_any(self):
        if self.command == "GET" and self.path == "/requests":
            with self.server.lock:
                body = json.dumps(self.server.records).encode()
            self.answer(200, body, "application/json")
            return
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length) if length else b""
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        with self.server.lock:
            self.server.in_flight += 1
            self.server.records.append({
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
                "in_flight": self.server.in_flight,
            })
            seen = self.server.seen[self.path] = self.server.seen.get(self.path, 0) + 1
        try:
            self.respond(parts, seen)
        finally:
            with self.server.lock:
                self.server.in_flight -= 1

    def respond(self, parts, seen):
        name = parts[0] if parts else ""
        arg = parts[1] if len(parts) > 1 else "0"
        if name == "status":
            self.answer(int(arg), ("status %s" % arg).encode())
        elif name == "echo":
            text = "".join("%s: %s\n" % kv for kv in self.headers.items())
            self.answer(int(arg), text.encode())
        elif name == "ugly":
            body = b"line one\r\nline\ttwo\x00\x1b[31m \xff\xfe caf\xc3\xa9 " + b"z" * 10240
            self.answer(int(arg), body)
        elif name == "flaky":
            if seen <= int(arg):
                self.answer(503, b"try again later")
            else:
                self.answer(200, b'{"status":"ok"}', "application/json")
        elif name == "slow":
            time.sleep(int(arg) / 1000.0)
            self.answer(200, b'{"status":"ok"}', "application/json")
        elif name == "hang":
            while self.connection.recv(4096):
                pass
            self.close_connection = True
        else:
            self.answer(200, b'{"status":"ok"}', "application/json")

    do_GET = handle_any
    do_POST = handle_any
    do_PUT = handle_any


def main():
    server = Server(("127.0.0.1", 0))
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
