"""The wall clock jumps forward and back.

wachtd runs under libfaketime (LD_PRELOAD) with its offset in a file the test
rewrites (FAKETIME_TIMESTAMP_FILE, FAKETIME_NO_CACHE=1): the wall clock of
wachtd alone jumps, as with an NTP step or a VM resume. The monotonic clock
stays real (FAKETIME_DONT_FAKE_MONOTONIC=1), as it does when a real wall
clock is stepped. What docs/operations.md ("Clock changes") promises:

  - schedules follow the monotonic clock: a check with a 1 s interval is
    probed once a second straight through every jump (at the target: every
    gap 1 s +- GAP_TOL, no burst after a jump forward, no pause after a jump
    back, no skipped run), and timeouts keep their length
    (probe_duration_seconds of a hanging target stays timeout +- 0.3 s);
  - silences and maintenance windows follow the wall clock, at once: a
    maintenance window W = [T0+1h, T0+3h] (T0: the start) for checks m-*:
      phase A, offset 0      outside W: m-a goes down, FIRING is sent;
      phase B, offset +2h    inside W: m-b goes down and is held (nothing
                             for HOLD_S); m-a recovers: its RESOLVED still
                             goes out (it was announced);
      phase C, offset +4h    past W (jump forward): m-b is sent at once;
      phase D, offset +2h    inside W again (jump back): m-c goes down and is
                             held; m-b recovers: RESOLVED goes out at once;
      phase E, offset 0      before W (jump back): m-c is sent at once;
    "at once" is within PROMPT_S; group timers (group_wait, group_interval)
    are durations and do not stretch by the size of a jump back.
"""

import os
import time

from faultlib import TENANTS, Failed, alerting, check, histogram_quantile, subject_check

BUDGET = {"reduced": 50, "full": 80}
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
GAP_TOL = 0.3
PROMPT_S = 5.0


def run(ctx):
    if not os.path.exists(LIBFAKETIME):
        raise Failed("%s is missing (Debian package libfaketime, see scripts/install-deps.sh)"
                     % LIBFAKETIME)
    hold = 8.0 if ctx.full else 4.0
    offset_file = ctx.path("faketime")

    def set_offset(hours):
        tmp = offset_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%+dh\n" % hours if hours else "+0\n")
        os.rename(tmp, offset_file)

    set_offset(0)
    env = dict(os.environ, LD_PRELOAD=LIBFAKETIME, FAKETIME_TIMESTAMP_FILE=offset_file,
               FAKETIME_NO_CACHE="1", FAKETIME_DONT_FAKE_MONOTONIC="1")
    sink = ctx.smtp_sink()
    targets = ctx.targets(["ok", "hang"])
    d = ctx.wachtd(env=env)
    t0 = time.time()
    fmt = lambda t: time.strftime("%Y-%m-%dT%H:%M", time.gmtime(t))
    config = d.daemon_section() + TENANTS + alerting(sink.port, group_wait="200ms",
                                                     group_interval="1s")
    config += ('[[maintenance]]\nname = "window"\nmatchers = [\'check=~"m-.*"\']\n'
               'from = "%s"\nuntil = "%s"\ntimezone = "UTC"\ncomment = "clock test"\n\n'
               % (fmt(t0 + 3600), fmt(t0 + 3 * 3600)))
    config += check("sched", "http", targets.url("ok", "/sched"), interval="1s", timeout="500ms")
    config += check("hang", "http", targets.url("hang", "/"), interval="1s", timeout="500ms")
    for i in ("m-a", "m-b", "m-c"):
        config += check(i, "http", targets.url("ok", "/" + i), interval="1s", timeout="500ms")
    d.write(config)
    d.start()
    ctx.wait_until(lambda: d.metrics().get("probe_success", check="m-c") == 1, 10, "the checks up")

    def mails(check_id, status):
        return [m for m in sink.mails() if subject_check(m.subject) == (status, check_id)]

    def wait_mail(check_id, status, limit, what):
        start = time.monotonic()
        ctx.wait_until(lambda: mails(check_id, status), limit, what)
        return time.monotonic() - start

    durations = []

    def sample_hang():
        durations.append(d.metrics().get("probe_duration_seconds", check="hang"))

    timeline = []
    t_start = time.monotonic()
    # A: outside the window.
    targets.set_down(["m-a"])
    took_a = wait_mail("m-a", "FIRING", 10, "m-a FIRING before the window")
    time.sleep(1.5)
    sample_hang()

    # B: jump forward into the window.
    set_offset(2)
    timeline.append(("+2h", time.monotonic()))
    time.sleep(2.5)  # wachtd notices within a housekeeping tick
    targets.set_down(["m-b"])
    targets.set_down(["m-a"], False)
    took_b_resolved = wait_mail("m-a", "RESOLVED", PROMPT_S + 2, "m-a RESOLVED inside the window")
    time.sleep(hold)
    sample_hang()
    held_b = len(mails("m-b", "FIRING"))
    silenced = d.metrics().get("wacht_alerts", state="silenced")

    # C: jump forward past the window: m-b goes out at once.
    set_offset(4)
    timeline.append(("+4h", time.monotonic()))
    took_c = wait_mail("m-b", "FIRING", PROMPT_S + 10, "m-b FIRING after the jump past the window")
    time.sleep(1.5)
    sample_hang()

    # D: jump back into the window: m-c is held, m-b's recovery goes out.
    set_offset(2)
    timeline.append(("-2h", time.monotonic()))
    time.sleep(2.5)
    targets.set_down(["m-c"])
    targets.set_down(["m-b"], False)
    took_d_resolved = wait_mail("m-b", "RESOLVED", PROMPT_S + 10,
                                "m-b RESOLVED after the jump back")
    time.sleep(hold)
    sample_hang()
    held_c = len(mails("m-c", "FIRING"))

    # E: jump back before the window: m-c goes out at once.
    set_offset(0)
    timeline.append(("-2h", time.monotonic()))
    took_e = wait_mail("m-c", "FIRING", PROMPT_S + 10, "m-c FIRING after the jump back before the window")
    time.sleep(2.0)
    sample_hang()
    t_end = time.monotonic()

    times = [t for t in targets.stats()["times"].get("/sched", []) if t_start <= t <= t_end]
    gaps = [b - a for a, b in zip(times, times[1:])]
    worst_gap = max(abs(g - 1.0) for g in gaps) if gaps else None
    m = d.metrics()
    skipped = m.get("wacht_scheduler_skipped_runs_total")
    all_mails = sink.mails()
    ids = [x.message_id for x in all_mails]
    jumps_logged = d.log_text().count("the wall clock jumped")
    ctx.numbers.update({
        "jumps": len(timeline),
        "sched gaps": "%d, worst %+.0fms" % (len(gaps), (worst_gap or 0) * 1000),
        "hang durations": "%.2f-%.2fs" % (min(durations), max(durations)),
        "held in window": "%d/%d mails" % (held_b, held_c),
        "released after": "fwd %.1fs, back %.1fs" % (took_c, took_e),
        "resolved after": "%.1fs/%.1fs" % (took_b_resolved, took_d_resolved),
        "mails": len(all_mails),
        "skipped": int(skipped),
    })
    ctx.expect(d.alive(), "wachtd died")
    ctx.expect(worst_gap is not None and len(gaps) >= (t_end - t_start) - 3,
               "only %d probes of the 1 s check in %.0f s" % (len(gaps) + 1, t_end - t_start))
    ctx.expect(worst_gap <= GAP_TOL, "the 1 s schedule had a gap %+.0f ms off" % (worst_gap * 1000))
    ctx.expect(skipped == 0, "%d runs skipped" % skipped)
    ctx.expect(all(0.4 <= x <= 0.8 for x in durations),
               "timeouts changed length: hang probe durations %s" % durations)
    ctx.expect(held_b == 0, "m-b was announced inside the maintenance window")
    ctx.expect(held_c == 0, "m-c was announced inside the maintenance window (after the jump back)")
    ctx.expect(silenced >= 1, "wacht_alerts{state=\"silenced\"} was %s inside the window" % silenced)
    ctx.expect(took_c <= PROMPT_S, "m-b released %.1fs after the jump past the window" % took_c)
    ctx.expect(took_e <= PROMPT_S, "m-c released %.1fs after the jump back before the window" % took_e)
    ctx.expect(took_b_resolved <= PROMPT_S, "m-a RESOLVED took %.1fs" % took_b_resolved)
    ctx.expect(took_d_resolved <= PROMPT_S,
               "m-b RESOLVED took %.1fs after the jump back (group_interval stretched)" % took_d_resolved)
    ctx.expect(len(ids) == len(set(ids)) == 6, "%d mails (%d distinct), expected 6"
               % (len(ids), len(set(ids))))
    ctx.expect(jumps_logged == len(timeline), "%d clock jumps logged, %d made" % (jumps_logged, len(timeline)))
