#!/usr/bin/python3
"""Test plugin: a normal first line, then BYTES (default 11 MB) of output, then exit 0."""
import sys

size = int(sys.argv[1]) if len(sys.argv) > 1 else 11 * 1024 * 1024
out = sys.stdout.buffer
out.write(b"FLOOD OK | first=1s\n")
line = b"x" * 1023 + b"\n"
for _ in range(size // len(line)):
    out.write(line)
out.flush()
