"""kill -9 of wachtd at random moments under load, with notifications pending.

C HTTP checks against switchable targets; a flipper thread takes random groups
of targets down and up in bursts, so alerts keep firing and resolving and the
outbox keeps a backlog. wachtd is killed with SIGKILL at K random moments and
restarted at once on the same state directory. Then the targets settle, the
suite waits for the mail to settle, kills and restarts once more and watches
that nothing is announced again.

Expected, counted at the SMTP sink (one thread per alert, group_by check):
  - lost 0: every notification that ever reached the outbox journal (copied
    after each kill) arrives; each check's last message matches its target's
    final state (down: FIRING, up: RESOLVED or nothing);
  - duplicated 0: no alert announced twice (per check the messages alternate
    FIRING, RESOLVED, FIRING, ... with every RESOLVED replying to the FIRING
    before it), and no Message-ID twice -- except a message the sink had
    already accepted when the kill hit, before wachtd could record the
    delivery: SMTP has no way to make that atomic, so wachtd sends it again
    with the same Message-ID (mail clients and archives deduplicate by it).
    Such re-sends are counted separately ("resent in flight") and allowed
    only for a message the sink stored within IN_FLIGHT_S before a kill (or
    while the killed process was going down);
  - state restored: after the last restart nothing new is sent.
"""

import json
import os
import shutil
import threading
import time

from faultlib import TENANTS, Failed, alerting, check, subject_check

BUDGET = {"reduced": 60, "full": 180}
IN_FLIGHT_S = 0.5


def journal_records(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return
    for line in data.split(b"\n"):
        if len(line) < 10:
            continue
        try:
            yield json.loads(line[9:])
        except ValueError:
            continue


def journal_message_ids(path):
    return {r["n"]["message_id"] for r in journal_records(path) if r.get("op") == "enqueue"}


def journal_pending(path):
    """Notifications the journal holds without a "done": what the restarted
    wachtd has to send."""
    enqueued, done = set(), set()
    for r in journal_records(path):
        if r.get("op") == "enqueue":
            enqueued.add(r["n"]["seq"])
        elif r.get("op") == "done":
            done.add(r.get("seq"))
    return len(enqueued - done)


def run(ctx):
    n_checks = 200 if ctx.full else 80
    kills = 20 if ctx.full else 6
    gap = (0.3, 4.0) if ctx.full else (0.3, 2.5)

    # A slow relay (as a busy smarthost is): the outbox keeps a backlog, so
    # the kills find notifications pending, which is what this scenario is about.
    # The full run flips four times as many checks: a shorter delay keeps its
    # backlog within what the settling below waits for.
    sink = ctx.smtp_sink(extra=["--delay", "0.05" if ctx.full else "0.1"])
    targets = ctx.targets(["ok"])
    ids = ["k%03d" % i for i in range(n_checks)]
    d = ctx.wachtd()
    config = d.daemon_section() + TENANTS + alerting(sink.port, group_wait="200ms",
                                                     group_interval="300ms")
    for i in ids:
        config += check(i, "http", targets.url("ok", "/k/" + i), interval="500ms",
                        timeout="300ms", retry="100ms")
    d.write(config)
    d.start()

    down = set()
    lock = threading.Lock()
    stop = threading.Event()
    rng = ctx.rng

    def flipper():
        # Bursts: a random share of the checks changes at once, then a pause.
        while not stop.is_set():
            k = rng.randint(1, max(1, n_checks // 4))
            chosen = rng.sample(ids, k)
            with lock:
                to_down = [i for i in chosen if i not in down]
                to_up = [i for i in chosen if i in down]
                down.update(to_down)
                down.difference_update(to_up)
            try:
                targets.set_down(to_down, True)
                targets.set_down(to_up, False)
            except Failed:
                pass
            stop.wait(rng.uniform(0.3, 1.5))

    t = threading.Thread(target=flipper, daemon=True)
    t.start()
    ctx.on_cleanup(stop.set)

    kill_times = []
    pending_at_kill = []
    journals = ctx.mkdir("journals")
    try:
        for k in range(kills):
            time.sleep(rng.uniform(*gap))
            ctx.check_time("kill %d" % k)
            t_kill = time.time()
            d.kill9()
            kill_times.append((t_kill, time.time()))
            journal = os.path.join(journals, "%02d.journal" % k)
            shutil.copy(os.path.join(d.state_dir, "outbox.journal"), journal)
            pending_at_kill.append(journal_pending(journal))
            d.start()
    finally:
        stop.set()
        t.join(5)

    # Settle: a random half of the targets ends down, the rest up.
    final_down = set(rng.sample(ids, n_checks // 2))
    targets.set_down(sorted(final_down), True)
    targets.set_down(sorted(set(ids) - final_down), False)

    def sequences():
        seen = set()
        per = {i: [] for i in ids}
        for m in sink.mails():
            if m.message_id in seen:
                continue
            seen.add(m.message_id)
            status, check_id = subject_check(m.subject)
            if check_id in per:
                per[check_id].append((status, m))
        return per

    def settled():
        per = sequences()
        for i in ids:
            last = per[i][-1][0] if per[i] else None
            if i in final_down and last != "FIRING":
                return False
            if i not in final_down and last == "FIRING":
                return False
        return d.value("wacht_outbox_pending") == 0

    try:
        ctx.wait_until(settled, 60, "the final states announced", interval=0.25)
    except Failed as e:
        per = sequences()
        last = {i: (per[i][-1][0] if per[i] else None) for i in ids}
        wrong = ["%s:%s" % (i, last[i]) for i in ids
                 if (last[i] == "FIRING") != (i in final_down)]
        raise Failed("%s; checks whose last message is wrong: %s" % (e, wrong[:10]))
    time.sleep(1.5)

    # State restored: one more kill after everything settled; nothing may follow.
    before = sink.count()
    t_kill = time.time()
    d.kill9()
    kill_times.append((t_kill, time.time()))
    shutil.copy(os.path.join(d.state_dir, "outbox.journal"), os.path.join(journals, "final.journal"))
    d.start()
    time.sleep(4.0)
    after_restart = sink.count() - before

    mails = sink.mails()
    counts = {}
    first_arrival = {}
    for m in mails:
        counts[m.message_id] = counts.get(m.message_id, 0) + 1
        first_arrival.setdefault(m.message_id, m.arrived)
    resent, unexplained = 0, []
    for mid, c in counts.items():
        if c == 1:
            continue
        t1 = first_arrival[mid]
        # In flight: the sink took it in while the kill was under way (up to
        # IN_FLIGHT_S before the signal, or finishing just after it).
        if c == 2 and any(k0 - IN_FLIGHT_S <= t1 <= k1 + 0.2 for k0, k1 in kill_times):
            resent += 1
        else:
            unexplained.append(mid)

    # Per check: FIRING, RESOLVED, FIRING, ... each RESOLVED replying to its FIRING.
    per = sequences()
    reannounced, orphans, unpaired = [], [], []
    for i in ids:
        prev = None
        for status, m in per[i]:
            if status == "FIRING" and prev is not None and prev[0] == "FIRING":
                reannounced.append(i)
            if status == "RESOLVED":
                if prev is None or prev[0] != "FIRING":
                    orphans.append(i)
                elif m.in_reply_to != prev[1].message_id:
                    unpaired.append(i)
            prev = (status, m)
    journal_ids = set()
    for f in os.listdir(journals):
        journal_ids |= journal_message_ids(os.path.join(journals, f))
    journal_ids |= journal_message_ids(os.path.join(d.state_dir, "outbox.journal"))
    lost = sorted(journal_ids - set(counts))
    firing = sum(1 for i in ids for s, _ in per[i] if s == "FIRING")
    resolved = sum(1 for i in ids for s, _ in per[i] if s == "RESOLVED")

    m = d.metrics()
    dead = m.get("wacht_notifications_total", result="rejected") + \
        m.get("wacht_notifications_total", result="expired")
    ctx.numbers.update({
        "kills": kills,
        "pending at kills": "%d-%d" % (min(pending_at_kill), max(pending_at_kill)),
        "messages": len(mails),
        "firing/resolved": "%d/%d" % (firing, resolved),
        "lost": len(lost),
        "duplicated": len(unexplained) + len(reannounced),
        "resent in flight": resent,
        "after restart": after_restart,
    })
    ctx.expect(d.alive(), "wachtd died")
    ctx.expect(not lost, "%d notifications in the journal never arrived: %s" % (len(lost), lost[:5]))
    ctx.expect(not unexplained, "%d Message-IDs arrived more than once outside the in-flight window: %s"
               % (len(unexplained), unexplained[:5]))
    ctx.expect(not reannounced, "alerts announced twice (FIRING after FIRING): %s" % reannounced[:10])
    ctx.expect(not orphans, "RESOLVED without its FIRING: %s" % orphans[:10])
    ctx.expect(not unpaired, "RESOLVED not replying to its FIRING: %s" % unpaired[:10])
    ctx.expect(after_restart == 0, "%d messages after the final restart (state not restored)"
               % after_restart)
    ctx.expect(dead == 0, "%s dead letters" % dead)
    ctx.expect(max(pending_at_kill) > 0, "no kill hit a moment with notifications pending")
