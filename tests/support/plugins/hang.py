#!/usr/bin/python3
"""Test plugin that never finishes, for timeouts.

  hang.py DIR [ignore-term]

Starts a grandchild that ignores SIGTERM, writes DIR/plugin.pid and
DIR/grandchild.pid (the grandchild's last), prints a line and sleeps forever.
With ignore-term the plugin ignores SIGTERM as well, so only SIGKILL ends it.
"""
import os
import signal
import sys
import time

directory = sys.argv[1]
if len(sys.argv) > 2 and sys.argv[2] == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def write(name, pid):
    tmp = os.path.join(directory, name + ".tmp")
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, os.path.join(directory, name))


write("plugin.pid", os.getpid())
print("hanging", flush=True)
child = os.fork()
if child == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    write("grandchild.pid", os.getpid())
    while True:
        time.sleep(60)
while True:
    time.sleep(60)
