#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (unit and
# integration, against the real chorusd). Sanitizer passes, each in a build
# folder of its own, where any report fails the run:
#   CHORUS_SANITIZE=1       AddressSanitizer + UBSan (build-asan)
#   CHORUS_SANITIZE=thread  ThreadSanitizer (build-tsan), without the
#                           browser tests: they test JavaScript, and the
#                           broker they drive is the one the unit and
#                           integration suites already run under TSan.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --test

build=build
flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
select=()
case "${CHORUS_SANITIZE:-0}" in
0 | "") ;;
1)
  build=build-asan
  flags=(-DCMAKE_BUILD_TYPE=Debug -DCHORUS_SANITIZE=ON)
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  ;;
thread)
  # Optimized: TSan slows the broker 5-15 times, and the integration
  # tests' timeouts are sized for a plain build. halt_on_error: the first
  # race stops chorusd, and its log fails the test (conftest.py).
  build=build-tsan
  flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCHORUS_SANITIZE=thread)
  export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1${TSAN_OPTIONS:+ $TSAN_OPTIONS}"
  select=(-LE browser)
  ;;
*)
  echo "test: CHORUS_SANITIZE is 1 (ASan + UBSan) or thread (TSan)" >&2
  exit 2
  ;;
esac
cmake -S . -B "$build" "${flags[@]}" >/dev/null
cmake --build "$build" -j"$(nproc)" 2>&1 | tee "$build/build.log"
if grep -q "warning:" "$build/build.log"; then
  echo "test: the build has warnings" >&2
  exit 1
fi
cd "$build"
ctest --output-on-failure -j"$(nproc)" "${select[@]}" "$@"
