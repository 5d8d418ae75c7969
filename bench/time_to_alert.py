#!/usr/bin/env python3
"""Time from a target breaking to its alert email landing in an SMTP sink.

Starts an SMTP sink (aiosmtpd, /usr/bin/python3), a healthy loopback HTTP
target for N-1 checks and a breakable one for the last check, runs wachtd
(build/release/wachtd) with `interval`, `retry_interval` and `max_attempts`,
then breaks the target several times and measures break -> email. The ideal
is interval + (max_attempts - 1) * retry_interval (the detection worst case);
the figure to watch is how far the measured time stays below or exceeds it.
Loopback only; every wait is bounded. Prints figures, asserts nothing.

  python3 bench/time_to_alert.py [--checks 5000] [--trials 5] [--healthy-url URL]
"""

import argparse
import glob
import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Target:
    """An HTTP server on a fixed port that can be stopped and started."""

    def __init__(self, port):
        self.port = port
        self.server = None

    def start(self):
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        http.server.ThreadingHTTPServer.request_queue_size = 1024
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checks", type=int, default=5000)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--retry", type=float, default=1.0)
    ap.add_argument("--attempts", type=int, default=3)
    ap.add_argument("--wachtd", default=os.path.join(ROOT, "build/release/wachtd"))
    ap.add_argument("--healthy-url", help="URL template of the N-1 healthy checks, {i} = check number "
                    "(e.g. an nginx on loopback; default: a Python server started here, which is "
                    "too slow for thousands of checks)")
    args = ap.parse_args()
    if args.healthy_url and not urllib.parse.urlsplit(args.healthy_url).hostname.startswith("127."):
        ap.error("--healthy-url must point to 127.0.0.0/8")

    tmp = tempfile.mkdtemp(prefix="wacht-tta-")
    procs = []
    try:
        sink_dir = os.path.join(tmp, "mail")
        sink = subprocess.Popen(["/usr/bin/python3", os.path.join(ROOT, "tests/support/smtp_sink.py"),
                                 "--dir", sink_dir], stdout=subprocess.PIPE, text=True)
        procs.append(sink)
        smtp_port = int(sink.stdout.readline())
        healthy = None
        if not args.healthy_url:
            healthy = Target(free_port())
            healthy.start()
            args.healthy_url = f"http://127.0.0.1:{healthy.port}/{{i}}"
        broken = Target(free_port())
        broken.start()
        listen = free_port()
        cfg = [
            "[daemon]", f'listen = "127.0.0.1:{listen}"', f'state_dir = "{tmp}/state"',
            'log_level = "warn"', f"max_concurrent_probes = {max(1000, args.checks)}",
            "[defaults]", 'tenant = "lup"', f'interval = "{args.interval}s"',
            f'retry_interval = "{args.retry}s"', f"max_attempts = {args.attempts}", "flap_detection = false",
            f'timeout = "{min(2.0, args.interval / 2)}s"',
            "[tenants.lup]",
            "[alerting]", 'retry_backoff = "200ms"',
            "[smtp]", f'smarthost = "127.0.0.1:{smtp_port}"', 'tls = "none"', 'from = "wacht@example.org"',
            "[receivers.oncall]", 'type = "email"', 'to = ["oncall@example.org"]',
            "[[route]]", 'receivers = ["oncall"]', 'group_wait = "0s"', 'group_interval = "1s"',
        ]
        for i in range(args.checks - 1):
            cfg += ["[[check]]", f'id = "ok-{i}"', 'type = "http"',
                    f'target = "{args.healthy_url.format(i=i)}"']
        cfg += ["[[check]]", 'id = "victim"', 'type = "http"', f'target = "http://127.0.0.1:{broken.port}/"']
        with open(os.path.join(tmp, "wacht.toml"), "w") as f:
            f.write("\n".join(cfg) + "\n")
        wachtd = subprocess.Popen([args.wachtd, "--config", os.path.join(tmp, "wacht.toml")])
        procs.append(wachtd)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{listen}/-/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(args.interval + 2)  # every check ran once

        def mails():
            return len(glob.glob(os.path.join(sink_dir, "new", "*")))

        ideal = args.interval + (args.attempts - 1) * args.retry
        delays = []
        for trial in range(args.trials):
            before = mails()
            broken.stop()
            t0 = time.time()
            while mails() == before and time.time() - t0 < ideal + 30:
                time.sleep(0.01)
            delay = time.time() - t0
            delays.append(delay)
            print(f"trial {trial + 1}: break -> email {delay:.2f} s (ideal worst case {ideal:.2f} s, "
                  f"{delay - ideal:+.2f} s)", flush=True)
            broken.start()
            t1 = time.time()
            while mails() == before + 1 and time.time() - t1 < ideal + 30:
                time.sleep(0.05)  # the resolved mail
            time.sleep(1)
        print(f"checks={args.checks} interval={args.interval}s retry={args.retry}s "
              f"max_attempts={args.attempts}")
        print(f"break -> email: min {min(delays):.2f} s, max {max(delays):.2f} s, "
              f"ideal worst case {ideal:.2f} s, worst excess {max(delays) - ideal:+.2f} s")
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
