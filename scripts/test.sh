#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (unit and
# integration, against the real chorusd). With CHORUS_SANITIZE=1 the build
# uses AddressSanitizer and UBSan, and any report fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --test

build=build
flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [ "${CHORUS_SANITIZE:-0}" = 1 ]; then
  build=build-asan
  flags=(-DCMAKE_BUILD_TYPE=Debug -DCHORUS_SANITIZE=ON)
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
fi
cmake -S . -B "$build" "${flags[@]}" >/dev/null
cmake --build "$build" -j"$(nproc)" 2>&1 | tee "$build/build.log"
if grep -q "warning:" "$build/build.log"; then
  echo "test: the build has warnings" >&2
  exit 1
fi
cd "$build"
ctest --output-on-failure -j"$(nproc)" "$@"
