#!/bin/sh
# Static analysis as CI runs it (docs/static-analysis.md): clang-tidy with the
# checks in .clang-tidy, cppcheck, and ThreadSanitizer over the tests that run
# the HTTP server's worker threads. Exits non-zero on any finding.
#
#   sh scripts/static-analysis.sh [tidy|cppcheck|tsan]...   (default: all three)
#
# clang-tidy results are cached per translation unit (in ~/.cache/wacht, like
# ccache's), so a second run analyses only what changed. JOBS=N sets the
# parallelism.
set -eu
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
STEPS=${*:-tidy cppcheck tsan}
STATIC=build/static
TSAN=build/tsan
status=0

elapsed() { echo "   ($(($(date +%s) - $1)) s)"; }

# Compile commands of every library, wachtd, the tests and the benchmark; the
# configure step also generates version.hpp, the only generated header.
cmake -S . -B "$STATIC" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
  >/dev/null

for step in $STEPS; do
  start=$(date +%s)
  case $step in
    tidy)
      echo "== clang-tidy"
      python3 scripts/clang-tidy-cached.py "$STATIC" -j "$JOBS" || status=1
      ;;
    cppcheck)
      echo "== cppcheck"
      mkdir -p "$STATIC/cppcheck"
      # Only the project's include directories are in the compile commands, so
      # system headers are not analysed (missingIncludeSystem is suppressed).
      cppcheck --project="$STATIC/compile_commands.json" --cppcheck-build-dir="$STATIC/cppcheck" \
        --enable=warning,performance,portability --inline-suppr --error-exitcode=1 -j "$JOBS" \
        --library=googletest --library=posix --library=libcurl --library=openssl \
        --suppressions-list=scripts/cppcheck-suppressions.txt --quiet \
        --template='{file}:{line}:{column}: {severity}: {message} [{id}]' || status=1
      ;;
    tsan)
      echo "== ThreadSanitizer: exporters_test (civetweb workers and the loop), runtime_test"
      cmake -S . -B "$TSAN" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DWACHT_WERROR=ON -DWACHT_TSAN=ON \
        -DCMAKE_CXX_COMPILER_LAUNCHER=ccache >/dev/null
      cmake --build "$TSAN" -j "$JOBS" --target exporters_test runtime_test
      # halt_on_error: the first race fails the run. Races inside civetweb,
      # GoogleTest or glibc (not instrumented) would go to tests/tsan.supp.
      export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 history_size=4 suppressions=$PWD/tests/tsan.supp"
      # Repeated: a race has to show up in an actual interleaving.
      "$TSAN/tests/exporters_test" --gtest_brief=1 --gtest_repeat=3 || status=1
      "$TSAN/tests/runtime_test" --gtest_brief=1 || status=1
      ;;
    *) echo "unknown step '$step' (tidy, cppcheck, tsan)" >&2; exit 2 ;;
  esac
  elapsed "$start"
done
[ "$status" -eq 0 ] && echo "static analysis: clean" || echo "static analysis: findings above"
exit "$status"
