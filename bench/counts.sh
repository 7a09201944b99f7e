#!/usr/bin/env bash
# Counts what one chorusd build does per delivery in a saturated run of
# compare.sh's scenario B (1,000 topics x 10 subscribers, 100 B, window
# 20,000): repeatable where timings on a shared machine are not.
#
#   bench/counts.sh callgrind BUILD   # instructions (all threads, user space)
#   bench/counts.sh perf BUILD        # system calls, io_uring sends, CPU
#
# BUILD holds chorusd; the bench is bench/chorus-bench of $BENCH_BUILD
# (default: BUILD). Counting starts once every subscriber is in and stops
# when the bench has drained; deliveries, publishes and commits are the
# deltas of /metrics over the same span. callgrind: DUR=20 (under
# valgrind the broker runs ~50x slower, so it is saturated throughout),
# the profile is kept in the printed directory for callgrind_annotate.
# Broker on CPU 0, bench on CPU 1, 127.0.0.1 only; every process this
# script starts is stopped by PID.
set -u
tool=${1:-}
build=${2:-}
if [ "$tool" != callgrind ] && [ "$tool" != perf ] || [ ! -x "$build/chorusd" ]; then
    echo "usage: $0 callgrind|perf BUILD" >&2
    exit 2
fi
need() { # command package
    command -v "$1" > /dev/null ||
        { echo "$0: needs $1 (apt-get install $2)" >&2; exit 1; }
}
if [ "$tool" = callgrind ]; then need valgrind valgrind; else need perf linux-perf; fi
BENCH=${BENCH_BUILD:-$build}/bench/chorus-bench
[ -x "$BENCH" ] || { echo "$0: no $BENCH (set BENCH_BUILD)" >&2; exit 2; }
DUR=${DUR:-5}
[ "$tool" = callgrind ] && DUR=${DUR_CALLGRIND:-20}
dir=$(mktemp -d /tmp/chorus-counts.XXXXXX)
port=$(shuf -i 20000-32000 -n 1)
cat > "$dir/chorus.conf" <<EOF
listen = 127.0.0.1:$port
db_path = $dir/chorus.db
max_connections = 0
log_level = warn
ping_interval = 0
idle_timeout = 0
threads = 1
EOF

bp="" bn="" cp=""
cleanup() {
    local p
    for p in $cp $bn $bp; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
}
trap cleanup EXIT

if [ "$tool" = callgrind ]; then
    nice -n 10 taskset -c 0 valgrind --tool=callgrind \
        --callgrind-out-file="$dir/callgrind.out" "$build/chorusd" \
        -c "$dir/chorus.conf" > "$dir/chorusd.log" 2>&1 &
else
    nice -n 10 taskset -c 0 "$build/chorusd" -c "$dir/chorus.conf" \
        > "$dir/chorusd.log" 2>&1 &
fi
bp=$!
for _ in $(seq 600); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break
    kill -0 "$bp" 2>/dev/null || { echo "chorusd did not start" >&2; exit 1; }
    sleep 0.1
done

nice -n 10 taskset -c 1 "$BENCH" --port "$port" --pid "$bp" --proto chorus \
    -n 10000 -t 1000 -p 100 --window 20000 -d "$DUR" -w 1 --drain 120 \
    --setup-timeout 300 > "$dir/bench.out" 2> "$dir/bench.err" &
bn=$!
for _ in $(seq 3000); do # at most 10 minutes of setup
    grep -q "subscribers ready" "$dir/bench.err" 2>/dev/null && break
    kill -0 "$bn" 2>/dev/null || break
    sleep 0.2
done
curl -sf "http://127.0.0.1:$port/metrics" > "$dir/metrics.0"
if [ "$tool" = callgrind ]; then
    callgrind_control -z "$bp" > /dev/null 2>&1
else
    perf stat -e task-clock -e 'syscalls:sys_enter_*' \
        -e io_uring:io_uring_submit_req -p "$bp" -o "$dir/perf.out" &
    cp=$!
fi
wait "$bn"
bn=""
if [ "$tool" = callgrind ]; then
    callgrind_control -d "$bp" > /dev/null 2>&1
else
    kill -INT "$cp"
    wait "$cp"
    cp=""
fi
curl -sf "http://127.0.0.1:$port/metrics" > "$dir/metrics.1"

delta() { # metric name: its increase over the counted span
    awk -v k="$1" '$1 == k { v[FILENAME] = $2 }
        END { print v[ARGV[2]] - v[ARGV[1]] }' "$dir/metrics.0" "$dir/metrics.1"
}
deliv=$(delta chorus_messages_delivered_total)
pubs=$(delta chorus_messages_published_total)
commits=$(delta chorus_history_commits_total)
echo "deliveries $deliv, publishes $pubs, commits $commits" \
    "($((pubs / (commits > 0 ? commits : 1))) publishes per commit)"
per() { # value [scale]: value x scale per delivery
    awk -v n="$1" -v k="${2:-1}" -v d="$deliv" 'BEGIN { printf "%.3f", n * k / d }'
}
if [ "$tool" = callgrind ]; then
    ir=$(callgrind_annotate "$dir"/callgrind.out.* 2>/dev/null |
        awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
    # calls of send_batch_add: one per send (names are given once, then
    # only their number)
    sends=$(awk 'match($0, /^c?fn=\([0-9]+\)/) {
            id = substr($0, 1, RLENGTH); sub(/^c?fn=/, "", id)
            if (length($0) > RLENGTH) name[id] = substr($0, RLENGTH + 2)
            f = /^cfn=/ && name[id] == "send_batch_add"; next }
        f && /^calls=/ { split($1, a, "="); n += a[2] } { f = 0 }
        END { print n + 0 }' "$dir"/callgrind.out.*)
    echo "instructions per delivery $(per "$ir")," \
        "io_uring sends per delivery $(per "$sends")"
else
    count() { # a perf stat counter (task-clock in ms)
        awk -v k="$1" '$2 == k || $3 == k { gsub(",", "", $1); v = $1 }
            END { print v + 0 }' "$dir/perf.out"
    }
    sends=$(count io_uring:io_uring_submit_req)
    echo "io_uring sends per delivery $(per "$sends"); per 1000 deliveries:" \
        "io_uring_enter $(per "$(count syscalls:sys_enter_io_uring_enter)" 1000)," \
        "epoll_wait $(per "$(count syscalls:sys_enter_epoll_wait)" 1000)," \
        "epoll_ctl $(per "$(count syscalls:sys_enter_epoll_ctl)" 1000)," \
        "recvfrom $(per "$(count syscalls:sys_enter_recvfrom)" 1000)"
    echo "broker CPU us per delivery (task-clock)" \
        "$(per "$(count task-clock)" 1000)"
fi
grep '^RESULT' "$dir/bench.out" | tr ' ' '\n' |
    grep -E '^(deliv_rate|cpu_us_per_deliv|user_us_per_deliv|sys_us_per_deliv|lost|dup)=' |
    tr '\n' ' '
echo
echo "kept in $dir"
