#!/usr/bin/env python3
"""Load benchmark for wachtd: N loopback HTTP (or TCP) targets, figures only.

    python3 bench/run.py --checks 1000,10000 --interval 10s --window 60s [--type http|tcp|http,tcp]

For every (type, N) it writes a temporary config with N checks against loopback
targets (nginx started directly from a temp dir, or a small Python server),
starts wachtd, waits one interval plus a few seconds, then measures a window:

  * CPU of wachtd from /proc/<pid>/stat (utime+stime), per probe and as % of one core,
    split by thread (the loop thread vs. civetweb's /metrics threads);
  * probes finished and their results from wacht_probes_total deltas on /metrics;
  * scheduler lag p50/p99 interpolated from wacht_scheduler_lag_seconds bucket deltas;
  * RSS (VmRSS) and its peak (VmHWM) from /proc/<pid>/status;
  * CPU of the target server and of the whole machine, reported separately.

/metrics is scraped only at the window's two ends, outside the CPU window; the cost
of one scrape is measured on its own and reported. A benchmark, not a test: it
prints figures and asserts nothing about time. Only 127.0.0.0/8 is contacted.
Python 3 standard library only. Run with --help for all options; bench/README.md
explains the method.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BUILD = os.path.join(REPO, "build", "release")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# The goals, printed next to the figures for reference only.
GOALS = {
    "cpu_ms_per_probe": 0.1,
    "core_share_at_10k": 0.25,
    "rss_mib": 64.0,
    "lag_p99_ms": 10.0,
}


# --------------------------------------------------------------------------- utilities


def parse_duration(s: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", s)
    if not m:
        raise argparse.ArgumentTypeError(f"bad duration {s!r} (e.g. 500ms, 10s, 1m)")
    v = float(m.group(1))
    return v * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def fmt_duration(sec: float) -> str:
    if sec < 1:
        return f"{int(round(sec * 1000))}ms"
    if sec == int(sec):
        return f"{int(sec)}s"
    return f"{int(round(sec * 1000))}ms"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def wait_until(pred, timeout: float, step: float = 0.1) -> bool:
    """Polls pred() until it is true or `timeout` seconds passed (bounded loop)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if pred():
                return True
        except OSError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


def free_port(addrs: list[str], taken: set[int]) -> int:
    """A port that is free on every one of `addrs` (tries a bounded number of times)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind((addrs[0], 0))
            port = s.getsockname()[1]
        if port in taken:
            continue
        ok = True
        for a in addrs[1:]:
            with socket.socket() as s:
                try:
                    s.bind((a, port))
                except OSError:
                    ok = False
                    break
        if ok:
            taken.add(port)
            return port
    raise RuntimeError("no free port found on " + ",".join(addrs))


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    # Loopback only: make sure no proxy from the environment is involved.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# --------------------------------------------------------------------------- /proc readers


def proc_cpu_ticks(pid: int) -> int:
    """utime+stime of a whole process (live and reaped threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    fields = text[text.rfind(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def proc_threads(pid: int) -> dict[int, tuple[str, int, int]]:
    """tid -> (comm, utime+stime ticks, sum_exec_runtime ns) for each live thread."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                text = f.read()
            comm = text[text.find("(") + 1 : text.rfind(")")]
            fields = text[text.rfind(")") + 2 :].split()
            ticks = int(fields[11]) + int(fields[12])
            ns = 0
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    ns = int(f.read().split()[0])
            except OSError:
                pass
            out[int(tid)] = (comm, ticks, ns)
        except (OSError, ValueError, IndexError):
            continue
    return out


def proc_exec_ns(pid: int) -> int:
    """Nanosecond on-CPU time summed over live threads (for short intervals)."""
    return sum(ns for _, _, ns in proc_threads(pid).values())


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (KiB) and Threads from /proc/<pid>/status."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0])
    return out


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    vals = [int(x) for x in parts[:8]]
    idle = vals[3] + vals[4]
    return sum(vals) - idle, sum(vals)


def children_of(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                text = f.read()
            ppid = int(text[text.rfind(")") + 2 :].split()[1])
            if ppid == pid:
                out.append(int(d))
        except (OSError, ValueError, IndexError):
            continue
    return out


# --------------------------------------------------------------------------- Prometheus text

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str, wanted: tuple[str, ...]) -> list[tuple[str, dict, float]]:
    out = []
    for line in text.splitlines():
        if not line or line[0] == "#" or not line.startswith(wanted):
            continue
        m = _LINE.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        try:
            out.append((m.group(1), labels, float(m.group(3))))
        except ValueError:
            continue
    return out


@dataclass
class Scrape:
    t: float  # monotonic time in the middle of the request
    wall: float  # seconds the request took
    size: int
    results: dict[str, float]  # result label -> wacht_probes_total summed over tenant/type
    skipped: float
    lag_buckets: list[tuple[float, float]]  # (le, cumulative count)
    lag_count: float
    lag_sum: float
    queued: float
    running: float


def scrape(base: str) -> Scrape:
    t0 = time.monotonic()
    status, body = http_get(base + "/metrics", timeout=30)
    t1 = time.monotonic()
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    text = body.decode("utf-8", "replace")
    results: dict[str, float] = {}
    skipped = 0.0
    buckets: dict[float, float] = {}
    lag_count = lag_sum = queued = running = 0.0
    for name, labels, value in parse_metrics(
        text, ("wacht_probes_total", "wacht_scheduler_")
    ):
        if name == "wacht_probes_total":
            r = labels.get("result", "?")
            results[r] = results.get(r, 0.0) + value
        elif name == "wacht_scheduler_skipped_runs_total":
            skipped += value
        elif name == "wacht_scheduler_lag_seconds_bucket":
            le = labels.get("le", "+Inf")
            buckets[math.inf if le == "+Inf" else float(le)] = value
        elif name == "wacht_scheduler_lag_seconds_count":
            lag_count = value
        elif name == "wacht_scheduler_lag_seconds_sum":
            lag_sum = value
        elif name == "wacht_scheduler_probes":
            if labels.get("state") == "queued":
                queued = value
            elif labels.get("state") == "running":
                running = value
    return Scrape(
        (t0 + t1) / 2, t1 - t0, len(body), results, skipped,
        sorted(buckets.items()), lag_count, lag_sum, queued, running,
    )


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile over cumulative (le, count) pairs."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return prev_le  # beyond the highest finite bucket: report its bound
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return prev_le


# --------------------------------------------------------------------------- processes


class Procs:
    """Every child process the benchmark starts, each in its own process group, so
    cleanup signals exactly the groups it created (by id) and nothing else."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen, int]] = []

    def start(self, name: str, argv: list[str], stop_signal=signal.SIGTERM, **kw) -> subprocess.Popen:
        p = subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL, **kw)
        self.procs.append((name, p, stop_signal))
        return p

    def stop(self, p: subprocess.Popen, timeout: float = 10.0) -> None:
        for i, (name, q, sig) in enumerate(self.procs):
            if q is p:
                self._stop_one(name, q, sig, timeout)
                del self.procs[i]
                return

    @staticmethod
    def _stop_one(name: str, p: subprocess.Popen, sig: int, timeout: float) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log(f"{name} (pid {p.pid}) did not stop in {timeout:.0f}s; killing it")
        # Whatever is left in its group (e.g. nginx workers) goes too.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def stop_all(self) -> None:
        while self.procs:
            name, p, sig = self.procs.pop()
            self._stop_one(name, p, sig, 5.0)


# --------------------------------------------------------------------------- targets


@dataclass
class Targets:
    kind: str  # "nginx" or "python"
    endpoints: list[tuple[str, int]]
    procs: list[subprocess.Popen] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)  # every process whose CPU counts as "server"

    def cpu_ticks(self) -> int:
        total = 0
        for pid in self.pids:
            try:
                total += proc_cpu_ticks(pid)
            except OSError:
                pass
        return total


NGINX_CONF = """\
# Written by bench/run.py; started as `nginx -p {dir} -c {conf} -e {dir}/error.log`.
daemon off;
master_process on;
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log error;
worker_rlimit_nofile 65536;
events {{
    worker_connections 16384;
    multi_accept on;
}}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    # Connection: close on every answer, so each probe opens a fresh connection as it
    # would against as many distinct real hosts; the server side then holds TIME_WAIT.
    keepalive_timeout {keepalive};
    server_tokens off;
{servers}
}}
"""

NGINX_SERVER = """\
    server {{
        listen {addr}:{port} backlog=4096;
        location /t/ {{
            default_type text/plain;
            return 200 "ok\\n";
        }}
        location / {{
            return 404;
        }}
    }}
"""


def start_nginx(procs: Procs, tmp: str, endpoints, workers: int, keepalive: bool) -> Targets:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not nginx:
        raise RuntimeError("nginx not found (apt-get install -y nginx-light), or use --server python")
    d = os.path.join(tmp, "nginx")
    os.makedirs(d)
    os.chmod(tmp, 0o755)  # workers run as nobody when started by root
    os.chmod(d, 0o755)
    servers = "".join(NGINX_SERVER.format(addr=a, port=p) for a, p in endpoints)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(dir=d, conf=conf, workers=workers,
                                  keepalive="10s" if keepalive else "0", servers=servers))
    errlog = open(os.path.join(d, "stderr.log"), "w")
    p = procs.start("nginx", [nginx, "-p", d, "-c", conf, "-e", os.path.join(d, "error.log")],
                    stop_signal=signal.SIGQUIT, stdout=errlog, stderr=subprocess.STDOUT)
    t = Targets("nginx", endpoints, [p])
    _wait_targets(t, p, os.path.join(d, "stderr.log"))
    # master + its workers
    if not wait_until(lambda: len(children_of(p.pid)) >= workers, 10):
        log("warning: could not find all nginx workers; server CPU may be under-counted")
    t.pids = [p.pid] + children_of(p.pid)
    return t


def start_python_server(procs: Procs, tmp: str, endpoints, workers: int, keepalive: bool) -> Targets:
    t = Targets("python", endpoints)
    groups = [endpoints[i::workers] for i in range(workers)]
    for i, group in enumerate(g for g in groups if g):
        spec = ",".join(f"{a}:{p}" for a, p in group)
        errpath = os.path.join(tmp, f"pyserver-{i}.log")
        p = procs.start(f"pyserver-{i}", [sys.executable, os.path.abspath(__file__), "--serve", spec],
                        stdout=open(errpath, "w"), stderr=subprocess.STDOUT)
        t.procs.append(p)
        t.pids.append(p.pid)
    for p in t.procs:
        _wait_targets(t, p, None)
    return t


def _wait_targets(t: Targets, p: subprocess.Popen, logpath: str | None) -> None:
    def all_up():
        if p.poll() is not None:
            raise RuntimeError(f"{t.kind} exited with {p.returncode}" +
                               (f": {open(logpath).read()[-2000:]}" if logpath else ""))
        for a, port in t.endpoints:
            with socket.create_connection((a, port), timeout=1):
                pass
        return True

    if not wait_until(all_up, 15):
        raise RuntimeError(f"{t.kind} targets did not come up within 15s")
    for a, port in t.endpoints:  # one real request per endpoint
        status, body = http_get(f"http://{a}:{port}/t/check", timeout=5)
        if status != 200:
            raise RuntimeError(f"target {a}:{port} answered {status}")


async def _serve_main(spec: str) -> None:
    """The fallback target server: answers every request with 200 "ok" and closes."""
    response = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            data = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            if data:
                writer.write(response)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                ConnectionError):
            pass
        finally:
            writer.close()

    servers = []
    for item in spec.split(","):
        host, port = item.rsplit(":", 1)
        if not host.startswith("127."):
            raise SystemExit("the bench server listens on 127.0.0.0/8 only")
        servers.append(await asyncio.start_server(handle, host, int(port), backlog=4096, reuse_address=True))
    await asyncio.gather(*(s.serve_forever() for s in servers))


# --------------------------------------------------------------------------- wachtd


def write_config(path: str, listen_port: int, state_dir: str, checks: int, kind: str,
                 interval: float, timeout: float, endpoints) -> None:
    lines = [
        "# Written by bench/run.py.",
        "[daemon]",
        f'listen = "127.0.0.1:{listen_port}"',
        f'state_dir = "{state_dir}"',
        f"max_concurrent_probes = {max(1000, checks)}",
        'log_level = "warn"',
        "",
        "[defaults]",
        'tenant = "bench"',
        f'interval = "{fmt_duration(interval)}"',
        f'timeout = "{fmt_duration(timeout)}"',
        "",
        "[tenants.bench]",
        'name = "Benchmark"',
        "",
    ]
    for i in range(checks):
        a, p = endpoints[i % len(endpoints)]
        target = f"http://{a}:{p}/t/{i}" if kind == "http" else f"{a}:{p}"
        lines += ["[[check]]", f'id = "{kind[0]}{i}"', f'type = "{kind}"', f'target = "{target}"', ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def find_wachtd(args) -> str:
    if args.wachtd:
        return args.wachtd
    for cand in (os.path.join(args.build_dir, "wachtd"), os.path.join(args.build_dir, "daemon", "wachtd")):
        if os.access(cand, os.X_OK):
            return cand
    raise RuntimeError(f"no wachtd in {args.build_dir}; build it (see bench/README.md) or pass --build")


def build(build_dir: str) -> None:
    cmds = [
        ["cmake", "-S", REPO, "-B", build_dir, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
         "-DWACHT_TESTS=OFF"],
        ["cmake", "--build", build_dir, "--target", "wachtd"],
    ]
    for c in cmds:
        log("$ " + " ".join(c))
        subprocess.run(c, check=True, timeout=1200)


# --------------------------------------------------------------------------- one run


@dataclass
class Result:
    kind: str
    checks: int
    interval: float
    window: float
    expected_pps: float = 0.0
    pps: float = 0.0
    probes: float = 0.0
    results: dict = field(default_factory=dict)
    success_ratio: float | None = None
    cpu_ms: float = 0.0
    cpu_ms_per_probe: float | None = None
    core_share: float = 0.0
    threads_cpu: dict = field(default_factory=dict)  # thread name -> share of one core
    rss_noscrape_mib: float = 0.0  # after warm-up, before wachtd served any /metrics
    rss_mib: float = 0.0  # at the end of the window (after one scrape)
    rss_after_scrape_mib: float = 0.0
    rss_max_sampled_mib: float = 0.0
    hwm_mib: float = 0.0
    threads: int = 0
    lag_p50_ms: float | None = None
    lag_p99_ms: float | None = None
    lag_mean_ms: float | None = None
    skipped: float = 0.0
    queued_end: float = 0.0
    server_core_share: float = 0.0
    machine_busy: float = 0.0  # share of all CPUs
    other_cores: float = 0.0  # busy CPU not from wachtd, the targets or the harness, in cores
    scrape_cpu_ms: float | None = None
    scrape_bytes: int = 0
    scrape_wall_ms: float = 0.0
    startup_s: float = 0.0
    scrapes_in_window: int = 0
    stop_s: float | None = 0.0  # SIGTERM to exit; None if it had to be killed
    profile: str | None = None
    notes: list = field(default_factory=list)


def run_one(args, kind: str, checks: int, procs: Procs, targets: Targets, tmp: str) -> Result:
    r = Result(kind, checks, args.interval, args.window)
    r.expected_pps = checks / args.interval
    run_dir = os.path.join(tmp, f"{kind}-{checks}")
    os.makedirs(run_dir)
    port = free_port(["127.0.0.1"], set(p for _, p in targets.endpoints))
    cfg = os.path.join(run_dir, "wacht.toml")
    write_config(cfg, port, os.path.join(run_dir, "state"), checks, kind, args.interval,
                 args.timeout, targets.endpoints)
    base = f"http://127.0.0.1:{port}"
    wachtd = find_wachtd(args)
    argv = [wachtd, "--config", cfg]
    if args.profile == "callgrind":
        r.profile = os.path.join(run_dir, "callgrind.out")
        argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--dump-instr=no",
                f"--callgrind-out-file={r.profile}"] + argv
    elif args.profile == "massif":
        r.profile = os.path.join(run_dir, "massif.out")
        argv = ["valgrind", "--tool=massif", "--threshold=0.5", "--detailed-freq=5", "--max-snapshots=60",
                f"--massif-out-file={r.profile}"] + argv
    logpath = os.path.join(run_dir, "wachtd.log")
    logf = open(logpath, "w")
    log(f"{kind} x {checks}: starting {' '.join(argv)}")
    t_start = time.monotonic()
    p = procs.start("wachtd", argv, stdout=logf, stderr=subprocess.STDOUT)

    def ready():
        if p.poll() is not None:
            raise RuntimeError(f"wachtd exited with {p.returncode}:\n" + open(logpath).read()[-3000:])
        try:
            return http_get(base + "/-/ready", timeout=2)[0] == 200
        except (urllib.error.URLError, ConnectionError, socket.timeout):
            return False

    under_valgrind = args.profile in ("callgrind", "massif")
    if not wait_until(ready, 180 if under_valgrind else 60, 0.1):
        raise RuntimeError("wachtd not ready within the time limit:\n" + open(logpath).read()[-3000:])
    r.startup_s = time.monotonic() - t_start
    pid = p.pid

    warm = args.warmup if args.warmup is not None else args.interval + 5
    log(f"{kind} x {checks}: ready after {r.startup_s:.1f}s; warming up {warm:.0f}s")
    time.sleep(warm)

    # Window: scrape, CPU start ... CPU end, scrape; the scrapes lie outside the CPU window.
    r.rss_noscrape_mib = proc_status(pid).get("VmRSS", 0) / 1024
    s0 = scrape(base)
    if args.profile == "callgrind":
        subprocess.run(["callgrind_control", "-i", "on", str(pid)], check=False,
                       stdout=subprocess.DEVNULL, timeout=60)
    perf = None
    if args.profile == "perf":
        r.profile = os.path.join(run_dir, "perf.data")
        perf = procs.start("perf", ["perf", "record", "-e", "cpu-clock", "-F", str(args.perf_freq),
                                    "--call-graph", "dwarf,16384", "-p", str(pid), "-o", r.profile,
                                    "--", "sleep", str(args.window)],
                           stdout=open(os.path.join(run_dir, "perf-record.log"), "w"),
                           stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    c0 = proc_cpu_ticks(pid)
    th0 = proc_threads(pid)
    srv0 = targets.cpu_ticks()
    m0 = machine_cpu()
    self0 = os.times()
    rss_max = 0
    end = t0 + args.window
    next_scrape = t0 + args.scrape_interval if args.scrape_interval else math.inf
    while True:  # bounded by the window length
        now = time.monotonic()
        if now >= end:
            break
        time.sleep(max(0.0, min(1.0, end - now, next_scrape - now)))
        if time.monotonic() >= next_scrape and time.monotonic() < end:
            scrape(base)  # like a Prometheus server would; inside the CPU window
            r.scrapes_in_window += 1
            next_scrape += args.scrape_interval
        try:
            rss_max = max(rss_max, proc_status(pid).get("VmRSS", 0))
        except OSError:
            raise RuntimeError("wachtd died during the window:\n" + open(logpath).read()[-3000:])
    c1 = proc_cpu_ticks(pid)
    th1 = proc_threads(pid)
    st_end = proc_status(pid)
    srv1 = targets.cpu_ticks()
    m1 = machine_cpu()
    t1 = time.monotonic()
    self1 = os.times()
    if perf is not None:
        try:
            perf.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        procs.stop(perf)
    if args.profile == "callgrind":
        subprocess.run(["callgrind_control", "-i", "off", str(pid)], check=False,
                       stdout=subprocess.DEVNULL, timeout=60)
    # The closing scrape, its own CPU measured with per-thread nanosecond counters.
    e0 = proc_exec_ns(pid)
    s1 = scrape(base)
    e1 = proc_exec_ns(pid)
    st = proc_status(pid)

    dt = t1 - t0
    ds = s1.t - s0.t
    r.window = dt
    res = {k: s1.results.get(k, 0.0) - s0.results.get(k, 0.0) for k in set(s0.results) | set(s1.results)}
    r.results = res
    r.probes = sum(res.values())
    r.pps = r.probes / ds if ds > 0 else 0.0
    r.success_ratio = res.get("success", 0.0) / r.probes if r.probes else None
    r.cpu_ms = (c1 - c0) * 1000.0 / CLK_TCK
    r.core_share = r.cpu_ms / 1000.0 / dt
    probes_in_cpu_window = r.pps * dt
    r.cpu_ms_per_probe = r.cpu_ms / probes_in_cpu_window if probes_in_cpu_window else None
    by_name: dict[str, float] = {}
    for tid, (comm, ticks, _) in th1.items():
        before = th0.get(tid, (comm, 0, 0))[1] if tid in th0 else 0
        name = "loop (main)" if tid == pid else comm
        by_name[name] = by_name.get(name, 0.0) + (ticks - before) / CLK_TCK / dt
    r.threads_cpu = {k: v for k, v in sorted(by_name.items(), key=lambda kv: -kv[1]) if v > 0}
    r.rss_mib = st_end.get("VmRSS", 0) / 1024
    r.rss_after_scrape_mib = st.get("VmRSS", 0) / 1024
    r.rss_max_sampled_mib = max(rss_max, st_end.get("VmRSS", 0)) / 1024
    r.hwm_mib = st.get("VmHWM", 0) / 1024
    r.threads = st.get("Threads", 0)
    dl = [(le, c1_ - c0_) for (le, c1_), (_, c0_) in zip(s1.lag_buckets, s0.lag_buckets)]
    if len(s1.lag_buckets) == len(s0.lag_buckets) and dl:
        p50 = histogram_quantile(0.50, dl)
        p99 = histogram_quantile(0.99, dl)
        r.lag_p50_ms = None if p50 is None else p50 * 1000
        r.lag_p99_ms = None if p99 is None else p99 * 1000
        n = s1.lag_count - s0.lag_count
        r.lag_mean_ms = (s1.lag_sum - s0.lag_sum) / n * 1000 if n > 0 else None
        if dl[-1][1] > 0 and p99 is not None and dl[-2][1] < 0.99 * dl[-1][1]:
            r.notes.append(f"lag p99 beyond the highest finite bucket ({dl[-2][0]} s)")
    r.skipped = s1.skipped - s0.skipped
    r.queued_end = s1.queued
    r.server_core_share = (srv1 - srv0) / CLK_TCK / dt
    r.machine_busy = (m1[0] - m0[0]) / max(1, m1[1] - m0[1])
    bg_ns_per_s = r.cpu_ms * 1e6 / dt  # wachtd's background rate, subtracted from the scrape
    r.scrape_cpu_ms = max(0.0, (e1 - e0) - bg_ns_per_s * s1.wall) / 1e6
    r.scrape_bytes = s1.size
    r.scrape_wall_ms = s1.wall * 1000
    harness = (self1.user + self1.system + self1.children_user + self1.children_system) - (
        self0.user + self0.system + self0.children_user + self0.children_system)
    r.other_cores = max(0.0, r.machine_busy * (os.cpu_count() or 1) - r.core_share
                        - r.server_core_share - harness / dt)
    r.notes.append(f"bench harness itself used {harness * 1000 / dt:.1f} ms CPU per s of window")
    if r.other_cores > 0.2:
        r.notes.append(f"other processes kept {r.other_cores:.2f} cores busy during the window: "
                       "lag and CPU figures are affected by the contention")
    if args.profile:
        r.notes.append(f"profiled with {args.profile}: CPU figures include its overhead")
    if r.scrapes_in_window:
        r.notes.append(f"{r.scrapes_in_window} /metrics scrapes inside the window are included "
                       "in its CPU and RSS figures")

    if args.profile == "callgrind":
        subprocess.run(["callgrind_control", "-d", str(pid)], check=False,
                       stdout=subprocess.DEVNULL, timeout=120)
    t_stop = time.monotonic()
    procs.stop(p, timeout=max(args.stop_timeout, 120 if under_valgrind else 0))
    r.stop_s = time.monotonic() - t_stop
    if p.returncode not in (0, None):
        r.stop_s = None
        r.notes.append(f"wachtd exited with {p.returncode} on SIGTERM "
                       f"(killed after {args.stop_timeout:.0f}s if -9)")
    log(f"{kind} x {checks}: stopped in {time.monotonic() - t_stop:.1f}s")
    tail = [l for l in open(logpath).read().strip().splitlines() if not l.startswith("==")]
    if tail:
        r.notes.append(f"wachtd wrote {len(tail)} log line(s), last: {tail[-1][:160]}")
    if args.profile:
        r.profile = save_profile(args, kind, checks, run_dir, r.profile, wachtd)
    return r


def _compact_report(text: str, width: int = 220) -> str:
    """perf pads its symbol column to the longest C++ name; squeeze it for reading."""
    out = []
    for line in text.splitlines():
        line = line.replace("std::__cxx11::basic_string<char, std::char_traits<char>, "
                            "std::allocator<char> >", "std::string")
        line = re.sub(r", std::allocator<[^<>]*(?:<[^<>]*>)?[^<>]*> ?>", ">", line)
        line = re.sub(r" {3,}", "  ", line.rstrip())
        line = re.sub(r"\s+-\s+-$", "", line)  # the empty IPC columns of cpu-clock samples
        out.append(line if len(line) <= width else line[: width - 3] + "...")
    return "\n".join(out) + "\n"


def save_profile(args, kind: str, checks: int, run_dir: str, path: str | None, wachtd: str) -> str | None:
    """Writes text reports next to --out (or the temp dir) and returns the report path."""
    if not path or not os.path.exists(path) and not any(
            f.startswith(os.path.basename(path)) for f in os.listdir(run_dir)):
        return None
    out_dir = args.out or run_dir
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, f"{args.profile}-{kind}-{checks}")
    if args.profile == "perf":
        reports = {
            "flat": ["perf", "report", "-i", path, "--stdio", "--no-children", "--sort", "dso,symbol",
                     "-g", "none", "--percent-limit", "0.3"],
            "dso": ["perf", "report", "-i", path, "--stdio", "--no-children", "--sort", "dso", "-g", "none"],
            "inclusive": ["perf", "report", "-i", path, "--stdio", "--children", "--sort", "symbol",
                          "-g", "none", "--percent-limit", "2"],
            "callers": ["perf", "report", "-i", path, "--stdio", "--no-children", "--sort", "symbol",
                        "-g", "caller,0.5,callee,function,percent", "--percent-limit", "2"],
        }
        for name, cmd in reports.items():
            out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                 errors="replace", timeout=600, check=False).stdout
            with open(f"{stem}.{name}.txt", "w") as f:
                f.write(_compact_report(out))
        if args.out:
            shutil.copy(path, stem + ".data")
        return f"{stem}.flat.txt"
    if args.profile == "callgrind":
        # The dump taken right after the window ("callgrind.out.1"), not the one at exit.
        files = sorted((f for f in os.listdir(run_dir) if f.startswith("callgrind.out.")),
                       key=lambda f: int(f.rsplit(".", 1)[1]) if f.rsplit(".", 1)[1].isdigit() else 0)
        if not files:
            return None
        src = os.path.join(run_dir, files[-1])
        shutil.copy(src, stem + ".out")
        for name, extra in (("flat", []), ("inclusive", ["--inclusive=yes"])):
            out = subprocess.run(["callgrind_annotate", "--threshold=99"] + extra + [src],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                 errors="replace", timeout=600, check=False).stdout
            with open(f"{stem}.{name}.txt", "w") as f:
                f.write(_compact_report(out))
        return f"{stem}.flat.txt"
    if args.profile == "massif":
        shutil.copy(path, stem + ".out")
        out = subprocess.run(["ms_print", "--threshold=0.5", path], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, errors="replace", timeout=600,
                             check=False).stdout
        with open(f"{stem}.txt", "w") as f:
            f.write(_compact_report(out, width=300))
        return f"{stem}.txt"
    return None


# --------------------------------------------------------------------------- report


def fnum(v, spec=".3f", unit="") -> str:
    return "n/a" if v is None else f"{v:{spec}}{unit}"


def print_table(results: list[Result], args, header: list[str]) -> None:
    print()
    for h in header:
        print(h)
    cols = [f"{r.kind} x {r.checks}" for r in results]
    rows: list[tuple[str, list[str], str]] = [
        ("checks / interval", [f"{r.checks} / {fmt_duration(r.interval)}" for r in results], ""),
        ("window (s)", [f"{r.window:.1f}" for r in results], ""),
        ("probes/s achieved (expected)", [f"{r.pps:.1f} ({r.expected_pps:.1f})" for r in results], ""),
        ("success ratio", [fnum(r.success_ratio, ".4f") for r in results], ""),
        ("success / failure / timeout", ["/".join(str(int(r.results.get(k, 0)))
                                                  for k in ("success", "failure", "timeout"))
                                         for r in results], ""),
        ("wachtd CPU ms / probe", [fnum(r.cpu_ms_per_probe, ".4f") for r in results],
         f"<= {GOALS['cpu_ms_per_probe']}"),
        ("wachtd CPU, % of one core", [f"{r.core_share * 100:.1f}%" for r in results],
         f"< {GOALS['core_share_at_10k'] * 100:.0f}% at 10k/10s"),
    ]
    names = []
    for r in results:
        for n in r.threads_cpu:
            if n not in names:
                names.append(n)
    for n in names[:4]:
        rows.append((f"  thread {n}", [f"{r.threads_cpu.get(n, 0) * 100:.1f}%" for r in results], ""))
    rows += [
        ("RSS before any /metrics scrape (MiB)", [f"{r.rss_noscrape_mib:.1f}" for r in results], ""),
        ("RSS at window end (MiB)", [f"{r.rss_mib:.1f}" for r in results], f"< {GOALS['rss_mib']:.0f}"),
        ("RSS after 2nd scrape (MiB)", [f"{r.rss_after_scrape_mib:.1f}" for r in results], ""),
        ("RSS max sampled in window (MiB)", [f"{r.rss_max_sampled_mib:.1f}" for r in results], ""),
        ("RSS peak VmHWM (MiB)", [f"{r.hwm_mib:.1f}" for r in results], ""),
        ("threads", [str(r.threads) for r in results], ""),
        ("scheduler lag p50 (ms)", [fnum(r.lag_p50_ms, ".2f") for r in results], ""),
        ("scheduler lag p99 (ms)", [fnum(r.lag_p99_ms, ".2f") for r in results], f"< {GOALS['lag_p99_ms']:.0f}"),
        ("scheduler lag mean (ms)", [fnum(r.lag_mean_ms, ".2f") for r in results], ""),
        ("skipped runs in window", [f"{int(r.skipped)}" for r in results], ""),
        ("queued at end", [f"{int(r.queued_end)}" for r in results], ""),
        ("target server CPU, % of one core", [f"{r.server_core_share * 100:.1f}%" for r in results], "not counted"),
        ("machine busy, % of all CPUs", [f"{r.machine_busy * 100:.1f}%" for r in results], ""),
        ("  of it other processes (cores)", [f"{r.other_cores:.2f}" for r in results], "ideally 0"),
        ("one /metrics scrape: CPU ms", [fnum(r.scrape_cpu_ms, ".1f") for r in results], "not counted"),
        ("one /metrics scrape: KiB, wall ms", [f"{r.scrape_bytes / 1024:.0f}, {r.scrape_wall_ms:.0f}" for r in results], ""),
        ("startup to /-/ready (s)", [f"{r.startup_s:.2f}" for r in results], ""),
        ("SIGTERM to exit (s)", [fnum(r.stop_s, ".2f") if r.stop_s is not None else "killed"
                                 for r in results], "README: within 2 s"),
    ]
    w0 = max(len(r[0]) for r in rows)
    widths = [max(len(c), *(len(row[1][i]) for row in rows)) for i, c in enumerate(cols)]
    line = "  ".join([" " * w0] + [c.rjust(w) for c, w in zip(cols, widths)] + ["goal (issue)"])
    print(line)
    print("-" * len(line))
    for label, vals, goal in rows:
        print("  ".join([label.ljust(w0)] + [v.rjust(w) for v, w in zip(vals, widths)] + [goal]))
    print()
    for r in results:
        for n in r.notes:
            print(f"note ({r.kind} x {r.checks}): {n}")
        if r.profile:
            print(f"profile ({r.kind} x {r.checks}): {r.profile}")
    print("Figures only; nothing here is asserted. Method: bench/README.md.")


def header_lines(args, targets: Targets, wachtd: str) -> list[str]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        version = subprocess.run([wachtd, "--version"], capture_output=True, text=True,
                                 timeout=10).stdout.strip() or "?"
    except OSError:
        version = "?"

    def sysctl(name):
        try:
            with open("/proc/sys/" + name.replace(".", "/")) as f:
                return f.read().strip().replace("\t", " ")
        except OSError:
            return "?"

    addrs = sorted({a for a, _ in targets.endpoints})
    ports = sorted({p for _, p in targets.endpoints})
    try:
        load = " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        load = "?"
    return [
        f"wachtd: {wachtd} ({version})",
        f"machine: {os.cpu_count()} CPUs, {cpu}, Linux {platform.release()}, load average {load}",
        f"targets: {targets.kind}, {len(targets.endpoints)} endpoints "
        f"({len(addrs)} addresses {addrs[0]}..{addrs[-1]} x {len(ports)} ports), "
        f"{'keep-alive' if args.keepalive else 'Connection: close'}",
        f"sysctl: net.ipv4.tcp_tw_reuse={sysctl('net.ipv4.tcp_tw_reuse')} "
        f"ip_local_port_range={sysctl('net.ipv4.ip_local_port_range')}",
        f"timeout {fmt_duration(args.timeout)}, warm-up "
        f"{fmt_duration(args.warmup if args.warmup is not None else args.interval + 5)}, "
        f"window {fmt_duration(args.window)}, /metrics scraped "
        + (f"every {fmt_duration(args.scrape_interval)} in the window"
           if args.scrape_interval else "only at the window's ends"),
    ]


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(
        description="Measure wachtd on N loopback HTTP/TCP targets (figures only, no assertions).")
    ap.add_argument("--checks", default="1000,10000",
                    help="comma-separated numbers of checks, one run each (default 1000,10000)")
    ap.add_argument("--type", default="http", help="http, tcp or http,tcp (default http)")
    ap.add_argument("--interval", type=parse_duration, default=10.0, help="check interval (default 10s)")
    ap.add_argument("--timeout", type=parse_duration, default=None,
                    help="check timeout (default min(5s, interval/2))")
    ap.add_argument("--window", type=parse_duration, default=60.0, help="measured window (default 60s)")
    ap.add_argument("--warmup", type=parse_duration, default=None,
                    help="wait after /-/ready before the window (default interval + 5s)")
    ap.add_argument("--scrape-interval", type=parse_duration, default=None,
                    help="also scrape /metrics this often during the window, as Prometheus would "
                         "(their cost is then inside the CPU figures); default: only at the window's ends")
    ap.add_argument("--build-dir", default=DEFAULT_BUILD, help=f"where wachtd is (default {DEFAULT_BUILD})")
    ap.add_argument("--wachtd", help="path of the wachtd binary (overrides --build-dir)")
    ap.add_argument("--build", action="store_true",
                    help="configure and build wachtd in --build-dir first (cmake, RelWithDebInfo, no tests)")
    ap.add_argument("--server", choices=["auto", "nginx", "python"], default="auto",
                    help="target server: nginx (started from a temp dir) or a Python asyncio server; "
                         "auto = nginx if installed")
    ap.add_argument("--server-workers", type=int, default=1, help="nginx workers / Python processes (default 1)")
    ap.add_argument("--addrs", type=int, default=4, help="loopback addresses 127.0.0.1..N (default 4)")
    ap.add_argument("--ports", type=int, default=8, help="ports per address (default 8)")
    ap.add_argument("--keepalive", action="store_true",
                    help="let the target keep connections open (default: Connection: close)")
    ap.add_argument("--profile", choices=["perf", "callgrind", "massif"],
                    help="profile wachtd: perf record -e cpu-clock --call-graph dwarf during the window; "
                         "valgrind callgrind instrumenting only the window; or valgrind massif (heap "
                         "over the whole run, for where the RSS goes)")
    ap.add_argument("--stop-timeout", type=parse_duration, default=60.0,
                    help="how long to wait for wachtd to exit after SIGTERM before SIGKILL (default 60s)")
    ap.add_argument("--perf-freq", type=int, default=499, help="perf sampling frequency (default 499 Hz)")
    ap.add_argument("--out", help="directory for profile reports and results.json (default: only stdout)")
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs) and print its path")
    ap.add_argument("--serve", help=argparse.SUPPRESS)  # internal: run the Python target server
    args = ap.parse_args()

    if args.serve:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            asyncio.run(_serve_main(args.serve))
        except KeyboardInterrupt:
            pass
        return 0

    try:
        counts = [int(x) for x in args.checks.split(",") if x.strip()]
    except ValueError:
        ap.error("--checks takes numbers, e.g. 1000,10000")
    kinds = [k.strip() for k in args.type.split(",") if k.strip()]
    if not counts or any(c <= 0 or c > 100000 for c in counts):
        ap.error("--checks: 1..100000")
    if any(k not in ("http", "tcp") for k in kinds):
        ap.error("--type: http, tcp or http,tcp")
    if not 1 <= args.addrs <= 250 or not 1 <= args.ports <= 64:
        ap.error("--addrs 1..250, --ports 1..64")
    if args.timeout is None:
        args.timeout = min(5.0, args.interval / 2)
    if args.timeout >= args.interval:
        ap.error("--timeout must be less than --interval")
    if args.profile == "perf" and not shutil.which("perf"):
        ap.error("perf not found (apt-get install -y linux-perf)")
    if args.profile in ("callgrind", "massif") and not shutil.which("valgrind"):
        ap.error("valgrind not found (apt-get install -y valgrind)")

    # Ctrl-C raises KeyboardInterrupt; make SIGTERM/SIGHUP unwind through `finally` too.
    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    procs = Procs()
    tmp = tempfile.mkdtemp(prefix="wacht-bench-")
    results: list[Result] = []
    rc = 0
    try:
        if args.build:
            build(args.build_dir)
        wachtd = find_wachtd(args)
        addrs = [f"127.0.0.{i}" for i in range(1, args.addrs + 1)]
        taken: set[int] = set()
        ports = [free_port(addrs, taken) for _ in range(args.ports)]
        endpoints = [(a, p) for p in ports for a in addrs]
        server = args.server
        if server == "auto":
            server = "nginx" if (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")) else "python"
        starter = start_nginx if server == "nginx" else start_python_server
        log(f"starting {server} on {len(endpoints)} loopback endpoints")
        targets = starter(procs, tmp, endpoints, args.server_workers, args.keepalive)
        header = header_lines(args, targets, wachtd)
        for kind in kinds:
            for n in counts:
                results.append(run_one(args, kind, n, procs, targets, tmp))
        print_table(results, args, header)
        if args.json or args.out:
            data = {"header": header, "args": {k: v for k, v in vars(args).items() if k != "serve"},
                    "results": [r.__dict__ for r in results]}
            text = json.dumps(data, indent=2, default=str)
            if args.json:
                print(text)
            if args.out:
                os.makedirs(args.out, exist_ok=True)
                with open(os.path.join(args.out, "results.json"), "w") as f:
                    f.write(text + "\n")
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        rc = 130
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        log(f"error: {e}")
        if results:
            print_table(results, args, [])
        rc = 1
    finally:
        procs.stop_all()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
