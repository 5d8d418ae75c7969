#!/bin/sh
# Installs what the benchmarks need beyond scripts/install-deps.sh (Debian 12).
# Idempotent: apt runs only when something is missing. Only bench/ uses these:
#   nginx-light                    the fast loopback target server (bench/run.py, compare.py)
#   prometheus                     drives blackbox_exporter and scrapes wachtd (compare.py)
#   prometheus-blackbox-exporter   the exporter wacht is compared with (compare.py)
#   monitoring-plugins-basic       check_dummy, for the exec comparison (compare.py)
#   gcc                            builds bench/floor.c and bench/spawn_loop.c (compare.py)
#   python3-aiosmtpd               the SMTP sink of bench/time_to_alert.py
#   valgrind, linux-perf, heaptrack  profiling (run.py --profile, docs/performance.md)
# The benchmarks never use the system services these packages install: they
# start their own instances on free loopback ports with configs in a temp dir.
# (On a machine running systemd, the packages' own nginx, prometheus and
# blackbox services may start on install; stop them if they are not wanted.)
set -eu
PACKAGES="
  nginx-light prometheus prometheus-blackbox-exporter monitoring-plugins-basic gcc
  python3 python3-aiosmtpd valgrind linux-perf heaptrack
"
exec sh "$(dirname "$0")/../scripts/install-deps.sh" $PACKAGES
