#!/bin/sh
# Test plugin: waits until the file $1 exists, then says so and exits 0. For
# tests of the concurrency cap, which release a running plugin by creating it.
while [ ! -e "$1" ]; do sleep 0.01; done
echo "released $1"
