#!/usr/bin/env python3
"""A misbehaving-on-request HTTP(S) server for loop tests (Python 3 stdlib only).

Listens on --bind (default 127.0.0.1) port 0 and prints the chosen port as the
first line on stdout. Every connection is served in a thread of its own, so a
hanging request does not block the others. Paths:

  /ok                 200 with the body "hello from wacht test server\\n"
  /status/N           status N with a short body
  /slow/MS            waits MS milliseconds, then answers like /ok
  /hang               reads the request and never answers
  /reset              reads the request and resets the connection (RST)
  /garbage            answers with bytes that are not HTTP and closes
  /huge               200 without Content-Length, then body bytes until the client leaves
  /big/N              200 with Content-Length N and N bytes of body
  /redirect/N         302 to /redirect/N-1; /redirect/0 answers like /ok
  /redirect-to?url=U  302 to U
  /auth               200 if the Basic credentials equal --auth USER:PASSWORD, else 401
  /echo               200 with the method, headers and request body as text
  /last-modified      200 with a fixed Last-Modified header
  /stats              200 with "connections N": TCP connections accepted so far

With --cert FILE --key FILE it speaks HTTPS; the TLS handshake runs in the
connection's thread, so a client that rejects the certificate only ends its
own connection. --client-ca FILE also requires a client certificate signed
by that CA.
"""

import argparse
import base64
import http.server
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse

OK_BODY = b"hello from wacht test server\n"
LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"  # 1445412480


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # tests open many connections at once

    def __init__(self, addr, tls_context, auth):
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.tls_context = tls_context
        self.auth = auth
        self.connections = 0
        self.lock = threading.Lock()
        super().__init__(addr, Handler)

    def process_request(self, request, client_address):
        with self.lock:
            self.connections += 1
        super().process_request(request, client_address)

    def finish_request(self, request, client_address):
        if self.tls_context is not None:
            tls = self.tls_context.wrap_socket(
                request, server_side=True, do_handshake_on_connect=False)
            try:
                tls.do_handshake()
            except (ssl.SSLError, OSError):
                # The client rejected our certificate, sent none, or went away.
                # Drain what it sent before closing, so that it reads our TLS
                # alert instead of a reset.
                try:
                    socket.socket.shutdown(tls, socket.SHUT_WR)
                    tls.settimeout(2)
                    while socket.socket.recv(tls, 4096):
                        pass
                except OSError:
                    pass
                tls.close()
                return
            request = tls
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address):
        # Clients of this server abort on purpose (body limits, cancel); no tracebacks.
        pass


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        sys.stderr.write("%s\n" % (format % args))

    def send_body(self, status, body, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        name = parts[0] if parts else ""
        arg = parts[1] if len(parts) > 1 else None
        handler = getattr(self, "path_" + name.replace("-", "_"), None)
        if handler is None:
            self.send_body(404, b"not found\n")
            return
        handler(arg, urllib.parse.parse_qs(url.query))

    do_HEAD = do_GET
    do_POST = do_GET
    do_PUT = do_GET
    do_DELETE = do_GET
    do_OPTIONS = do_GET

    def path_ok(self, arg, query):
        self.send_body(200, OK_BODY)

    def path_status(self, arg, query):
        code = int(arg)
        self.send_body(code, ("status %d\n" % code).encode())

    def path_slow(self, arg, query):
        time.sleep(int(arg) / 1000.0)
        self.send_body(200, OK_BODY)

    def path_hang(self, arg, query):
        # Keep the connection open without answering until the client gives up.
        while self.connection.recv(4096):
            pass
        self.close_connection = True

    def path_reset(self, arg, query):
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def path_garbage(self, arg, query):
        self.wfile.write(b"\x00\x17 this is not HTTP at all \xff\xfe\r\n\r\n")
        self.wfile.flush()
        self.close_connection = True

    def path_huge(self, arg, query):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        chunk = b"x" * 65536
        try:
            while True:
                self.wfile.write(chunk)
        except OSError:
            pass
        self.close_connection = True

    def path_big(self, arg, query):
        self.send_body(200, b"y" * int(arg))

    def path_redirect(self, arg, query):
        n = int(arg)
        if n <= 0:
            self.send_body(200, OK_BODY)
            return
        self.send_body(302, b"redirecting\n", [("Location", "/redirect/%d" % (n - 1))])

    def path_redirect_to(self, arg, query):
        self.send_body(302, b"redirecting\n", [("Location", query["url"][0])])

    def path_auth(self, arg, query):
        expected = "Basic " + base64.b64encode(self.server.auth.encode()).decode()
        if self.server.auth and self.headers.get("Authorization") == expected:
            self.send_body(200, b"welcome\n")
        else:
            self.send_body(401, b"who are you?\n", [("WWW-Authenticate", 'Basic realm="test"')])

    def path_echo(self, arg, query):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length) if length else b""
        text = "method %s\n" % self.command
        for name, value in self.headers.items():
            text += "header %s: %s\n" % (name.lower(), value)
        self.send_body(200, text.encode() + b"body " + body + b"\n")

    def path_last_modified(self, arg, query):
        self.send_body(200, OK_BODY, [("Last-Modified", LAST_MODIFIED)])

    def path_stats(self, arg, query):
        self.send_body(200, ("connections %d\n" % self.server.connections).encode())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--client-ca")
    parser.add_argument("--auth", default="", help="USER:PASSWORD expected by /auth")
    args = parser.parse_args()

    tls_context = None
    if args.cert:
        tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_context.load_cert_chain(args.cert, args.key)
        if args.client_ca:
            tls_context.verify_mode = ssl.CERT_REQUIRED
            tls_context.load_verify_locations(args.client_ca)

    server = Server((args.bind, 0), tls_context, args.auth)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
