"""The state directory fills up, then space returns.

state_dir is a 2 MB tmpfs mounted by the test (in its own mount namespace
when run.py can make one). Once wachtd runs, a filler file takes every free
byte; then N checks go down (N alerts) and, while the disk is still full,
half of them recover again. After HOLD_S seconds the filler is deleted.

Expected:
  - a loud error: an error line "outbox: cannot write ... No space left on
    device" in the log and wacht_outbox_journal_errors_total > 0;
  - no crash: wachtd alive, /-/healthy and /api/v1/silences (answered on
    the event loop) answering within 1 s throughout;
  - nothing sent that is not durable: no mail while the disk is full;
  - nothing lost once space returns: every FIRING (N) and every RESOLVED
    (N/2, replying to its FIRING) arrives exactly once (Message-IDs), and the
    log says the journal is writable again;
  - the state is saved again: after a final kill -9 and restart nothing is
    announced again.
"""

import errno
import os
import time

from faultlib import TENANTS, HealthProbe, alerting, check, message_id_counts, subject_check

BUDGET = {"reduced": 45, "full": 90}


def fill(path):
    """Writes until ENOSPC, ever smaller, so that not even a page is left."""
    written = 0
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 20, 65536, 4096, 512, 1):
            chunk = b"\0" * size
            while True:
                try:
                    f.write(chunk)
                    written += size
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    return written


def run(ctx):
    n = 50 if ctx.full else 20
    hold = 20 if ctx.full else 6
    sink = ctx.smtp_sink()
    targets = ctx.targets(["ok"])
    d = ctx.wachtd()
    ctx.mount_tmpfs(d.state_dir, "2m")
    ids = ["disk-%02d" % i for i in range(n)]
    config = d.daemon_section() + TENANTS + alerting(sink.port)
    for i in ids:
        config += check(i, "http", targets.url("ok", "/d/" + i), interval="500ms", timeout="300ms")
    d.write(config)
    d.start()
    ctx.wait_until(lambda: d.metrics().get("probe_success") == n, 10, "every check up")
    health = HealthProbe(d.port)
    health.start()
    ctx.on_cleanup(health.stop)
    time.sleep(1.5)  # the first state snapshot is written

    filler = os.path.join(d.state_dir, "filler")
    filled = fill(filler)
    targets.set_down(ids, True)
    d.wait_metric("wacht_outbox_journal_errors_total", lambda v: v > 0, 10, "a journal error")
    ctx.wait_until(lambda: d.metrics().get("wacht_alerts", state="firing") == n, 10,
                   "%d alerts firing" % n)
    recovered = ids[: n // 2]
    targets.set_down(recovered, False)
    time.sleep(hold)
    mails_while_full = sink.count()
    errors = d.value("wacht_outbox_journal_errors_total")
    state_errors = d.value("wacht_state_write_errors_total")
    log = d.log_text()
    loud = [l for l in log.splitlines()
            if " error: " in l and "cannot write" in l and "No space left on device" in l]

    os.unlink(filler)
    t_free = time.monotonic()
    want = n + len(recovered)
    ctx.wait_until(lambda: sink.count() >= want, 30, "%d messages after space returned" % want)
    delivered_in = time.monotonic() - t_free
    d.wait_metric("wacht_outbox_pending", lambda v: v == 0, 10, "an empty outbox")
    time.sleep(2.0)

    # The responsiveness watch ends here: the kill below makes wachtd
    # unreachable on purpose until it has restarted.
    health.stop()
    before = sink.count()
    d.kill9()
    d.start()
    time.sleep(3.0)
    after_restart = sink.count() - before

    mails = sink.mails()
    counts = message_id_counts(mails)
    dup = sum(c - 1 for c in counts.values())
    firing = {}
    resolved_ok, resolved_bad = 0, []
    for m in mails:
        status, cid = subject_check(m.subject)
        if status == "FIRING":
            firing[cid] = m.message_id
        elif status == "RESOLVED":
            if firing.get(cid) == m.in_reply_to:
                resolved_ok += 1
            else:
                resolved_bad.append(cid)
    lost = sorted(set(ids) - set(firing))
    writable_again = "writable again" in d.log_text()
    ctx.numbers.update({
        "alerts": n,
        "filler": "%.1fMB" % (filled / 1e6),
        "journal errors": int(errors),
        "state errors": int(state_errors),
        "mails while full": mails_while_full,
        "delivered": "%d in %.1fs" % (len(counts), delivered_in),
        "lost": len(lost) + (len(recovered) - resolved_ok),
        "duplicated": dup,
        "after restart": after_restart,
        "healthy/loop max": "%.0f/%.0fms" % (health.max_by_path["/-/healthy"] * 1000,
                                            health.max_by_path["/api/v1/silences"] * 1000),
    })
    ctx.expect(d.alive(), "wachtd died")
    ctx.expect(loud, "no error line about the full disk in the log")
    ctx.expect(errors > 0, "wacht_outbox_journal_errors_total stayed 0")
    ctx.expect(mails_while_full == 0, "%d mails sent while their journal records could not be written"
               % mails_while_full)
    ctx.expect(not lost, "alerts never announced: %s" % lost[:5])
    ctx.expect(resolved_ok == len(recovered) and not resolved_bad,
               "%d of %d recoveries announced in their thread (bad: %s)"
               % (resolved_ok, len(recovered), resolved_bad[:5]))
    ctx.expect(dup == 0, "%d duplicate Message-IDs" % dup)
    ctx.expect(len(mails) == want, "%d mails, expected %d" % (len(mails), want))
    ctx.expect(writable_again, "no log line saying the journal is writable again")
    ctx.expect(after_restart == 0, "%d messages after kill -9 and restart (state not saved)"
               % after_restart)
    ctx.expect(not health.failures,
               "/-/healthy or /api/v1/silences slow or failing: %s" % health.failures[:3])
