#!/bin/sh
# The whole test suite, as CI runs it: installs what is missing, builds with
# -Werror under AddressSanitizer + UndefinedBehaviorSanitizer, runs every test,
# and checks formatting and the shipped configs.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh
BUILD=build/asan
# Cache hits across checkouts (CI builds a fresh clone elsewhere): paths
# relative to the checkout, and the working directory left out of the hash.
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DWACHT_WERROR=ON -DWACHT_SANITIZE=ON \
  -DCMAKE_CXX_COMPILER_LAUNCHER=ccache >/dev/null
cmake --build "$BUILD" -j "$(nproc)"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

echo "== format"
files=$(git ls-files '*.cpp' '*.hpp')
clang-format --dry-run --Werror $files

echo "== shipped configs"
for f in etc/wacht.toml; do "$BUILD/wachtd" --check-config --config "$f"; done

echo "== tests"
ctest --test-dir "$BUILD" --output-on-failure -j "$(nproc)" --timeout 300

sh scripts/fuzz.sh 20

echo "== operations: systemd unit, shipped configs, man pages, dashboard and rules, Debian package"
sh scripts/ops-checks.sh

echo "== static analysis: clang-tidy, cppcheck, ThreadSanitizer"
sh scripts/static-analysis.sh

echo "== fault injection (reduced)"
/usr/bin/python3 tests/faults/run.py --mode reduced --wachtd "${WACHT_OPS_BUILD:-build/release}/wachtd"
