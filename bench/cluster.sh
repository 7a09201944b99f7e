#!/usr/bin/env bash
# Cluster mode (engine = redis) side by side with the SQLite engine and
# with the floor of any design on this Redis: pipelined XADD MAXLEN ~ +
# PUBLISH (redis-benchmark). Scenarios: 1, 2 and 3 chorusd nodes on one
# Redis, 3 nodes on 2 Redis instances, one SQLite node. Subscribers are
# spread round-robin over the nodes (chorus-bench --sub-ports), the
# publishers talk to the first node, so every delivery on another node
# crossed Redis. The floor's channel has one subscribed connection (as
# with one node of one loop). Prints one table (docs/BENCHMARKS.md "Cluster mode").
#
#   bench/cluster.sh                    # ~2 minutes
#   DUR=3 WARM=1 SUBS=300 bench/cluster.sh
#   BUILD=/tmp/build-bench KEEP=1 bench/cluster.sh
#
# Redis CPU per publish is the INFO used_cpu_sys + used_cpu_user delta of
# every instance over the run divided by the publishes the nodes counted
# (chorus_messages_published_total); msgs/entry is those publishes divided
# by the XADDs Redis ran (INFO commandstats), the messages a script call
# stored per topic. Only 127.0.0.1 is used; every process
# this script starts is stopped by PID on exit.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
BENCH=$BUILD/bench/chorus-bench
CHORUSD=$BUILD/chorusd
DUR=${DUR:-5}
WARM=${WARM:-2}
SUBS=${SUBS:-200}
TOPICS=${TOPICS:-4}
PAYLOAD=${PAYLOAD:-100}
WINDOW=${WINDOW:-256}
BASE_N=${BASE_N:-200000}
NICE=${NICE:-10}

log() { printf '[cluster %s] %s\n' "$(date +%T)" "$*" >&2; }
for b in "$BENCH" "$CHORUSD" /usr/bin/redis-server /usr/bin/redis-benchmark \
         /usr/bin/redis-cli; do
    [ -x "$b" ] || { log "missing $b (build, or scripts/deps.sh --test)"; exit 1; }
done

TMP=$(mktemp -d /tmp/chorus-cluster-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    [ "${KEEP:-0}" = 1 ] && log "kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port
    for _ in $(seq 200); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

start_redis() { # dir -> sets RPORT
    RPORT=$(free_port)
    mkdir -p "$1"
    nice -n "$NICE" /usr/bin/redis-server --port "$RPORT" --bind 127.0.0.1 \
        --dir "$1" --save '' --appendonly no --logfile "$1/redis.log" \
        </dev/null >/dev/null 2>&1 &
    PIDS+=($!)
    wait_port "$RPORT" || { log "redis did not start"; exit 1; }
}

xadds() { # ports... -> XADD calls since the last CONFIG RESETSTAT, summed
    local p t=0 v
    for p in "$@"; do
        v=$(/usr/bin/redis-cli -p "$p" INFO commandstats | tr -d '\r' |
            sed -n 's/^cmdstat_xadd:calls=\([0-9]*\),.*/\1/p')
        t=$((t + ${v:-0}))
    done
    echo "$t"
}

redis_cpu() { # ports... -> seconds of CPU, summed
    local p t=0
    for p in "$@"; do
        t=$(/usr/bin/redis-cli -p "$p" INFO cpu | tr -d '\r' |
            awk -F: -v t="$t" '/^used_cpu_(sys|user):/ {t += $2} END {print t}')
    done
    echo "$t"
}

start_node() { # dir engine redis_ports... -> sets NPORT
    local dir=$1 engine=$2; shift 2
    local port; port=$(free_port)
    mkdir -p "$dir"
    {
        echo "listen = 127.0.0.1:$port"
        echo "log_level = warn"
        echo "threads = 1"
        echo "max_connections = 0"
        if [ "$engine" = redis ]; then
            echo "engine = redis"
            for r in "$@"; do echo "redis_url = redis://127.0.0.1:$r"; done
        else
            echo "db_path = $dir/chorus.db"
        fi
    } >"$dir/broker.conf"
    nice -n "$NICE" "$CHORUSD" -c "$dir/broker.conf" </dev/null \
        >"$dir/chorusd.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 200); do
        curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && { NPORT=$port; return 0; }
        sleep 0.05
    done
    log "chorusd did not become healthy: $(cat "$dir/chorusd.log")"
    exit 1
}

published() { # node ports... -> messages the nodes counted
    local p t=0 v
    for p in "$@"; do
        v=$(curl -s "http://127.0.0.1:$p/metrics" |
            awk '/^chorus_messages_published_total / {print $2}')
        t=$((t + ${v:-0}))
    done
    echo "$t"
}

field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

ROWS=()
FLOOR=
row() { ROWS+=("$(IFS='|'; echo "$*")"); } # printed at the end, with x floor
FMT='%-34s %10s %12s %9s %9s %14s %8s %10s %8s\n' 

run_scenario() { # name engine nodes redis_count
    local name=$1 engine=$2 nodes=$3 nredis=$4 i
    local rports=() ports=()
    local dir="$TMP/${name//[^a-z0-9]/_}"
    for ((i = 0; i < nredis; i++)); do
        start_redis "$dir/redis$i"
        rports+=("$RPORT")
    done
    for ((i = 0; i < nodes; i++)); do
        start_node "$dir/node$i" "$engine" "${rports[@]}"
        ports+=("$NPORT")
    done
    local cpu0 cpu1 out pubs p
    for p in "${rports[@]}"; do /usr/bin/redis-cli -p "$p" CONFIG RESETSTAT >/dev/null; done
    cpu0=$(redis_cpu "${rports[@]}")
    log "$name"
    out=$(nice -n "$NICE" "$BENCH" --proto chorus --port "${ports[0]}" \
        --sub-ports "$(IFS=,; echo "${ports[*]}")" -n "$SUBS" -t "$TOPICS" \
        -p "$PAYLOAD" -d "$DUR" -w "$WARM" --window "$WINDOW" -q 2>"$dir.err" |
        grep '^RESULT')
    cpu1=$(redis_cpu "${rports[@]}")
    pubs=$(published "${ports[@]}")
    local per="-" entries="-"
    if [ "$nredis" -gt 0 ] && [ "$pubs" -gt 0 ]; then
        per=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$pubs" 'BEGIN {printf "%.2f", (b - a) * 1e6 / n}')
        entries=$(awk -v x="$(xadds "${rports[@]}")" -v n="$pubs" 'BEGIN {if (x > 0) printf "%.1f", n / x; else print "-"}')
    fi
    row "$name" "$(field "$out" pub_rate)" "$(field "$out" deliv_rate)" \
        "$(field "$out" p50_us)" "$(field "$out" p99_us)" "$per" "$entries" \
        "$(field "$out" lost)/$(field "$out" dup)"
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    PIDS=()
}

baseline() { # the floor: XADD MAXLEN ~ + PUBLISH, pipelined
    local port cpu0 cpu1 data
    start_redis "$TMP/baseline"
    port=$RPORT
    data=$(head -c "$PAYLOAD" /dev/zero | tr '\0' x)
    # one subscribed connection reading the channel, as one node's is
    /usr/bin/redis-cli -p "$port" SUBSCRIBE benchch </dev/null >/dev/null 2>&1 &
    PIDS+=($!)
    sleep 0.2
    cpu0=$(redis_cpu "$port")
    nice -n "$NICE" /usr/bin/redis-benchmark -p "$port" -c 4 -P 64 -n "$BASE_N" -q \
        XADD bench MAXLEN '~' 1000 '*' d "$data" >/dev/null
    nice -n "$NICE" /usr/bin/redis-benchmark -p "$port" -c 4 -P 64 -n "$BASE_N" -q \
        PUBLISH benchch "$data" >/dev/null
    cpu1=$(redis_cpu "$port")
    FLOOR=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$BASE_N" 'BEGIN {printf "%.2f", (b - a) * 1e6 / n}')
    row "floor: XADD MAXLEN~ + PUBLISH, 1 sub" "-" "-" "-" "-" "$FLOOR" "1" "-"
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    PIDS=()
}

run_scenario "sqlite, 1 node" sqlite 1 0
run_scenario "redis, 1 node" redis 1 1
run_scenario "redis, 2 nodes" redis 2 1
run_scenario "redis, 3 nodes" redis 3 1
run_scenario "redis x2, 3 nodes" redis 3 2
baseline

# shellcheck disable=SC2059
printf "$FMT" scenario "acked/s" "deliveries/s" "p50 us" "p99 us" \
    "redis us/pub" "x floor" "msgs/entry" "lost/dup"
for r in "${ROWS[@]}"; do
    IFS='|' read -r name rate deliv p50 p99 per entries lost <<<"$r"
    ratio=$(awk -v a="$per" -v f="$FLOOR" 'BEGIN {if (a + 0 > 0 && f + 0 > 0) printf "%.2f", a / f; else print "-"}')
    # shellcheck disable=SC2059
    printf "$FMT" "$name" "$rate" "$deliv" "$p50" "$p99" "$per" "$ratio" "$entries" "$lost"
done
