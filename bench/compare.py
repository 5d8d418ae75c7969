#!/usr/bin/env python3
"""wachtd side by side with blackbox_exporter + Prometheus, on the same loopback targets.

    python3 bench/compare.py                      # the full comparison (~30 min)
    python3 bench/compare.py --quick              # one window per tool, 1,000 checks (~5 min)

For every probe type (http, tcp, icmp) and size N (1,000 and 5,000 checks at 5 s)
it starts, on 127.0.0.0/8 only:

  * the targets: nginx (started from a temp dir, `Connection: close`) for the
    healthy HTTP and TCP targets; a small asyncio server for the slow (2 s) and
    hanging HTTP targets; a listener whose accept queue is full for hanging TCP
    targets; a port nobody listens on for refused ones; 127.1.x.y addresses
    for ICMP (all of 127/8 is loopback);
  * wachtd, scheduling the N checks itself every 5 s, scraped every 15 s by a
    Prometheus of its own ("prom-w");
  * blackbox_exporter, driven by a Prometheus ("prom-bb") that scrapes its
    /probe endpoint for each of the N targets every 5 s with the usual
    relabelling (__param_target, instance, __address__ -> the exporter);

and measures them in alternating windows (wachtd, blackbox, wachtd, ...): the
side not being measured is paused with SIGSTOP, so the two never compete for
the CPU, and resumed with SIGCONT a settle time before its next window. Per
window: CPU (utime+stime from /proc/<pid>/stat) of each process, divided by the
probes completed in the window (wachtd: wacht_probes_total deltas; blackbox:
probe_success samples Prometheus stored for the window), RSS, success ratio and
wachtd's scheduler lag (wacht_scheduler_lag_seconds deltas).

Then, unless skipped: wachtd's exec probe (check_dummy) against a C program that
posix_spawns the same plugin from a loop (parent + child CPU per run), and
time-to-alert at 5,000 checks (bench/time_to_alert.py with nginx as the
healthy target).

Prints a markdown table and writes it to bench/results/compare-<date>.md (and
the raw figures as .json). A benchmark, not a test: it asserts nothing. Every
load loop is bounded in count and time; child processes run in process groups
of their own and are stopped by id on exit, Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.util
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

_spec = importlib.util.spec_from_file_location("wacht_bench_run", os.path.join(HERE, "run.py"))
wb = importlib.util.module_from_spec(_spec)
sys.modules["wacht_bench_run"] = wb
_spec.loader.exec_module(wb)  # run.py's helpers: /proc readers, nginx, scrape parsing, Procs

CLK_TCK = os.sysconf("SC_CLK_TCK")
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
PROMETHEUS = "/usr/bin/prometheus"
DUMMY = "/usr/lib/nagios/plugins/check_dummy"
log = wb.log


# --------------------------------------------------------------------------- special targets


async def _serve_special(spec: str, slow_s: float) -> None:
    """slow: answers 200 after `slow_s`; hang: reads the request and never answers."""
    response = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"

    async def slow(reader, writer):
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            await asyncio.sleep(slow_s)
            writer.write(response)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                ConnectionError):
            pass
        finally:
            writer.close()

    async def hang(reader, writer):
        try:  # until the client gives up (EOF), at most 60 s
            await asyncio.wait_for(reader.read(), 60)
        except (asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    ports = dict(item.split("=") for item in spec.split(","))
    servers = [await asyncio.start_server(slow, "127.0.0.1", int(ports["slow"]), backlog=1024,
                                          reuse_address=True),
               await asyncio.start_server(hang, "127.0.0.1", int(ports["hang"]), backlog=1024,
                                          reuse_address=True)]
    await asyncio.gather(*(s.serve_forever() for s in servers))


class FullListener:
    """A TCP listener whose accept queue is full: further SYNs are dropped, so a
    connect() hangs until the client's timeout (a firewalled or overloaded host)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        for _ in range(2):  # backlog 0 admits one connection; a second one makes sure
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self.fillers.append(c)
        time.sleep(0.2)

    def hangs(self) -> bool:
        with socket.socket() as c:
            c.settimeout(0.5)
            try:
                c.connect(("127.0.0.1", self.port))
                return False
            except (socket.timeout, OSError):
                return True

    def close(self):
        for c in self.fillers:
            c.close()
        self.sock.close()


@dataclass
class TargetSet:
    nginx: wb.Targets
    endpoints: list  # (addr, port) served by nginx
    slow_port: int
    hang_port: int
    refused_port: int
    tcp_hang_port: int
    special_pid: int

    def server_ticks(self) -> int:
        t = self.nginx.cpu_ticks()
        try:
            t += wb.proc_cpu_ticks(self.special_pid)
        except OSError:
            pass
        return t


def start_targets(procs: wb.Procs, tmp: str, args) -> tuple[TargetSet, FullListener]:
    addrs = [f"127.0.0.{i}" for i in range(1, 5)]
    taken: set[int] = set()
    ports = [wb.free_port(addrs, taken) for _ in range(8)]
    endpoints = [(a, p) for p in ports for a in addrs]
    nginx = wb.start_nginx(procs, tmp, endpoints, 1, False)
    slow_port = wb.free_port(["127.0.0.1"], taken)
    hang_port = wb.free_port(["127.0.0.1"], taken)
    refused_port = wb.free_port(["127.0.0.1"], taken)  # nothing ever listens here
    special = procs.start("special-targets", [sys.executable, os.path.abspath(__file__), "--serve-special",
                                              f"slow={slow_port},hang={hang_port}",
                                              "--slow-seconds", str(args.slow_seconds)],
                          stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "special.log"), "w"))

    def up():
        for p in (slow_port, hang_port):
            with socket.create_connection(("127.0.0.1", p), timeout=1):
                pass
        return True

    if not wb.wait_until(up, 15):
        raise RuntimeError("the slow/hanging target server did not come up")
    full = FullListener()
    if not full.hangs():
        log("warning: the full-queue listener accepts connections; 'hanging' TCP targets will not hang")
    return TargetSet(nginx, endpoints, slow_port, hang_port, refused_port, full.port, special.pid), full


def target_list(kind: str, n: int, ts: TargetSet, args) -> list[tuple[str, str]]:
    """(target, category) for N checks: mostly healthy, a few slow, refused and hanging."""
    n_slow = round(n * args.slow_pct / 100) if kind == "http" else 0
    n_refused = round(n * args.refused_pct / 100) if kind != "icmp" else 0
    n_hang = round(n * args.hang_pct / 100) if kind != "icmp" else 0
    out = []
    for i in range(n):
        if kind == "icmp":
            out.append((f"127.1.{i // 250}.{i % 250 + 1}", "ok"))
            continue
        j = n - 1 - i  # the special ones at the end of the list
        if j < n_slow:
            cat = "slow"
        elif j < n_slow + n_refused:
            cat = "refused"
        elif j < n_slow + n_refused + n_hang:
            cat = "hang"
        else:
            cat = "ok"
        a, p = ts.endpoints[i % len(ts.endpoints)]
        if kind == "http":
            url = {"ok": f"http://{a}:{p}/t/{i}", "slow": f"http://127.0.0.1:{ts.slow_port}/t/{i}",
                   "refused": f"http://127.0.0.1:{ts.refused_port}/t/{i}",
                   "hang": f"http://127.0.0.1:{ts.hang_port}/t/{i}"}[cat]
        else:
            url = {"ok": f"{a}:{p}", "refused": f"127.0.0.1:{ts.refused_port}",
                   "hang": f"127.0.0.1:{ts.tcp_hang_port}"}[cat]
        out.append((url, cat))
    return out


# --------------------------------------------------------------------------- the contestants


def write_wacht_config(path: str, port: int, state_dir: str, kind: str, targets, args) -> None:
    lines = [
        "# Written by bench/compare.py.",
        "[daemon]", f'listen = "127.0.0.1:{port}"', f'state_dir = "{state_dir}"',
        f"max_concurrent_probes = {max(1000, len(targets))}", 'log_level = "warn"', "",
        "[defaults]", 'tenant = "bench"', f'interval = "{wb.fmt_duration(args.interval)}"',
        f'timeout = "{wb.fmt_duration(args.timeout)}"', "", "[tenants.bench]", "",
    ]
    for i, (t, _) in enumerate(targets):
        lines += ["[[check]]", f'id = "{kind[0]}{i}"', f'type = "{kind}"', f'target = "{t}"']
        if kind == "icmp":
            lines.append("count = 1")  # one echo per probe, as blackbox's icmp prober
        lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


BLACKBOX_CONFIG = """\
# Written by bench/compare.py: one module per probe type, IPv4 as the targets are.
modules:
  http:
    prober: http
    timeout: {timeout}
    http:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
  tcp:
    prober: tcp
    timeout: {timeout}
    tcp:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
  icmp:
    prober: icmp
    timeout: {timeout}
    icmp:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
"""


def write_prom_blackbox(path: str, kind: str, targets, bb_port: int, args) -> None:
    # The relabelling of blackbox_exporter's README: the target becomes the
    # `target` parameter and the instance label, the scrape goes to the exporter.
    lines = [
        "# Written by bench/compare.py.",
        "global:",
        f"  scrape_interval: {wb.fmt_duration(args.interval)}",
        f"  scrape_timeout: {wb.fmt_duration(args.scrape_timeout)}",
        "  evaluation_interval: 1m",
        "scrape_configs:",
        f"  - job_name: blackbox_{kind}",
        "    metrics_path: /probe",
        "    params:",
        f"      module: [{kind}]",
        "    static_configs:",
    ]
    # One group per check with a `check` label, as wachtd has one check per
    # target: Prometheus merges targets whose labels are equal, and many TCP
    # checks share an endpoint (4 addresses x 8 ports serve them all).
    for i, (t, _) in enumerate(targets):
        lines += [f"      - targets: ['{t}']", f"        labels: {{check: '{kind[0]}{i}'}}"]
    lines += [
        "    relabel_configs:",
        "      - source_labels: [__address__]",
        "        target_label: __param_target",
        "      - source_labels: [__param_target]",
        "        target_label: instance",
        "      - target_label: __address__",
        f"        replacement: 127.0.0.1:{bb_port}",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def write_prom_wacht(path: str, wacht_port: int, args) -> None:
    with open(path, "w") as f:
        f.write("\n".join([
            "# Written by bench/compare.py.",
            "global:",
            f"  scrape_interval: {wb.fmt_duration(args.wacht_scrape)}",
            "  scrape_timeout: 10s",
            "  evaluation_interval: 1m",
            "scrape_configs:",
            "  - job_name: wacht",
            "    static_configs:",
            f"      - targets: ['127.0.0.1:{wacht_port}']",
        ]) + "\n")


def start_prometheus(procs: wb.Procs, name: str, cfg: str, port: int, data: str, logpath: str):
    p = procs.start(name, [PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={data}",
                           f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
                           "--storage.tsdb.retention.time=2h"],
                    stdout=subprocess.DEVNULL, stderr=open(logpath, "w"))

    def ready():
        if p.poll() is not None:
            raise RuntimeError(f"{name} exited: " + open(logpath).read()[-2000:])
        return wb.http_get(f"http://127.0.0.1:{port}/-/ready", timeout=2)[0] == 200

    if not wb.wait_until(ready, 120, 0.2):
        raise RuntimeError(f"{name} not ready within 120 s")
    return p


def prom_query(port: int, expr: str, at: float) -> float | None:
    q = urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"})
    status, body = wb.http_get(f"http://127.0.0.1:{port}/api/v1/query?{q}", timeout=60)
    if status != 200:
        return None
    data = json.loads(body)
    res = data.get("data", {}).get("result", [])
    if not res:
        return 0.0
    return float(res[0]["value"][1])


def pause(*procs):
    for p in procs:
        if p is not None and p.poll() is None:
            os.kill(p.pid, signal.SIGSTOP)


def resume(*procs):
    for p in procs:
        if p is not None and p.poll() is None:
            os.kill(p.pid, signal.SIGCONT)


def cpu_ticks(pid: int, children: bool = False) -> int:
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    fields = text[text.rfind(")") + 2:].split()
    own = int(fields[11]) + int(fields[12])
    return own + (int(fields[13]) + int(fields[14]) if children else 0)


def rss_mib(pid: int) -> float:
    return wb.proc_status(pid).get("VmRSS", 0) / 1024


# --------------------------------------------------------------------------- windows


@dataclass
class Window:
    tool: str
    index: int
    seconds: float = 0.0
    probes: float = 0.0
    success_ratio: float | None = None
    cpu_ms_per_probe: float | None = None  # the prober's own (wachtd or blackbox)
    prom_ms_per_probe: float | None = None  # the Prometheus that drives it / scrapes it
    rss_mib: float = 0.0
    prom_rss_mib: float = 0.0
    lag_p50_ms: float | None = None
    lag_p99_ms: float | None = None
    other_cores: float = 0.0
    server_cores: float = 0.0
    load: str = ""


@dataclass
class Config:
    kind: str
    checks: int
    expected_pps: float
    categories: dict
    windows: list = field(default_factory=list)


def sample_machine(dt_fn):
    return wb.machine_cpu(), os.times()


def sleep_window(seconds: float, pids: list[int]) -> dict[int, float]:
    """Sleeps `seconds` (bounded), sampling the highest VmRSS of each pid."""
    peak = {p: 0.0 for p in pids}
    end = time.monotonic() + seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        time.sleep(min(1.0, end - now))
        for p in pids:
            try:
                peak[p] = max(peak[p], rss_mib(p))
            except OSError:
                raise RuntimeError(f"process {p} died during the window")
    return peak


def other_cores(m0, m1, self0, self1, dt, known_cores):
    busy = (m1[0] - m0[0]) / max(1, m1[1] - m0[1]) * (os.cpu_count() or 1)
    harness = (self1.user + self1.system - self0.user - self0.system) / dt
    return max(0.0, busy - known_cores - harness)


def wacht_window(idx, wacht, promw, ts: TargetSet, base: str, args) -> Window:
    w = Window("wachtd", idx)
    s0 = wb.scrape(base)  # outside the CPU window, as in run.py
    t0 = time.monotonic()
    c0, p0, srv0 = cpu_ticks(wacht.pid), cpu_ticks(promw.pid), ts.server_ticks()
    m0, self0 = wb.machine_cpu(), os.times()
    w.load = open("/proc/loadavg").read().split()[0]
    sleep_window(args.window, [wacht.pid])
    c1, p1, srv1 = cpu_ticks(wacht.pid), cpu_ticks(promw.pid), ts.server_ticks()
    m1, self1 = wb.machine_cpu(), os.times()
    t1 = time.monotonic()
    w.rss_mib, w.prom_rss_mib = rss_mib(wacht.pid), rss_mib(promw.pid)
    s1 = wb.scrape(base)
    dt = t1 - t0
    w.seconds = dt
    res = {k: s1.results.get(k, 0.0) - s0.results.get(k, 0.0) for k in set(s0.results) | set(s1.results)}
    total = sum(res.values())
    pps = total / (s1.t - s0.t) if s1.t > s0.t else 0.0
    w.probes = pps * dt  # probes finished during the CPU window
    w.success_ratio = res.get("success", 0.0) / total if total else None
    if w.probes:
        w.cpu_ms_per_probe = (c1 - c0) * 1000 / CLK_TCK / w.probes
        w.prom_ms_per_probe = (p1 - p0) * 1000 / CLK_TCK / w.probes
    dl = [(le, b - a) for (le, b), (_, a) in zip(s1.lag_buckets, s0.lag_buckets)]
    if dl and len(s1.lag_buckets) == len(s0.lag_buckets):
        p50, p99 = wb.histogram_quantile(0.5, dl), wb.histogram_quantile(0.99, dl)
        w.lag_p50_ms = None if p50 is None else p50 * 1000
        w.lag_p99_ms = None if p99 is None else p99 * 1000
    w.server_cores = (srv1 - srv0) / CLK_TCK / dt
    known = ((c1 - c0) + (p1 - p0) + (srv1 - srv0)) / CLK_TCK / dt
    w.other_cores = other_cores(m0, m1, self0, self1, dt, known)
    return w


def blackbox_window(idx, bb, prombb, prom_port: int, ts: TargetSet, args) -> Window:
    w = Window("blackbox", idx)
    t0, wall0 = time.monotonic(), time.time()
    c0, p0, srv0 = cpu_ticks(bb.pid), cpu_ticks(prombb.pid), ts.server_ticks()
    m0, self0 = wb.machine_cpu(), os.times()
    w.load = open("/proc/loadavg").read().split()[0]
    sleep_window(args.window, [bb.pid, prombb.pid])
    c1, p1, srv1 = cpu_ticks(bb.pid), cpu_ticks(prombb.pid), ts.server_ticks()
    m1, self1 = wb.machine_cpu(), os.times()
    t1, wall1 = time.monotonic(), time.time()
    w.rss_mib, w.prom_rss_mib = rss_mib(bb.pid), rss_mib(prombb.pid)
    dt = t1 - t0
    w.seconds = dt
    # Samples carry their scrape's start time: count those that started in the
    # window, once the last of them had time to be stored.
    time.sleep(args.scrape_timeout + 0.5)
    rng = f"{int(round((wall1 - wall0) * 1000))}ms"
    n = prom_query(prom_port, f"sum(count_over_time(probe_success[{rng}]))", wall1) or 0.0
    ok = prom_query(prom_port, f"sum(sum_over_time(probe_success[{rng}]))", wall1) or 0.0
    w.probes = n
    w.success_ratio = ok / n if n else None
    if n:
        w.cpu_ms_per_probe = (c1 - c0) * 1000 / CLK_TCK / n
        w.prom_ms_per_probe = (p1 - p0) * 1000 / CLK_TCK / n
    w.server_cores = (srv1 - srv0) / CLK_TCK / dt
    known = ((c1 - c0) + (p1 - p0) + (srv1 - srv0)) / CLK_TCK / dt
    w.other_cores = other_cores(m0, m1, self0, self1, dt, known)
    return w


def run_config(kind: str, n: int, procs: wb.Procs, ts: TargetSet, tmp: str, args, wachtd: str) -> Config:
    targets = target_list(kind, n, ts, args)
    cats: dict[str, int] = {}
    for _, c in targets:
        cats[c] = cats.get(c, 0) + 1
    cfg = Config(kind, n, n / args.interval, cats)
    d = os.path.join(tmp, f"{kind}-{n}")
    os.makedirs(d)
    taken = set(p for _, p in ts.endpoints)
    wport, bbport, pwport, pbport = (wb.free_port(["127.0.0.1"], taken) for _ in range(4))

    # wachtd and the Prometheus that scrapes it
    write_wacht_config(os.path.join(d, "wacht.toml"), wport, os.path.join(d, "state"), kind, targets, args)
    write_prom_wacht(os.path.join(d, "prom-w.yml"), wport, args)
    log(f"{kind} x {n}: starting wachtd, blackbox_exporter and two Prometheus servers")
    wlog = os.path.join(d, "wachtd.log")
    wacht = procs.start("wachtd", [wachtd, "--config", os.path.join(d, "wacht.toml")],
                        stdout=open(wlog, "w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{wport}"

    def wready():
        if wacht.poll() is not None:
            raise RuntimeError("wachtd exited: " + open(wlog).read()[-2000:])
        return wb.http_get(base + "/-/ready", timeout=2)[0] == 200

    if not wb.wait_until(wready, 60):
        raise RuntimeError("wachtd not ready within 60 s")
    promw = start_prometheus(procs, "prom-w", os.path.join(d, "prom-w.yml"), pwport,
                             os.path.join(d, "prom-w-data"), os.path.join(d, "prom-w.log"))
    pause(wacht, promw)

    # blackbox_exporter and the Prometheus that drives it
    with open(os.path.join(d, "blackbox.yml"), "w") as f:
        f.write(BLACKBOX_CONFIG.format(timeout=wb.fmt_duration(args.timeout)))
    blog = os.path.join(d, "blackbox.log")
    bb = procs.start("blackbox", [BLACKBOX, f"--config.file={os.path.join(d, 'blackbox.yml')}",
                                  f"--web.listen-address=127.0.0.1:{bbport}", "--log.level=warn"],
                     stdout=subprocess.DEVNULL, stderr=open(blog, "w"))

    def bready():
        if bb.poll() is not None:
            raise RuntimeError("blackbox_exporter exited: " + open(blog).read()[-2000:])
        return wb.http_get(f"http://127.0.0.1:{bbport}/metrics", timeout=2)[0] == 200

    if not wb.wait_until(bready, 30):
        raise RuntimeError("blackbox_exporter not ready within 30 s")
    write_prom_blackbox(os.path.join(d, "prom-bb.yml"), kind, targets, bbport, args)
    prombb = start_prometheus(procs, "prom-bb", os.path.join(d, "prom-bb.yml"), pbport,
                              os.path.join(d, "prom-bb-data"), os.path.join(d, "prom-bb.log"))
    # Prometheus hands targets to its scrape loops a few seconds after start,
    # and each loop starts at its own offset in the interval: wait until every
    # target has been scraped before the first pause.
    def all_scraped():
        return (prom_query(pbport, f'count(up{{job="blackbox_{kind}"}})', time.time()) or 0) >= n

    if not wb.wait_until(all_scraped, 60 + 2 * args.interval, 1.0):
        log(f"warning: prom-bb has not scraped all {n} targets after a minute")
    pause(bb, prombb)

    try:
        # Once before the first window: wachtd was paused while prom-bb started
        # and resumes with every check overdue; let that burst pass.
        resume(wacht, promw)
        time.sleep(args.warmup)
        pause(wacht, promw)
        for i in range(args.windows):
            resume(wacht, promw)
            time.sleep(args.settle)
            w = wacht_window(i + 1, wacht, promw, ts, base, args)
            pause(wacht, promw)
            cfg.windows.append(w)
            log(f"{kind} x {n} window {i + 1} wachtd: {fmt(w.cpu_ms_per_probe, '.4f')} ms/probe, "
                f"{w.probes / w.seconds:.0f} probes/s, success {fmt(w.success_ratio, '.3f')}, "
                f"RSS {w.rss_mib:.0f} MiB, other cores {w.other_cores:.2f}")
            resume(bb, prombb)
            # Prometheus fires every target's missed scrape at once on resume:
            # give blackbox longer to work through that herd.
            time.sleep(args.settle_bb)
            b = blackbox_window(i + 1, bb, prombb, pbport, ts, args)
            pause(bb, prombb)
            cfg.windows.append(b)
            log(f"{kind} x {n} window {i + 1} blackbox: {fmt(b.cpu_ms_per_probe, '.4f')} ms/probe "
                f"+ Prometheus {fmt(b.prom_ms_per_probe, '.4f')}, {b.probes / b.seconds:.0f} probes/s, "
                f"success {fmt(b.success_ratio, '.3f')}, RSS {b.rss_mib:.0f} MiB, "
                f"other cores {b.other_cores:.2f}")
    finally:
        resume(wacht, promw, bb, prombb)  # a stopped process would not see SIGTERM
        for p in (prombb, bb, promw, wacht):
            procs.stop(p, timeout=30)
    return cfg


# --------------------------------------------------------------------------- exec and time to alert


def exec_compare(procs: wb.Procs, tmp: str, args, wachtd: str) -> dict:
    out: dict = {}
    if not os.access(DUMMY, os.X_OK):
        log(f"{DUMMY} missing (monitoring-plugins-basic); skipping the exec comparison")
        return out
    cc = shutil.which("cc") or shutil.which("gcc")
    runs = args.exec_runs
    if cc:
        exe = os.path.join(tmp, "spawn_loop")
        subprocess.run([cc, "-O2", "-o", exe, os.path.join(HERE, "spawn_loop.c")], check=True, timeout=120)
        r = subprocess.run([exe, str(runs), DUMMY, "0", "ok"], capture_output=True, text=True, timeout=600)
        kv = dict(x.split("=") for x in r.stdout.split())
        out["loop"] = {"runs": runs, "parent_ms": float(kv["parent_ms"]) / runs,
                       "child_ms": float(kv["children_ms"]) / runs, "wall_ms": float(kv["wall_ms"]) / runs}
    # wachtd running the same plugin from exec checks
    d = os.path.join(tmp, "exec")
    os.makedirs(d)
    port = wb.free_port(["127.0.0.1"], set())
    n = args.exec_checks
    lines = ["[daemon]", f'listen = "127.0.0.1:{port}"', f'state_dir = "{d}/state"', 'log_level = "warn"',
             "max_concurrent_probes = 1000", "max_concurrent_plugins = 16", "[defaults]",
             'tenant = "bench"', 'interval = "1s"', 'timeout = "800ms"', "[tenants.bench]"]
    for i in range(n):
        lines += ["[[check]]", f'id = "e{i}"', 'type = "exec"', 'target = "x"',
                  f'command = ["{DUMMY}", "0", "ok"]']
    with open(os.path.join(d, "wacht.toml"), "w") as f:
        f.write("\n".join(lines) + "\n")
    wlog = os.path.join(d, "wachtd.log")
    w = procs.start("wachtd-exec", [wachtd, "--config", os.path.join(d, "wacht.toml")],
                    stdout=open(wlog, "w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        if not wb.wait_until(lambda: wb.http_get(base + "/-/ready", timeout=2)[0] == 200, 60):
            raise RuntimeError("wachtd (exec) not ready")
        time.sleep(3)
        s0 = wb.scrape(base)
        own0, all0 = cpu_ticks(w.pid), cpu_ticks(w.pid, children=True)
        t0 = time.monotonic()
        time.sleep(args.exec_window)
        own1, all1 = cpu_ticks(w.pid), cpu_ticks(w.pid, children=True)
        t1 = time.monotonic()
        s1 = wb.scrape(base)
        total = sum(s1.results.values()) - sum(s0.results.values())
        runs_w = total / (s1.t - s0.t) * (t1 - t0)
        ok = s1.results.get("success", 0) - s0.results.get("success", 0)
        out["wachtd"] = {"checks": n, "runs": runs_w, "success_ratio": ok / total if total else None,
                         "own_ms": (own1 - own0) * 1000 / CLK_TCK / runs_w if runs_w else None,
                         "child_ms": ((all1 - all0) - (own1 - own0)) * 1000 / CLK_TCK / runs_w
                         if runs_w else None,
                         "rss_mib": rss_mib(w.pid)}
    finally:
        procs.stop(w, timeout=30)
    return out


def floor(ts: TargetSet, tmp: str, args, kinds: list[str], rate: float) -> list[dict]:
    """bench/floor.c: a bare blocking C client at the same probe rate, one probe per
    wake-up and in bursts of 5 (as wachtd's 5 ms phase grid wakes), for reference."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        log("no C compiler; skipping the floor measurement")
        return []
    exe = os.path.join(tmp, "floor")
    subprocess.run([cc, "-O2", "-o", exe, os.path.join(HERE, "floor.c")], check=True, timeout=120)
    out = []
    for kind in kinds:
        if kind == "icmp":
            targets = [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(250)]
        else:
            targets = [f"{a}:{p}" + ("/t/0" if kind == "http" else "") for a, p in ts.endpoints]
        for burst in (1, 5):
            r = subprocess.run([exe, kind, f"{rate:g}/{burst}", str(args.floor_seconds)] + targets,
                               capture_output=True, text=True, timeout=args.floor_seconds + 60)
            kv = dict(x.split("=", 1) for x in r.stdout.split())
            if "cpu_ms_per_probe" in kv:
                out.append({"kind": kind, "rate": rate, "burst": burst, "probes": int(kv["probes"]),
                            "ok": int(kv["ok"]), "cpu_ms": float(kv["cpu_ms_per_probe"])})
                log(f"floor {kind} at {rate:g}/s in bursts of {burst}: {kv['cpu_ms_per_probe']} ms/probe")
    return out


def time_to_alert(ts: TargetSet, args, wachtd: str) -> dict:
    a, p = ts.endpoints[0]
    cmd = [sys.executable, os.path.join(HERE, "time_to_alert.py"), "--checks", str(args.tta_checks),
           "--trials", str(args.tta_trials), "--wachtd", wachtd,
           "--healthy-url", f"http://{a}:{p}/t/{{i}}"]
    log("time to alert: " + " ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    out = {"command": "python3 bench/time_to_alert.py " + " ".join(cmd[2:-2]) + " --healthy-url <nginx>",
           "lines": lines}
    for l in lines:
        if l.startswith("break -> email:"):
            out["summary"] = l
    if r.returncode != 0:
        out["error"] = r.stderr[-1500:]
    return out


# --------------------------------------------------------------------------- report


def fmt(v, spec=".3f") -> str:
    return "n/a" if v is None else f"{v:{spec}}"


def med_range(vals, spec=".3f") -> str:
    vals = [v for v in vals if v is not None]
    if not vals:
        return "n/a"
    m = statistics.median(vals)
    if len(vals) == 1 or min(vals) == max(vals):
        return f"{m:{spec}}"
    return f"{m:{spec}} ({min(vals):{spec}}–{max(vals):{spec}})"


def report(configs: list[Config], exec_res: dict, tta: dict, floors: list[dict], args,
           header: list[str]) -> str:
    out = [f"# wachtd vs blackbox_exporter — {datetime.datetime.now():%Y-%m-%d %H:%M}", ""]
    out += [f"- {h}" for h in header]
    out += ["", "Median over the windows, (min–max) in brackets. CPU is utime+stime from /proc per "
            "probe completed in the same window; blackbox needs Prometheus to schedule its probes, so "
            "Prometheus' CPU is shown next to it; wachtd schedules itself and its Prometheus only scrapes "
            f"/metrics every {wb.fmt_duration(args.wacht_scrape)}.", ""]
    out += ["| type × checks | wachtd ms/probe | blackbox ms/probe | + its Prometheus ms/probe | "
            "**wacht / blackbox** | wacht / (blackbox + Prometheus) | wachtd's Prometheus ms/probe |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for c in configs:
        W = [w for w in c.windows if w.tool == "wachtd"]
        B = [w for w in c.windows if w.tool == "blackbox"]
        # Windows in which a tool kept up with the schedule (>= 90 % of the
        # expected probes): in the others its CPU went into scrapes or probes
        # that timed out, and CPU per completed probe means little.
        def kept_up(ws):
            ok = [w for w in ws if w.probes >= 0.9 * c.expected_pps * w.seconds]
            return ok or ws
        W, B = kept_up(W), kept_up(B)
        saturated = any(w.probes < 0.9 * c.expected_pps * w.seconds
                        for w in c.windows if w.tool == "blackbox")
        wm = statistics.median([w.cpu_ms_per_probe for w in W if w.cpu_ms_per_probe]) if W else None
        bm = statistics.median([w.cpu_ms_per_probe for w in B if w.cpu_ms_per_probe]) if B else None
        pm = statistics.median([w.prom_ms_per_probe for w in B if w.prom_ms_per_probe]) if B else None
        r1 = f"{wm / bm:.3f} (1 : {bm / wm:.1f})" if wm and bm else "n/a"
        r2 = f"{wm / (bm + pm):.3f} (1 : {(bm + pm) / wm:.1f})" if wm and bm and pm else "n/a"
        mark = " ‡" if saturated else ""
        out.append(f"| {c.kind} × {c.checks:,}{mark} | {med_range([w.cpu_ms_per_probe for w in W], '.4f')} | "
                   f"{med_range([w.cpu_ms_per_probe for w in B])} | {med_range([w.prom_ms_per_probe for w in B])} | "
                   f"**{r1}** | {r2} | {med_range([w.prom_ms_per_probe for w in W], '.4f')} |")
    if any(any(w.probes < 0.9 * c.expected_pps * w.seconds for w in c.windows) for c in configs):
        out += ["", "‡ In some windows a tool completed fewer than 90 % of the scheduled probes (see the "
                    "per-window table); the CPU figures above are from the windows in which it kept up, "
                    "or from all windows if it never did."]
    out += ["", "| type × checks | targets | probes/s wachtd / blackbox (expected) | success wachtd / blackbox | "
            "RSS MiB wachtd / blackbox / its Prometheus | wachtd lag p50 / p99 ms | other load (cores) w / b |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for c in configs:
        W = [w for w in c.windows if w.tool == "wachtd"]
        B = [w for w in c.windows if w.tool == "blackbox"]
        cats = ", ".join(f"{v} {k}" for k, v in c.categories.items())
        pps_w = statistics.median([w.probes / w.seconds for w in W]) if W else 0
        pps_b = statistics.median([w.probes / w.seconds for w in B]) if B else 0
        out.append(
            f"| {c.kind} × {c.checks:,} | {cats} | {pps_w:.0f} / {pps_b:.0f} ({c.expected_pps:.0f}) | "
            f"{med_range([w.success_ratio for w in W], '.3f')} / {med_range([w.success_ratio for w in B], '.3f')} | "
            f"{med_range([w.rss_mib for w in W], '.0f')} / {med_range([w.rss_mib for w in B], '.0f')} / "
            f"{med_range([w.prom_rss_mib for w in B], '.0f')} | "
            f"{med_range([w.lag_p50_ms for w in W], '.2f')} / {med_range([w.lag_p99_ms for w in W], '.2f')} | "
            f"{med_range([w.other_cores for w in W], '.2f')} / {med_range([w.other_cores for w in B], '.2f')} |")
    if floors:
        out += ["", f"The floor: bench/floor.c, a bare blocking C client (socket, connect, [GET, read "
                    f"until close,] close; or one raw-socket echo), paced at the rate of the largest "
                    f"size, {args.floor_seconds:g} s each. CPU per probe of that process:", "",
                "| type | rate | one probe per wake-up | bursts of 5 (wachtd's 5 ms grid) |",
                "|---|---:|---:|---:|"]
        for kind in dict.fromkeys(f["kind"] for f in floors):
            row = {f["burst"]: f for f in floors if f["kind"] == kind}
            cells = [f"{row[b]['cpu_ms']:.4f}" if b in row else "n/a" for b in (1, 5)]
            rate = next(iter(row.values()))["rate"]
            out.append(f"| {kind} | {rate:g}/s | {cells[0]} | {cells[1]} |")
    if exec_res:
        out += ["", "Exec: running `check_dummy 0 ok` (monitoring-plugins) — CPU per run, parent + child.", "",
                "| | runs | parent ms/run | child ms/run | total ms/run |", "|---|---:|---:|---:|---:|"]
        if "wachtd" in exec_res:
            e = exec_res["wachtd"]
            tot = (e["own_ms"] or 0) + (e["child_ms"] or 0)
            out.append(f"| wachtd exec probe ({e['checks']} checks at 1 s, success "
                       f"{fmt(e['success_ratio'], '.3f')}) | {e['runs']:.0f} | {fmt(e['own_ms'])} | "
                       f"{fmt(e['child_ms'])} | {tot:.3f} |")
        if "loop" in exec_res:
            e = exec_res["loop"]
            out.append(f"| posix_spawn loop in C (bench/spawn_loop.c, {e['wall_ms']:.2f} ms wall/run) | "
                       f"{e['runs']} | {e['parent_ms']:.3f} | {e['child_ms']:.3f} | "
                       f"{e['parent_ms'] + e['child_ms']:.3f} |")
    if tta:
        out += ["", f"Time to alert (target breaks → email in the SMTP sink), {args.tta_checks:,} HTTP checks "
                    "at 5 s, retry 1 s, max_attempts 3:", ""]
        out += ["    " + l for l in tta.get("lines", [])]
        if "error" in tta:
            out += ["", "time_to_alert.py failed: " + tta["error"].splitlines()[-1] if tta["error"] else ""]
    out += ["", "Per window:", "", "| type × checks | tool | # | s | probes | ms/probe | Prometheus ms/probe | "
            "success | RSS MiB | lag p99 ms | load1 | other cores |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in configs:
        for w in c.windows:
            out.append(f"| {c.kind} × {c.checks} | {w.tool} | {w.index} | {w.seconds:.1f} | {w.probes:.0f} | "
                       f"{fmt(w.cpu_ms_per_probe, '.4f')} | {fmt(w.prom_ms_per_probe, '.4f')} | "
                       f"{fmt(w.success_ratio, '.4f')} | {w.rss_mib:.1f} | {fmt(w.lag_p99_ms, '.2f')} | "
                       f"{w.load} | {w.other_cores:.2f} |")
    out += ["", "Command: `python3 bench/compare.py " + " ".join(sys.argv[1:]) + "`. Method: bench/README.md.", ""]
    return "\n".join(out)


def header_lines(args, wachtd: str) -> list[str]:
    def version(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "?"
    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return [
        f"wachtd: `{wachtd}` ({version([wachtd, '--version'])})",
        f"blackbox_exporter: {version([BLACKBOX, '--version'])}; Prometheus: {version([PROMETHEUS, '--version'])}",
        f"machine: {os.cpu_count()} CPUs, {cpu}, load average at start "
        f"{' '.join(open('/proc/loadavg').read().split()[:3])}",
        f"interval {wb.fmt_duration(args.interval)}, probe timeout {wb.fmt_duration(args.timeout)}, "
        f"blackbox scrape_timeout {wb.fmt_duration(args.scrape_timeout)}; {args.windows} window(s) of "
        f"{wb.fmt_duration(args.window)} per tool, alternating (the other side paused with SIGSTOP), "
        f"each after {wb.fmt_duration(args.settle)} (wachtd) or {wb.fmt_duration(args.settle_bb)} "
        f"(blackbox) of settling; wachtd warmed up {wb.fmt_duration(args.warmup)} first",
        f"targets: nginx (1 worker, Connection: close) on 4 addresses × 8 ports; of HTTP checks "
        f"{args.slow_pct:g} % slow ({args.slow_seconds:g} s), {args.refused_pct:g} % refused, "
        f"{args.hang_pct:g} % hanging; TCP the same without slow ones; ICMP to 127.1.x.y, one echo per probe, "
        "all answering (loopback cannot lose an echo without changing the firewall)",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checks", default="1000,5000")
    ap.add_argument("--types", default="http,tcp,icmp")
    ap.add_argument("--interval", type=wb.parse_duration, default=5.0)
    ap.add_argument("--timeout", type=wb.parse_duration, default=3.0, help="probe timeout, both tools")
    ap.add_argument("--scrape-timeout", type=wb.parse_duration, default=4.0, help="prom-bb scrape_timeout")
    ap.add_argument("--wacht-scrape", type=wb.parse_duration, default=15.0, help="prom-w scrape_interval")
    ap.add_argument("--windows", type=int, default=3, help="windows per tool and configuration")
    ap.add_argument("--window", type=wb.parse_duration, default=30.0)
    ap.add_argument("--settle", type=wb.parse_duration, default=None, help="default: interval + 3 s")
    ap.add_argument("--warmup", type=wb.parse_duration, default=None,
                    help="wachtd runs this long before its first window (default: 60 s)")
    ap.add_argument("--slow-pct", type=float, default=2.0)
    ap.add_argument("--slow-seconds", type=float, default=2.0)
    ap.add_argument("--refused-pct", type=float, default=1.0)
    ap.add_argument("--hang-pct", type=float, default=1.0)
    ap.add_argument("--exec-checks", type=int, default=100)
    ap.add_argument("--exec-window", type=wb.parse_duration, default=20.0)
    ap.add_argument("--exec-runs", type=int, default=2000, help="runs of the posix_spawn loop")
    ap.add_argument("--tta-checks", type=int, default=5000)
    ap.add_argument("--tta-trials", type=int, default=3)
    ap.add_argument("--floor-seconds", type=float, default=10.0, help="per floor measurement")
    ap.add_argument("--skip", default="", help="comma-separated: floor, exec, tta")
    ap.add_argument("--quick", action="store_true", help="1,000 checks, one 20 s window per tool, 2 TTA trials")
    ap.add_argument("--build-dir", default=wb.DEFAULT_BUILD)
    ap.add_argument("--wachtd", help="path of wachtd (overrides --build-dir)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"), help="where the .md and .json go")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    ap.add_argument("--serve-special", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.serve_special:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            asyncio.run(_serve_special(args.serve_special, args.slow_seconds))
        except KeyboardInterrupt:
            pass
        return 0

    if args.quick:
        args.checks, args.windows, args.window, args.tta_trials = "1000", 1, 20.0, 2
    if args.settle is None:
        args.settle = args.interval + 3
    if args.warmup is None:
        # Failing checks go hard-down ~45 s after start and alerting snapshots its state
        # meanwhile (seconds of CPU at 5,000 checks): measure after that.
        args.warmup = max(60.0, 3 * args.interval)
    args.settle_bb = max(args.settle, 3 * args.interval)
    if args.scrape_timeout > args.interval or args.timeout >= args.scrape_timeout:
        ap.error("need timeout < scrape-timeout <= interval")
    counts = [int(x) for x in args.checks.split(",") if x.strip()]
    kinds = [k.strip() for k in args.types.split(",") if k.strip()]
    if any(k not in ("http", "tcp", "icmp") for k in kinds) or not counts:
        ap.error("--types: http,tcp,icmp; --checks: numbers")
    if any(c < 1 or c > 20000 for c in counts) or not 1 <= args.windows <= 10 or args.window > 600:
        ap.error("--checks 1..20000, --windows 1..10, --window <= 10m")
    # One command: what is missing is installed (idempotent) and wachtd is
    # built (incrementally) unless a binary is given.
    subprocess.run(["sh", os.path.join(HERE, "install-deps.sh")], check=True, timeout=1800)
    if not args.wachtd:
        wb.build(args.build_dir)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    procs = wb.Procs()
    tmp = tempfile.mkdtemp(prefix="wacht-compare-")
    os.chmod(tmp, 0o755)
    full = None
    rc = 0
    configs: list[Config] = []
    try:
        wachtd = wb.find_wachtd(args)
        header = header_lines(args, wachtd)
        for h in header:
            log(h)
        ts, full = start_targets(procs, tmp, args)
        for kind in kinds:
            for n in counts:
                configs.append(run_config(kind, n, procs, ts, tmp, args, wachtd))
        floors = [] if "floor" in skip else floor(ts, tmp, args, kinds, max(counts) / args.interval)
        exec_res = {} if "exec" in skip else exec_compare(procs, tmp, args, wachtd)
        tta = {} if "tta" in skip else time_to_alert(ts, args, wachtd)
        text = report(configs, exec_res, tta, floors, args, header)
        print(text)
        os.makedirs(args.out, exist_ok=True)
        stem = os.path.join(args.out, f"compare-{datetime.date.today():%Y-%m-%d}")
        k = 2
        path = stem
        while os.path.exists(path + ".md"):
            path = f"{stem}-{k}"
            k += 1
        with open(path + ".md", "w") as f:
            f.write(text)
        with open(path + ".json", "w") as f:
            json.dump({"header": header, "args": vars(args), "configs": [c.__dict__ for c in configs],
                       "floor": floors, "exec": exec_res, "time_to_alert": tta}, f, indent=2, default=lambda o: o.__dict__)
        log(f"written {path}.md and .json")
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        rc = 130
    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as e:
        log(f"error: {e}")
        rc = 1
    finally:
        procs.stop_all()
        if full:
            full.close()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
