#!/usr/bin/python3
"""Checks the Grafana dashboard and the Prometheus files in ops/ against a live wachtd.

    /usr/bin/python3 tests/ops/check_ops.py --wachtd build/release/wachtd

1. promtool check config / check rules / test rules on ops/prometheus/.
2. The dashboard JSON: unique panel ids, panels inside the 24-column grid, every
   query on the ${datasource} variable, every $variable defined, the uid the
   notification link in etc/wacht.toml points at, and the panels issue 6 asks
   for (problems, SmokePing, certificates, notifications and outbox).
3. A live wachtd on 127.0.0.1 (a free port) with http, https, tcp, icmp, dns
   and exec checks against loopback servers from tests/support/, one check
   that fails and mails an SMTP sink and pushes to a stand-in Alertmanager
   pair (one member failing), so the probe-, alert- and notification-specific
   series exist. Its /metrics is scraped and every
   metric the dashboard and the rules query must be one wachtd exports, with
   the labels the queries match, group and print by.
4. A real Prometheus (the Debian package's) scrapes that wachtd; every
   dashboard query and variable query, with the variables filled in, must
   return data, and every rule expression must evaluate without error.

Needs promtool and prometheus (package prometheus), python3-yaml,
python3-dnslib and python3-aiosmtpd for the support servers, and ICMP
sockets (root, CAP_NET_RAW or net.ipv4.ping_group_range). Talks to loopback
only. Exit status 0 when everything holds; every finding is printed.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PY = "/usr/bin/python3"  # Debian's python has dnslib and aiosmtpd
DASHBOARD = os.path.join(ROOT, "ops/grafana/wacht-dashboard.json")
PROM_DIR = os.path.join(ROOT, "ops/prometheus")
RULES = os.path.join(PROM_DIR, "wacht-rules.yml")

# Series Prometheus itself adds to every scrape, and the labels it attaches.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped",
                     "scrape_samples_post_metric_relabeling", "scrape_series_added",
                     "ALERTS", "ALERTS_FOR_STATE"}
TARGET_LABELS = {"job", "instance"}
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__interval_ms", "__range_s",
                    "__dashboard", "__from", "__to"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                "unless", "bool", "offset", "inf", "nan", "atan2"}

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg, flush=True)


def ok(msg):
    print("ok:", msg, flush=True)


# --- PromQL scanning -------------------------------------------------------------

def scan_promql(expr):
    """Returns ([(metric, {matched labels})], {labels grouped/joined by}).

    A scanner, not a parser: enough for the queries in ops/, which the
    Prometheus round in step 4 parses for real."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"'(?:[^'\\]|\\.)*'", "''", s)
    s = re.sub(r"\$\{?(\w+)\}?", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"(?<![\w:.])\d+(\.\d+)?([eE][+-]?\d+)?(ms|s|m|h|d|w|y)?(?![\w:])", " ", s)
    grouping = set()
    for m in re.finditer(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", s):
        grouping.update(x.strip() for x in m.group(2).split(",") if x.strip())
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    selectors = []
    pos = 0
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", s):
        if m.start() < pos:
            continue
        name = m.group(0)
        rest = s[m.end():].lstrip()
        if rest.startswith("("):
            continue  # a function
        if name in PROMQL_WORDS:
            continue
        labels = set()
        if rest.startswith("{"):
            close = s.index("}", m.end())
            inner = s[s.index("{", m.end()) + 1:close]
            labels = set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", inner))
            pos = close + 1
        selectors.append((name, labels))
    # A bare selector {…} without a metric name would slip through: none is used.
    return selectors, grouping


def legend_labels(fmt):
    return set(re.findall(r"\{\{\s*(\w+)\s*\}\}", fmt or ""))


# --- the dashboard -------------------------------------------------------------------

def dashboard_queries(dash):
    """Yields (where, expr, legend, kind) for panel targets and variable queries."""
    for p in dash["panels"]:
        for t in p.get("targets", []):
            yield f"panel '{p['title']}' {t.get('refId')}", t["expr"], t.get("legendFormat"), "panel"
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            yield f"variable ${v['name']}", q, None, "variable"


def label_values_parts(q):
    m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", q, re.S)
    if not m:
        return None
    return m.group(1), m.group(2)


def check_dashboard_structure(dash):
    ids = [p["id"] for p in dash["panels"]]
    if len(ids) != len(set(ids)):
        fail("dashboard: duplicate panel ids")
    var_names = {v["name"] for v in dash["templating"]["list"]}
    ds = [v for v in dash["templating"]["list"] if v["type"] == "datasource"]
    if not ds or ds[0]["query"] != "prometheus" or ds[0]["name"] != "datasource":
        fail("dashboard: no Prometheus datasource variable $datasource")
    for need in ("tenant", "site", "check"):
        if need not in var_names:
            fail(f"dashboard: no ${need} variable")
    if dash.get("uid") != "wacht":
        fail("dashboard: uid is not 'wacht' (etc/wacht.toml links to /d/wacht?var-check=…)")
    for p in dash["panels"]:
        g = p["gridPos"]
        if g["x"] < 0 or g["w"] <= 0 or g["x"] + g["w"] > 24 or g["h"] <= 0:
            fail(f"dashboard: panel '{p['title']}' outside the grid: {g}")
        if p["type"] == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            fail(f"dashboard: panel '{p['title']}' does not use ${{datasource}}")
        for t in p.get("targets", []):
            if t.get("datasource", {}).get("uid") != "${datasource}":
                fail(f"dashboard: a query of '{p['title']}' does not use ${{datasource}}")
        for rv in re.findall(r"\$\{?(\w+)\}?", json.dumps(p.get("targets", [])) + p.get("title", "")):
            if rv not in var_names and rv not in GRAFANA_BUILTINS:
                fail(f"dashboard: panel '{p['title']}' uses undefined ${rv}")
        if p.get("repeat") and p["repeat"] not in var_names:
            fail(f"dashboard: panel '{p['title']}' repeats by undefined ${p['repeat']}")
    for v in dash["templating"]["list"]:
        q = v.get("definition", "")
        for rv in re.findall(r"\$\{?(\w+)\}?", q):
            if rv not in var_names:
                fail(f"dashboard: variable ${v['name']} uses undefined ${rv}")
    exprs = " ".join(e for _, e, _, _ in dashboard_queries(dash))
    for metric in ("wacht_check_state", "probe_duration_seconds", "wacht_icmp_rtt_seconds",
                   "wacht_icmp_packet_loss_ratio", "probe_ssl_earliest_cert_expiry",
                   "wacht_notifications_total", "wacht_outbox_pending",
                   "wacht_outbox_oldest_age_seconds", "probe_success"):
        if metric not in exprs:
            fail(f"dashboard: nothing shows {metric}")
    if not failures:
        ok(f"dashboard structure ({len(dash['panels'])} panels, {len(var_names)} variables)")


def rule_exprs():
    doc = yaml.safe_load(open(RULES))
    for g in doc["groups"]:
        for r in g["rules"]:
            yield f"rule {r.get('alert') or r.get('record')}", r["expr"], None, "rule"


# --- processes -------------------------------------------------------------------

procs = []


def spawn(argv, **kw):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=kw.pop("stderr", subprocess.DEVNULL),
                         text=True, start_new_session=True, **kw)
    procs.append(p)
    return p


def first_line_port(p, what):
    line = p.stdout.readline().strip()
    if not line.isdigit():
        raise RuntimeError(f"{what} did not print its port (got {line!r})")
    return int(line)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_all():
    for p in reversed(procs):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def http_get(url, timeout=2):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


# --- /metrics ------------------------------------------------------------------------

def parse_exposition(text):
    """{sample name: set of label names}"""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s", line)
        if not m:
            continue
        labels = set(re.findall(r'([a-zA-Z_]\w*)="(?:[^"\\]|\\.)*"', m.group(3) or ""))
        out.setdefault(m.group(1), set()).update(labels)
    return out


WACHT_CONFIG = """
[daemon]
listen = "127.0.0.1:{port}"
state_dir = "{state}"
log_level = "warn"

[defaults]
interval = "1s"
timeout = "800ms"
tenant = "lup"
max_attempts = 1

[tenants.lup]
name = "Landkreis Ludwigslust-Parchim"

[tenants.schwerin]
name = "Landeshauptstadt Schwerin"

[[check]]
id = "ops-http"
type = "http"
target = "http://127.0.0.1:{http}/ok"
labels = {{ site = "parchim" }}

[[check]]
id = "ops-https"
tenant = "schwerin"
type = "http"
target = "https://127.0.0.1:{https}/ok"
tls_insecure = true
labels = {{ site = "schwerin-rz" }}

[[check]]
id = "ops-tcp"
type = "tcp"
target = "127.0.0.1:{port}"
labels = {{ site = "parchim" }}

[[check]]
id = "ops-icmp"
type = "icmp"
target = "127.0.0.1"
count = 3
packet_gap = "50ms"
labels = {{ site = "hagenow" }}

[[check]]
id = "ops-dns"
type = "dns"
target = "www.example.org"
server = "127.0.0.1:{dns}"
labels = {{ site = "parchim" }}

[[check]]
id = "ops-exec"
type = "exec"
target = "plugin"
command = ["{root}/tests/support/plugins/perfdata.sh"]
labels = {{ site = "parchim" }}

# Fails at once (nothing listens there) and so mails the sink below.
[[check]]
id = "ops-down"
tenant = "schwerin"
type = "tcp"
target = "127.0.0.1:{closed}"
labels = {{ site = "schwerin-rz" }}

[smtp]
smarthost = "127.0.0.1:{smtp}"
tls = "none"
from = "wacht <wacht@example.org>"

[receivers.mail]
type = "email"
to = ["ops@example.org"]

# An Alertmanager cluster of two: one member answers, one fails with 503.
[receivers.am]
type = "alertmanager"
urls = ["http://127.0.0.1:{am}", "http://127.0.0.1:{am}/status/503"]

[[route]]
receivers = ["mail", "am"]
group_wait = "1s"
"""

ZONE = """
example.org. 300 IN SOA ns1.example.org. hostmaster.example.org. 1 7200 3600 1209600 300
example.org. 300 IN NS ns1.example.org.
ns1.example.org. 300 IN A 192.0.2.53
www.example.org. 300 IN A 192.0.2.80
"""


def start_wachtd(wachtd, tmp):
    http = spawn([PY, f"{ROOT}/tests/support/http_server.py"])
    http_port = first_line_port(http, "http_server.py")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", f"{tmp}/key.pem", "-out", f"{tmp}/cert.pem"],
                   check=True, capture_output=True)
    https = spawn([PY, f"{ROOT}/tests/support/http_server.py", "--cert", f"{tmp}/cert.pem",
                   "--key", f"{tmp}/key.pem"])
    https_port = first_line_port(https, "http_server.py --cert")
    dns = spawn([PY, f"{ROOT}/tests/support/dns_server.py", "--zone", ZONE])
    dns_port = first_line_port(dns, "dns_server.py")
    smtp = spawn([PY, f"{ROOT}/tests/support/smtp_sink.py", "--dir", f"{tmp}/mail"])
    smtp_port = first_line_port(smtp, "smtp_sink.py")
    am = spawn([PY, f"{ROOT}/tests/support/webhook_sink.py"])
    am_port = first_line_port(am, "webhook_sink.py")
    port = free_port()
    cfg = WACHT_CONFIG.format(port=port, state=f"{tmp}/state", http=http_port, https=https_port,
                              dns=dns_port, smtp=smtp_port, am=am_port, closed=free_port(),
                              root=ROOT)
    with open(f"{tmp}/wacht.toml", "w") as f:
        f.write(cfg)
    check = subprocess.run([wachtd, "--check-config", "--config", f"{tmp}/wacht.toml"],
                           capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError("the test config is invalid:\n" + check.stderr)
    log = open(f"{tmp}/wachtd.log", "w")
    spawn([wachtd, "--config", f"{tmp}/wacht.toml"], stderr=log)
    return port


def scrape_until_complete(port, wanted, timeout=30):
    """Scrapes until every wanted name is exported (or timeout); returns the last scrape."""
    deadline = time.time() + timeout
    exported = {}
    while time.time() < deadline:
        try:
            exported = parse_exposition(http_get(f"http://127.0.0.1:{port}/metrics"))
        except OSError:
            exported = {}
        if wanted <= set(exported):
            break
        time.sleep(0.5)
    return exported


def check_against_scrape(queries, exported):
    n = 0
    for where, expr, legend, kind in queries:
        lv = label_values_parts(expr) if kind == "variable" else None
        selectors, grouping = scan_promql(lv[0] if lv else expr)
        used_labels = set(TARGET_LABELS)
        for metric, labels in selectors:
            n += 1
            if metric in PROMETHEUS_SERIES:
                have = TARGET_LABELS
            elif metric in exported:
                have = exported[metric] | TARGET_LABELS
            else:
                fail(f"{where}: {metric} is not exported by wachtd")
                continue
            used_labels |= have
            for label in labels - have:
                fail(f"{where}: {metric} has no label '{label}' (has {sorted(have)})")
        for label in (grouping | legend_labels(legend)) - used_labels - {"le"}:
            fail(f"{where}: groups or prints by '{label}', which none of its metrics has")
        if lv and lv[1] not in used_labels:
            fail(f"{where}: label_values of '{lv[1]}', which its metric does not have")
    return n


# --- Prometheus round ---------------------------------------------------------------

def prometheus_round(wacht_port, tmp, dash, queries):
    prom_port = free_port()
    with open(f"{tmp}/prometheus.yml", "w") as f:
        f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: wacht
    static_configs:
      - targets: ['127.0.0.1:{wacht_port}']
""")
    spawn(["prometheus", f"--config.file={tmp}/prometheus.yml",
           f"--storage.tsdb.path={tmp}/tsdb", f"--web.listen-address=127.0.0.1:{prom_port}",
           "--log.level=warn"])
    api = f"http://127.0.0.1:{prom_port}/api/v1/query?query="

    def query(q):
        body = json.loads(http_get(api + urllib.parse.quote(q), timeout=5))
        if body.get("status") != "success":
            raise RuntimeError(body.get("error", body))
        return body["data"]["result"]

    # Wait until Prometheus has a few scrapes of wachtd behind it.
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if query("count_over_time(up{job=\"wacht\"}[1m]) >= 6"):
                break
        except (OSError, RuntimeError):
            pass
        time.sleep(0.5)
    else:
        fail("Prometheus did not scrape wachtd")
        return

    values = {"datasource": "", "job": "wacht", "instance": f"127.0.0.1:{wacht_port}",
              "tenant": ".*", "site": ".*", "check": ".*", "icmp_check": "ops-icmp",
              "__rate_interval": "10s", "__interval": "5s", "__range": "1h"}

    def fill(q):
        return re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], q)

    empty = 0
    for where, expr, legend, kind in queries:
        q = fill(expr)
        lv = label_values_parts(q) if kind == "variable" else None
        if lv:
            q = f"count by ({lv[1]}) ({lv[0]})"
        try:
            result = query(q)
        except (OSError, RuntimeError) as e:
            fail(f"{where}: Prometheus rejects the query {q!r}: {e}")
            continue
        if kind == "rule":
            continue  # healthy: alert conditions are expected to be empty
        if not result:
            empty += 1
            fail(f"{where}: no data for {q!r}")
        elif lv and not any(r["metric"].get(lv[1]) for r in result):
            fail(f"{where}: no values of '{lv[1]}'")
    if not failures:
        ok(f"Prometheus evaluates all {len(queries)} queries; dashboard ones return data")


# --- main -------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wachtd", required=True, help="the wachtd binary to run")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    args = ap.parse_args()
    wachtd = os.path.abspath(args.wachtd)

    for tool in ("promtool", "prometheus", "openssl"):
        if not shutil.which(tool):
            print(f"{tool} not found (apt-get install prometheus openssl)", file=sys.stderr)
            return 2

    for cmd in (["promtool", "check", "config", "prometheus.yml"],
                ["promtool", "check", "rules", "wacht-rules.yml"],
                ["promtool", "test", "rules", "wacht-rules.test.yml"]):
        r = subprocess.run(cmd, cwd=PROM_DIR, capture_output=True, text=True)
        if r.returncode != 0:
            fail(" ".join(cmd) + ":\n" + r.stdout + r.stderr)
        else:
            ok(" ".join(cmd))

    rules = yaml.safe_load(open(RULES))
    alerts = {r.get("alert") for g in rules["groups"] for r in g["rules"]}
    for need in ("WachtDown", "WachtConfigReloadFailed", "WachtOutboxStuck", "WachtOutboxGrowing",
                 "WachtReceiverFailing", "WachtSchedulerLagHigh", "WachtSkippedRuns"):
        if need not in alerts:
            fail(f"rules: no alert {need}")

    dash = json.load(open(DASHBOARD))
    check_dashboard_structure(dash)

    queries = list(dashboard_queries(dash)) + list(rule_exprs())
    wanted = set()
    for _, expr, _, kind in queries:
        lv = label_values_parts(expr) if kind == "variable" else None
        wanted |= {m for m, _ in scan_promql(lv[0] if lv else expr)[0]} - PROMETHEUS_SERIES

    tmp = tempfile.mkdtemp(prefix="wacht-ops-")
    try:
        port = start_wachtd(wachtd, tmp)
        exported = scrape_until_complete(port, wanted)
        if not exported:
            fail("wachtd did not serve /metrics; its log:\n" + open(f"{tmp}/wachtd.log").read())
        else:
            before = len(failures)
            n = check_against_scrape(queries, exported)
            if len(failures) == before:
                ok(f"all {n} metric references ({len(wanted)} names) are exported by wachtd, "
                   "with the labels the queries use")
            prometheus_round(port, tmp, dash, queries)
    finally:
        stop_all()
        if args.keep:
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    if failures:
        print(f"\n{len(failures)} problem(s)", file=sys.stderr)
        return 1
    print("all ops checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
