#!/bin/sh
# Fresh Debian 12 machine → wachtd running on the shipped etc/wacht.toml.
# Installs what is missing, builds a release binary and runs it in the foreground
# (Ctrl-C stops it). Metrics: http://127.0.0.1:9915/metrics
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWACHT_TESTS=OFF -DCMAKE_CXX_COMPILER_LAUNCHER=ccache >/dev/null
cmake --build build/release --target wachtd
build/release/wachtd --check-config --config etc/wacht.toml
exec build/release/wachtd --config etc/wacht.toml "$@"
