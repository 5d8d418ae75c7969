"""The mail server is down while N alerts fire, then returns.

The outage has two halves: first nothing listens on the smarthost's port
(connection refused), then something accepts connections and never speaks
(every attempt runs into [smtp] timeout). When the real sink returns it
answers 451 to its first few messages. Expected: every alert delivered exactly
once, counted by Message-ID at the sink; nothing left in the outbox; no dead
letter.
"""

import socket
import time

from faultlib import TENANTS, Failed, alerting, check, free_port, message_id_counts, subject_check

BUDGET = {"reduced": 40, "full": 90}


def run(ctx):
    n = 100 if ctx.full else 50
    refused_s, hanging_s = (10, 10) if ctx.full else (3, 3)
    tempfail = 10 if ctx.full else 5
    smtp_port = free_port()
    closed = "127.0.0.1:%d" % free_port()

    d = ctx.wachtd()
    config = d.daemon_section() + TENANTS + alerting(smtp_port)
    for i in range(n):
        config += check("down-%03d" % i, "tcp", closed)
    d.write(config)
    d.start()
    t0 = time.monotonic()

    d.wait_metric("wacht_outbox_pending", lambda v: v == n, 30, "%d notifications pending" % n)
    d.wait_metric("wacht_notifications_total", lambda v: v >= n, 30,
                  "a refused attempt for each", receiver="ops", result="retry")
    time.sleep(max(0, refused_s - (time.monotonic() - t0)))

    # Second half: the port accepts (the kernel completes the handshake into the
    # backlog) but nobody ever sends a banner.
    hang = socket.socket()
    hang.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hang.bind(("127.0.0.1", smtp_port))
    hang.listen(1024)
    ctx.on_cleanup(hang.close)
    retries_before = d.value("wacht_notifications_total", receiver="ops", result="retry")
    time.sleep(hanging_s)
    timeouts = d.value("wacht_notifications_total", receiver="ops", result="retry") - retries_before
    hang.close()
    ctx.expect(timeouts >= 1, "no attempt ran into the SMTP timeout while the server hung")
    ctx.expect(d.value("wacht_outbox_pending") == n, "outbox pending %s, expected %d during the outage"
               % (d.value("wacht_outbox_pending"), n))

    outage = time.monotonic() - t0
    sink = ctx.smtp_sink(smtp_port, ["--tempfail", str(tempfail)])
    back = time.monotonic()
    ctx.wait_until(lambda: sink.count() >= n, 60, "%d messages at the sink" % n)
    drained = time.monotonic() - back
    d.wait_metric("wacht_outbox_pending", lambda v: v == 0, 10, "an empty outbox")
    time.sleep(2.0)  # anything sent twice would arrive now

    mails = sink.mails()
    counts = message_id_counts(mails)
    dup = sum(c - 1 for c in counts.values())
    checks = {}
    for m in mails:
        status, check_id = subject_check(m.subject)
        if status == "FIRING":
            checks[check_id] = checks.get(check_id, 0) + 1
    expected = {"down-%03d" % i for i in range(n)}
    lost = len(expected - set(checks))
    m = d.metrics()
    ctx.numbers.update({
        "alerts": n,
        "outage": "%.0fs" % outage,
        "delivered": len(counts),
        "lost": lost,
        "duplicated": dup,
        "sink answers": sink.attempts(),
        "drained in": "%.1fs" % drained,
    })
    ctx.expect(d.alive(), "wachtd died")
    ctx.expect(lost == 0, "%d alerts never arrived: %s" % (lost, sorted(expected - set(checks))[:5]))
    ctx.expect(dup == 0, "%d duplicate Message-IDs" % dup)
    ctx.expect(len(mails) == n, "%d messages at the sink, expected %d" % (len(mails), n))
    ctx.expect(all(v == 1 for v in checks.values()), "an alert was announced twice")
    ctx.expect(sink.attempts() == n + tempfail, "sink answered %d times, expected %d (%d tempfails)"
               % (sink.attempts(), n + tempfail, tempfail))
    delivered = m.get("wacht_notifications_total", receiver="ops", result="delivered")
    dead = m.get("wacht_notifications_total", result="rejected") + \
        m.get("wacht_notifications_total", result="expired")
    ctx.expect(delivered == n, "wacht_notifications_total delivered %s, expected %d" % (delivered, n))
    ctx.expect(dead == 0, "%s dead letters" % dead)
