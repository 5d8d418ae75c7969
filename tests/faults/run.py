#!/usr/bin/python3
"""wacht's fault-injection suite: the real wachtd against broken mail servers,
kill -9, reload storms, hostile targets, a full disk and clock jumps.

  run.py --wachtd build/release/wachtd [--mode reduced|full] [--only NAME[,NAME]]

--mode full runs the numbers of issue 7, reduced (the default) runs smaller
numbers for CI (all scenarios within 4 minutes on 2 cores). Prints a table of
scenario, numbers, time and PASS/FAIL; exits 1 if any scenario failed.

Each scenario runs in a child process of its own, in a new process group and
(as root) a private mount namespace, under a fresh directory; when it ends,
fails or overruns its time budget, the whole group is killed, mounts under the
directory are unmounted and the directory is removed (--keep keeps the
directory of a failed scenario for inspection). WACHT_FAULTS_SEED=N makes the
random choices (kill moments, flips) repeatable.
"""

import argparse
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import faultlib  # noqa: E402

# name -> module; the order is the order they run in.
SCENARIOS = [
    ("smtp_outage", "scenario_smtp_outage"),
    ("kill9", "scenario_kill9"),
    ("reload_storm", "scenario_reload_storm"),
    ("hostile_targets", "scenario_hostile_targets"),
    ("disk_full", "scenario_disk_full"),
    ("clock_jump", "scenario_clock_jump"),
]


def run_child(args):
    """Runs one scenario in this process; writes the result JSON."""
    module = importlib.import_module(dict(SCENARIOS)[args.child])
    ctx = faultlib.Context(args.child, args.mode, args.wachtd, args.root,
                           module.BUDGET[args.mode])
    result = {"ok": False, "numbers": {}, "error": ""}

    def on_term(signum, frame):
        raise faultlib.OutOfTime("terminated by run.py (time budget)")

    signal.signal(signal.SIGTERM, on_term)
    try:
        module.run(ctx)
        result["ok"] = True
    except (faultlib.Failed, faultlib.OutOfTime) as e:
        result["error"] = str(e)
    except Exception:
        result["error"] = traceback.format_exc()
    finally:
        result["numbers"] = ctx.numbers
        result["notes"] = ctx.notes
        try:
            ctx.cleanup()
        except BaseException as e:  # noqa: BLE001 - the result must still be written
            result["error"] += "\ncleanup failed: %r" % e
        result["seconds"] = time.monotonic() - ctx.start
        with open(args.result, "w") as f:
            json.dump(result, f)


def mounts_under(root):
    out = []
    with open("/proc/self/mounts") as f:
        for line in f:
            point = line.split()[1].replace("\\040", " ")
            if point == root or point.startswith(root + "/"):
                out.append(point)
    return sorted(out, key=len, reverse=True)


def run_scenario(name, args):
    module = importlib.import_module(dict(SCENARIOS)[name])
    budget = module.BUDGET[args.mode]
    root = tempfile.mkdtemp(prefix="wacht-faults-%s-" % name)
    result_path = root + ".result.json"
    argv = [sys.executable, os.path.abspath(__file__), "--child", name, "--mode", args.mode,
            "--wachtd", args.wachtd, "--root", root, "--result", result_path]
    if os.geteuid() == 0 and shutil.which("unshare"):
        # A private mount namespace: a tmpfs the scenario mounts disappears with
        # its last process even if nobody unmounts it.
        argv = ["unshare", "--mount", "--propagation", "private"] + argv
    started = time.monotonic()
    child = subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL)
    timed_out = False
    try:
        child.wait(budget + 20)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(child.pid, signal.SIGTERM)  # lets the scenario clean up itself
            child.wait(10)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            pass
    finally:
        # Whatever the scenario left running in its group goes now.
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            pass
    seconds = time.monotonic() - started
    result = {"ok": False, "numbers": {}, "error": "no result (child exit %s)" % child.returncode}
    try:
        with open(result_path) as f:
            result = json.load(f)
    except (OSError, ValueError):
        pass
    if timed_out:
        result["ok"] = False
        result["error"] = ("exceeded its budget of %ds; " % budget) + result.get("error", "")
    for point in mounts_under(root):
        subprocess.run(["umount", "-l", point], check=False)
    if result["ok"] or not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        result["error"] += "\n(kept %s)" % root
    try:
        os.unlink(result_path)
    except OSError:
        pass
    result["seconds"] = seconds
    return result


def format_numbers(numbers):
    return ", ".join("%s %s" % (k, v) for k, v in numbers.items())


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=["reduced", "full"], default="reduced")
    p.add_argument("--only", help="comma-separated scenario names: " +
                   ", ".join(n for n, _ in SCENARIOS))
    p.add_argument("--wachtd", required=True, help="path of the wachtd binary (a release build)")
    p.add_argument("--keep", action="store_true", help="keep the directory of a failed scenario")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.wachtd = os.path.abspath(args.wachtd)
    if args.child:
        run_child(args)
        return 0
    if not os.access(args.wachtd, os.X_OK):
        p.error("not an executable: %s" % args.wachtd)
    names = [n for n, _ in SCENARIOS]
    selected = names
    if args.only:
        selected = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [s for s in selected if s not in names]
        if unknown:
            p.error("unknown scenario(s) %s; known: %s" % (", ".join(unknown), ", ".join(names)))
    rows = []
    total_start = time.monotonic()
    for name in selected:
        print("== %s (%s)" % (name, args.mode), flush=True)
        r = run_scenario(name, args)
        rows.append((name, r))
        print("   %s in %.1fs: %s" % ("PASS" if r["ok"] else "FAIL", r["seconds"],
                                     format_numbers(r["numbers"])), flush=True)
        if not r["ok"]:
            print("   " + r["error"].replace("\n", "\n   "), flush=True)
    total = time.monotonic() - total_start

    print()
    print("fault-injection suite, mode %s, wachtd %s" % (args.mode, args.wachtd))
    width = max(len(n) for n, _ in rows)
    print("%-*s  %-6s %7s  %s" % (width, "scenario", "result", "time", "numbers"))
    for name, r in rows:
        print("%-*s  %-6s %6.1fs  %s" % (width, name, "PASS" if r["ok"] else "FAIL",
                                         r["seconds"], format_numbers(r["numbers"])))
    failed = [n for n, r in rows if not r["ok"]]
    print("total %.1fs" % total)
    print("faults: %d passed, %d failed" % (len(rows) - len(failed), len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
