#!/bin/sh
# Test plugin: prints a line, then dies of SIGSEGV.
echo "about to crash"
kill -SEGV $$
