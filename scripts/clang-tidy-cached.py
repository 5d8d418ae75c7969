#!/usr/bin/env python3
"""clang-tidy over every translation unit of a compile_commands.json, in
parallel, with a result cache: a unit is analysed again only when its
preprocessed source (so any header it includes), its compile command, a
.clang-tidy file that applies to it or the clang-tidy version changed. Prints the findings and
exits 1 if there are any. Used by scripts/static-analysis.sh.

usage: clang-tidy-cached.py BUILD_DIR [-j N] [--clang-tidy BINARY] [--cache-dir DIR]
                            [FILE_REGEX]
"""

import argparse
import concurrent.futures
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def preprocess_command(entry):
    """The unit's compile command turned into one that preprocesses to stdout."""
    args = entry["arguments"] if "arguments" in entry else shlex.split(entry["command"])
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("-o", "-MF", "-MT", "-MQ"):
            skip = True
            continue
        if a in ("-c", "-MD", "-MMD") or a.startswith("-fsanitize"):
            continue
        out.append(a)
    return out + ["-E", "-o", "-"]


# The checkout's path is left out of keys and cached output, so that a fresh
# clone elsewhere (CI) finds the results of this one and the other way round.
ROOT_TAG = "@ROOT@"


def cache_key(entry, salt):
    h = hashlib.sha256(salt)
    h.update(json.dumps(entry, sort_keys=True).replace(str(ROOT), ROOT_TAG).encode())
    # Every .clang-tidy that applies: the unit's directory and its parents.
    for d in Path(entry["file"]).resolve().parents:
        config = d / ".clang-tidy"
        if config.is_file():
            h.update(str(config.relative_to(ROOT)).encode() + config.read_bytes())
        if d == ROOT:
            break
    pre = subprocess.run(preprocess_command(entry), cwd=entry["directory"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if pre.returncode != 0:
        return None  # does not preprocess: let clang-tidy report why
    h.update(pre.stdout.replace(str(ROOT).encode(), ROOT_TAG.encode()))
    return h.hexdigest()


def analyse(entry, args, salt, cache_dir):
    started = time.monotonic()
    key = cache_key(entry, salt)
    cached = cache_dir / key if key else None
    if cached and cached.exists():
        data = json.loads(cached.read_text())
        output = data["output"].replace(ROOT_TAG, str(ROOT))
        return entry["file"], key, data["rc"], output, True, data.get("seconds", 0)
    proc = subprocess.run([args.clang_tidy, "-p", str(args.build_dir), "--quiet", entry["file"]],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # stderr carries "N warnings generated" and, with WarningsAsErrors,
    # "N warnings treated as errors": noise unless it failed without output.
    output = proc.stdout
    if proc.returncode != 0 and not output.strip():
        output = proc.stderr
    if cached:
        tmp = cached.with_suffix(".tmp%d" % os.getpid())
        tmp.write_text(json.dumps({"rc": proc.returncode,
                                   "output": output.replace(str(ROOT), ROOT_TAG),
                                   "seconds": round(time.monotonic() - started, 1)}))
        tmp.replace(cached)
    return entry["file"], key, proc.returncode, output, False, time.monotonic() - started


def main():
    p = argparse.ArgumentParser()
    p.add_argument("build_dir", type=Path)
    p.add_argument("file_regex", nargs="?", default=".")
    p.add_argument("-j", type=int, default=os.cpu_count() or 1)
    p.add_argument("--clang-tidy", default="clang-tidy-14")
    # Outside the build directory, like ccache's, so that CI on a fresh clone
    # finds the results of the last run.
    p.add_argument("--cache-dir", type=Path,
                   default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                   / "wacht" / "clang-tidy")
    args = p.parse_args()

    entries = json.loads((args.build_dir / "compile_commands.json").read_text())
    pattern = re.compile(args.file_regex)
    entries = sorted((e for e in entries if pattern.search(e["file"])), key=lambda e: e["file"])
    version = subprocess.run([args.clang_tidy, "--version"], stdout=subprocess.PIPE,
                             check=True).stdout
    salt = version
    cache_dir = args.cache_dir
    cache_dir.mkdir(parents=True, exist_ok=True)

    failed, hits, used, started, seconds = [], 0, set(), time.monotonic(), {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.j) as pool:
        jobs = [pool.submit(analyse, e, args, salt, cache_dir) for e in entries]
        for job in concurrent.futures.as_completed(jobs):
            path, key, rc, output, from_cache, seconds[path] = job.result()
            hits += from_cache
            used.add(key)
            if rc != 0 or output.strip():
                failed.append(path)
                sys.stdout.write(output if output.endswith("\n") else output + "\n")
                sys.stdout.flush()
    # Only this run's results are kept, so the cache does not grow.
    for f in cache_dir.iterdir():
        if f.name not in used:
            f.unlink()
    print("clang-tidy: %d units (%d from the cache) in %.0f s; %d with findings"
          % (len(entries), hits, time.monotonic() - started, len(failed)))
    for path in sorted(failed):
        print("  " + os.path.relpath(path, ROOT))
    slowest = sorted(seconds, key=seconds.get, reverse=True)[:5]
    print("slowest (s, when last analysed): " +
          ", ".join("%s %.0f" % (os.path.relpath(p, ROOT), seconds[p]) for p in slowest))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
