"""Shared pieces of the fault-injection suite (Python 3 stdlib only).

A scenario runs in a process of its own (see run.py), in its own process
group and, when possible, its own mount namespace, under a root directory
that run.py removes afterwards; everything a scenario starts is registered
with its Context and torn down in reverse order when it ends, fails or runs
out of time. Only loopback addresses are used.
"""

import email.header
import email.parser
import glob
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SUPPORT = os.path.join(REPO, "tests", "support")
PYTHON = "/usr/bin/python3"  # Debian's aiosmtpd imports only there


class Failed(Exception):
    """A scenario's assertion failed; the message says what and by how much."""


class OutOfTime(Exception):
    pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --- processes ---------------------------------------------------------------


class Proc:
    """A child process; its stderr (and stdout after the first line) go to a log file."""

    def __init__(self, argv, log_path, first_line=False, env=None, timeout=15):
        self.argv = argv
        self.log_path = log_path
        self.first_line = None
        log = open(log_path, "ab")
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if first_line else log,
            stderr=log,
            env=env,
            close_fds=True,
        )
        log.close()
        if first_line:
            self.first_line = self._read_first_line(timeout)

    def _read_first_line(self, timeout):
        result = {}

        def reader():
            result["line"] = self.popen.stdout.readline().decode().strip()

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(timeout)
        if not result.get("line"):
            self.kill()
            raise Failed("%s printed no first line within %ds: %s"
                         % (os.path.basename(self.argv[1] if len(self.argv) > 1 else self.argv[0]),
                            timeout, tail(self.log_path)))
        # Keep draining stdout so the child never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        return result["line"]

    def _drain(self):
        try:
            with open(self.log_path, "ab") as log:
                for chunk in iter(lambda: self.popen.stdout.read1(65536), b""):
                    log.write(chunk)
        except (OSError, ValueError):
            pass

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def signal(self, sig):
        if self.alive():
            try:
                os.kill(self.popen.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self):
        self.signal(signal.SIGKILL)
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def stop(self, grace=3.0):
        """SIGTERM, then SIGKILL after `grace` seconds; returns the exit code."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.popen.returncode


def tail(path, lines=15):
    try:
        with open(path, "rb") as f:
            data = f.read()[-8000:].decode(errors="replace")
        return "\n".join(data.splitlines()[-lines:])
    except OSError:
        return ""


class Context:
    """One scenario's run: its directory, deadline, numbers and cleanups."""

    def __init__(self, name, mode, wachtd, root, budget):
        self.name = name
        self.mode = mode
        self.full = mode == "full"
        self.wachtd_path = wachtd
        self.root = root
        self.start = time.monotonic()
        self.deadline = self.start + budget
        self.numbers = {}   # what the table shows
        self.notes = []     # details printed under the table on failure
        self._cleanups = []
        self.rng = random.Random(int(os.environ.get("WACHT_FAULTS_SEED", "0")) or None)

    def log(self, msg):
        sys.stderr.write("[%s %6.1fs] %s\n" % (self.name, time.monotonic() - self.start, msg))
        sys.stderr.flush()

    def left(self):
        return self.deadline - time.monotonic()

    def check_time(self, what=""):
        if time.monotonic() > self.deadline:
            raise OutOfTime("scenario ran out of time" + (": " + what if what else ""))

    def path(self, *parts):
        p = os.path.join(self.root, *parts)
        return p

    def mkdir(self, *parts):
        p = self.path(*parts)
        os.makedirs(p, exist_ok=True)
        return p

    def on_cleanup(self, fn):
        self._cleanups.append(fn)

    def cleanup(self):
        while self._cleanups:
            fn = self._cleanups.pop()
            try:
                fn()
            except Exception as e:  # cleanup goes on whatever happens
                self.log("cleanup: %s" % e)

    def spawn(self, argv, name, first_line=False, env=None):
        p = Proc(argv, self.path(name + ".log"), first_line=first_line, env=env)
        self.on_cleanup(p.kill)
        return p

    # --- helpers every scenario uses ------------------------------------------

    def expect(self, ok, message):
        if not ok:
            raise Failed(message)

    def wait_until(self, cond, timeout, what, interval=0.05):
        """Polls cond() until true; raises Failed with `what` if it is not within timeout."""
        end = time.monotonic() + timeout
        while True:
            v = cond()
            if v:
                return v
            if time.monotonic() > end:
                raise Failed("timed out after %.0fs waiting for %s" % (timeout, what))
            self.check_time(what)
            time.sleep(interval)

    def mount_tmpfs(self, path, size):
        os.makedirs(path, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", path],
                       check=True)
        self.on_cleanup(lambda: subprocess.run(["umount", "-l", path], check=False))
        return path

    def smtp_sink(self, port=0, extra=()):
        return SmtpSink(self, port, list(extra))

    def targets(self, spec):
        return Targets(self, spec)

    def wachtd(self, name="wachtd", env=None, prefix=()):
        return Wachtd(self, name, env=env, prefix=list(prefix))


# --- metrics -------------------------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Metrics:
    """Parsed Prometheus text: samples[name] = [(labels dict, value)]."""

    def __init__(self, text):
        self.text = text
        self.samples = {}
        for line in text.splitlines():
            if not line or line[0] == "#":
                continue
            m = _SAMPLE.match(line)
            if not m:
                continue
            labels = dict(_LABEL.findall(m.group(3) or ""))
            try:
                value = float(m.group(4))
            except ValueError:
                continue
            self.samples.setdefault(m.group(1), []).append((labels, value))

    def get(self, name, **match):
        """Sum of the samples of `name` whose labels include `match` (0 if none)."""
        return sum(v for labels, v in self.samples.get(name, [])
                   if all(labels.get(k) == w for k, w in match.items()))

    def has(self, name, **match):
        return any(all(labels.get(k) == w for k, w in match.items())
                   for labels, v in self.samples.get(name, []))

    def by_label(self, name, label, **match):
        out = {}
        for labels, v in self.samples.get(name, []):
            if all(labels.get(k) == w for k, w in match.items()):
                out[labels.get(label)] = v
        return out


def http_get(port, path, timeout=2.0):
    """(status, body) of a GET to 127.0.0.1:port; (0, error) on failure."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body.decode(errors="replace")
    except (OSError, http.client.HTTPException) as e:
        return 0, str(e)


def http_post(port, path, body=b"", timeout=2.0):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("POST", path, body=body)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data.decode(errors="replace")
    except (OSError, http.client.HTTPException) as e:
        return 0, str(e)


# --- wachtd --------------------------------------------------------------------


class Wachtd:
    """The real wachtd on a config written by the scenario, on a free loopback port."""

    def __init__(self, ctx, name, env=None, prefix=()):
        self.ctx = ctx
        self.name = name
        self.dir = ctx.mkdir(name)
        self.state_dir = os.path.join(self.dir, "state")
        self.config_path = os.path.join(self.dir, "wacht.toml")
        self.port = free_port()
        self.env = env
        self.prefix = prefix
        self.proc = None
        self.starts = 0
        self.log_path = ctx.path(name + ".log")
        ctx.on_cleanup(self._cleanup)

    def daemon_section(self, extra=""):
        return ('[daemon]\nlisten = "127.0.0.1:%d"\nstate_dir = "%s"\nlog_level = "info"\n%s\n'
                % (self.port, self.state_dir, extra))

    def write(self, text):
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.config_path)

    def start(self, ready_timeout=15):
        self.starts += 1
        argv = self.prefix + [self.ctx.wachtd_path, "--config", self.config_path]
        with open(self.log_path, "ab") as log:
            log.write(("--- start %d\n" % self.starts).encode())
        self.proc = Proc(argv, self.log_path, env=self.env)
        end = time.monotonic() + ready_timeout
        while http_get(self.port, "/-/ready", 0.5)[0] != 200:
            if not self.proc.alive():
                raise Failed("wachtd exited with %s at start: %s"
                             % (self.proc.popen.returncode, tail(self.log_path)))
            if time.monotonic() > end:
                raise Failed("wachtd not ready within %ds: %s" % (ready_timeout, tail(self.log_path)))
            time.sleep(0.02)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def kill9(self):
        self.proc.kill()

    def stop(self):
        return self.proc.stop(5.0) if self.proc else None

    def hup(self):
        self.proc.signal(signal.SIGHUP)

    def metrics(self, timeout=3.0):
        status, body = http_get(self.port, "/metrics", timeout)
        if status != 200:
            raise Failed("GET /metrics failed: %s %s" % (status, body[:200]))
        return Metrics(body)

    def value(self, name, **match):
        return self.metrics().get(name, **match)

    def wait_metric(self, name, pred, timeout, what=None, **match):
        last = [None]

        def cond():
            try:
                last[0] = self.value(name, **match)
            except Failed:
                return False
            return pred(last[0])

        try:
            return self.ctx.wait_until(cond, timeout, what or name)
        except Failed as e:
            raise Failed("%s (last value %s)" % (e, last[0]))

    def rss_kb(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def fds(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _cleanup(self):
        if self.proc:
            self.proc.kill()


# --- SMTP sink -------------------------------------------------------------------


class Mail:
    def __init__(self, path):
        self.path = path
        self.arrived = os.stat(path).st_mtime
        with open(path, "rb") as f:
            head = f.read().split(b"\r\n\r\n", 1)[0]
        self.headers = email.parser.BytesHeaderParser().parsebytes(head + b"\r\n\r\n")
        self.message_id = (self.headers.get("Message-ID") or "").strip()
        self.in_reply_to = (self.headers.get("In-Reply-To") or "").strip()
        subject = self.headers.get("Subject") or ""
        try:
            subject = str(email.header.make_header(email.header.decode_header(subject)))
        except Exception:
            pass
        self.subject = subject
        self.number = int(os.path.basename(path).split(".")[0])


class SmtpSink:
    """tests/support/smtp_sink.py: every accepted message is a file DIR/new/<n>.eml."""

    def __init__(self, ctx, port, extra):
        self.ctx = ctx
        self.dir = ctx.mkdir("sink-%d" % len(glob.glob(ctx.path("sink-*"))))
        self.proc = ctx.spawn([PYTHON, os.path.join(SUPPORT, "smtp_sink.py"), "--dir", self.dir,
                               "--port", str(port)] + extra,
                              os.path.basename(self.dir), first_line=True)
        self.port = int(self.proc.first_line)
        self._cache = {}

    def mails(self):
        out = []
        for path in glob.glob(os.path.join(self.dir, "new", "*.eml")):
            m = self._cache.get(path)
            if m is None:
                m = self._cache[path] = Mail(path)
            out.append(m)
        out.sort(key=lambda m: m.number)
        return out

    def count(self):
        return len(glob.glob(os.path.join(self.dir, "new", "*.eml")))

    def attempts(self):
        try:
            with open(os.path.join(self.dir, "attempts")) as f:
                return int(f.read().strip() or 0)
        except OSError:
            return 0

    def stop(self):
        self.proc.stop()


def message_id_counts(mails):
    counts = {}
    for m in mails:
        counts[m.message_id] = counts.get(m.message_id, 0) + 1
    return counts


# --- targets ---------------------------------------------------------------------


class Targets:
    """tests/faults/targets.py: loopback servers of the given modes and a control port."""

    def __init__(self, ctx, modes):
        self.ctx = ctx
        argv = [PYTHON, os.path.join(HERE, "targets.py")] + list(modes)
        self.proc = ctx.spawn(argv, "targets-%d" % len(glob.glob(ctx.path("targets-*"))),
                              first_line=True)
        self.ports = json.loads(self.proc.first_line)
        self.control = self.ports["control"]

    def url(self, mode, path="/"):
        return "http://127.0.0.1:%d%s" % (self.ports[mode], path)

    def addr(self, mode):
        return "127.0.0.1:%d" % self.ports[mode]

    def stats(self):
        status, body = http_get(self.control, "/stats", 10)
        if status != 200:
            raise Failed("targets /stats failed: %s %s" % (status, body[:200]))
        return json.loads(body)

    def set_down(self, ids, down=True):
        body = json.dumps({"ids": list(ids), "down": down}).encode()
        status, text = http_post(self.control, "/switch", body, 10)
        if status != 200:
            raise Failed("targets /switch failed: %s %s" % (status, text[:200]))

    def reset_stats(self):
        http_post(self.control, "/reset", b"", 10)


# --- sampling --------------------------------------------------------------------


class HealthProbe(threading.Thread):
    """Polls /-/healthy (answered by an HTTP worker thread) and /api/v1/silences
    (answered on wachtd's event loop, so it also proves the loop responsive)
    every `every` s each; records the slowest answer and failures."""

    PATHS = ("/-/healthy", "/api/v1/silences")

    def __init__(self, port, every=0.2, limit=1.0):
        super().__init__(daemon=True)
        self.port, self.every, self.limit = port, every, limit
        self.stop_event = threading.Event()
        self.max_s = 0.0
        self.max_by_path = {p: 0.0 for p in self.PATHS}
        self.count = 0
        self.failures = []

    def run(self):
        while not self.stop_event.is_set():
            for path in self.PATHS:
                t0 = time.monotonic()
                status, body = http_get(self.port, path, self.limit)
                dt = time.monotonic() - t0
                self.count += 1
                self.max_s = max(self.max_s, dt)
                self.max_by_path[path] = max(self.max_by_path[path], dt)
                if status != 200 or dt > self.limit:
                    self.failures.append("%s at %s: status %s in %.2fs %s"
                                         % (path, time.strftime("%H:%M:%S"), status, dt, body[:80]))
            self.stop_event.wait(self.every)

    def stop(self):
        self.stop_event.set()
        self.join(5)


# --- config pieces -----------------------------------------------------------------

TENANTS = ('[tenants.lup]\nname = "Landkreis Ludwigslust-Parchim"\n'
           '[tenants.schwerin]\nname = "Landeshauptstadt Schwerin"\n')


def alerting(smtp_port, group_by='["check"]', group_wait="200ms", group_interval="500ms",
             backoff="200ms", max_backoff="1s", route_extra="", receiver_extra=""):
    """[alerting], [smtp], one email receiver "ops" and one route taking every alert."""
    return ('[alerting]\nretry_backoff = "%s"\nretry_max_backoff = "%s"\nhostname = "wacht.test"\n'
            '[smtp]\nsmarthost = "127.0.0.1:%d"\ntls = "none"\nfrom = "wacht <wacht@example.org>"\n'
            'timeout = "2s"\n'
            '[receivers.ops]\ntype = "email"\nto = ["ops@example.org"]\nlanguage = "en"\n%s\n'
            '[[route]]\nreceivers = ["ops"]\ngroup_by = %s\ngroup_wait = "%s"\n'
            'group_interval = "%s"\n%s\n'
            % (backoff, max_backoff, smtp_port, receiver_extra, group_by, group_wait,
               group_interval, route_extra))


def check(id, type, target, interval="1s", timeout="500ms", retry="200ms", attempts=1,
          tenant="lup", extra=""):
    return ('[[check]]\nid = "%s"\ntenant = "%s"\ntype = "%s"\ntarget = "%s"\ninterval = "%s"\n'
            'timeout = "%s"\nretry_interval = "%s"\nmax_attempts = %d\nflap_detection = false\n%s\n'
            % (id, tenant, type, target, interval, timeout, retry, attempts, extra))


def subject_check(subject):
    """(status, check) from "[wacht] [LUP] FIRING CRITICAL: <check> (<target>)"."""
    m = re.match(r"\[wacht\] \[[A-Z]+\] (FIRING \w+|RESOLVED): (\S+)", subject)
    return (m.group(1).split()[0], m.group(2)) if m else (None, None)


def histogram_quantile(metrics, name, q, **match):
    """Upper bound of the bucket holding quantile q of a histogram (None if empty)."""
    buckets = []
    for labels, v in metrics.samples.get(name + "_bucket", []):
        if all(labels.get(k) == w for k, w in match.items()):
            le = labels.get("le")
            buckets.append((float("inf") if le == "+Inf" else float(le), v))
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    for le, v in buckets:
        if v >= q * total:
            return le
    return None
