#!/usr/bin/python3
"""Checks the man pages: clean roff, and in step with the code and the reference.

    /usr/bin/python3 tests/ops/check_docs.py

- docs/man/*.[58]: `mandoc -T lint` (if installed) and `groff -man -ww` report
  nothing;
- wachtd.8 names every long option of daemon/main.cpp and every exit code of
  daemon/app.hpp;
- wacht.toml.5 names every key of every key table in docs/configuration.md
  (the tables tests/daemon/reference_test.cpp holds against the parser), so a
  key added to the parser and the reference cannot be missing from the page.
"""

import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MAN = os.path.join(ROOT, "docs/man")
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg)


def roff_words(path):
    """Words a reader sees in bold or as text, without roff escapes."""
    text = open(path).read()
    text = re.sub(r"\\[&%]", "", text)
    text = text.replace("\\-", "-")
    words = set()
    for w in re.findall(r"[A-Za-z_][A-Za-z0-9_.-]*", text):
        words.add(w.rstrip("."))
        words.update(w.split("."))  # [tenants.id], [time_periods.name]
    return words


def main():
    pages = sorted(f for f in os.listdir(MAN) if re.search(r"\.[1-8]$", f))
    for page in pages:
        path = os.path.join(MAN, page)
        if shutil.which("mandoc"):
            r = subprocess.run(["mandoc", "-T", "lint", "-W", "warning", path],
                               capture_output=True, text=True)
            if r.returncode != 0 or r.stdout.strip() or r.stderr.strip():
                fail(f"mandoc -T lint {page}:\n{r.stdout}{r.stderr}")
        r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", path],
                           capture_output=True, text=True)
        if r.returncode != 0 or r.stderr.strip():
            fail(f"groff -man -ww {page}:\n{r.stderr}")

    text8 = open(os.path.join(MAN, "wachtd.8")).read()
    plain8 = text8.replace("\\-", "-")
    main_cpp = open(os.path.join(ROOT, "daemon/main.cpp")).read()
    for opt in re.findall(r'\{"([a-z-]+)",\s*(?:required|no|optional)_argument', main_cpp):
        if not re.search(rf"--{opt}\b", plain8):
            fail(f"wachtd.8 does not describe --{opt}")
    app_hpp = open(os.path.join(ROOT, "daemon/app.hpp")).read()
    for code in re.findall(r"kExit\w+\s*=\s*(\d+)", app_hpp):
        if not re.search(rf"^\.B {code}$", text8, re.M):
            fail(f"wachtd.8 does not list exit status {code}")

    words5 = roff_words(os.path.join(MAN, "wacht.toml.5"))
    ref = open(os.path.join(ROOT, "docs/configuration.md")).read()
    n = 0
    for table, body in re.findall(r"<!-- keys: (.*?) -->\n(.*?)<!-- end keys -->", ref, re.S):
        for key in re.findall(r"^\| `([^`]+)`", body, re.M):
            n += 1
            if key not in words5:
                fail(f"wacht.toml.5 does not mention '{key}' of [{table}] (docs/configuration.md)")

    if failures:
        print(f"{len(failures)} problem(s)", file=sys.stderr)
        return 1
    print(f"ok: {len(pages)} man pages lint clean; wachtd.8 matches main.cpp and app.hpp; "
          f"wacht.toml.5 mentions all {n} keys of docs/configuration.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
