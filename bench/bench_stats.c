/* Per delivery: the payload header, loss/duplication per (subscriber,
 * publisher) stream, latency. At the end: the report and its RESULT line
 * (keys read by bench/compare.sh).
 *
 * stats_record() runs once per delivery, millions of times a second: the
 * 42 hex digits of the header are read 8 at a time (SWAR), with no
 * branch per digit. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

typedef struct payload_hdr {
    uint64_t topic, pub, seq, sent;
} payload_hdr;

static inline uint64_t load8(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v; /* p[0] in the low byte */
}

/* Nonzero unless the 8 bytes of x are all lowercase hex digits. Bytes are
 * ASCII once their high bits are known clear, so adding 0x80 - c sets a
 * byte's high bit exactly when the byte is >= c, with no carry into the
 * next byte (any high bit set makes the result nonzero anyway). */
static inline uint64_t hex_bad(uint64_t x)
{
    uint64_t ge0 = x + ONES * (0x80 - '0'), gt9 = x + ONES * (0x80 - '9' - 1);
    uint64_t gea = x + ONES * (0x80 - 'a'), gtf = x + ONES * (0x80 - 'f' - 1);

    return (x | ~((ge0 & ~gt9) | (gea & ~gtf))) & HIGHS;
}

/* Value of 8 hex digits (first most significant), valid per hex_bad(). */
static inline uint64_t hex_val(uint64_t x)
{
    uint64_t d = (x & ONES * 0x0F) + 9 * ((x >> 6) & ONES); /* a-f: bit 6 */

    d = __builtin_bswap64(d); /* first digit in the top byte */
    d = (d | (d >> 4)) & 0x00FF00FF00FF00FFull;
    d = (d | (d >> 8)) & 0x0000FFFF0000FFFFull;
    return (d | (d >> 16)) & 0xFFFFFFFFull;
}

static inline unsigned hex1(uint8_t c, uint64_t *bad)
{
    unsigned d = (unsigned)(c - '0'), a = (unsigned)(c - 'a');

    *bad |= (d >= 10) & (a >= 6);
    return d < 10 ? d : a + 10;
}

/* 0 and *h filled if p[0..HDR_LEN) is a payload header. One test for
 * all 42 digits and 4 dots. */
static inline int parse_hdr(const uint8_t *p, payload_hdr *h)
{
    uint64_t w0 = load8(p), s0 = load8(p + 12), s1 = load8(p + 20);
    uint64_t n0 = load8(p + 29), n1 = load8(p + 37);
    uint64_t bad = hex_bad(w0) | hex_bad(s0) | hex_bad(s1) | hex_bad(n0) |
                   hex_bad(n1) | (p[8] ^ '.') | (p[11] ^ '.') | (p[28] ^ '.') |
                   (p[45] ^ '.');
    unsigned k = hex1(p[9], &bad) << 4;

    k |= hex1(p[10], &bad);
    if (bad)
        return -1;
    h->topic = hex_val(w0);
    h->pub = k;
    h->seq = hex_val(s0) << 32 | hex_val(s1);
    h->sent = hex_val(n0) << 32 | hex_val(n1);
    return 0;
}

static void replay_progress(uint64_t now)
{
    if (B.replay_recv++ == 0)
        B.t_rfirst = now;
    if (B.replay_recv >= (uint64_t)B.replay_n)
        B.t_rdone = now;
}

/* One delivery to c: its payload starts at p, avail bytes of it here. */
void stats_record(conn *c, const uint8_t *p, size_t avail, uint64_t now)
{
    payload_hdr h;
    uint64_t *nx;

    if (avail < HDR_LEN || parse_hdr(p, &h) != 0) {
        if (B.bad++ < 3)
            note("unparsable payload on subscriber %u: %.40s", c->idx,
                 (const char *)p);
        return;
    }
    if (c->kind != K_SUB || h.topic != c->topic || h.pub >= (uint64_t)B.npubs) {
        if (B.bad++ < 3)
            note("message for the wrong topic on subscriber %u", c->idx);
        return;
    }
    nx = &c->next[h.pub];
    if (h.seq == *nx) {
        (*nx)++;
    } else if (h.seq > *nx) {
        c->lost += h.seq - *nx;
        *nx = h.seq + 1;
    } else {
        c->dup++;
    }
    c->recv++;
    B.delivered++;
    B.delivered_ms += B.phase == PH_MEASURE;
    if (B.phase == PH_RSUB)
        replay_progress(now);
    else if (h.sent >= B.lat_lo && h.sent < B.lat_hi)
        hist_record(&B.h, now > h.sent ? now - h.sent : 0);
}

/* ------------------------------------------------------------ report */

typedef struct figures {
    uint64_t recv, lost, dup;
    double meas, setup, wall, deliv_rate, pub_rate, setup_rate;
    double bcpu, buser, bsys;       /* seconds; < 0: unknown */
    double scpu, suser, ssys;       /* the bench's own */
    double cpu_us, user_us, sys_us; /* broker CPU per delivery */
    double rss_per_conn, replay_rate, rpub_rate;
    double p50, p99, p999, max; /* us */
} figures;

/* Received, lost (including never delivered) and duplicated messages. */
static void count_messages(figures *f)
{
    for (long i = 0; i < B.nsubs; i++) {
        conn *c = &B.subs[i];
        if (!c->subscribed)
            continue;
        f->recv += c->recv;
        f->lost += c->lost;
        f->dup += c->dup;
        for (int k = 0; k < B.npubs; k++) {
            uint64_t last =
                B.replay_n ? B.pubseq[k]
                           : B.pubseq[(size_t)k * (size_t)B.ntopics + c->topic];
            if (last + 1 > c->next[k])
                f->lost += last + 1 - c->next[k];
        }
    }
}

static void replay_figures(figures *f)
{
    f->wall = B.t_rdone > B.t_rsub ? (double)(B.t_rdone - B.t_rsub) / 1e9
                                   : (double)(now_ns() - B.t_rsub) / 1e9;
    f->replay_rate = f->wall > 0 ? (double)B.replay_recv / f->wall : 0;
    f->rpub_rate =
        B.t_rpub_done > B.t_pub_start
            ? (double)B.acked / ((double)(B.t_rpub_done - B.t_pub_start) / 1e9)
            : 0;
}

static void cpu_figures(figures *f)
{
    uint64_t n = B.replay_n ? B.replay_recv : B.delivered_ms;

    f->bcpu = f->buser = f->bsys = f->cpu_us = f->user_us = f->sys_us = -1;
    if (B.bcpu_ok) {
        f->buser = B.bcpu1.user - B.bcpu0.user;
        f->bsys = B.bcpu1.sys - B.bcpu0.sys;
        f->bcpu = f->buser + f->bsys;
    }
    if (f->bcpu >= 0 && n > 0) {
        f->cpu_us = f->bcpu * 1e6 / (double)n;
        f->user_us = f->buser * 1e6 / (double)n;
        f->sys_us = f->bsys * 1e6 / (double)n;
    }
    f->suser = B.scpu1.user - B.scpu0.user;
    f->ssys = B.scpu1.sys - B.scpu0.sys;
    f->scpu = f->suser + f->ssys;
}

static void compute(figures *f)
{
    memset(f, 0, sizeof *f);
    f->meas = B.t_me > B.t_ms ? (double)(B.t_me - B.t_ms) / 1e9 : 0;
    f->setup = B.t_setup_done > B.t_setup_start
                   ? (double)(B.t_setup_done - B.t_setup_start) / 1e9
                   : 0;
    f->deliv_rate = f->meas > 0 ? (double)B.delivered_ms / f->meas : 0;
    f->pub_rate = f->meas > 0 ? (double)B.published_ms / f->meas : 0;
    f->wall = f->meas;
    f->setup_rate = f->setup > 0 ? (double)B.subs_ok / f->setup : 0;
    f->rss_per_conn = -1;
    count_messages(f);
    if (B.replay_n)
        replay_figures(f);
    if (B.rss1 >= 0 && B.rss0 >= 0 && B.subs_ok > 0)
        f->rss_per_conn =
            (double)(B.rss1 - B.rss0) * 1024.0 / (double)B.subs_ok;
    cpu_figures(f);
    f->p50 = (double)hist_quantile(&B.h, 0.5) / 1e3;
    f->p99 = (double)hist_quantile(&B.h, 0.99) / 1e3;
    f->p999 = (double)hist_quantile(&B.h, 0.999) / 1e3;
    f->max = (double)B.h.max / 1e3;
}

static double pct(double part, double wall)
{
    return wall > 0 ? 100 * part / wall : 0;
}

static const char *proto_name(void)
{
    return B.proto == PROTO_CHORUS  ? "chorus"
           : B.proto == PROTO_NCHAN ? "nchan"
                                    : "nats";
}

static void print_run(const figures *f)
{
    if (B.replay_n) {
        printf("replay: stored %" PRIu64 " msgs at %.0f msg/s (acked);"
               " replayed %" PRIu64 " in %.3f s = %.0f msg/s (first after"
               " %.1f ms, recovered=%s)\n",
               B.acked, f->rpub_rate, B.replay_recv, f->wall, f->replay_rate,
               B.t_rfirst > B.t_rsub ? (double)(B.t_rfirst - B.t_rsub) / 1e6
                                     : -1.0,
               B.recovered ? "true" : "false");
    } else if (!B.idle) {
        printf("measured %.2f s: published %" PRIu64 " (%.0f msg/s),"
               " delivered %" PRIu64 " (%.0f msg/s)\n",
               f->meas, B.published_ms, f->pub_rate, B.delivered_ms,
               f->deliv_rate);
        printf("latency (publish -> delivery, %" PRIu64 " samples): p50 %.1f"
               " us, p99 %.1f us, p99.9 %.1f us, max %.1f us\n",
               B.h.count, f->p50, f->p99, f->p999, f->max);
    }
}

static void print_human(const figures *f)
{
    printf("== chorus-bench %s: %ld subscribers, %ld topics, %zu B payload,"
           " %s publish (%s), %d publisher conn(s)\n",
           proto_name(), B.nsubs, B.ntopics, B.payload,
           B.pubmode == PUB_HTTP ? "HTTP" : "WebSocket",
           B.rate > 0 ? "fixed rate" : "window", B.npubs);
    printf("fd limit %" PRIu64 ": room for about %" PRIu64 " connections\n",
           B.rlim, B.rlim > 32 ? B.rlim - 32 : 0);
    printf("connections: %ld subscribed, %ld failed, %ld closed by broker"
           " (%ld with 1013); setup %.3f s = %.0f conn/s\n",
           B.subs_ok, B.subs_failed, B.subs_closed, B.close_1013, f->setup,
           f->setup_rate);
    print_run(f);
    if (B.sub_sse)
        printf("SSE: %" PRIu64 " events whose id did not follow the last by"
               " one offset, %" PRIu64 " gap events, %" PRIu64 " comments\n",
               B.id_bad, B.sse_gaps, B.sse_comments);
    printf("messages: received %" PRIu64 ", lost %" PRIu64
           ", duplicated/out-of-order %" PRIu64 ", unparsable %" PRIu64
           ", broker errors %" PRIu64 ", stalls %" PRIu64 "\n",
           f->recv, f->lost, f->dup, B.bad, B.errors, B.stalls);
    if (B.pid > 0)
        printf("broker pid %d: RSS %ld KiB before, %ld KiB connected"
               " (%.0f B/conn), %ld KiB at end; CPU %.2f s (%.0f%%; user"
               " %.2f s, sys %.2f s), %.3f us/delivery (user %.3f, sys"
               " %.3f)\n",
               B.pid, B.rss0, B.rss1, f->rss_per_conn, B.rss_end, f->bcpu,
               pct(f->bcpu, f->wall), f->buser, f->bsys, f->cpu_us, f->user_us,
               f->sys_us);
    if (f->wall > 0)
        printf("run-queue wait, all threads (CPU starvation): broker %.0f%%,"
               " bench %.0f%% of wall time\n",
               pct(B.bwait1 - B.bwait0, f->wall),
               pct(B.swait1 - B.swait0, f->wall));
    printf("bench CPU %.2f s (%.0f%% of one core; user %.2f s, sys %.2f s),"
           " %.1f KiB per read, %" PRIu64 " reads measured (%.2f us of"
           " bench CPU each; %s)%s\n",
           f->scpu, pct(f->scpu, f->wall), f->suser, f->ssys,
           B.reads ? (double)B.rx_bytes / 1024.0 / (double)B.reads : 0,
           B.reads1 - B.reads0,
           B.reads1 > B.reads0 ? f->scpu * 1e6 / (double)(B.reads1 - B.reads0)
                               : 0,
           B.uring ? "io_uring multishot" : "read()",
           f->wall > 0 && f->scpu / f->wall > 0.9
               ? "  ** bench near 100%: it may be the bottleneck **"
               : "");
}

/* The RESULT line: one line of key=value, printed in parts. */
static void print_result(const figures *f)
{
    printf("RESULT proto=%s pub=%s sub=%s subs=%ld topics=%ld payload=%zu"
           " pubconns=%d rate=%.0f window=%ld dur=%.2f",
           proto_name(), B.pubmode == PUB_HTTP ? "http" : "ws",
           B.sub_sse ? "sse" : "ws", B.nsubs, B.ntopics, B.payload, B.npubs,
           B.rate, B.window, f->meas);
    printf(" pub_rate=%.0f deliv_rate=%.0f p50_us=%.1f p99_us=%.1f"
           " p999_us=%.1f max_us=%.1f samples=%" PRIu64,
           f->pub_rate, f->deliv_rate, f->p50, f->p99, f->p999, f->max,
           B.h.count);
    printf(" lost=%" PRIu64 " dup=%" PRIu64 " bad=%" PRIu64 " errors=%" PRIu64
           " stalls=%" PRIu64 " subs_ok=%ld"
           " subs_failed=%ld closed=%ld closed_1013=%ld setup_s=%.3f"
           " setup_rate=%.0f",
           f->lost, f->dup, B.bad, B.errors, B.stalls, B.subs_ok, B.subs_failed,
           B.subs_closed, B.close_1013, f->setup, f->setup_rate);
    printf(" rss0_kb=%ld rss1_kb=%ld rss_end_kb=%ld rss_per_conn_b=%.0f"
           " broker_cpu_s=%.3f broker_cpu_pct=%.1f cpu_us_per_deliv=%.4f"
           " broker_user_s=%.3f broker_sys_s=%.3f user_us_per_deliv=%.4f"
           " sys_us_per_deliv=%.4f",
           B.rss0, B.rss1, B.rss_end, f->rss_per_conn, f->bcpu,
           pct(f->bcpu, f->wall), f->cpu_us, f->buser, f->bsys, f->user_us,
           f->sys_us);
    printf(" bench_cpu_s=%.3f bench_cpu_pct=%.1f bench_user_s=%.3f"
           " bench_sys_s=%.3f conns_allowed=%" PRIu64
           " replay_n=%ld replay_rate=%.0f replay_pub_rate=%.0f"
           " recovered=%d broker_wait_pct=%.1f bench_wait_pct=%.1f",
           f->scpu, pct(f->scpu, f->wall), f->suser, f->ssys,
           B.rlim > 32 ? B.rlim - 32 : 0, B.replay_n, f->replay_rate,
           f->rpub_rate, B.recovered, pct(B.bwait1 - B.bwait0, f->wall),
           pct(B.swait1 - B.swait0, f->wall));
    printf(" id_bad=%" PRIu64 " sse_gaps=%" PRIu64 " sse_comments=%" PRIu64
           "\n",
           B.id_bad, B.sse_gaps, B.sse_comments);
}

void stats_report(void)
{
    figures f;

    compute(&f);
    print_human(&f);
    print_result(&f);
    fflush(stdout);
}
