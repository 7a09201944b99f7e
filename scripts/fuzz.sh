#!/usr/bin/env bash
# Fuzz run: builds tests/fuzz with Debian's clang and libFuzzer
# (CHORUS_FUZZ=ON: ASan + UBSan) in build-fuzz/, then runs every target for
# SECONDS (default 60) from a copy of its committed corpus
# (tests/fuzz/corpus/<target>/, with tests/fuzz/<target>.dict if present),
# so the checkout is never written. Prints one closing line per target and
# fails listing the target and the saved input of any finding (crash,
# broken invariant, sanitizer report, leak, timeout, out of memory).
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]
#
# FUZZ_BUILD overrides the build folder. Replay a finding with
#   build-fuzz/tests/fuzz/fuzz_<target> FILE
# and, once fixed, commit it as tests/fuzz/corpus/<target>/regress-<what>.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
shift || true
case $secs in '' | *[!0-9]*)
  echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2
  exit 2
  ;;
esac
build=${FUZZ_BUILD:-build-fuzz}
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(ls tests/fuzz/fuzz_*.c | sed 's|.*/fuzz_||; s|\.c$||')
fi

# libFuzzer comes with clang's compiler-rt (libclang-rt-dev).
if ! command -v clang >/dev/null 2>&1 ||
   ! dpkg-query -W -f='${Status}' libclang-rt-dev 2>/dev/null |
     grep -q "ok installed"; then
  echo "fuzz: installing clang and libFuzzer (clang, libclang-rt-dev)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang \
    libclang-rt-dev
fi

CC=clang cmake -S . -B "$build" -DCHORUS_FUZZ=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
if ! cmake --build "$build" -j"$(nproc)" --target fuzz_targets \
  >"$build/build.log" 2>&1; then
  tail -n 30 "$build/build.log" >&2
  echo "fuzz: the build failed ($build/build.log)" >&2
  exit 1
fi
if grep -q "warning:" "$build/build.log"; then
  grep "warning:" "$build/build.log" >&2
  echo "fuzz: the build has warnings ($build/build.log)" >&2
  exit 1
fi

# Fields of libFuzzer's last status line ("#N DONE cov: C ft: F corp: K/..").
field() { sed -n "s/.*DONE.* $1: \([0-9]*\).*/\1/p" "$2" | tail -1; }

failed=()
for t in "${targets[@]}"; do
  exe=$build/tests/fuzz/fuzz_$t
  if [ ! -x "$exe" ] || [ ! -d "tests/fuzz/corpus/$t" ]; then
    echo "fuzz: $t: no such target (tests/fuzz/fuzz_$t.c, corpus/$t/)" >&2
    failed+=("$t: no such target")
    continue
  fi
  run=$build/run/$t
  rm -rf "$run"
  mkdir -p "$run/corpus" "$run/findings"
  cp tests/fuzz/corpus/"$t"/* "$run/corpus/"
  seeds=$(ls "$run/corpus" | wc -l)
  opts=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048
        -print_final_stats=1 -artifact_prefix="$run/findings/")
  [ -f "tests/fuzz/$t.dict" ] && opts+=(-dict="tests/fuzz/$t.dict")
  rc=0
  "$exe" "${opts[@]}" "$run/corpus" >"$run/log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$run/log")
  took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$run/log")
  findings=$(ls "$run/findings")
  if [ "$rc" -ne 0 ] || [ -n "$findings" ]; then
    echo "fuzz: $t: FINDING after ${execs:-?} executions (exit $rc); log: $run/log"
    grep -m1 -E "ERROR: |invariant failed|runtime error|SUMMARY" "$run/log" | sed 's/^/  /' || true
    for f in $findings; do
      echo "  input: $run/findings/$f"
      failed+=("$t: $run/findings/$f")
    done
    [ -n "$findings" ] || failed+=("$t: exit $rc, see $run/log")
    continue
  fi
  echo "fuzz: $t: ${execs:-?} executions in ${took:-?} s, no finding;" \
    "corpus $seeds -> $(ls "$run/corpus" | wc -l) inputs," \
    "coverage $(field cov "$run/log") edges, $(field ft "$run/log") features"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} failure(s):" >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${secs} s each, no finding"
