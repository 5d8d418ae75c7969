#!/bin/sh
# Builds the libFuzzer targets in fuzz/ with clang (in build/fuzz) and runs
# each for a bounded time, starting from its seed corpus fuzz/corpus/<target>/
# and its dictionary fuzz/<target>.dict. Fails on any crash, sanitizer report,
# leak, timeout (5 s per input) or violated property.
#
#   sh scripts/fuzz.sh            # 20 s per target, as CI runs it
#   sh scripts/fuzz.sh 300        # longer local runs
#   sh scripts/fuzz.sh 60 config_fuzzer tcp_dialogue_fuzzer
#   WACHT_FUZZ_OPT=-O0 sh scripts/fuzz.sh 20   # CI: compiles in half the time
#
# Targets run as many at a time as there are cores. New inputs go to
# build/fuzz/corpus/<target>/ (kept between runs, never into the repository);
# a failing input is saved as build/fuzz/artifacts/<target>-crash-<sha1> and
# reproduced with build/fuzz/fuzz/<target> <that file>. To make it a
# regression test, copy it into fuzz/corpus/<target>/ once it is fixed: every
# run replays the seed corpus first.
set -eu
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-20}
[ $# -gt 0 ] && shift
BUILD=build/fuzz
ROOT=$(pwd)
# -O1 fuzzes about twice as fast as -O0, which compiles about twice as fast.
OPT=${WACHT_FUZZ_OPT:--O1}

cmake -S . -B "$BUILD" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$OPT -gline-tables-only" \
  -DWACHT_FUZZ=ON -DWACHT_TESTS=OFF -DWACHT_SANITIZE=OFF -DCMAKE_CXX_COMPILER_LAUNCHER=ccache >/dev/null
cmake --build "$BUILD" --target fuzzers -j "$(nproc)"

TARGETS=${*:-$(cd fuzz/corpus && ls)}
mkdir -p "$BUILD/artifacts" "$BUILD/logs"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# Runs one target; its output goes to $BUILD/logs/<target>.log.
run() {
  target=$1
  mkdir -p "$BUILD/corpus/$target"
  dict=""
  [ -f "fuzz/$target.dict" ] && dict="-dict=$ROOT/fuzz/$target.dict"
  "$ROOT/$BUILD/fuzz/$target" -max_total_time="$SECONDS_PER_TARGET" -timeout=5 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$ROOT/$BUILD/artifacts/$target-" \
    $dict "$ROOT/$BUILD/corpus/$target" "$ROOT/fuzz/corpus/$target" \
    >"$BUILD/logs/$target.log" 2>&1
}

report() {
  target=$1
  status=$2
  log="$BUILD/logs/$target.log"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  if [ "$status" -eq 0 ]; then
    printf '%-24s ok   %8s execs %6s/s\n' "$target" "${execs:-?}" "${rate:-?}"
  else
    printf '%-24s FAIL (exit %s), last lines of %s:\n' "$target" "$status" "$log"
    tail -n 40 "$log"
    failed="$failed $target"
  fi
}

echo "== fuzzing: $SECONDS_PER_TARGET s per target, $(nproc) at a time"
failed=""
pids=""
names=""
for target in $TARGETS; do
  run "$target" &
  pids="$pids $!"
  names="$names $target"
  if [ "$(echo $pids | wc -w)" -ge "$(nproc)" ]; then
    for pid in $pids; do
      name=${names# }
      name=${name%% *}
      names=${names# }
      names=${names#"$name"}
      status=0
      wait "$pid" || status=$?
      report "$name" "$status"
    done
    pids=""
    names=""
  fi
done
for pid in $pids; do
  name=${names# }
  name=${name%% *}
  names=${names# }
  names=${names#"$name"}
  status=0
  wait "$pid" || status=$?
  report "$name" "$status"
done

if [ -n "$failed" ]; then
  echo "fuzzing failed:$failed (inputs in $BUILD/artifacts/)"
  exit 1
fi
