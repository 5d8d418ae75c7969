#!/usr/bin/env python3
"""CPU and memory cost of wachtd's ICMP, DNS and exec probes.

  python3 bench/probe_cost.py [--type icmp,dns,exec] [--window 30s]

icmp: 1,000 checks to loopback addresses 127.0.0.1-127.0.0.250 every 10 s, 5
echo requests each (needs CAP_NET_RAW or ping_group_range; run as root).
dns: 1,000 checks every 10 s against a local DNS server (tests/support/dns_server.py,
python3-dnslib) on 127.0.0.1. exec: 100 checks of check_dummy every 1 s, against
a baseline of forking the same binary from a loop. Reports wachtd's own CPU
(and, for exec, the plugins' CPU, reaped by wachtd) per probe and RSS.
Loopback only; every wait bounded. Prints figures, asserts nothing.
"""

import argparse
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")
DUMMY = "/usr/lib/nagios/plugins/check_dummy"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[11..14] = utime, stime, cutime, cstime (1-based 14..17)
    own = (int(fields[11]) + int(fields[12])) / TICK
    children = (int(fields[13]) + int(fields[14])) / TICK
    return own, children


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0


def probes_total(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(m.group(1)) for m in re.finditer(r'^wacht_probes_total\{[^}]*\} (\S+)$', text, re.M))


def run(kind, args, tmp):
    servers = []
    lines = []
    if kind == "icmp":
        n, interval, timeout = 1000, "10s", "5s"
        for i in range(n):
            lines += ["[[check]]", f'id = "i{i}"', 'type = "icmp"', f'target = "127.0.0.{i % 250 + 1}"',
                      "count = 5", 'packet_gap = "200ms"']
    elif kind == "dns":
        n, interval, timeout = 1000, "10s", "2s"
        zone = "\n".join(f"h{i}.example.org. 300 IN A 198.51.100.{i % 250 + 1}" for i in range(50))
        zone += "\nexample.org. 300 IN SOA ns1.example.org. hostmaster.example.org. 1 7200 3600 1209600 300"
        srv = subprocess.Popen(["/usr/bin/python3", os.path.join(ROOT, "tests/support/dns_server.py"),
                                "--zone", zone], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        servers.append(srv)
        port = int(srv.stdout.readline())
        for i in range(n):
            lines += ["[[check]]", f'id = "d{i}"', 'type = "dns"', f'target = "h{i % 50}.example.org"',
                      f'server = "127.0.0.1:{port}"']
    else:
        n, interval, timeout = 100, "1s", "800ms"
        for i in range(n):
            lines += ["[[check]]", f'id = "e{i}"', 'type = "exec"', 'target = "x"',
                      f'command = ["{DUMMY}", "0", "ok"]']
    listen = free_port()
    cfg = ["[daemon]", f'listen = "127.0.0.1:{listen}"', f'state_dir = "{tmp}/{kind}"',
           'log_level = "warn"', "max_concurrent_probes = 2000", "max_concurrent_plugins = 16",
           "[defaults]", 'tenant = "bench"', f'interval = "{interval}"', f'timeout = "{timeout}"',
           "flap_detection = false", "[tenants.bench]"] + lines
    path = os.path.join(tmp, f"{kind}.toml")
    with open(path, "w") as f:
        f.write("\n".join(cfg) + "\n")
    w = subprocess.Popen([args.wachtd, "--config", path])
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{listen}/-/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        time.sleep(12)  # every check ran once
        p0, (c0, k0) = probes_total(listen), proc_cpu(w.pid)
        time.sleep(args.window)
        (c1, k1), p1 = proc_cpu(w.pid), probes_total(listen)
        probes = p1 - p0
        print(f"{kind:5} checks={n} interval={interval} probes={probes:.0f} "
              f"wachtd CPU {1000 * (c1 - c0) / max(probes, 1):.3f} ms/probe "
              f"({100 * (c1 - c0) / args.window:.1f}% of a core), "
              f"children CPU {1000 * (k1 - k0) / max(probes, 1):.3f} ms/probe, RSS {rss_mib(w.pid):.0f} MiB",
              flush=True)
    finally:
        w.send_signal(signal.SIGTERM)
        w.wait(timeout=30)
        for s in servers:
            s.terminate()
            s.wait(timeout=10)


def fork_baseline(runs=500):
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    for _ in range(runs):
        subprocess.run([DUMMY, "0", "ok"], stdout=subprocess.DEVNULL)
    wall = time.time() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    child = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / runs
    print(f"fork baseline: {runs} x check_dummy from a Python loop: {1000 * wall / runs:.2f} ms wall, "
          f"{1000 * child:.3f} ms child CPU per run", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--type", default="icmp,dns,exec")
    ap.add_argument("--window", type=float, default=30.0, help="seconds")
    ap.add_argument("--wachtd", default=os.path.join(ROOT, "build/release/wachtd"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="wacht-cost-")
    try:
        for kind in args.type.split(","):
            if kind == "exec":
                fork_baseline()
            run(kind.strip(), args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
