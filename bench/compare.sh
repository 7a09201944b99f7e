#!/usr/bin/env bash
# Side-by-side benchmark of chorusd, nginx + nchan and nats-server, all
# driven by the same load generator (build/bench/chorus-bench).
#
#   bench/compare.sh            # full run, ~8-12 minutes
#   DUR=3 WARM=1 bench/compare.sh   # shorter runs
#   ONLY="A B" bench/compare.sh      # only those scenarios
#   ONLY="A AS" bench/compare.sh     # A over WebSocket and over SSE
#   SSE_PAIRS=5 ONLY="A AS" bench/compare.sh  # + 5 back-to-back pairs of
#                                    # Chorus A over WS / SSE (the spread)
#   PAIR_ARGS="--rcvbuf 1048576" SSE_PAIRS=5 ...  # more bench options
#                                    # for those pairs
#   PAIR_CC="system bbr" SSE_PAIRS=5 ...  # those pairs once per chorusd
#                                    # tcp_congestion (system: unset;
#                                    # default: system, and cubic)
#   KEEP=1 bench/compare.sh     # keep the temp dir (configs, logs, outputs)
#   BUILD=/tmp/build-bench bench/compare.sh   # binaries from another build dir
#   bench/compare.sh --scaling  # also: Chorus threads = 1 vs 2 (A and B)
#   bench/compare.sh --scaling-only   # only that section
#
# Chorus always runs with `threads = 1` and history on in the comparison.
#
# Each broker runs pinned to CPU 0 (taskset -c 0), the bench to CPU 1. Every
# scenario starts a fresh broker. Only 127.0.0.1 is used. Every process
# this script starts is stopped by PID on exit.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
BENCH=$BUILD/bench/chorus-bench
CHORUSD=$BUILD/chorusd
SCALING=0; COMPARE=1
for a in "$@"; do
    case "$a" in
        --scaling) SCALING=1 ;;
        --scaling-only) SCALING=1; COMPARE=0 ;;
        *) echo "usage: $0 [--scaling|--scaling-only]" >&2; exit 2 ;;
    esac
done
DUR=${DUR:-5}
WARM=${WARM:-2}
REPLAY_N=${REPLAY_N:-200000}
MAXCONN=${MAXCONN:-19500}
# Scheduling priority of the brokers and the bench. The machine is shared:
# at nice 0 other load kept each of them waiting on a run queue for most of
# the time (the bench reports run-queue wait). NICE=0 to turn off.
NICE=${NICE:--10}

log() { printf '[compare %s] %s\n' "$(date +%T)" "$*" >&2; }

# ------------------------------------------------------------- setup
if [ ! -x "$BENCH" ] || [ ! -x "$CHORUSD" ]; then
    log "building (cmake)"
    (cd "$ROOT" && cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null && cmake --build "$BUILD" -j2 >/dev/null) ||
        { log "build failed"; exit 1; }
fi

find_nchan_so() {
    local f
    for f in /usr/lib/nginx/modules/ngx_nchan_module.so \
             /usr/share/nginx/modules/ngx_nchan_module.so; do
        [ -f "$f" ] && { echo "$f"; return 0; }
    done
    # the Debian package names the .so in modules-available/mod-nchan.conf
    f=$(sed -n 's/^load_module[[:space:]]*\([^;]*\);.*/\1/p' \
        /usr/share/nginx/modules-available/mod-nchan.conf 2>/dev/null | head -1)
    [ -n "$f" ] && [ -f "$f" ] && { echo "$f"; return 0; }
    return 1
}

if ! command -v nginx >/dev/null || ! command -v nats-server >/dev/null ||
   ! find_nchan_so >/dev/null; then
    log "installing nginx-light libnginx-mod-nchan nats-server"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >/dev/null && apt-get install -y nginx-light libnginx-mod-nchan nats-server >/dev/null ||
        { log "apt-get install failed"; exit 1; }
fi
NCHAN_SO=$(find_nchan_so) || { log "ngx_nchan_module.so not found"; exit 1; }

TMP=$(mktemp -d /tmp/chorus-compare.XXXXXX)
PIDS=()
BPID=""

stop_pid() { # pid [signal]
    local p=$1 i
    kill "-${2:-TERM}" "$p" 2>/dev/null || return 0
    for i in $(seq 50); do
        kill -0 "$p" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
}

cleanup() {
    local p
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    rm -rf "$SHM"
    if [ "${KEEP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
pick_port() {
    local p
    while :; do
        p=$(shuf -i 20000-32000 -n 1)
        port_free "$p" && port_free $((p + 1)) && { echo "$p"; return; }
    done
}

wait_port() { # port seconds
    local i
    for i in $(seq $(($2 * 20))); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        [ -n "$BPID" ] && ! kill -0 "$BPID" 2>/dev/null && return 1
        sleep 0.05
    done
    return 1
}

BSIG=TERM
stop_broker() {
    # nginx 1.22 + nchan with master_process off aborts (double free) on
    # SIGTERM at exit; it is only our throwaway instance, so KILL it.
    [ -n "$BPID" ] && stop_pid "$BPID" "$BSIG" 2>/dev/null
    BPID=""
    BSIG=TERM
}

# ------------------------------------------------------------- brokers
CHORUS_NOTES=""
CHORUS_THREADS_KEY=unknown
CHORUS_THREADS=1
BROKER_CPUS=0      # taskset list for chorusd
BENCH_CPUS=1       # taskset list for the bench
CHORUS_EXTRA=()
SHM=/dev/shm/chorus-compare.$$

# start_chorus NAME [extra config lines...]; db in $TMP/NAME/ unless a
# db_path line is given.
start_chorus() {
    local name=$1; shift
    local d=$TMP/$name port
    mkdir -p "$d"
    port=$(pick_port)
    {
        echo "listen = 127.0.0.1:$port"
        printf '%s\n' "${CHORUS_EXTRA[@]}" | grep -q '^db_path' ||
            echo "db_path = $d/chorus.db"
        echo "max_connections = 0"
        echo "log_level = warn"
        echo "ping_interval = 0"
        echo "idle_timeout = 0"
        [ "$CHORUS_THREADS_KEY" = yes ] && echo "threads = $CHORUS_THREADS"
        printf '%s\n' "$@" "${CHORUS_EXTRA[@]}"
    } > "$d/chorus.conf"
    nice -n "$NICE" taskset -c "$BROKER_CPUS" "$CHORUSD" -c "$d/chorus.conf" > "$d/chorusd.log" 2>&1 &
    BPID=$!
    disown "$BPID" 2>/dev/null
    PIDS+=("$BPID")
    PORT=$port
    local i
    for i in $(seq 200); do
        curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && return 0
        kill -0 "$BPID" 2>/dev/null || break
        sleep 0.05
    done
    log "chorusd ($name) did not become ready:"; tail -5 "$d/chorusd.log" >&2
    BPID=""
    return 1
}

# Does this chorusd accept a config line? (it refuses unknown keys)
chorus_accepts() {
    local d=$TMP/probe port ok=1
    mkdir -p "$d"; port=$(pick_port)
    printf 'listen = 127.0.0.1:%s\ndb_path = %s/p.db\n%s\n' "$port" "$d" "$1" > "$d/p.conf"
    "$CHORUSD" -c "$d/p.conf" > "$d/p.log" 2>&1 &
    local p=$!
    PIDS+=("$p")
    for _ in $(seq 100); do
        curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && { ok=0; break; }
        kill -0 "$p" 2>/dev/null || break
        sleep 0.05
    done
    stop_pid "$p"
    return $ok
}

start_nchan() {
    local name=$1 d=$TMP/$1 port
    mkdir -p "$d/tmp"
    port=$(pick_port)
    cat > "$d/nginx.conf" <<EOF
load_module $NCHAN_SO;
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 65536; multi_accept on; }
http {
  access_log off;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  nchan_shared_memory_size 512M;
  server {
    listen 127.0.0.1:$port backlog=4096;
    location ~ ^/pub/(\w+)$ {
      nchan_publisher;
      nchan_channel_id \$1;
      client_max_body_size 1m;
      client_body_buffer_size 256k;
    }
    location ~ ^/sub/(\w+)$ {
      nchan_subscriber websocket eventsource;
      nchan_channel_id \$1;
    }
  }
}
EOF
    nice -n "$NICE" taskset -c 0 nginx -c "$d/nginx.conf" -p "$d" -e "$d/error.log" > "$d/out.log" 2>&1 &
    BPID=$!
    disown "$BPID" 2>/dev/null
    BSIG=KILL
    PIDS+=("$BPID")
    PORT=$port
    wait_port "$port" 10 && return 0
    log "nginx ($name) did not start:"; tail -5 "$d/error.log" "$d/out.log" >&2
    BPID=""
    return 1
}

start_nats() {
    local name=$1 d=$TMP/$1 port
    mkdir -p "$d"
    port=$(pick_port)
    cat > "$d/nats.conf" <<EOF
listen: "127.0.0.1:$((port + 1))"
max_connections: 100000
max_payload: 1048576
websocket {
  listen: "127.0.0.1:$port"
  no_tls: true
}
EOF
    GOMAXPROCS=1 nice -n "$NICE" taskset -c 0 nats-server -c "$d/nats.conf" > "$d/nats.log" 2>&1 &
    BPID=$!
    disown "$BPID" 2>/dev/null
    PIDS+=("$BPID")
    PORT=$port
    wait_port "$port" 10 && return 0
    log "nats-server ($name) did not start:"; tail -5 "$d/nats.log" >&2
    BPID=""
    return 1
}

# ------------------------------------------------------------- runs
# run SCN BROKER STARTER -- bench args...: fresh broker, one bench run,
# RESULT line saved to $TMP/SCN.BROKER.res
# ONLY="A B": run only those scenarios (the others show - in the table).
only() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }
run() {
    local scn=$1 broker=$2 starter=$3; shift 4
    only "$scn" || return 0
    local out=$TMP/$scn.$broker.out
    log "$scn: $broker $*"
    if ! $starter "$scn.$broker"; then
        echo "RESULT failed=start" > "$TMP/$scn.$broker.res"
        return
    fi
    sleep 0.3
    nice -n "$NICE" taskset -c "$BENCH_CPUS" "$BENCH" --port "$PORT" --pid "$BPID" -q "$@" > "$out" 2>&1
    grep '^RESULT' "$out" > "$TMP/$scn.$broker.res" ||
        echo "RESULT failed=bench" > "$TMP/$scn.$broker.res"
    if ! kill -0 "$BPID" 2>/dev/null; then
        log "$broker DIED during $scn"
        echo "$scn.$broker: broker process died during the run" >> "$TMP/problems"
        sed -i 's/^RESULT/RESULT died=1/' "$TMP/$scn.$broker.res"
    fi
    local lost dup closed idbad
    lost=$(get "$scn" "$broker" lost); dup=$(get "$scn" "$broker" dup)
    closed=$(get "$scn" "$broker" closed); idbad=$(get "$scn" "$broker" id_bad)
    if [ "${lost:-0}" != 0 ] || [ "${dup:-0}" != 0 ] || [ "${closed:-0}" != 0 ]; then
        echo "$scn.$broker: lost=$lost dup=$dup closed_by_broker=$closed" >> "$TMP/problems"
    fi
    [ -n "$idbad" ] && [ "$idbad" != 0 ] &&
        echo "$scn.$broker: $idbad SSE event ids did not follow by one offset" >> "$TMP/problems"
    [ "$broker" = chorus ] &&
        curl -sf "http://127.0.0.1:$PORT/metrics" > "$TMP/$scn.$broker.metrics" 2>/dev/null
    sed -n 's/^.*\(\*\* bench near 100%.*\)$/\1/p' "$out" | head -1 |
        sed "s/^/$scn.$broker: /" >> "$TMP/problems"
    stop_broker
}

get() { # scn broker key
    local f=$TMP/$1.$2.res
    [ -f "$f" ] || { echo "-"; return; }
    sed -n "s/.* $3=\([^ ]*\).*/\1/p" "$f" | head -1
}

# nchan is published to over HTTP, one request in flight per connection,
# and answers a publish only once it has been handed to its subscribers:
# NCHAN_PUBCONNS connections bound its publishes in flight, whatever the
# window. With 32 instead of 8 nchan delivered as much or more in A and B
# (A: 121-158k vs 92-114k/s, B: 31-49k vs 29-31k/s; noisy, shared host),
# at a somewhat lower CPU per delivery; 64 did not add more.
NCHAN_PUBCONNS=${NCHAN_PUBCONNS:-32}
for_all() { # scn -- args (same for the three brokers)
    local scn=$1; shift 2
    run "$scn" chorus start_chorus -- --proto chorus "$@"
    run "$scn" nchan start_nchan -- --proto nchan --pubconns "$NCHAN_PUBCONNS" "$@"
    run "$scn" nats start_nats -- --proto nats "$@"
}

# SSE subscribers: Chorus and nchan (NATS serves no SSE).
for_sse() { # scn -- args
    local scn=$1; shift 2
    run "$scn" chorus start_chorus -- --proto chorus --sub sse "$@"
    run "$scn" nchan start_nchan -- --proto nchan --sub sse --pubconns "$NCHAN_PUBCONNS" "$@"
}
# SSE_PAIRS=N: N more pairs of Chorus scenario A over WebSocket and over
# SSE, back to back (AW1/AS1, ...), whatever ONLY says: on a shared
# machine a ratio is only worth its spread.
SSE_PAIRS=${SSE_PAIRS:-0}
PAIR_ARGS=${PAIR_ARGS:-}
SYSTEM_CC=$(cat /proc/sys/net/ipv4/tcp_congestion_control 2>/dev/null || echo unknown)
# By default the pairs run with the system's congestion control and, where
# that is not cubic (Debian's default), with cubic too: BBR paces bursts
# with timers, which moves CPU per delivery (README, "TCP congestion
# control"; docs/BENCHMARKS.md).
PAIR_CC=${PAIR_CC:-system$([ "$SYSTEM_CC" = cubic ] || echo " cubic")}

T0=$(date +%s)
LOAD0=$(cut -d" " -f1-3 /proc/loadavg)
START_UTC=$(date -u +"%F %T")
if chorus_accepts "threads = 1"; then CHORUS_THREADS_KEY=yes
else CHORUS_THREADS_KEY=no; CHORUS_NOTES+="chorusd has no 'threads' key yet (single loop). "; fi

# --drain: at B's window a slow broker has seconds of deliveries queued; the
# bench waits for them (ending as soon as all are in) rather than count
# them lost.
W="-d $DUR -w $WARM --drain ${DRAIN:-20}"
# Full speed: the window (deliveries in flight = window x subscribers per
# topic) is large enough that no broker waits for the bench (Little's law:
# at A's old window of 100, Chorus was latency-bound at ~2M deliveries/s
# with its core 13% idle). A100 and B2000 keep the old, latency-bound
# windows for comparison with earlier runs.
WIN_A=${WIN_A:-1000}
WIN_B=${WIN_B:-20000}
if [ "$COMPARE" = 1 ]; then
for_all A -- -n 1000 -t 1 -p 100 --window "$WIN_A" $W
for_all A100 -- -n 1000 -t 1 -p 100 --window 100 $W
# AS: scenario A with subscribers over Server-Sent Events (Chorus GET
# /sse/{topic}, nchan's EventSource), to set beside A over WebSocket.
for_sse AS -- -n 1000 -t 1 -p 100 --window "$WIN_A" $W
for_all B -- -n 10000 -t 1000 -p 100 --window "$WIN_B" $W
for_all B2000 -- -n 10000 -t 1000 -p 100 --window 2000 $W
for_all C -- -n 1000 -t 1 -p 100 --rate 200 $W
for_all D -- -n 10000 -t 10 --idle --hold 2
for_all D2 -- -n "$MAXCONN" -t 10 --idle --hold 2 --setup-timeout 90
# E0: E's publishes with no subscriber, so that what each subscriber adds
# to a 100 KB publish can be told from what the publish itself costs
# (parsing, validation, history): (E - E0) / E_SUBS per delivery.
E_SUBS=100
for_all E -- -n "$E_SUBS" -t 1 -p 102400 --window 16 $W
for_all E0 -- -n 0 -t 1 -p 102400 --window 16 $W

# Chorus only: publish throughput with history on vs off, and replay speed.
# Publish-only runs: no subscribers, 10 topics, WIN_H publishes in flight.
# At 1000 in flight history on was latency-bound (each publish waits for
# a commit: its core ~20% idle), so H uses 5000; H1000 keeps the old window.
WIN_H=${WIN_H:-5000}
run H_on chorus start_chorus -- --proto chorus -n 0 -t 10 --window "$WIN_H" $W
run H1000_on chorus start_chorus -- --proto chorus -n 0 -t 10 --window 1000 $W
if chorus_accepts "history = off"; then
    HNOTE="'history = off' (nothing written to SQLite)"
    CHORUS_EXTRA=("history = off")
else
    HNOTE="chorusd has no way to turn history off: db on /dev/shm (tmpfs) instead of the work disk"
    mkdir -p "$SHM"
    CHORUS_EXTRA=("db_path = $SHM/chorus.db")
fi
run H_off chorus start_chorus -- --proto chorus -n 0 -t 10 --window "$WIN_H" $W
run H1000_off chorus start_chorus -- --proto chorus -n 0 -t 10 --window 1000 $W
CHORUS_EXTRA=("history_size = 0")
run R chorus start_chorus -- --proto chorus --replay "$REPLAY_N" --window 1000 --setup-timeout 120
CHORUS_EXTRA=()
# (odd pairs WebSocket first, even pairs SSE first, so that a trend in the
# machine's load does not favour one side)
# With PAIR_CC naming several congestion controls, each pair runs once
# per control, in turn, so that all see the same stretch of the machine.
for i in $(seq "$SSE_PAIRS"); do
    for cc in $PAIR_CC; do
        CHORUS_EXTRA=()
        [ "$cc" = system ] || CHORUS_EXTRA=("tcp_congestion = $cc")
        for sub in $([ $((i % 2)) = 1 ] && echo "ws sse" || echo "sse ws"); do
            if [ "$sub" = ws ]; then scn=AW$i$cc; else scn=AS$i$cc; fi
            ONLY="" run "$scn" chorus start_chorus -- --proto chorus --sub "$sub" -n 1000 -t 1 -p 100 --window "$WIN_A" $W $PAIR_ARGS
        done
    done
done
CHORUS_EXTRA=()
fi

# Optional: Chorus threads = 1 vs 2 on scenarios A and B. Both runs put
# chorusd AND the bench on cores 0-1 (the machine has only 2): in the
# 2-thread run the bench competes with the broker's second loop for CPU.
if [ "$SCALING" = 1 ] && [ "$CHORUS_THREADS_KEY" = yes ]; then
    BROKER_CPUS=0,1; BENCH_CPUS=0,1
    for th in 1 2; do
        CHORUS_THREADS=$th
        run SA$th chorus start_chorus -- --proto chorus -n 1000 -t 1 -p 100 --window "$WIN_A" $W
        run SB$th chorus start_chorus -- --proto chorus -n 10000 -t 1000 -p 100 --window "$WIN_B" $W
    done
    CHORUS_THREADS=1; BROKER_CPUS=0; BENCH_CPUS=1
fi
T1=$(date +%s)
LOAD1=$(cut -d" " -f1-3 /proc/loadavg)

# ------------------------------------------------------------- table
num() { case "$1" in ''|-|-1|-1.0*|failed*) return 1;; esac; return 0; }
ratio() { # a b -> a/b
    if num "$1" && num "$2" && awk "BEGIN{exit !($2 != 0)}"; then
        awk "BEGIN{printf \"%.2f\", $1 / $2}"
    else echo "-"; fi
}
fmt() { # value scale decimals; "-" for a value the bench could not measure (-1)
    if num "$1"; then awk "BEGIN{printf \"%.$3f\", $1 * $2}"
    else case "$1" in -1|-1.*) echo "-" ;; *) echo "${1:--}" ;; esac; fi
}
row() { # label scn key scale decimals
    local c n a
    c=$(fmt "$(get "$2" chorus "$3")" "$4" "$5")
    n=$(fmt "$(get "$2" nchan "$3")" "$4" "$5")
    a=$(fmt "$(get "$2" nats "$3")" "$4" "$5")
    printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$c" "$n" "$a" \
        "$(ratio "$c" "$n")" "$(ratio "$c" "$a")"
}
perpub() { # scn broker key -> key (CPU seconds) in us per publish
    local v r d
    v=$(get "$1" "$2" "$3"); r=$(get "$1" "$2" pub_rate); d=$(get "$1" "$2" dur)
    if num "$v" && num "$r" && num "$d" && awk "BEGIN{exit !($r * $d > 0)}"; then
        awk "BEGIN{printf \"%.1f\", $v * 1e6 / ($r * $d)}"
    else echo "-"; fi
}
pubrow() { # label scn key
    local c n a
    c=$(perpub "$2" chorus "$3"); n=$(perpub "$2" nchan "$3"); a=$(perpub "$2" nats "$3")
    printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$c" "$n" "$a" \
        "$(ratio "$c" "$n")" "$(ratio "$c" "$a")"
}
# (E - E0) / E's subscribers: what each subscriber adds to a publish's cost
subrow() { # label key
    local b e z out=()
    for b in chorus nchan nats; do
        e=$(perpub E "$b" "$2"); z=$(perpub E0 "$b" "$2")
        if num "$e" && num "$z"; then
            out+=("$(awk "BEGIN{printf \"%.2f\", ($e - $z) / $E_SUBS}")")
        else out+=("-"); fi
    done
    printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "${out[@]}" \
        "$(ratio "${out[0]}" "${out[1]}")" "$(ratio "${out[0]}" "${out[2]}")"
}
lossrow() { # scn
    local b out=()
    for b in chorus nchan nats; do
        out+=("$(get "$1" "$b" lost)/$(get "$1" "$b" dup)/$(get "$1" "$b" closed)")
    done
    printf '| %s lost/dup/closed | %s | %s | %s | | |\n' "$1" "${out[@]}"
}

hq() { # metrics-file quantile -> upper bound (ms) of the bucket holding it
    [ -s "$1" ] || { echo "-"; return; }
    awk -v q="$2" '
        /^chorus_history_commit_duration_seconds_bucket/ {
            match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5)
            n++; b[n] = le; c[n] = $NF }
        /^chorus_history_commit_duration_seconds_count/ { tot = $NF }
        END { if (!tot) { print "-"; exit }
              for (i = 1; i <= n; i++) if (c[i] >= q * tot) {
                  if (b[i] == "+Inf") print ">" b[i-1] * 1000; else print "<=" b[i] * 1000; exit } }' "$1"
}
hcount() { sed -n 's/^chorus_history_commit_duration_seconds_count \(.*\)/\1/p' "$1" 2>/dev/null; }
hmean() { # mean commit ms
    awk '/^chorus_history_commit_duration_seconds_sum/ {s=$NF} /^chorus_history_commit_duration_seconds_count/ {c=$NF}
         END { if (c) printf "%.3f", s * 1000 / c; else print "-" }' "$1" 2>/dev/null
}
# SSE beside WebSocket: A (WS) and AS (SSE), per broker.
sserow() { # label key scale decimals
    local cw cs nw ns
    cw=$(fmt "$(get A chorus "$2")" "$3" "$4"); cs=$(fmt "$(get AS chorus "$2")" "$3" "$4")
    nw=$(fmt "$(get A nchan "$2")" "$3" "$4"); ns=$(fmt "$(get AS nchan "$2")" "$3" "$4")
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$cw" "$cs" "$(ratio "$cs" "$cw")" \
        "$nw" "$ns" "$(ratio "$ns" "$nw")"
}
sse_table() {
    local b out=()
    echo
    echo "### SSE vs WebSocket subscribers, scenario A (1 topic x 1000 subscribers, 100 B, window $WIN_A)"
    echo
    echo "| metric | chorus WS | chorus SSE | SSE/WS | nchan WS | nchan SSE | SSE/WS |"
    echo "|---|---|---|---|---|---|---|"
    sserow "deliveries/s" deliv_rate 1 0
    sserow "publishes/s" pub_rate 1 0
    sserow "broker CPU us/delivery" cpu_us_per_deliv 1 3
    sserow "broker user CPU us/delivery" user_us_per_deliv 1 3
    sserow "broker system CPU us/delivery" sys_us_per_deliv 1 3
    sserow "broker CPU %" broker_cpu_pct 1 0
    sserow "bench CPU %" bench_cpu_pct 1 0
    sserow "broker run-queue wait %" broker_wait_pct 1 0
    sserow "p50 latency ms" p50_us 0.001 2
    sserow "p99 latency ms" p99_us 0.001 2
    for b in "A chorus" "AS chorus" "A nchan" "AS nchan"; do
        set -- $b
        out+=("$(get "$1" "$2" lost)/$(get "$1" "$2" dup)/$(get "$1" "$2" closed)")
    done
    printf '| lost/dup/closed | %s | %s | | %s | %s | |\n' "${out[@]}"
    [ "$SSE_PAIRS" -gt 0 ] || return 0
    local cc
    for cc in $PAIR_CC; do
        sse_pairs_table "$cc"
    done
}

sse_pairs_table() { # cc
    local cc=$1 name i r rs=() w s
    name=$([ "$cc" = system ] && echo "unset: the system's, $SYSTEM_CC" || echo "$cc")
    echo
    echo "Chorus only, $SSE_PAIRS more pairs back to back (A over WebSocket and over SSE; odd pairs WebSocket first; tcp_congestion $name${PAIR_ARGS:+; bench options $PAIR_ARGS}):"
    echo
    echo "| pair | WS deliveries/s | SSE deliveries/s | WS CPU us/delivery | SSE CPU us/delivery | SSE/WS CPU per delivery |"
    echo "|---|---|---|---|---|---|"
    for i in $(seq "$SSE_PAIRS"); do
        w=AW$i$cc; s=AS$i$cc
        r=$(ratio "$(get "$s" chorus cpu_us_per_deliv)" "$(get "$w" chorus cpu_us_per_deliv)")
        [ "$r" != - ] && rs+=("$r")
        printf '| %s | %s | %s | %s | %s | %s |\n' "$i" \
            "$(fmt "$(get "$w" chorus deliv_rate)" 1 0)" "$(fmt "$(get "$s" chorus deliv_rate)" 1 0)" \
            "$(fmt "$(get "$w" chorus cpu_us_per_deliv)" 1 3)" "$(fmt "$(get "$s" chorus cpu_us_per_deliv)" 1 3)" "$r"
    done
    [ "${#rs[@]}" -gt 0 ] && printf '| min / median / max | | | | | %s |\n' \
        "$(printf '%s\n' "${rs[@]}" | sort -g | awk '{v[NR]=$1} END {printf "%s / %s / %s", v[1], (NR % 2 ? v[(NR+1)/2] : sprintf("%.2f", (v[NR/2]+v[NR/2+1])/2)), v[NR]}')"
    return 0
}

srow() { # label key scale decimals
    local a1 a2
    a1=$(fmt "$(get "S${2}1" chorus "$3")" "$4" "$5"); a2=$(fmt "$(get "S${2}2" chorus "$3")" "$4" "$5")
    printf '| %s | %s | %s | %s |\n' "$1" "$a1" "$a2" "$(ratio "$a2" "$a1")"
}

{
if [ "$COMPARE" = 1 ]; then
echo
echo "## chorus-bench comparison (started $START_UTC UTC, ${DUR}s runs after ${WARM}s warm-up; brokers on CPU 0, bench on CPU 1, nice $NICE)"
echo
echo "| metric | chorus | nchan | nats | chorus/nchan | chorus/nats |"
echo "|---|---|---|---|---|---|"
row "A 1x1000 100B, window $WIN_A: deliveries/s" A deliv_rate 1 0
row "A publishes/s" A pub_rate 1 0
row "A broker CPU us/delivery" A cpu_us_per_deliv 1 3
row "A broker user CPU us/delivery" A user_us_per_deliv 1 3
row "A broker system CPU us/delivery" A sys_us_per_deliv 1 3
row "A broker CPU %" A broker_cpu_pct 1 0
row "A bench CPU %" A bench_cpu_pct 1 0
row "A broker run-queue wait %" A broker_wait_pct 1 0
row "A p50 latency ms" A p50_us 0.001 2
row "A p99 latency ms" A p99_us 0.001 2
lossrow A
row "A100 (window 100): deliveries/s" A100 deliv_rate 1 0
row "A100 broker CPU us/delivery" A100 cpu_us_per_deliv 1 3
row "A100 broker CPU %" A100 broker_cpu_pct 1 0
row "A100 bench CPU %" A100 bench_cpu_pct 1 0
row "A100 p50 latency ms" A100 p50_us 0.001 2
row "A100 p99 latency ms" A100 p99_us 0.001 2
lossrow A100
row "B 1000x10 100B, window $WIN_B: deliveries/s" B deliv_rate 1 0
row "B broker CPU us/delivery" B cpu_us_per_deliv 1 3
row "B broker user CPU us/delivery" B user_us_per_deliv 1 3
row "B broker system CPU us/delivery" B sys_us_per_deliv 1 3
row "B broker CPU %" B broker_cpu_pct 1 0
row "B bench CPU %" B bench_cpu_pct 1 0
row "B broker run-queue wait %" B broker_wait_pct 1 0
row "B p50 latency ms" B p50_us 0.001 2
row "B p99 latency ms" B p99_us 0.001 2
lossrow B
row "B2000 (window 2000): deliveries/s" B2000 deliv_rate 1 0
row "B2000 broker CPU us/delivery" B2000 cpu_us_per_deliv 1 3
row "B2000 broker CPU %" B2000 broker_cpu_pct 1 0
row "B2000 bench CPU %" B2000 bench_cpu_pct 1 0
row "B2000 p99 latency ms" B2000 p99_us 0.001 2
lossrow B2000
row "C 200 msg/s x1000: p50 latency ms" C p50_us 0.001 3
row "C p99 latency ms" C p99_us 0.001 3
row "C p99.9 latency ms" C p999_us 0.001 3
row "C max latency ms" C max_us 0.001 3
row "C deliveries/s" C deliv_rate 1 0
row "C broker CPU us/delivery" C cpu_us_per_deliv 1 3
lossrow C
row "D 10k idle: broker RSS bytes/conn" D rss_per_conn_b 1 0
row "D connection setup conn/s" D setup_rate 1 0
row "D subscribed" D subs_ok 1 0
row "D2 $MAXCONN idle: subscribed" D2 subs_ok 1 0
row "D2 broker RSS bytes/conn" D2 rss_per_conn_b 1 0
row "D2 broker RSS KiB total" D2 rss1_kb 1 0
row "E 100KB x100: deliveries/s" E deliv_rate 1 0
row "E delivered MB/s" E deliv_rate 0.1024 0
row "E broker CPU us/delivery" E cpu_us_per_deliv 1 2
row "E broker user CPU us/delivery" E user_us_per_deliv 1 3
row "E broker system CPU us/delivery" E sys_us_per_deliv 1 2
row "E broker CPU %" E broker_cpu_pct 1 0
pubrow "E broker user CPU us/publish ($E_SUBS subscribers)" E broker_user_s
pubrow "E0 broker user CPU us/publish (no subscribers)" E0 broker_user_s
subrow "E user CPU us per subscriber per message ((E - E0) / $E_SUBS)" broker_user_s
row "A user CPU us/delivery (100 B), for comparison" A user_us_per_deliv 1 3
pubrow "E broker system CPU us/publish ($E_SUBS subscribers)" E broker_sys_s
pubrow "E0 broker system CPU us/publish (no subscribers)" E0 broker_sys_s
subrow "E system CPU us per subscriber per message ((E - E0) / $E_SUBS)" broker_sys_s
row "E bench CPU %" E bench_cpu_pct 1 0
row "E broker run-queue wait %" E broker_wait_pct 1 0
row "E p99 latency ms" E p99_us 0.001 2
lossrow E
echo
echo "Chorus only:"
echo
echo "| metric | value |"
echo "|---|---|"
echo "| publish msg/s, history on (10 topics, no subscribers, $WIN_H in flight) | $(fmt "$(get H_on chorus pub_rate)" 1 0) |"
echo "| publish msg/s, $HNOTE | $(fmt "$(get H_off chorus pub_rate)" 1 0) |"
echo "| history-on / history-off | $(ratio "$(get H_on chorus pub_rate)" "$(get H_off chorus pub_rate)") |"
echo "| H1000 (1000 in flight): publish msg/s history on / off, ratio | $(fmt "$(get H1000_on chorus pub_rate)" 1 0) / $(fmt "$(get H1000_off chorus pub_rate)" 1 0), $(ratio "$(get H1000_on chorus pub_rate)" "$(get H1000_off chorus pub_rate)") |"
echo "| broker CPU us/publish, history on / off | $(fmt "$(awk "BEGIN{r=$(get H_on chorus broker_cpu_s)*1e6/($(get H_on chorus pub_rate)*$DUR+1); printf \"%.2f\", r}" 2>/dev/null)" 1 2) / $(fmt "$(awk "BEGIN{r=$(get H_off chorus broker_cpu_s)*1e6/($(get H_off chorus pub_rate)*$DUR+1); printf \"%.2f\", r}" 2>/dev/null)" 1 2) |"
echo "| store $REPLAY_N msgs (1 topic, 1000 in flight): publish msg/s | $(fmt "$(get R chorus replay_pub_rate)" 1 0) |"
echo "| replay to one subscriber (since offset 0): msg/s | $(fmt "$(get R chorus replay_rate)" 1 0) (recovered=$(get R chorus recovered), lost=$(get R chorus lost)) |"
M=$TMP/H_on.chorus.metrics
echo "| history on: commits (whole process life), mean commit ms | $(hcount "$M") , $(hmean "$M") |"
echo "| history on: commit duration p50 / p99 ms (histogram bucket bound) | $(hq "$M" 0.5) / $(hq "$M" 0.99) |"
echo
if [ -f "$TMP/AS.chorus.res" ] || [ -f "$TMP/AS.nchan.res" ] || [ "$SSE_PAIRS" -gt 0 ]; then
    sse_table
    echo
fi
fi
if [ "$SCALING" = 1 ]; then
echo
echo "## Chorus threads = 1 vs 2 (table printed $(date -u +%F\ %T) UTC, ${DUR}s runs after ${WARM}s warm-up; chorusd and bench both on CPUs 0-1, nice $NICE)"
echo
echo "| metric | threads = 1 | threads = 2 | 2 / 1 |"
echo "|---|---|---|---|"
for sc in A B; do
    srow "$sc deliveries/s" "$sc" deliv_rate 1 0
    srow "$sc publishes/s" "$sc" pub_rate 1 0
    srow "$sc broker CPU us/delivery" "$sc" cpu_us_per_deliv 1 3
    srow "$sc broker CPU %" "$sc" broker_cpu_pct 1 0
    srow "$sc bench CPU %" "$sc" bench_cpu_pct 1 0
    srow "$sc broker run-queue wait %" "$sc" broker_wait_pct 1 0
    srow "$sc bench run-queue wait %" "$sc" bench_wait_pct 1 0
    srow "$sc p99 latency ms" "$sc" p99_us 0.001 2
    printf '| %s lost/dup/closed | %s | %s | |\n' "$sc" \
        "$(get "S${sc}1" chorus lost)/$(get "S${sc}1" chorus dup)/$(get "S${sc}1" chorus closed)" \
        "$(get "S${sc}2" chorus lost)/$(get "S${sc}2" chorus dup)/$(get "S${sc}2" chorus closed)"
done
echo
fi
[ -n "$CHORUS_NOTES" ] && echo "Note: $CHORUS_NOTES"
echo "Wall time: $((T1 - T0)) s. Load average (1/5/15 min) at start: $LOAD0; at end: $LOAD1 ($(nproc) CPUs)."
if [ -s "$TMP/problems" ]; then
    echo
    echo "Problems seen:"
    sed 's/^/- /' "$TMP/problems"
fi
} | tee "$TMP/table.md"
cp "$TMP/table.md" "${OUT:-/tmp/chorus-compare-last.md}"
[ -n "${RAW:-}" ] && cat "$TMP"/*.res > "$RAW"
exit 0
