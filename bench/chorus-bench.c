/* chorus-bench: pub/sub load generator for Chorus, nchan and NATS (over
 * WebSocket), measuring fan-out throughput, latency, loss and the broker's
 * CPU and memory.
 *
 * One libevent loop, raw non-blocking sockets, the lib/ WebSocket codec
 * (ws_frame, handshake, http_parse). Frames are decoded in place in one
 * shared read buffer; each connection keeps only a few header bytes and
 * the first bytes of the message being received (enough to read the
 * bench header), so there is no allocation per message.
 *
 * Payload layout (P bytes, P >= HDR_LEN):
 *   TTTTTTTT.KK.SSSSSSSSSSSSSSSS.NNNNNNNNNNNNNNNN.xxxxx...
 * T topic index, K publisher connection, S sequence number of the
 * (topic, publisher) stream, N CLOCK_MONOTONIC send time in ns; all hex.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "chorus/handshake.h"
#include "chorus/http_parse.h"
#include "chorus/ws_frame.h"
#include "hist.h"

#define HDR_LEN 46
#define PFX_MAX 200      /* message prefix kept while a message streams in */
#define CARRY_MAX 136    /* undecoded bytes kept between reads (<= 2+125) */
#define RBUF_SIZE (256 * 1024)
#define OUT_HIGH (1024 * 1024) /* stop filling a publisher's buffer here */
#define MAX_PUBS 16
#define HS_BUF 4096
#define HTTP_BUF (64 * 1024)
#define PUB_HEAD "{\"op\":\"publish\",\"topic\":\""

enum { PROTO_CHORUS, PROTO_NCHAN, PROTO_NATS };
enum { PUB_WS, PUB_HTTP };
enum { K_SUB, K_PUB_WS, K_PUB_HTTP };
enum { S_IDLE, S_CONNECTING, S_HANDSHAKE, S_OPEN, S_DEAD };
enum {
    PH_SETUP, PH_SETTLE, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_HOLD,
    PH_RPUB, PH_RSUB, PH_DONE
};

typedef struct conn {
    int fd;
    uint8_t kind, state, subscribed, in_payload; /* in_payload: NATS */
    uint8_t resubscribed;                        /* replay mode */
    uint16_t pfx_len, carry_len;
    uint32_t idx, topic;
    short ev_flags;
    struct event *ev;
    chorus_ws_decoder dec;
    uint64_t msg_len;   /* bytes of the current message seen */
    uint64_t nats_left; /* NATS: payload bytes (+CRLF) still to come */
    uint64_t recv, lost, dup;
    char *in;           /* handshake / HTTP response buffer */
    size_t in_len;
    char *out;          /* pending output */
    size_t out_len, out_off, out_cap;
    uint32_t acks_out;  /* publisher: requests not yet answered */
    int http_busy;
    char key[25];
    uint8_t carry[CARRY_MAX];
    uint8_t pfx[PFX_MAX];
} conn;

static struct {
    /* options */
    int proto, pubmode;
    int port;
    long nsubs, ntopics;
    size_t payload;
    double duration, warmup, rate, hold, drain, setup_timeout;
    long window;
    int npubs;
    int pid;
    int idle;
    long replay_n;
    int connect_par;
    char prefix[64];
    int quiet;

    struct event_base *base;
    conn *subs, *pubs;
    char (*tname)[32];
    uint8_t *tlen;
    uint32_t *fanout;
    uint64_t *pubseq;   /* [npubs * ntopics] last sequence issued */
    uint64_t *next;     /* [nsubs * npubs] next expected sequence */
    uint8_t *rbuf;
    char *tmpl;
    char hostport[64];
    struct sockaddr_in addr;

    int phase;
    long next_connect;  /* next subscriber index to start connecting */
    long connecting;    /* connects/handshakes in progress */
    long subs_ok, subs_failed, subs_closed, close_1013;
    uint64_t t_start, t_setup_start, t_setup_done, t_phase, t_pub_start,
        t_ms, t_me, t_last_progress, t_drain;
    uint64_t published, published_ms, acked, expected, delivered,
        delivered_ms, last_delivered, bytes_ms, rx_bytes;
    uint64_t errors, bad, stalls, pub_errors;
    long cursor;
    int pub_rr;
    hist h;
    /* broker and self measurements */
    long rss0, rss1, rss_end;
    double bcpu0, bcpu1, scpu0, scpu1;
    double brun0, bwait0, brun1, bwait1, srun0, swait0, srun1, swait1;
    /* replay */
    char epoch[40];
    int recovered;
    uint64_t t_rsub, t_rfirst, t_rdone, t_rpub_done;
    uint64_t replay_recv;
    uint64_t rlim;
    struct event *tick;
} B;

/* ------------------------------------------------------------ helpers */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "chorus-bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static void note(const char *fmt, ...)
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

static const char HEX[] = "0123456789abcdef";

static void put_hex(char *p, uint64_t v, int digits)
{
    for (int i = digits - 1; i >= 0; i--) {
        p[i] = HEX[v & 15];
        v >>= 4;
    }
}

static int get_hex(const uint8_t *p, int digits, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < digits; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            return -1;
        v = (v << 4) | d;
    }
    *out = v;
    return 0;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rng32(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return (uint32_t)(x >> 16);
}

/* Broker CPU seconds (utime + stime) from /proc/PID/stat, or -1. */
static double proc_cpu(int pid)
{
    char path[64], buf[2048], *p;
    FILE *f;
    size_t n;
    unsigned long ut = 0, st = 0;

    if (pid <= 0)
        return -1;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    p = strrchr(buf, ')');
    if (!p)
        return -1;
    /* after ") ": field 3 (state) ... field 14 utime, 15 stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
               &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Broker VmRSS in KiB from /proc/PID/status, or -1. */
static long proc_rss(int pid)
{
    char path[64], line[256];
    FILE *f;
    long kb = -1;

    if (pid <= 0)
        return -1;
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* Seconds run and waited on a run queue, summed over the threads of PID
 * (/proc/PID/task/TID/schedstat): the wait shows when a process was
 * starved of CPU by other load. */
static int proc_sched(int pid, double *run, double *wait)
{
    char path[96];
    unsigned long long r, w, rs = 0, ws = 0;
    struct dirent *de;
    DIR *d;

    *run = *wait = 0;
    if (pid <= 0)
        return -1;
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    d = opendir(path);
    if (!d)
        return -1;
    while ((de = readdir(d)) != NULL) {
        FILE *f;
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/%d/task/%.20s/schedstat", pid,
                 de->d_name);
        f = fopen(path, "r");
        if (!f)
            continue;
        if (fscanf(f, "%llu %llu", &r, &w) == 2) {
            rs += r;
            ws += w;
        }
        fclose(f);
    }
    closedir(d);
    *run = (double)rs / 1e9;
    *wait = (double)ws / 1e9;
    return 0;
}

static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ------------------------------------------------------------ I/O core */

static void on_event(evutil_socket_t fd, short what, void *arg);
static void conn_dead(conn *c, int code, const char *why);
static void ws_feed(conn *c, uint8_t *buf, size_t len, uint64_t now);
static void pump(void);

static void set_ev(conn *c, short flags)
{
    if (c->ev_flags == flags)
        return;
    if (c->ev_flags)
        event_del(c->ev);
    c->ev_flags = flags;
    event_assign(c->ev, B.base, c->fd, (short)(flags | EV_PERSIST), on_event,
                 c);
    if (flags)
        event_add(c->ev, NULL);
}

static char *out_reserve(conn *c, size_t n)
{
    if (c->out_off && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + n > c->out_cap) {
        if (c->out_off) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        if (c->out_len + n > c->out_cap) {
            size_t cap = c->out_cap ? c->out_cap : 256;
            while (cap < c->out_len + n)
                cap *= 2;
            c->out = realloc(c->out, cap);
            if (!c->out)
                die("out of memory");
            c->out_cap = cap;
        }
    }
    return c->out + c->out_len;
}

/* Writes what is pending; watches for writability while some remains. */
static void conn_flush(conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            conn_dead(c, 1006, strerror(errno));
            return;
        }
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        if (c->kind == K_SUB && c->out_cap > 4096) {
            free(c->out);
            c->out = NULL;
            c->out_cap = 0;
        }
        set_ev(c, EV_READ);
    } else {
        set_ev(c, EV_READ | EV_WRITE);
    }
}

/* Queues one masked WebSocket frame. */
static void ws_queue(conn *c, int opcode, const void *data, size_t len)
{
    uint8_t key[4];
    uint32_t r = rng32();
    char *p = out_reserve(c, len + CHORUS_WS_MAX_HEADER);
    size_t h;

    memcpy(key, &r, 4);
    h = chorus_ws_write_header((uint8_t *)p, 1, opcode, len, key);
    memcpy(p + h, data, len);
    chorus_ws_mask((uint8_t *)p + h, len, key, 0);
    c->out_len += h + len;
}

static void ws_send_text(conn *c, const char *s, size_t len)
{
    ws_queue(c, CHORUS_WS_OP_TEXT, s, len);
    conn_flush(c);
}

static void conn_start(conn *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;

    if (fd < 0) {
        conn_dead(c, 1006, strerror(errno));
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    if (!c->ev)
        c->ev = event_new(B.base, -1, 0, on_event, c);
    c->ev_flags = 0;
    c->state = S_CONNECTING;
    B.connecting++;
    if (connect(fd, (struct sockaddr *)&B.addr, sizeof B.addr) < 0 &&
        errno != EINPROGRESS) {
        conn_dead(c, 1006, strerror(errno));
        return;
    }
    set_ev(c, EV_WRITE);
}

static void sub_path(const conn *c, char *path, size_t n)
{
    switch (B.proto) {
    case PROTO_CHORUS:
        snprintf(path, n, "/ws");
        break;
    case PROTO_NCHAN:
        snprintf(path, n, "/sub/%s", B.tname[c->topic]);
        break;
    default:
        snprintf(path, n, "/");
    }
}

static void start_more_connects(void);

static void on_open(conn *c)
{
    char buf[512];
    int n;

    B.connecting--;
    c->state = S_OPEN;
    if (c->kind == K_SUB) {
        if (B.proto == PROTO_CHORUS) {
            n = snprintf(buf, sizeof buf,
                         "{\"op\":\"subscribe\",\"topic\":\"%s\"}",
                         B.tname[c->topic]);
            ws_send_text(c, buf, (size_t)n);
        } else if (B.proto == PROTO_NCHAN) {
            c->subscribed = 1;
            B.subs_ok++;
        } else {
            n = snprintf(buf, sizeof buf,
                         "CONNECT {\"verbose\":false,\"pedantic\":false}\r\n"
                         "SUB %s 1\r\nPING\r\n",
                         B.tname[c->topic]);
            ws_send_text(c, buf, (size_t)n);
        }
        start_more_connects();
    } else if (c->kind == K_PUB_WS && B.proto == PROTO_NATS) {
        static const char hello[] =
            "CONNECT {\"verbose\":false,\"pedantic\":false}\r\n";
        ws_send_text(c, hello, sizeof hello - 1);
    }
}

static void conn_dead(conn *c, int code, const char *why)
{
    if (c->state == S_DEAD)
        return;
    if (c->state == S_CONNECTING || c->state == S_HANDSHAKE)
        B.connecting--;
    if (c->ev_flags)
        event_del(c->ev);
    c->ev_flags = 0;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->in);
    c->in = NULL;
    if (c->kind == K_SUB) {
        if (c->subscribed) {
            B.subs_closed++;
            if (code == 1013)
                B.close_1013++;
            if (B.subs_closed <= 5)
                note("subscriber %u closed: %d %s", c->idx, code,
                     why ? why : "");
            if (B.fanout[c->topic])
                B.fanout[c->topic]--;
        } else {
            B.subs_failed++;
            if (B.subs_failed <= 5)
                note("subscriber %u failed: %d %s", c->idx, code,
                     why ? why : "");
        }
        if (B.phase == PH_SETUP)
            start_more_connects();
    } else {
        note("publisher %u closed: %d %s", c->idx, code, why ? why : "");
        B.pub_errors++;
    }
    c->state = S_DEAD;
}

static const chorus_http_limits http_lim = {8192, CHORUS_HTTP_MAX_HEADERS,
                                            16384};

static void handshake_read(conn *c)
{
    chorus_http_response res;
    const char *why;
    ssize_t n;
    int h;

    if (!c->in) {
        c->in = malloc(HS_BUF);
        c->in_len = 0;
    }
    n = read(c->fd, c->in + c->in_len, HS_BUF - c->in_len);
    if (n == 0) {
        conn_dead(c, 1006, "closed during handshake");
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR)
            conn_dead(c, 1006, strerror(errno));
        return;
    }
    c->in_len += (size_t)n;
    h = chorus_http_parse_response(c->in, c->in_len, &http_lim, &res);
    if (h == CHORUS_HTTP_INCOMPLETE) {
        if (c->in_len == HS_BUF)
            conn_dead(c, 1006, "handshake response too large");
        return;
    }
    if (h < 0) {
        conn_dead(c, 1006, "malformed handshake response");
        return;
    }
    if (res.status != 101) {
        char msg[64];
        snprintf(msg, sizeof msg, "handshake answered HTTP %d", res.status);
        conn_dead(c, 1006, msg);
        return;
    }
    if (chorus_ws_check_accept(&res, c->key, &why) != 0) {
        conn_dead(c, 1006, why);
        return;
    }
    chorus_ws_decoder_init(&c->dec, CHORUS_WS_CLIENT, 0);
    {
        size_t rest = c->in_len - (size_t)h;
        memcpy(B.rbuf, c->in + h, rest);
        free(c->in);
        c->in = NULL;
        c->in_len = 0;
        on_open(c);
        if (rest && c->state == S_OPEN)
            ws_feed(c, B.rbuf, rest, now_ns());
    }
}

static void send_handshake(conn *c)
{
    char path[300], req[1024];
    int n;

    if (c->kind == K_SUB)
        sub_path(c, path, sizeof path);
    else
        snprintf(path, sizeof path, B.proto == PROTO_CHORUS ? "/ws" : "/");
    chorus_ws_client_key(c->key);
    n = chorus_ws_client_request(B.hostport, path, c->key, NULL, req,
                                 sizeof req);
    if (n < 0) {
        conn_dead(c, 1006, "cannot build request");
        return;
    }
    memcpy(out_reserve(c, (size_t)n), req, (size_t)n);
    c->out_len += (size_t)n;
    c->state = S_HANDSHAKE;
    conn_flush(c);
}

/* ------------------------------------------------------ receive path */

static void record(conn *c, const uint8_t *p, size_t avail, uint64_t now)
{
    uint64_t topic, pub, seq, sent, *nx;

    if (avail < HDR_LEN || p[8] != '.' || p[11] != '.' || p[28] != '.' ||
        p[45] != '.' || get_hex(p, 8, &topic) || get_hex(p + 9, 2, &pub) ||
        get_hex(p + 12, 16, &seq) || get_hex(p + 29, 16, &sent)) {
        if (B.bad++ < 3)
            note("unparsable payload on subscriber %u: %.40s", c->idx,
                 (const char *)p);
        return;
    }
    if (c->kind != K_SUB || topic != c->topic || pub >= (uint64_t)B.npubs) {
        if (B.bad++ < 3)
            note("message for the wrong topic on subscriber %u", c->idx);
        return;
    }
    nx = &B.next[(size_t)c->idx * (size_t)B.npubs + pub];
    if (seq == *nx) {
        (*nx)++;
    } else if (seq > *nx) {
        c->lost += seq - *nx;
        *nx = seq + 1;
    } else {
        c->dup++;
    }
    c->recv++;
    B.delivered++;
    if (B.phase == PH_MEASURE)
        B.delivered_ms++;
    if (B.phase == PH_RSUB) {
        if (B.replay_recv++ == 0)
            B.t_rfirst = now;
        if (B.replay_recv >= (uint64_t)B.replay_n)
            B.t_rdone = now;
        return;
    }
    if (sent >= B.t_ms && (B.t_me == 0 || sent < B.t_me) && B.t_ms)
        hist_record(&B.h, now > sent ? now - sent : 0);
}

static void on_ack(conn *c)
{
    if (c->acks_out)
        c->acks_out--;
    B.acked++;
}

static const uint8_t *find(const uint8_t *s, size_t n, const char *lit)
{
    return memmem(s, n, lit, strlen(lit));
}

static void parse_epoch(const uint8_t *s, size_t n)
{
    const uint8_t *e = find(s, n, "\"epoch\":\"");
    if (e && (size_t)(s + n - e) >= 9 + 32) {
        memcpy(B.epoch, e + 9, 32);
        B.epoch[32] = 0;
    }
    B.recovered = find(s, n, "\"recovered\":true") != NULL;
}

/* A whole Chorus or nchan message; s holds its first n bytes (n may be
 * shorter than the message). */
static void on_message(conn *c, const uint8_t *s, size_t n, uint64_t now)
{
    const uint8_t *d;

    if (B.proto == PROTO_NCHAN) {
        record(c, s, n, now);
        return;
    }
    if (n >= 15 && memcmp(s, "{\"op\":\"message\"", 15) == 0) {
        d = find(s, n, "\"data\":\"");
        if (d)
            record(c, d + 8, (size_t)(s + n - d - 8), now);
        else if (B.bad++ < 3)
            note("message without string data: %.*s", (int)n, s);
        return;
    }
    if (find(s, n, "\"op\":\"published\"")) {
        on_ack(c);
        return;
    }
    if (find(s, n, "\"op\":\"subscribed\"")) {
        if (B.replay_n && c->kind == K_SUB) {
            parse_epoch(s, n);
            if (!c->resubscribed) {
                char buf[512];
                int k = snprintf(buf, sizeof buf,
                                 "{\"op\":\"subscribe\",\"topic\":\"%s\","
                                 "\"since\":{\"epoch\":\"%s\",\"offset\":0}}",
                                 B.tname[0], B.epoch);
                c->resubscribed = 1;
                c->subscribed = 1;
                B.phase = PH_RSUB;
                B.t_rsub = now_ns();
                ws_send_text(c, buf, (size_t)k);
            } else if (!B.subs_ok) {
                B.subs_ok = 1;
            }
            return;
        }
        if (!c->subscribed) {
            c->subscribed = 1;
            B.subs_ok++;
        }
        return;
    }
    if (find(s, n, "\"op\":\"error\"")) {
        if (B.errors++ < 5)
            note("error from broker: %.*s", (int)(n > 160 ? 160 : n), s);
        if (c->kind == K_PUB_WS)
            on_ack(c);
    }
}

/* NATS protocol line (without CRLF). */
static void nats_line(conn *c, const uint8_t *s, size_t n, uint64_t now)
{
    (void)now;
    if (n >= 4 && memcmp(s, "MSG ", 4) == 0) {
        size_t i = n;
        uint64_t len = 0, mul = 1;
        while (i > 0 && s[i - 1] >= '0' && s[i - 1] <= '9') {
            len += (uint64_t)(s[i - 1] - '0') * mul;
            mul *= 10;
            i--;
        }
        c->in_payload = 1;
        c->nats_left = len + 2;
        c->msg_len = 0;
        return;
    }
    if (n == 4 && memcmp(s, "PING", 4) == 0) {
        ws_send_text(c, "PONG\r\n", 6);
        return;
    }
    if (n == 4 && memcmp(s, "PONG", 4) == 0) {
        if (c->kind == K_SUB && !c->subscribed) {
            c->subscribed = 1;
            B.subs_ok++;
        }
        return;
    }
    if (n >= 4 && memcmp(s, "-ERR", 4) == 0) {
        if (B.errors++ < 5)
            note("nats error: %.*s", (int)n, s);
    }
    /* INFO, +OK: ignored */
}

static void nats_feed(conn *c, const uint8_t *p, size_t len, uint64_t now)
{
    while (len) {
        if (!c->in_payload) {
            const uint8_t *nl = memchr(p, '\n', len);
            size_t take = nl ? (size_t)(nl - p) + 1 : len;
            if (c->pfx_len == 0 && nl) {
                size_t ln = take - 1;
                if (ln && p[ln - 1] == '\r')
                    ln--;
                nats_line(c, p, ln, now);
            } else {
                size_t room = PFX_MAX - c->pfx_len;
                size_t cp = take < room ? take : room;
                memcpy(c->pfx + c->pfx_len, p, cp);
                c->pfx_len = (uint16_t)(c->pfx_len + cp);
                if (nl) {
                    size_t ln = c->pfx_len - 1;
                    if (ln && c->pfx[ln - 1] == '\r')
                        ln--;
                    nats_line(c, c->pfx, ln, now);
                    c->pfx_len = 0;
                }
            }
            p += take;
            len -= take;
        } else {
            size_t m = len < c->nats_left ? len : (size_t)c->nats_left;
            if (c->pfx_len == 0 && c->msg_len == 0 && m == c->nats_left) {
                record(c, p, m >= 2 ? m - 2 : 0, now);
            } else {
                if (c->pfx_len < HDR_LEN) {
                    size_t cp = HDR_LEN - c->pfx_len;
                    if (cp > m)
                        cp = m;
                    memcpy(c->pfx + c->pfx_len, p, cp);
                    c->pfx_len = (uint16_t)(c->pfx_len + cp);
                }
                if (m == c->nats_left) {
                    record(c, c->pfx, c->pfx_len, now);
                    c->pfx_len = 0;
                }
            }
            c->msg_len += m;
            c->nats_left -= m;
            p += m;
            len -= m;
            if (c->nats_left == 0) {
                c->in_payload = 0;
                c->msg_len = 0;
                c->pfx_len = 0;
            }
        }
    }
}

static void on_data(conn *c, const uint8_t *p, size_t len, int fin,
                    uint64_t now)
{
    if (B.proto == PROTO_NATS) {
        nats_feed(c, p, len, now);
        return;
    }
    if (fin && c->pfx_len == 0 && c->msg_len == 0) {
        on_message(c, p, len, now); /* whole message in place */
        return;
    }
    if (c->pfx_len < PFX_MAX) {
        size_t cp = PFX_MAX - c->pfx_len;
        if (cp > len)
            cp = len;
        memcpy(c->pfx + c->pfx_len, p, cp);
        c->pfx_len = (uint16_t)(c->pfx_len + cp);
    }
    c->msg_len += len;
    if (fin) {
        on_message(c, c->pfx, c->pfx_len, now);
        c->pfx_len = 0;
        c->msg_len = 0;
    }
}

static void ws_feed(conn *c, uint8_t *buf, size_t len, uint64_t now)
{
    size_t off = 0, used;
    chorus_ws_event ev;

    while (c->state == S_OPEN) {
        chorus_ws_decode(&c->dec, buf + off, len - off, &used, &ev);
        off += used;
        switch (ev.type) {
        case CHORUS_WS_EV_NEED_MORE:
            if (len - off > CARRY_MAX) {
                conn_dead(c, 1002, "frame header too long");
                return;
            }
            memcpy(c->carry, buf + off, len - off);
            c->carry_len = (uint16_t)(len - off);
            return;
        case CHORUS_WS_EV_DATA:
            on_data(c, ev.data, ev.len, ev.fin, now);
            break;
        case CHORUS_WS_EV_CONTROL:
            if (ev.opcode == CHORUS_WS_OP_PING) {
                ws_queue(c, CHORUS_WS_OP_PONG, ev.data, ev.len);
                conn_flush(c);
            } else if (ev.opcode == CHORUS_WS_OP_CLOSE) {
                char reason[128];
                uint8_t pl[125];
                size_t rl = ev.len > 2 ? ev.len - 2 : 0;
                size_t pn;
                if (rl > sizeof reason - 1)
                    rl = sizeof reason - 1;
                memcpy(reason, ev.data + (ev.len > 2 ? 2 : 0), rl);
                reason[rl] = 0;
                pn = chorus_ws_close_payload(pl, ev.close_code, NULL);
                ws_queue(c, CHORUS_WS_OP_CLOSE, pl, pn);
                if (c->out_len > c->out_off)
                    (void)!write(c->fd, c->out + c->out_off,
                                 c->out_len - c->out_off);
                conn_dead(c, ev.close_code, reason);
                return;
            }
            break;
        case CHORUS_WS_EV_ERROR:
            conn_dead(c, ev.close_code, ev.reason);
            return;
        }
    }
}

static void ws_read(conn *c)
{
    size_t carry = c->carry_len;
    ssize_t n;

    memcpy(B.rbuf, c->carry, carry);
    n = read(c->fd, B.rbuf + carry, RBUF_SIZE);
    if (n == 0) {
        conn_dead(c, 1006, "connection closed without close frame");
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR)
            conn_dead(c, 1006, strerror(errno));
        return;
    }
    B.rx_bytes += (uint64_t)n;
    c->carry_len = 0;
    ws_feed(c, B.rbuf, carry + (size_t)n, now_ns());
}

/* HTTP publisher: one request in flight per connection. */
static void http_read(conn *c)
{
    chorus_http_response res;
    const chorus_http_header *h;
    ssize_t n;
    int hl;

    if (!c->in)
        c->in = malloc(HTTP_BUF);
    n = read(c->fd, c->in + c->in_len, HTTP_BUF - c->in_len);
    if (n == 0) {
        conn_dead(c, 1006, "HTTP connection closed");
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR)
            conn_dead(c, 1006, strerror(errno));
        return;
    }
    c->in_len += (size_t)n;
    for (;;) {
        size_t body = 0, total;
        hl = chorus_http_parse_response(c->in, c->in_len, &http_lim, &res);
        if (hl == CHORUS_HTTP_INCOMPLETE)
            return;
        if (hl < 0) {
            conn_dead(c, 1006, "malformed HTTP response");
            return;
        }
        h = chorus_http_find_header(res.headers, res.num_headers,
                                    "Content-Length");
        if (h) {
            body = (size_t)strtoull(h->value, NULL, 10);
        } else if (chorus_http_find_header(res.headers, res.num_headers,
                                           "Transfer-Encoding")) {
            const char *end = memmem(c->in + hl, c->in_len - (size_t)hl,
                                     "0\r\n\r\n", 5);
            if (!end)
                return;
            body = (size_t)(end + 5 - (c->in + hl));
        }
        total = (size_t)hl + body;
        if (total > HTTP_BUF) {
            conn_dead(c, 1006, "HTTP response too large");
            return;
        }
        if (c->in_len < total)
            return;
        if (res.status < 200 || res.status > 299) {
            if (B.errors++ < 5)
                note("publish answered HTTP %d: %.*s", res.status,
                     (int)(body > 120 ? 120 : body), c->in + hl);
        }
        memmove(c->in, c->in + total, c->in_len - total);
        c->in_len -= total;
        c->http_busy = 0;
        on_ack(c);
    }
}

static void on_event(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;
    (void)fd;

    switch (c->state) {
    case S_CONNECTING:
        if (what & EV_WRITE) {
            int err = 0;
            socklen_t sl = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl);
            if (err) {
                conn_dead(c, 1006, strerror(err));
                return;
            }
            if (c->kind == K_PUB_HTTP) {
                c->state = S_OPEN;
                B.connecting--;
                set_ev(c, EV_READ);
            } else {
                set_ev(c, EV_READ);
                send_handshake(c);
            }
        }
        return;
    case S_HANDSHAKE:
        if (what & EV_WRITE)
            conn_flush(c);
        if ((what & EV_READ) && c->state == S_HANDSHAKE)
            handshake_read(c);
        return;
    case S_OPEN:
        if (what & EV_READ) {
            if (c->kind == K_PUB_HTTP)
                http_read(c);
            else
                ws_read(c);
        }
        if ((what & EV_WRITE) && c->state == S_OPEN)
            conn_flush(c);
        return;
    default:
        return;
    }
}

static void start_more_connects(void)
{
    while (B.phase == PH_SETUP && B.next_connect < B.nsubs &&
           B.connecting < B.connect_par)
        conn_start(&B.subs[B.next_connect++]);
}

/* ------------------------------------------------------ publish path */

static void fill_payload(char *p, long topic, int pub, uint64_t seq,
                         uint64_t t)
{
    put_hex(p, (uint64_t)topic, 8);
    p[8] = '.';
    put_hex(p + 9, (uint64_t)pub, 2);
    p[11] = '.';
    put_hex(p + 12, seq, 16);
    p[28] = '.';
    put_hex(p + 29, t, 16);
    p[45] = '.';
    memcpy(p + HDR_LEN, B.tmpl + HDR_LEN, B.payload - HDR_LEN);
}

static void publish_one(conn *c, long t)
{
    uint64_t seq = ++B.pubseq[(size_t)c->idx * (size_t)B.ntopics + (size_t)t];
    uint64_t ts = now_ns();
    const char *name = B.tname[t];
    size_t tl = B.tlen[t], P = B.payload, body, h;
    char *p;

    if (c->kind == K_PUB_WS) {
        uint8_t key[4];
        uint32_t r = rng32();
        char line[64];
        int ll = 0;
        char *q;

        memcpy(key, &r, 4);
        if (B.proto == PROTO_CHORUS) {
            body = sizeof PUB_HEAD - 1 + tl + 10 + P + 2;
        } else {
            ll = snprintf(line, sizeof line, " %zu\r\n", P);
            body = 4 + tl + (size_t)ll + P + 2;
        }
        p = out_reserve(c, body + CHORUS_WS_MAX_HEADER);
        h = chorus_ws_write_header((uint8_t *)p, 1, CHORUS_WS_OP_TEXT, body,
                                   key);
        q = p + h;
        if (B.proto == PROTO_CHORUS) {
            memcpy(q, PUB_HEAD, sizeof PUB_HEAD - 1);
            q += sizeof PUB_HEAD - 1;
            memcpy(q, name, tl);
            q += tl;
            memcpy(q, "\",\"data\":\"", 10);
            q += 10;
            fill_payload(q, t, (int)c->idx, seq, ts);
            q += P;
            memcpy(q, "\"}", 2);
        } else {
            memcpy(q, "PUB ", 4);
            q += 4;
            memcpy(q, name, tl);
            q += tl;
            memcpy(q, line, (size_t)ll);
            q += ll;
            fill_payload(q, t, (int)c->idx, seq, ts);
            q += P;
            memcpy(q, "\r\n", 2);
        }
        chorus_ws_mask((uint8_t *)p + h, body, key, 0);
        c->out_len += h + body;
        if (B.proto == PROTO_CHORUS)
            c->acks_out++;
    } else {
        int n;
        size_t bl = B.proto == PROTO_CHORUS ? P + 2 : P;
        p = out_reserve(c, 300 + tl + bl);
        if (B.proto == PROTO_CHORUS)
            n = sprintf(p,
                        "POST /api/publish/%s HTTP/1.1\r\nHost: %s\r\n"
                        "Content-Type: application/json\r\n"
                        "Content-Length: %zu\r\n\r\n\"",
                        name, B.hostport, bl);
        else
            n = sprintf(p,
                        "POST /pub/%s HTTP/1.1\r\nHost: %s\r\n"
                        "Content-Type: text/plain\r\n"
                        "Content-Length: %zu\r\n\r\n",
                        name, B.hostport, bl);
        fill_payload(p + n, t, (int)c->idx, seq, ts);
        if (B.proto == PROTO_CHORUS)
            p[(size_t)n + P] = '"';
        c->out_len += (size_t)n + P + (B.proto == PROTO_CHORUS ? 1 : 0);
        c->http_busy = 1;
        c->acks_out++;
    }
    B.published++;
    B.expected += B.fanout[t];
    if (B.phase == PH_MEASURE)
        B.published_ms++;
}

static int pub_ready(const conn *c)
{
    if (c->state != S_OPEN)
        return 0;
    if (c->kind == K_PUB_HTTP)
        return !c->http_busy;
    if (c->out_len - c->out_off >= OUT_HIGH)
        return 0;
    if (B.proto == PROTO_CHORUS && B.rate <= 0 &&
        c->acks_out >= (uint32_t)B.window)
        return 0;
    return 1;
}

static void pump(void)
{
    uint64_t now, due = UINT64_MAX;
    long avg_fan, dwin;
    int dirty = 0;

    if (B.phase != PH_WARMUP && B.phase != PH_MEASURE && B.phase != PH_RPUB)
        return;
    now = now_ns();
    if (B.rate > 0)
        due = (uint64_t)((double)(now - B.t_pub_start) * B.rate / 1e9) + 1;
    avg_fan = B.nsubs / B.ntopics;
    if (avg_fan < 1)
        avg_fan = 1;
    dwin = B.window * avg_fan;
    for (int budget = 4096; budget > 0; budget--) {
        conn *c = NULL;
        if (B.phase == PH_RPUB && B.published >= (uint64_t)B.replay_n)
            break;
        if (B.rate > 0) {
            if (B.published >= due)
                break;
        } else if (B.nsubs > 0 &&
                   (int64_t)(B.expected - B.delivered) >= (int64_t)dwin) {
            break;
        }
        for (int i = 0; i < B.npubs; i++) {
            conn *q = &B.pubs[(B.pub_rr + i) % B.npubs];
            if (pub_ready(q)) {
                c = q;
                B.pub_rr = (B.pub_rr + i + 1) % B.npubs;
                break;
            }
        }
        if (!c)
            break;
        publish_one(c, B.cursor);
        if (++B.cursor >= B.ntopics)
            B.cursor = 0;
        dirty = 1;
    }
    if (dirty)
        for (int i = 0; i < B.npubs; i++)
            if (B.pubs[i].state == S_OPEN &&
                B.pubs[i].out_len > B.pubs[i].out_off)
                conn_flush(&B.pubs[i]);
}

/* ------------------------------------------------------ phases */

static int pubs_open(void)
{
    for (int i = 0; i < B.npubs; i++)
        if (B.pubs[i].state != S_OPEN)
            return 0;
    return 1;
}

static void sample(int end)
{
    if (!end) {
        B.bcpu0 = proc_cpu(B.pid);
        B.scpu0 = self_cpu();
        proc_sched(B.pid, &B.brun0, &B.bwait0);
        proc_sched(getpid(), &B.srun0, &B.swait0);
    } else {
        B.bcpu1 = proc_cpu(B.pid);
        B.scpu1 = self_cpu();
        proc_sched(B.pid, &B.brun1, &B.bwait1);
        proc_sched(getpid(), &B.srun1, &B.swait1);
    }
}

static void enter(int ph, uint64_t now)
{
    B.phase = ph;
    B.t_phase = now;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    uint64_t now = now_ns();
    double in_phase = (double)(now - B.t_phase) / 1e9;
    (void)fd;
    (void)what;
    (void)arg;

    switch (B.phase) {
    case PH_SETUP:
        if ((B.subs_ok + B.subs_failed >= B.nsubs && pubs_open()) ||
            in_phase > B.setup_timeout) {
            if (in_phase > B.setup_timeout)
                note("setup timeout: %ld of %ld subscribed", B.subs_ok,
                     B.nsubs);
            B.t_setup_done = now;
            B.rss1 = proc_rss(B.pid);
            note("%ld subscribers ready (%ld failed) in %.3f s", B.subs_ok,
                 B.subs_failed, (double)(now - B.t_setup_start) / 1e9);
            if (B.idle)
                enter(PH_HOLD, now);
            else if (B.replay_n) {
                enter(PH_RPUB, now);
                B.t_pub_start = now;
            } else
                enter(PH_SETTLE, now);
        }
        break;
    case PH_SETTLE:
        if (in_phase >= 0.3) {
            enter(PH_WARMUP, now);
            B.t_pub_start = now;
            B.t_last_progress = now;
            B.last_delivered = B.delivered;
        }
        break;
    case PH_WARMUP:
    case PH_MEASURE:
        if (B.delivered != B.last_delivered ||
            B.expected == B.delivered) {
            B.last_delivered = B.delivered;
            B.t_last_progress = now;
        } else if (B.rate <= 0 && now - B.t_last_progress > 1000000000ull) {
            B.stalls++;
            note("no delivery for 1 s with %" PRIu64
                 " deliveries outstanding; forgiving them",
                 B.expected - B.delivered);
            B.expected = B.delivered;
            B.t_last_progress = now;
        }
        if (B.phase == PH_WARMUP && in_phase >= B.warmup) {
            enter(PH_MEASURE, now);
            B.t_ms = now;
            sample(0);
        } else if (B.phase == PH_MEASURE && in_phase >= B.duration) {
            B.t_me = now;
            sample(1);
            enter(PH_DRAIN, now);
        }
        break;
    case PH_DRAIN: {
        int acks_done = 1;
        for (int i = 0; i < B.npubs; i++)
            if (B.pubs[i].state == S_OPEN && B.pubs[i].acks_out &&
                (B.proto == PROTO_CHORUS || B.pubmode == PUB_HTTP))
                acks_done = 0;
        if ((B.expected <= B.delivered && acks_done) ||
            in_phase >= B.drain) {
            B.rss_end = proc_rss(B.pid);
            enter(PH_DONE, now);
        }
        break;
    }
    case PH_HOLD:
        if (in_phase >= B.hold) {
            B.rss_end = proc_rss(B.pid);
            enter(PH_DONE, now);
        }
        break;
    case PH_RPUB:
        if (B.acked >= (uint64_t)B.replay_n ||
            in_phase > B.duration + B.setup_timeout) {
            B.t_rpub_done = now;
            note("%" PRIu64 " messages stored in %.3f s", B.acked,
                 (double)(now - B.t_pub_start) / 1e9);
            B.rss1 = proc_rss(B.pid);
            enter(PH_SETUP, now); /* connect the replaying subscriber */
            B.nsubs = 1;
            B.fanout[0] = 0;
            sample(0);
            B.phase = PH_RSUB; /* set by on_message too */
            B.next_connect = 1;
            conn_start(&B.subs[0]);
        }
        break;
    case PH_RSUB:
        if (B.t_rdone || in_phase > B.setup_timeout) {
            sample(1);
            B.rss_end = proc_rss(B.pid);
            enter(PH_DONE, now);
        }
        break;
    }
    if (B.phase == PH_DONE)
        event_base_loopbreak(B.base);
}

/* ------------------------------------------------------ report */

static void report(void)
{
    double meas = B.t_me > B.t_ms ? (double)(B.t_me - B.t_ms) / 1e9 : 0;
    double setup = B.t_setup_done > B.t_setup_start
                       ? (double)(B.t_setup_done - B.t_setup_start) / 1e9
                       : 0;
    uint64_t lost = 0, dup = 0, recv = 0;
    double deliv_rate = meas > 0 ? (double)B.delivered_ms / meas : 0;
    double pub_rate = meas > 0 ? (double)B.published_ms / meas : 0;
    double bcpu = (B.bcpu0 >= 0 && B.bcpu1 >= 0) ? B.bcpu1 - B.bcpu0 : -1;
    double scpu = B.scpu1 - B.scpu0;
    double wall = meas;
    double setup_rate = setup > 0 ? (double)B.subs_ok / setup : 0;
    double rss_per_conn = -1;
    double cpu_us = -1;
    double replay_rate = 0, rpub_rate = 0;
    const char *proto = B.proto == PROTO_CHORUS ? "chorus"
                        : B.proto == PROTO_NCHAN ? "nchan"
                                                 : "nats";

    for (long i = 0; i < B.nsubs; i++) {
        conn *c = &B.subs[i];
        if (!c->subscribed)
            continue;
        recv += c->recv;
        lost += c->lost;
        dup += c->dup;
        for (int k = 0; k < B.npubs; k++) {
            uint64_t last = B.pubseq[(size_t)k * (size_t)B.ntopics + c->topic];
            uint64_t nx = B.next[(size_t)i * (size_t)B.npubs + (size_t)k];
            if (B.replay_n)
                last = B.pubseq[k];
            if (last + 1 > nx)
                lost += last + 1 - nx;
        }
    }
    if (B.replay_n) {
        wall = B.t_rdone > B.t_rsub ? (double)(B.t_rdone - B.t_rsub) / 1e9
                                    : (double)(now_ns() - B.t_rsub) / 1e9;
        replay_rate = wall > 0 ? (double)B.replay_recv / wall : 0;
        rpub_rate = B.t_rpub_done > B.t_pub_start
                        ? (double)B.acked /
                              ((double)(B.t_rpub_done - B.t_pub_start) / 1e9)
                        : 0;
    }
    if (B.rss1 >= 0 && B.rss0 >= 0 && B.subs_ok > 0)
        rss_per_conn = (double)(B.rss1 - B.rss0) * 1024.0 / (double)B.subs_ok;
    if (bcpu >= 0 && B.delivered_ms > 0)
        cpu_us = bcpu * 1e6 / (double)B.delivered_ms;
    if (B.replay_n && bcpu >= 0 && B.replay_recv)
        cpu_us = bcpu * 1e6 / (double)B.replay_recv;

    printf("== chorus-bench %s: %ld subscribers, %ld topics, %zu B payload,"
           " %s publish (%s), %d publisher conn(s)\n",
           proto, B.nsubs, B.ntopics, B.payload,
           B.pubmode == PUB_HTTP ? "HTTP" : "WebSocket",
           B.rate > 0 ? "fixed rate" : "window", B.npubs);
    printf("fd limit %" PRIu64 ": room for about %" PRIu64 " connections\n",
           B.rlim, B.rlim > 32 ? B.rlim - 32 : 0);
    printf("connections: %ld subscribed, %ld failed, %ld closed by broker"
           " (%ld with 1013); setup %.3f s = %.0f conn/s\n",
           B.subs_ok, B.subs_failed, B.subs_closed, B.close_1013, setup,
           setup_rate);
    if (B.replay_n) {
        printf("replay: stored %" PRIu64 " msgs at %.0f msg/s (acked);"
               " replayed %" PRIu64 " in %.3f s = %.0f msg/s (first after"
               " %.1f ms, recovered=%s)\n",
               B.acked, rpub_rate, B.replay_recv, wall, replay_rate,
               B.t_rfirst > B.t_rsub ? (double)(B.t_rfirst - B.t_rsub) / 1e6
                                      : -1.0,
               B.recovered ? "true" : "false");
    } else if (!B.idle) {
        printf("measured %.2f s: published %" PRIu64 " (%.0f msg/s),"
               " delivered %" PRIu64 " (%.0f msg/s)\n",
               meas, B.published_ms, pub_rate, B.delivered_ms, deliv_rate);
        printf("latency (publish -> delivery, %" PRIu64 " samples): p50 %.1f"
               " us, p99 %.1f us, p99.9 %.1f us, max %.1f us\n",
               B.h.count, (double)hist_quantile(&B.h, 0.5) / 1e3,
               (double)hist_quantile(&B.h, 0.99) / 1e3,
               (double)hist_quantile(&B.h, 0.999) / 1e3,
               (double)B.h.max / 1e3);
    }
    printf("messages: received %" PRIu64 ", lost %" PRIu64
           ", duplicated/out-of-order %" PRIu64 ", unparsable %" PRIu64
           ", broker errors %" PRIu64 ", stalls %" PRIu64 "\n",
           recv, lost, dup, B.bad, B.errors, B.stalls);
    if (B.pid > 0)
        printf("broker pid %d: RSS %ld KiB before, %ld KiB connected"
               " (%.0f B/conn), %ld KiB at end; CPU %.2f s (%.0f%%),"
               " %.3f us/delivery\n",
               B.pid, B.rss0, B.rss1, rss_per_conn, B.rss_end, bcpu,
               wall > 0 ? 100 * bcpu / wall : 0, cpu_us);
    if (wall > 0)
        printf("run-queue wait, all threads (CPU starvation): broker %.0f%%,"
               " bench %.0f%% of wall time\n",
               100 * (B.bwait1 - B.bwait0) / wall,
               100 * (B.swait1 - B.swait0) / wall);
    printf("bench CPU %.2f s (%.0f%% of one core)%s\n", scpu,
           wall > 0 ? 100 * scpu / wall : 0,
           wall > 0 && scpu / wall > 0.9
               ? "  ** bench near 100%: it may be the bottleneck **"
               : "");
    printf("RESULT proto=%s pub=%s subs=%ld topics=%ld payload=%zu"
           " pubconns=%d rate=%.0f window=%ld dur=%.2f"
           " pub_rate=%.0f deliv_rate=%.0f p50_us=%.1f p99_us=%.1f"
           " p999_us=%.1f max_us=%.1f samples=%" PRIu64 " lost=%" PRIu64
           " dup=%" PRIu64 " bad=%" PRIu64 " errors=%" PRIu64
           " stalls=%" PRIu64 " subs_ok=%ld subs_failed=%ld closed=%ld"
           " closed_1013=%ld setup_s=%.3f setup_rate=%.0f"
           " rss0_kb=%ld rss1_kb=%ld rss_end_kb=%ld rss_per_conn_b=%.0f"
           " broker_cpu_s=%.3f broker_cpu_pct=%.1f cpu_us_per_deliv=%.4f"
           " bench_cpu_s=%.3f bench_cpu_pct=%.1f conns_allowed=%" PRIu64
           " replay_n=%ld replay_rate=%.0f replay_pub_rate=%.0f"
           " recovered=%d broker_wait_pct=%.1f bench_wait_pct=%.1f\n",
           proto, B.pubmode == PUB_HTTP ? "http" : "ws", B.nsubs, B.ntopics,
           B.payload, B.npubs, B.rate, B.window, meas, pub_rate, deliv_rate,
           (double)hist_quantile(&B.h, 0.5) / 1e3,
           (double)hist_quantile(&B.h, 0.99) / 1e3,
           (double)hist_quantile(&B.h, 0.999) / 1e3, (double)B.h.max / 1e3,
           B.h.count, lost, dup, B.bad, B.errors, B.stalls, B.subs_ok,
           B.subs_failed, B.subs_closed, B.close_1013, setup, setup_rate,
           B.rss0, B.rss1, B.rss_end, rss_per_conn, bcpu,
           wall > 0 ? 100 * bcpu / wall : 0, cpu_us, scpu,
           wall > 0 ? 100 * scpu / wall : 0,
           B.rlim > 32 ? B.rlim - 32 : 0, B.replay_n, replay_rate, rpub_rate,
           B.recovered, wall > 0 ? 100 * (B.bwait1 - B.bwait0) / wall : 0,
           wall > 0 ? 100 * (B.swait1 - B.swait0) / wall : 0);
    fflush(stdout);
}

/* ------------------------------------------------------ main */

static void usage(void)
{
    fprintf(stderr,
"usage: chorus-bench [options]\n"
"  --proto chorus|nchan|nats   broker protocol (chorus)\n"
"  --port N                    broker port on 127.0.0.1 (8080)\n"
"  --pub ws|http               chorus publish path (ws); nchan is always http\n"
"  -n, --subs N                subscribers (1000)\n"
"  -t, --topics T              topics; subscribers spread round-robin (1)\n"
"  -p, --payload P             payload bytes, >= %d (100)\n"
"  -d, --duration D            measured seconds (5)\n"
"  -w, --warmup W              warm-up seconds (2)\n"
"  -r, --rate R                fixed publish rate, msg/s over all topics;\n"
"                              0 = as fast as the window allows (0)\n"
"  --window W                  messages in flight (published, not yet\n"
"                              delivered to every subscriber / acked) (256)\n"
"  --pubconns K                publisher connections (1 ws, 4 http)\n"
"  --pid PID                   broker pid for RSS and CPU from /proc\n"
"  --idle                      connect and subscribe only (RSS per conn)\n"
"  --hold S                    with --idle: seconds to hold (2)\n"
"  --replay N                  chorus: store N messages in one topic, then\n"
"                              time one subscriber replaying them\n"
"  --connect-par C             concurrent connection attempts (200)\n"
"  --drain S                   max seconds to wait for stragglers (5)\n"
"  --setup-timeout S           max seconds to connect everyone (60)\n"
"  --prefix S                  topic name prefix (b<pid>_)\n"
"  -q, --quiet                 no progress notes\n",
            HDR_LEN);
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"proto", 1, 0, 'P'},     {"port", 1, 0, 'o'},
        {"pub", 1, 0, 'u'},       {"subs", 1, 0, 'n'},
        {"topics", 1, 0, 't'},    {"payload", 1, 0, 'p'},
        {"duration", 1, 0, 'd'},  {"warmup", 1, 0, 'w'},
        {"rate", 1, 0, 'r'},      {"window", 1, 0, 'W'},
        {"pubconns", 1, 0, 'K'},  {"pid", 1, 0, 'i'},
        {"idle", 0, 0, 'I'},      {"hold", 1, 0, 'H'},
        {"replay", 1, 0, 'R'},    {"connect-par", 1, 0, 'C'},
        {"drain", 1, 0, 'D'},     {"setup-timeout", 1, 0, 'S'},
        {"prefix", 1, 0, 'x'},    {"quiet", 0, 0, 'q'},
        {"help", 0, 0, 'h'},      {0, 0, 0, 0}};
    struct rlimit rl;
    struct timeval tv = {0, 1000};
    int opt;

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
    snprintf(B.prefix, sizeof B.prefix, "b%d_", (int)getpid());

    while ((opt = getopt_long(argc, argv, "n:t:p:d:w:r:qh", lo, NULL)) != -1) {
        switch (opt) {
        case 'P':
            if (!strcmp(optarg, "chorus"))
                B.proto = PROTO_CHORUS;
            else if (!strcmp(optarg, "nchan"))
                B.proto = PROTO_NCHAN;
            else if (!strcmp(optarg, "nats"))
                B.proto = PROTO_NATS;
            else
                usage();
            break;
        case 'o': B.port = atoi(optarg); break;
        case 'u':
            if (!strcmp(optarg, "ws"))
                B.pubmode = PUB_WS;
            else if (!strcmp(optarg, "http"))
                B.pubmode = PUB_HTTP;
            else
                usage();
            break;
        case 'n': B.nsubs = atol(optarg); break;
        case 't': B.ntopics = atol(optarg); break;
        case 'p': B.payload = (size_t)atol(optarg); break;
        case 'd': B.duration = atof(optarg); break;
        case 'w': B.warmup = atof(optarg); break;
        case 'r': B.rate = atof(optarg); break;
        case 'W': B.window = atol(optarg); break;
        case 'K': B.npubs = atoi(optarg); break;
        case 'i': B.pid = atoi(optarg); break;
        case 'I': B.idle = 1; break;
        case 'H': B.hold = atof(optarg); break;
        case 'R': B.replay_n = atol(optarg); break;
        case 'C': B.connect_par = atoi(optarg); break;
        case 'D': B.drain = atof(optarg); break;
        case 'S': B.setup_timeout = atof(optarg); break;
        case 'x': snprintf(B.prefix, sizeof B.prefix, "%s", optarg); break;
        case 'q': B.quiet = 1; break;
        default: usage();
        }
    }
    if (B.proto == PROTO_NCHAN)
        B.pubmode = PUB_HTTP;
    if (B.proto == PROTO_NATS)
        B.pubmode = PUB_WS;
    if (B.npubs <= 0)
        B.npubs = B.pubmode == PUB_HTTP ? 4 : 1;
    if (B.replay_n) {
        if (B.proto != PROTO_CHORUS)
            die("--replay is Chorus only");
        B.nsubs = 0;
        B.ntopics = 1;
        B.npubs = 1;
    }
    if (B.npubs > MAX_PUBS || B.ntopics < 1 || B.nsubs < 0 ||
        (B.nsubs > 0 && B.nsubs < B.ntopics) || B.payload < HDR_LEN ||
        B.payload > 64 * 1024 * 1024 || B.window < 1 || B.port <= 0 ||
        B.duration <= 0 || B.warmup < 0 || B.connect_par < 1)
        usage();

    /* Open files: as many as the hard limit allows. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        B.rlim = (uint64_t)rl.rlim_cur;
    }
    fprintf(stderr, "open-file limit %" PRIu64 ": room for about %" PRIu64
            " connections\n", B.rlim, B.rlim > 32 ? B.rlim - 32 : 0);
    if ((uint64_t)(B.nsubs + B.npubs) + 32 > B.rlim)
        die("%ld connections do not fit in the open-file limit %" PRIu64,
            B.nsubs + B.npubs, B.rlim);
    signal(SIGPIPE, SIG_IGN);

    B.t_start = now_ns();
    rng_state ^= B.t_start ^ ((uint64_t)getpid() << 32);
    B.addr.sin_family = AF_INET;
    B.addr.sin_port = htons((uint16_t)B.port);
    B.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    snprintf(B.hostport, sizeof B.hostport, "127.0.0.1:%d", B.port);

    {
        size_t ns = (size_t)(B.replay_n ? 1 : B.nsubs);
        B.subs = calloc(ns ? ns : 1, sizeof(conn));
        B.pubs = calloc((size_t)B.npubs, sizeof(conn));
        B.tname = calloc((size_t)B.ntopics, sizeof *B.tname);
        B.tlen = calloc((size_t)B.ntopics, 1);
        B.fanout = calloc((size_t)B.ntopics, sizeof *B.fanout);
        B.pubseq = calloc((size_t)B.npubs * (size_t)B.ntopics, 8);
        B.next = calloc((ns ? ns : 1) * (size_t)B.npubs, 8);
        B.rbuf = malloc(RBUF_SIZE + CARRY_MAX + HS_BUF);
        B.tmpl = malloc(B.payload);
        if (!B.subs || !B.pubs || !B.tname || !B.tlen || !B.fanout ||
            !B.pubseq || !B.next || !B.rbuf || !B.tmpl)
            die("out of memory");
        memset(B.tmpl, 'x', B.payload);
        for (long t = 0; t < B.ntopics; t++)
            B.tlen[t] = (uint8_t)snprintf(B.tname[t], sizeof B.tname[t],
                                          "%s%ld", B.prefix, t);
        for (size_t i = 0; i < ns; i++) {
            B.subs[i].idx = (uint32_t)i;
            B.subs[i].fd = -1;
            B.subs[i].kind = K_SUB;
            B.subs[i].topic = (uint32_t)(i % (size_t)B.ntopics);
            for (int k = 0; k < B.npubs; k++)
                B.next[i * (size_t)B.npubs + (size_t)k] = 1;
            if (!B.replay_n)
                B.fanout[B.subs[i].topic]++;
        }
        for (int k = 0; k < B.npubs; k++) {
            B.pubs[k].idx = (uint32_t)k;
            B.pubs[k].fd = -1;
            B.pubs[k].kind = B.pubmode == PUB_HTTP ? K_PUB_HTTP : K_PUB_WS;
        }
    }
    hist_init(&B.h);

    B.base = event_base_new();
    if (!B.base)
        die("event_base_new failed");
    B.rss0 = proc_rss(B.pid);
    B.bcpu0 = B.bcpu1 = -1;
    B.tick = event_new(B.base, -1, EV_PERSIST, on_tick, NULL);
    event_add(B.tick, &tv);

    B.t_setup_start = now_ns();
    enter(PH_SETUP, B.t_setup_start);
    if (!B.idle)
        for (int k = 0; k < B.npubs; k++)
            conn_start(&B.pubs[k]);
    else
        B.npubs = 0;
    start_more_connects();

    {
        double limit = B.setup_timeout + B.warmup + B.duration + B.drain +
                       B.hold + 30 + (B.replay_n ? 2 * B.setup_timeout : 0);
        uint64_t deadline = B.t_start + (uint64_t)(limit * 1e9);
        while (B.phase != PH_DONE) {
            event_base_loop(B.base, EVLOOP_ONCE);
            pump();
            if (now_ns() > deadline) {
                note("overall deadline reached; stopping");
                if (!B.t_me) {
                    B.t_me = now_ns();
                    sample(1);
                }
                break;
            }
        }
    }
    report();
    return (B.subs_failed || B.bad) ? 1 : 0;
}
