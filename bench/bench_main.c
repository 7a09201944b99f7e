/* chorus-bench: pub/sub load generator for Chorus, nchan and NATS (over
 * WebSocket; Chorus and nchan subscribers over SSE too), measuring fan-out
 * throughput, latency, loss and the broker's CPU and memory
 * (docs/BENCHMARKS.md). This file: options, set-up, the loop and the phases of
 * a run; bench.h lists the other files. */
#include <arpa/inet.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

struct bench B;

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "chorus-bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

void note(const char *fmt, ...)
{
    va_list ap;
    if (B.quiet)
        return;
    va_start(ap, fmt);
    fprintf(stderr, "[%7.3f] ", (double)(now_ns() - B.t_start) / 1e9);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
uint32_t rng32(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return (uint32_t)(x >> 16);
}

void phase_enter(int ph, uint64_t now)
{
    B.phase = ph;
    B.t_phase = now;
}

/* ------------------------------------------------------------ phases */

static int pubs_open(void)
{
    for (int i = 0; i < B.npubs; i++)
        if (B.pubs[i].state != S_OPEN)
            return 0;
    return 1;
}

static void tick_setup(uint64_t now, double in_phase)
{
    if ((B.subs_ok + B.subs_failed < B.nsubs || !pubs_open()) &&
        in_phase <= B.setup_timeout)
        return;
    if (in_phase > B.setup_timeout)
        note("setup timeout: %ld of %ld subscribed", B.subs_ok, B.nsubs);
    B.t_setup_done = now;
    B.rss1 = proc_rss(B.pid);
    note("%ld subscribers ready (%ld failed) in %.3f s", B.subs_ok,
         B.subs_failed, (double)(now - B.t_setup_start) / 1e9);
    if (B.idle) {
        phase_enter(PH_HOLD, now);
    } else if (B.replay_n) {
        phase_enter(PH_RPUB, now);
        B.t_pub_start = now;
    } else {
        phase_enter(PH_SETTLE, now);
    }
}

/* Warm-up and measurement: watch for stalls, switch phases. */
static void tick_publishing(uint64_t now, double in_phase)
{
    if (B.delivered != B.last_delivered || B.expected == B.delivered) {
        B.last_delivered = B.delivered;
        B.t_last_progress = now;
    } else if (B.rate <= 0 && now - B.t_last_progress > 1000000000ull) {
        B.stalls++;
        note("no delivery for 1 s with %" PRIu64
             " deliveries outstanding; forgiving them",
             B.expected - B.delivered);
        B.forgiven += B.expected - B.delivered;
        B.expected = B.delivered;
        B.t_last_progress = now;
    }
    if (B.phase == PH_WARMUP && in_phase >= B.warmup) {
        phase_enter(PH_MEASURE, now);
        B.t_ms = B.lat_lo = now;
        proc_sample(0);
    } else if (B.phase == PH_MEASURE && in_phase >= B.duration) {
        B.t_me = B.lat_hi = now;
        proc_sample(1);
        phase_enter(PH_DRAIN, now);
    }
}

/* Waits for every delivery still due, those written off by a stall too
 * (a starved broker may only be late), at most B.drain seconds. */
static void tick_drain(uint64_t now, double in_phase)
{
    int acks_done = 1;

    for (int i = 0; i < B.npubs; i++)
        if (B.pubs[i].state == S_OPEN && B.pubs[i].acks_out &&
            (B.proto == PROTO_CHORUS || B.pubmode == PUB_HTTP))
            acks_done = 0;
    if ((B.expected + B.forgiven <= B.delivered && acks_done) ||
        in_phase >= B.drain) {
        B.rss_end = proc_rss(B.pid);
        phase_enter(PH_DONE, now);
    }
}

/* Replay: all stored; connect the replaying subscriber. */
static void tick_rpub(uint64_t now, double in_phase)
{
    if (B.acked < (uint64_t)B.replay_n &&
        in_phase <= B.duration + B.setup_timeout)
        return;
    B.t_rpub_done = now;
    note("%" PRIu64 " messages stored in %.3f s", B.acked,
         (double)(now - B.t_pub_start) / 1e9);
    B.rss1 = proc_rss(B.pid);
    phase_enter(PH_SETUP, now);
    B.nsubs = 1;
    B.fanout[0] = 0;
    proc_sample(0);
    B.phase = PH_RSUB; /* set by the "subscribed" reply too */
    B.next_connect = 1;
    net_start(&B.subs[0]);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    uint64_t now = now_ns();
    double in_phase = (double)(now - B.t_phase) / 1e9;
    (void)fd;
    (void)what;
    (void)arg;

    switch (B.phase) {
    case PH_SETUP: tick_setup(now, in_phase); break;
    case PH_SETTLE:
        if (in_phase >= 0.3) {
            phase_enter(PH_WARMUP, now);
            B.t_pub_start = now;
            B.t_last_progress = now;
            B.last_delivered = B.delivered;
        }
        break;
    case PH_WARMUP:
    case PH_MEASURE: tick_publishing(now, in_phase); break;
    case PH_DRAIN: tick_drain(now, in_phase); break;
    case PH_HOLD:
        if (in_phase >= B.hold) {
            B.rss_end = proc_rss(B.pid);
            phase_enter(PH_DONE, now);
        }
        break;
    case PH_RPUB: tick_rpub(now, in_phase); break;
    case PH_RSUB:
        if (B.t_rdone || in_phase > B.setup_timeout) {
            proc_sample(1);
            B.rss_end = proc_rss(B.pid);
            phase_enter(PH_DONE, now);
        }
        break;
    }
    if (B.phase == PH_DONE)
        event_base_loopbreak(B.base);
}

/* ------------------------------------------------------------ options */

/* clang-format off */
static void __attribute__((noreturn)) usage(void)
{
    fprintf(stderr,
"usage: chorus-bench [options]\n"
"  --proto chorus|nchan|nats   broker protocol (chorus)\n"
"  --port N                    broker port on 127.0.0.1 (8080)\n"
"  --sub-ports P1,P2,...       subscribers round-robin on these ports (a\n"
"                              cluster's nodes); publishers on --port\n"
"  --pub ws|http               chorus publish path (ws); nchan is always http\n"
"  --sub ws|sse                subscribers over WebSocket or Server-Sent\n"
"                              Events (chorus GET /sse/T, nchan EventSource)\n"
"  -n, --subs N                subscribers (1000)\n"
"  -t, --topics T              topics; subscribers spread round-robin (1)\n"
"  -p, --payload P             payload bytes, >= %d (100)\n"
"  -d, --duration D            measured seconds (5)\n"
"  -w, --warmup W              warm-up seconds (2)\n"
"  -r, --rate R                fixed publish rate, msg/s over all topics;\n"
"                              0 = as fast as the window allows (0)\n"
"  --window W                  messages in flight (published, not yet\n"
"                              delivered to every subscriber / acked) (256)\n"
"  --pubconns K                publisher connections, <= %d (1 ws, 4 http)\n"
"  --pid PID                   broker pid for RSS and CPU from /proc\n"
"  --idle                      connect and subscribe only (RSS per conn)\n"
"  --hold S                    with --idle: seconds to hold (2)\n"
"  --replay N                  chorus: store N messages in one topic, then\n"
"                              time one subscriber replaying them\n"
"  --connect-par C             concurrent connection attempts (200)\n"
"  --drain S                   max seconds to wait for stragglers (5)\n"
"  --setup-timeout S           max seconds to connect everyone (60)\n"
"  --prefix S                  topic name prefix (b<pid>_)\n"
"  --rcvbuf B                  subscribers' SO_RCVBUF in bytes (0: the\n"
"                              kernel's autotuning)\n"
"  --no-uring                  subscribers read() rather than io_uring\n"
"                              multishot receive\n"
"  -q, --quiet                 no progress notes\n",
            HDR_LEN, MAX_PUBS);
    exit(2);
}
/* clang-format on */

static void set_defaults(void)
{
    B.proto = PROTO_CHORUS;
    B.pubmode = PUB_WS;
    B.port = 8080;
    B.nsubs = 1000;
    B.ntopics = 1;
    B.payload = 100;
    B.duration = 5;
    B.warmup = 2;
    B.window = 256;
    B.npubs = 0;
    B.hold = 2;
    B.drain = 5;
    B.setup_timeout = 60;
    B.connect_par = 200;
    B.lat_lo = B.lat_hi = UINT64_MAX;
    snprintf(B.prefix, sizeof B.prefix, "b%d_", (int)getpid());
}

static int pick(const char *arg, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(arg, names[i]))
            return i;
    usage();
}

static void sub_ports(const char *arg)
{
    char *end;

    for (const char *p = arg; *p && B.nsub_ports < 16; p = end) {
        long port = strtol(p, &end, 10);
        if (end == p || port <= 0 || port > 65535 || (*end && *end != ','))
            usage();
        B.sub_addr[B.nsub_ports].sin_family = AF_INET;
        B.sub_addr[B.nsub_ports].sin_port = htons((uint16_t)port);
        B.sub_addr[B.nsub_ports].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        B.nsub_ports++;
        if (*end == ',')
            end++;
    }
}

static void set_option(int opt, const char *arg)
{
    static const char *const protos[] = {"chorus", "nchan", "nats"};
    static const char *const pubs[] = {"ws", "http"};
    static const char *const subs[] = {"ws", "sse"};

    switch (opt) {
    case 'P': B.proto = pick(arg, protos, 3); break;
    case 'o': B.port = atoi(arg); break;
    case 'u': B.pubmode = pick(arg, pubs, 2); break;
    case 's': B.sub_sse = pick(arg, subs, 2); break;
    case 'n': B.nsubs = atol(arg); break;
    case 't': B.ntopics = atol(arg); break;
    case 'p': B.payload = (size_t)atol(arg); break;
    case 'd': B.duration = atof(arg); break;
    case 'w': B.warmup = atof(arg); break;
    case 'r': B.rate = atof(arg); break;
    case 'W': B.window = atol(arg); break;
    case 'K': B.npubs = atoi(arg); break;
    case 'i': B.pid = atoi(arg); break;
    case 'I': B.idle = 1; break;
    case 'H': B.hold = atof(arg); break;
    case 'R': B.replay_n = atol(arg); break;
    case 'C': B.connect_par = atoi(arg); break;
    case 'D': B.drain = atof(arg); break;
    case 'S': B.setup_timeout = atof(arg); break;
    case 'x': snprintf(B.prefix, sizeof B.prefix, "%s", arg); break;
    case 'q': B.quiet = 1; break;
    case 'U': B.no_uring = 1; break;
    case 'B': B.rcvbuf = atoi(arg); break;
    case 'Y': sub_ports(arg); break;
    default: usage();
    }
}

static void parse_options(int argc, char **argv)
{
    static const struct option lo[] = {
        {"proto", 1, 0, 'P'},     {"port", 1, 0, 'o'},
        {"sub-ports", 1, 0, 'Y'}, {"pub", 1, 0, 'u'},
        {"sub", 1, 0, 's'},       {"subs", 1, 0, 'n'},
        {"topics", 1, 0, 't'},    {"payload", 1, 0, 'p'},
        {"duration", 1, 0, 'd'},  {"warmup", 1, 0, 'w'},
        {"rate", 1, 0, 'r'},      {"window", 1, 0, 'W'},
        {"pubconns", 1, 0, 'K'},  {"pid", 1, 0, 'i'},
        {"idle", 0, 0, 'I'},      {"hold", 1, 0, 'H'},
        {"replay", 1, 0, 'R'},    {"connect-par", 1, 0, 'C'},
        {"drain", 1, 0, 'D'},     {"setup-timeout", 1, 0, 'S'},
        {"prefix", 1, 0, 'x'},    {"quiet", 0, 0, 'q'},
        {"no-uring", 0, 0, 'U'},  {"rcvbuf", 1, 0, 'B'},
        {"help", 0, 0, 'h'},      {0, 0, 0, 0}};
    int opt;

    set_defaults();
    while ((opt = getopt_long(argc, argv, "n:t:p:d:w:r:qh", lo, NULL)) != -1)
        set_option(opt, optarg);
    if (B.proto == PROTO_NCHAN)
        B.pubmode = PUB_HTTP;
    if (B.proto == PROTO_NATS)
        B.pubmode = PUB_WS;
    if (B.npubs <= 0)
        B.npubs = B.pubmode == PUB_HTTP ? 4 : 1;
    if (B.sub_sse && B.proto == PROTO_NATS)
        die("--sub sse: NATS serves no Server-Sent Events");
    if (B.replay_n) {
        if (B.proto != PROTO_CHORUS)
            die("--replay is Chorus only");
        if (B.sub_sse)
            die("--replay subscribes over WebSocket only");
        B.nsubs = 0;
        B.ntopics = 1;
        B.npubs = 1;
    }
    if (B.npubs > MAX_PUBS || B.ntopics < 1 || B.nsubs < 0 ||
        (B.nsubs > 0 && B.nsubs < B.ntopics) || B.payload < HDR_LEN ||
        B.payload > 64 * 1024 * 1024 || B.window < 1 || B.port <= 0 ||
        B.duration <= 0 || B.warmup < 0 || B.connect_par < 1)
        usage();
}

/* ------------------------------------------------------------ set-up */

/* Open files: as many as the hard limit allows. */
static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        B.rlim = (uint64_t)rl.rlim_cur;
    }
    fprintf(stderr,
            "open-file limit %" PRIu64 ": room for about %" PRIu64
            " connections\n",
            B.rlim, B.rlim > 32 ? B.rlim - 32 : 0);
    if ((uint64_t)(B.nsubs + B.npubs) + 32 > B.rlim)
        die("%ld connections do not fit in the open-file limit %" PRIu64,
            B.nsubs + B.npubs, B.rlim);
}

static void alloc_state(size_t ns)
{
    B.subs = calloc(ns ? ns : 1, sizeof(conn));
    B.pubs = calloc((size_t)B.npubs, sizeof(conn));
    B.tname = calloc((size_t)B.ntopics, sizeof *B.tname);
    B.tlen = calloc((size_t)B.ntopics, 1);
    B.fanout = calloc((size_t)B.ntopics, sizeof *B.fanout);
    B.pubseq = calloc((size_t)B.npubs * (size_t)B.ntopics, 8);
    B.next = calloc((ns ? ns : 1) * (size_t)B.npubs, 8);
    B.rbuf = malloc(RBUF_SIZE + CARRY_MAX + HS_BUF);
    B.tmpl = malloc(B.payload);
    if (!B.subs || !B.pubs || !B.tname || !B.tlen || !B.fanout || !B.pubseq ||
        !B.next || !B.rbuf || !B.tmpl)
        die("out of memory");
}

static void init_state(void)
{
    size_t ns = (size_t)(B.replay_n ? 1 : B.nsubs);

    alloc_state(ns);
    memset(B.tmpl, 'x', B.payload);
    for (long t = 0; t < B.ntopics; t++)
        B.tlen[t] = (uint8_t)snprintf(B.tname[t], sizeof B.tname[t], "%s%ld",
                                      B.prefix, t);
    for (size_t i = 0; i < ns; i++) {
        conn *c = &B.subs[i];
        c->idx = (uint32_t)i;
        c->fd = -1;
        c->kind = K_SUB;
        c->sse = (uint8_t)B.sub_sse;
        c->topic = (uint32_t)(i % (size_t)B.ntopics);
        c->next = &B.next[i * (size_t)B.npubs];
        for (int k = 0; k < B.npubs; k++)
            c->next[k] = 1;
        if (!B.replay_n)
            B.fanout[c->topic]++;
    }
    for (int k = 0; k < B.npubs; k++) {
        B.pubs[k].idx = (uint32_t)k;
        B.pubs[k].fd = -1;
        B.pubs[k].kind = B.pubmode == PUB_HTTP ? K_PUB_HTTP : K_PUB_WS;
    }
    hist_init(&B.h);
}

static void run_loop(void)
{
    double limit = B.setup_timeout + B.warmup + B.duration + B.drain + B.hold +
                   30 + (B.replay_n ? 2 * B.setup_timeout : 0);
    uint64_t deadline = B.t_start + (uint64_t)(limit * 1e9);

    while (B.phase != PH_DONE) {
        event_base_loop(B.base, EVLOOP_ONCE);
        pub_pump();
        if (now_ns() > deadline) {
            note("overall deadline reached; stopping");
            if (!B.t_me) {
                B.t_me = B.lat_hi = now_ns();
                proc_sample(1);
            }
            break;
        }
    }
}

int main(int argc, char **argv)
{
    struct timeval tv = {0, 1000};

    parse_options(argc, argv);
    raise_fd_limit();
    signal(SIGPIPE, SIG_IGN);
    B.t_start = now_ns();
    rng_state ^= B.t_start ^ ((uint64_t)getpid() << 32);
    B.addr.sin_family = AF_INET;
    B.addr.sin_port = htons((uint16_t)B.port);
    B.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    snprintf(B.hostport, sizeof B.hostport, "127.0.0.1:%d", B.port);
    init_state();

    B.base = event_base_new();
    if (!B.base)
        die("event_base_new failed");
    B.rss0 = proc_rss(B.pid);
    B.uring = !B.no_uring && uring_init() == 0;
    B.tick = event_new(B.base, -1, EV_PERSIST, on_tick, NULL);
    event_add(B.tick, &tv);

    B.t_setup_start = now_ns();
    phase_enter(PH_SETUP, B.t_setup_start);
    if (!B.idle)
        for (int k = 0; k < B.npubs; k++)
            net_start(&B.pubs[k]);
    else
        B.npubs = 0;
    net_start_more();
    run_loop();
    stats_report();
    return (B.subs_failed || B.bad || B.id_bad) ? 1 : 0;
}
