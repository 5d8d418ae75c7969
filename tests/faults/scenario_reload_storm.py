"""R reloads (SIGHUP) under load, every other one with an invalid config.

Load: L TCP checks and S "stable" HTTP checks, all at a 1 s interval; the
stable checks never change, a "churn" check changes its labels on every valid
reload and an "extra" check comes and goes (valid configs alternate A and B).
Each invalid config is built from a config without half the stable checks and
with one error of a rotating kind, so a partly applied invalid config would
show. After each reload (awaited through wacht_config_reloads_total):

  - invalid: wacht_config_last_reload_successful is 0 and the checks in
    /metrics (probe_success series, wacht_checks) are those of the last valid
    config;
  - valid: it is 1 and the checks are the new config's.

Throughout: open fds (/proc/<pid>/fd, smallest of 5 reads) and RSS (VmRSS)
are sampled; after a warm-up of a tenth of the reloads neither may grow by
more than FD_SLACK descriptors and RSS_SLACK_KB. The schedule is checked at
the target: every stable check's requests, as the target time-stamps them,
must come one interval apart (each gap within GAP_TOL of the interval: a
missed run shows as a gap of two intervals, a doubled one as a gap near zero),
at a constant phase (every request within PHASE_TOL of the first one's phase),
and no run may be skipped (wacht_scheduler_skipped_runs_total 0). The churn
check (changed by every valid reload) must keep its phase and never double;
it may miss at most one run per 100 valid reloads (its rate within 1 %): a
changed check is rescheduled from the loop's time at the reload, so a run
that fell due just before and had not fired yet is lost. Its misses are shown.
"""

import os
import time

from faultlib import TENANTS, Failed, check

BUDGET = {"reduced": 60, "full": 200}
INTERVAL = 1.0
GAP_TOL = 0.35      # s: a gap must lie within INTERVAL +- GAP_TOL
PHASE_TOL = 0.25    # s
FD_SLACK = 8
RSS_SLACK_KB = 6 * 1024

INVALID_KINDS = [
    ("syntax", '[[check]]\nid = "broken"\ntype = "http\n'),
    ("unknown key", '[[check]]\nid = "typo"\ntenant = "lup"\ntype = "tcp"\ntarget = "127.0.0.1:1"\nintervall = "1s"\n'),
    ("bad duration", '[[check]]\nid = "dur"\ntenant = "lup"\ntype = "tcp"\ntarget = "127.0.0.1:1"\ninterval = "5 parsecs"\n'),
    ("duplicate id", None),  # filled in below: repeats the first stable check
    ("unknown tenant", '[[check]]\nid = "tn"\ntenant = "nowhere"\ntype = "tcp"\ntarget = "127.0.0.1:1"\n'),
    ("timeout >= interval", '[[check]]\nid = "to"\ntenant = "lup"\ntype = "tcp"\ntarget = "127.0.0.1:1"\n'
                            'interval = "1s"\ntimeout = "2s"\n'),
    ("unknown receiver", '[[route]]\nreceivers = ["ghost"]\n'),
    ("truncated", None),  # a valid config cut in the middle of a string
]


def run(ctx):
    reloads = 1000 if ctx.full else 200
    n_load = 500 if ctx.full else 200
    n_stable = 20

    targets = ctx.targets(["ok", "accept"])
    d = ctx.wachtd()
    head = d.daemon_section() + TENANTS + '[tenants.x]\nname = "Extra"\n'
    stable = ["stable-%02d" % i for i in range(n_stable)]
    load = ["load-%03d" % i for i in range(n_load)]

    def body(variant, stable_ids):
        text = ""
        for i in stable_ids:
            text += check(i, "http", targets.url("ok", "/s/" + i), interval="1s", timeout="500ms")
        for i in load:
            text += check(i, "tcp", targets.addr("accept"), interval="1s", timeout="500ms",
                          tenant="schwerin")
        text += check("churn", "http", targets.url("ok", "/c/churn"), interval="1s",
                      timeout="500ms", extra='labels = { v = "%s" }' % variant)
        if variant == "b":
            text += check("extra", "http", targets.url("ok", "/x/extra"), interval="1s",
                          timeout="500ms", tenant="x")
        return text

    configs = {"a": head + body("a", stable), "b": head + body("b", stable)}
    expected = {"a": set(stable) | set(load) | {"churn"},
                "b": set(stable) | set(load) | {"churn", "extra"}}
    partial = head + body("b", stable[: n_stable // 2])
    invalid = []
    for kind, snippet in INVALID_KINDS:
        if kind == "duplicate id":
            snippet = check(stable[0], "tcp", targets.addr("accept"))
        if kind == "truncated":
            text = configs["b"]
            cut = text.index('target = "', len(text) // 2) + 14
            invalid.append((kind, text[:cut]))
            continue
        invalid.append((kind, partial + snippet))

    d.write(configs["a"])
    d.start()
    current = "a"
    # Every check has run at least once, so every series is there.
    ctx.wait_until(lambda: expected["a"] <= set(d.metrics().by_label("probe_success", "check")),
                   15, "every check's first result")

    def reload_counts(m):
        return (m.get("wacht_config_reloads_total", result="success"),
                m.get("wacht_config_reloads_total", result="failure"))

    def fds():
        samples = []
        for _ in range(5):
            samples.append(d.fds())
            time.sleep(0.01)
        return min(samples)

    samples = []  # (reload number, fds, rss kb)
    warmup = max(10, reloads // 10)
    baseline = None
    m = d.metrics()
    counts = reload_counts(m)
    t_start = time.monotonic()
    kinds_seen = {}
    pace = (60.0 if ctx.full else 20.0) / reloads  # s per reload at least
    for r in range(reloads):
        ctx.check_time("reload %d" % r)
        if r % 2 == 0:
            kind, text = invalid[(r // 2) % len(invalid)]
            kinds_seen[kind] = kinds_seen.get(kind, 0) + 1
            good = False
        else:
            current = "b" if current == "a" else "a"
            text = configs[current]
            good = True
        d.write(text)
        d.hup()
        end = time.monotonic() + 10
        while True:
            m = d.metrics()
            now_counts = reload_counts(m)
            if now_counts != counts:
                break
            if time.monotonic() > end:
                raise Failed("reload %d (%s) not finished within 10 s" % (r, "valid" if good else kind))
            time.sleep(0.005)
        if now_counts != (counts[0] + good, counts[1] + (not good)):
            raise Failed("reload %d: reload counters went from %s to %s" % (r, counts, now_counts))
        counts = now_counts
        ok = m.get("wacht_config_last_reload_successful")
        if ok != (1 if good else 0):
            raise Failed("reload %d (%s): wacht_config_last_reload_successful is %s"
                         % (r, "valid" if good else kind, ok))
        present = set(m.by_label("probe_success", "check"))
        want = expected[current]
        # A changed or new check has no series until its first run.
        missing = (want - {"extra", "churn"}) - present
        unexpected = present - want
        if missing or unexpected:
            raise Failed("reload %d (%s): checks in /metrics differ from config %s: missing %s, "
                         "unexpected %s" % (r, "valid" if good else kind, current,
                                            sorted(missing)[:5], sorted(unexpected)[:5]))
        extra_count = m.get("wacht_checks", tenant="x")
        if extra_count != (1 if current == "b" else 0):
            raise Failed("reload %d: wacht_checks{tenant=\"x\"} is %s under config %s"
                         % (r, extra_count, current))
        if r == warmup:
            baseline = (fds(), d.rss_kb())
            samples.append((r, baseline[0], baseline[1]))
        elif r % 25 == 0 or r == reloads - 1:
            samples.append((r, fds(), d.rss_kb()))
        # Paced, so that the storm spans enough intervals to judge the schedule.
        lag = t_start + (r + 1) * pace - time.monotonic()
        if lag > 0:
            time.sleep(lag)
    t_end = time.monotonic()
    time.sleep(1.5)
    final = (fds(), d.rss_kb())
    samples.append((reloads, final[0], final[1]))

    # Schedule, as the target saw it. Edges are left out: the window is the
    # reload storm itself.
    stats = targets.stats()
    worst_gap, worst_phase, bad = 0.0, 0.0, []
    churn_missed = 0
    for i in stable + ["churn"]:
        times = [t for t in stats["times"].get("/s/" + i if i != "churn" else "/c/churn", [])
                 if t_start <= t <= t_end]
        if len(times) < 2:
            bad.append("%s: %d requests in the window" % (i, len(times)))
            continue
        gaps = [b - a for a, b in zip(times, times[1:])]
        off = [((t - times[0] + INTERVAL / 2) % INTERVAL) - INTERVAL / 2 for t in times]
        phase = max(abs(o) for o in off)
        worst_phase = max(worst_phase, phase)
        n_missed = sum(1 for g in gaps if g > INTERVAL + GAP_TOL)
        n_doubled = sum(1 for g in gaps if g < INTERVAL - GAP_TOL)
        if i == "churn":
            # A changed check is replaced by a new entry scheduled from the
            # loop's time at the reload; a run due just before that has not
            # fired yet is lost (see the report of issue 7). Tolerated: one
            # per 100 valid reloads, i.e. the rate within 1 %.
            churn_missed = n_missed
            n_missed = max(0, n_missed - (reloads // 2) // 100)
        else:
            for g in gaps:
                worst_gap = max(worst_gap, abs(g - INTERVAL))
        if n_missed or n_doubled or phase > PHASE_TOL:
            bad.append("%s: %d missed, %d doubled, phase drift %.3fs" % (i, n_missed, n_doubled, phase))
    m = d.metrics()
    skipped = m.get("wacht_scheduler_skipped_runs_total")

    base_fds, base_rss = baseline
    max_fds = max(s[1] for s in samples if s[0] >= warmup)
    max_rss = max(s[2] for s in samples if s[0] >= warmup)
    ctx.numbers.update({
        "reloads": "%d (%d invalid)" % (reloads, sum(kinds_seen.values())),
        "checks": n_load + n_stable + 1,
        "in": "%.0fs" % (t_end - t_start),
        "fds": "%d->%d (max %d)" % (base_fds, final[0], max_fds),
        "RSS MiB": "%.1f->%.1f (max %.1f)" % (base_rss / 1024, final[1] / 1024, max_rss / 1024),
        "worst gap": "%+.0fms" % (worst_gap * 1000),
        "phase drift": "%.0fms" % (worst_phase * 1000),
        "skipped": int(skipped),
        "changed check missed": churn_missed,
    })
    failed_logged = d.log_text().count("reload failed")
    ctx.expect(d.alive(), "wachtd died")
    ctx.expect(failed_logged == sum(kinds_seen.values()),
               "%d 'reload failed' log lines for %d invalid configs"
               % (failed_logged, sum(kinds_seen.values())))
    ctx.expect(not bad, "schedule broken: %s" % "; ".join(bad[:5]))
    ctx.expect(skipped == 0, "%d runs skipped" % skipped)
    ctx.expect(max_fds - base_fds <= FD_SLACK,
               "open fds grew from %d to %d (tolerance %d)" % (base_fds, max_fds, FD_SLACK))
    ctx.expect(max_rss - base_rss <= RSS_SLACK_KB,
               "RSS grew from %.1f to %.1f MiB (tolerance %.0f MiB)"
               % (base_rss / 1024, max_rss / 1024, RSS_SLACK_KB / 1024))
