/* chorus-bench internals, shared by its files:
 *   bench_main.c   options, set-up, the loop, phases
 *   bench_net.c    sockets, handshake, reads and writes
 *   bench_ws.c     client-side WebSocket frame decoder (pure)
 *   bench_proto.c  Chorus / nchan / NATS messages -> payload
 *   bench_pub.c    publishing
 *   bench_stats.c  payload header, loss/dup tracking, latency, report
 *   bench_proc.c   /proc readers (broker CPU, RSS, run-queue wait)
 *   bench_uring.c  subscriber reads by io_uring multishot receive
 *   bench_sse.c    SSE and chunked-body decoders (pure, bench_sse.h)
 *   bench_sse_sub.c  SSE subscribers (--sub sse): request, events, checks
 *
 * Payload layout (P bytes, P >= HDR_LEN):
 *   TTTTTTTT.KK.SSSSSSSSSSSSSSSS.NNNNNNNNNNNNNNNN.xxxxx...
 * T topic index, K publisher connection, S sequence number of the
 * (topic, publisher) stream, N CLOCK_MONOTONIC send time in ns; all
 * lowercase hex. */
#ifndef CHORUS_BENCH_H
#define CHORUS_BENCH_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "chorus/http_parse.h"
#include "chorus/ws_frame.h"
#include "bench_sse.h"
#include "hist.h"

#define HDR_LEN 46
#define PFX_MAX 200   /* message prefix kept while a message streams in */
#define CARRY_MAX 136 /* undecoded bytes kept between reads (<= 10+125) */
#define RBUF_SIZE (256 * 1024)
#define OUT_HIGH (1024 * 1024) /* stop filling a publisher's buffer here */
#define MAX_PUBS 64
#define HS_BUF 4096
#define HTTP_BUF (64 * 1024)

enum { PROTO_CHORUS, PROTO_NCHAN, PROTO_NATS };
enum { PUB_WS, PUB_HTTP };
enum { K_SUB, K_PUB_WS, K_PUB_HTTP };
enum { S_IDLE, S_CONNECTING, S_HANDSHAKE, S_OPEN, S_DEAD };
enum {
    PH_SETUP,
    PH_SETTLE,
    PH_WARMUP,
    PH_MEASURE,
    PH_DRAIN,
    PH_HOLD,
    PH_RPUB,
    PH_RSUB,
    PH_DONE
};

/* Decoder of server-to-client frames (bench_ws.c). Unlike the lib's
 * chorus_ws_decoder it does not validate UTF-8 (not needed to measure)
 * and keeps 12 bytes of state. */
typedef struct ws_dec {
    uint64_t frame_left; /* payload bytes of the open data frame to come */
    uint8_t in_frame;    /* a data frame's header was consumed */
    uint8_t frame_fin;   /* that frame ends its message */
    uint8_t msg_open;    /* a fragmented message awaits continuation */
    uint8_t failed;      /* an ERROR was reported; stays failed */
} ws_dec;

void ws_dec_init(ws_dec *d);
/* Same contract as chorus_ws_decode() (CLIENT role, no max_message, no
 * extensions) minus the UTF-8 checks. */
void ws_dec_decode(ws_dec *d, uint8_t *buf, size_t len, size_t *consumed,
                   chorus_ws_event *ev);

/* An SSE subscriber's event in progress (bench_sse_sub.c). */
typedef struct sse_sub {
    sse_dec dec;
    chunk_dec chunks;
    uint8_t chunked;     /* the body comes in chunked transfer coding */
    uint8_t has_data;    /* the event has a data line */
    uint8_t payload;     /* c->pfx holds its payload header already */
    uint8_t named_other; /* its type is not "message" */
    uint8_t name_len;
    char name[12]; /* its type, from "event:" */
    uint64_t id;   /* Chorus: the offset in its "id: <epoch>:<offset>" */
    uint64_t last_id;
} sse_sub;

typedef struct conn {
    /* receive path first */
    int fd;
    uint8_t kind, state, subscribed, in_payload; /* in_payload: NATS */
    uint16_t pfx_len, carry_len;
    uint32_t idx, topic;
    ws_dec dec;
    uint64_t *next;     /* subscriber: next expected sequence per pub */
    uint64_t msg_len;   /* bytes of the current message seen */
    uint64_t nats_left; /* NATS: payload bytes (+CRLF) still to come */
    uint64_t recv, lost, dup;
    /* the rest */
    uint8_t resubscribed; /* replay mode */
    uint8_t uring;        /* reads by io_uring (bench_uring.c) */
    uint8_t sse;          /* subscriber over SSE (bench_sse_sub.c) */
    short ev_flags;
    struct event *ev;
    char *in; /* handshake / HTTP response buffer */
    size_t in_len;
    char *out; /* pending output */
    size_t out_len, out_off, out_cap;
    uint32_t acks_out; /* publisher: requests not yet answered */
    int http_busy;
    char key[25];
    uint8_t carry[CARRY_MAX];
    uint8_t pfx[PFX_MAX];
    sse_sub sse_st;
} conn;

/* CPU seconds of a process, split as /proc/PID/stat does. */
typedef struct cpu_times {
    double user, sys;
} cpu_times;

struct bench {
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
    int no_uring; /* --no-uring: subscribers read() */
    int uring;    /* io_uring set up for subscriber reads */
    int sub_sse;  /* --sub sse: subscribers read an SSE stream */
    int rcvbuf;   /* --rcvbuf: subscribers' SO_RCVBUF (0: the kernel's) */

    struct event_base *base;
    conn *subs, *pubs;
    char (*tname)[32];
    uint8_t *tlen;
    uint32_t *fanout;
    uint64_t *pubseq; /* [npubs * ntopics] last sequence issued */
    uint64_t *next;   /* [nsubs * npubs] next expected sequence */
    uint8_t *rbuf;
    char *tmpl;
    char hostport[64];
    struct sockaddr_in addr;
    /* --sub-ports: subscribers spread round-robin over these brokers (a
     * cluster's nodes); publishers use --port */
    int nsub_ports;
    struct sockaddr_in sub_addr[16];

    int phase;
    long next_connect; /* next subscriber index to start connecting */
    long connecting;   /* connects/handshakes in progress */
    long subs_ok, subs_failed, subs_closed, close_1013;
    uint64_t t_start, t_setup_start, t_setup_done, t_phase, t_pub_start, t_ms,
        t_me, t_last_progress, t_drain;
    uint64_t lat_lo, lat_hi; /* send times recorded in the histogram */
    uint64_t published, published_ms, acked, expected, delivered, delivered_ms,
        last_delivered, bytes_ms, rx_bytes, reads;
    uint64_t reads0, reads1; /* B.reads at the measurement's ends */
    uint64_t errors, bad, stalls, pub_errors;
    uint64_t forgiven; /* deliveries written off by stalls (may come) */
    uint64_t id_bad, sse_gaps, sse_comments; /* SSE subscribers */
    long cursor;
    int pub_rr;
    hist h;
    /* broker and self measurements */
    long rss0, rss1, rss_end;
    cpu_times bcpu0, bcpu1;
    int bcpu_ok;
    cpu_times scpu0, scpu1;
    double brun0, bwait0, brun1, bwait1, srun0, swait0, srun1, swait1;
    /* replay */
    char epoch[40];
    int recovered;
    uint64_t t_rsub, t_rfirst, t_rdone, t_rpub_done;
    uint64_t replay_recv;
    uint64_t rlim;
    struct event *tick;
};

extern struct bench B;

/* bench_main.c */
uint64_t now_ns(void);
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
uint32_t rng32(void);
void phase_enter(int ph, uint64_t now);

/* bench_net.c */
char *net_reserve(conn *c, size_t n);
void net_flush(conn *c);
void net_ws_queue(conn *c, int opcode, const void *data, size_t len);
void net_ws_send_text(conn *c, const char *s, size_t len);
void net_start(conn *c);
void net_dead(conn *c, int code, const char *why);
void net_start_more(void);

/* bench_proto.c: bytes read from an open subscriber or WebSocket
 * publisher, by its transport. */
void proto_feed(conn *c, uint8_t *buf, size_t len, uint64_t now);
/* Start of the data string of a Chorus message event s[0..n) whose JSON
 * starts with head (whole: s is all of it), or NULL. */
const uint8_t *proto_chorus_data(const conn *c, const uint8_t *s, size_t n,
                                 int whole, const char *head, size_t hl);
/* a publisher's request answered (acknowledged or refused) */
void proto_on_ack(conn *c);

/* bench_pub.c */
void pub_pump(void);

/* bench_uring.c: uring_init 0 when subscriber reads go by io_uring;
 * uring_arm (0 if done) once a subscriber is open; uring_release before
 * its socket is closed. */
int uring_init(void);
int uring_arm(conn *c);
void uring_release(conn *c);

/* bench_sse_sub.c: the request; the response's head checked (0 if it
 * opens an event stream; else c is closed); the stream is open; bytes of
 * its body. */
int sse_request(const conn *c, char *buf, size_t n);
int sse_check_response(conn *c, const chorus_http_response *res);
void sse_opened(conn *c);
void sse_feed(conn *c, const uint8_t *buf, size_t len, uint64_t now);

/* bench_stats.c */
void stats_record(conn *c, const uint8_t *p, size_t avail, uint64_t now);
void stats_report(void);

/* bench_proc.c: -1 / nonzero when unavailable */
int proc_cpu(int pid, cpu_times *t);
long proc_rss(int pid);
int proc_sched(int pid, double *run, double *wait);
void self_cpu(cpu_times *t);
/* Broker and own CPU/run-queue figures at the start (end = 0) or end of
 * the measurement. */
void proc_sample(int end);

#endif
