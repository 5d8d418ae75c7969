#!/usr/bin/python3
"""Test plugin: describes how it was started, on one line, and exits 0:
args, environment, working directory, stdin, open fds, process group and session."""
import os
import sys

fds = [f for f in os.listdir("/proc/self/fd") if os.path.exists("/proc/self/fd/" + f)]
env = ",".join(f"{k}={v}" for k, v in sorted(os.environ.items()))
print(
    f"args={' '.join(sys.argv[1:])} env={env} cwd={os.getcwd()} "
    f"stdin={os.readlink('/proc/self/fd/0')} fds={' '.join(sorted(fds, key=int))} "
    f"leader={os.getpgrp() == os.getpid() and os.getsid(0) == os.getpid()}"
)
