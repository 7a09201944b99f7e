/* Publishing: each payload carries its topic, publisher, sequence number
 * and send time (bench.h). Publishes go round-robin over the topics and
 * the publisher connections, as fast as the window allows or at a fixed
 * rate. */
#include <stdio.h>
#include <string.h>

#include "bench.h"

#define PUB_HEAD "{\"op\":\"publish\",\"topic\":\""

static const char HEX[] = "0123456789abcdef";

static void put_hex(char *p, uint64_t v, int digits)
{
    for (int i = digits - 1; i >= 0; i--) {
        p[i] = HEX[v & 15];
        v >>= 4;
    }
}

static void fill_payload(char *p, long topic, int pub, uint64_t seq, uint64_t t)
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

/* One masked text frame: a Chorus publish or a NATS PUB. */
static void publish_ws(conn *c, long t, uint64_t seq, uint64_t ts)
{
    const char *name = B.tname[t];
    size_t tl = B.tlen[t], P = B.payload, body, h;
    uint8_t key[4];
    uint32_t r = rng32();
    char line[64], *p, *q;
    int ll = 0;

    memcpy(key, &r, 4);
    if (B.proto == PROTO_CHORUS) {
        body = sizeof PUB_HEAD - 1 + tl + 10 + P + 2;
    } else {
        ll = snprintf(line, sizeof line, " %zu\r\n", P);
        body = 4 + tl + (size_t)ll + P + 2;
    }
    p = net_reserve(c, body + CHORUS_WS_MAX_HEADER);
    h = chorus_ws_write_header((uint8_t *)p, 1, CHORUS_WS_OP_TEXT, body, key);
    q = p + h;
    if (B.proto == PROTO_CHORUS) {
        memcpy(q, PUB_HEAD, sizeof PUB_HEAD - 1);
        q += sizeof PUB_HEAD - 1;
        memcpy(q, name, tl);
        memcpy(q + tl, "\",\"data\":\"", 10);
        q += tl + 10;
        fill_payload(q, t, (int)c->idx, seq, ts);
        memcpy(q + P, "\"}", 2);
        c->acks_out++;
    } else {
        memcpy(q, "PUB ", 4);
        memcpy(q + 4, name, tl);
        memcpy(q + 4 + tl, line, (size_t)ll);
        q += 4 + tl + (size_t)ll;
        fill_payload(q, t, (int)c->idx, seq, ts);
        memcpy(q + P, "\r\n", 2);
    }
    chorus_ws_mask((uint8_t *)p + h, body, key, 0);
    c->out_len += h + body;
}

/* One HTTP POST: Chorus /api/publish (a JSON string) or nchan /pub. */
static void publish_http(conn *c, long t, uint64_t seq, uint64_t ts)
{
    const char *name = B.tname[t];
    size_t tl = B.tlen[t], P = B.payload;
    size_t bl = B.proto == PROTO_CHORUS ? P + 2 : P;
    char *p = net_reserve(c, 300 + tl + bl);
    int n;

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

static void publish_one(conn *c, long t)
{
    uint64_t seq = ++B.pubseq[(size_t)c->idx * (size_t)B.ntopics + (size_t)t];
    uint64_t ts = now_ns();

    if (c->kind == K_PUB_WS)
        publish_ws(c, t, seq, ts);
    else
        publish_http(c, t, seq, ts);
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

/* May another publish go out now (rate, window, replay count)? */
static int may_publish(uint64_t due, int64_t dwin)
{
    if (B.phase == PH_RPUB && B.published >= (uint64_t)B.replay_n)
        return 0;
    if (B.rate > 0)
        return B.published < due;
    return B.nsubs == 0 || (int64_t)(B.expected - B.delivered) < dwin;
}

static conn *next_ready_pub(void)
{
    for (int i = 0; i < B.npubs; i++) {
        conn *q = &B.pubs[(B.pub_rr + i) % B.npubs];
        if (pub_ready(q)) {
            B.pub_rr = (B.pub_rr + i + 1) % B.npubs;
            return q;
        }
    }
    return NULL;
}

/* Publishes what the rate or window allows (at most 4096 per call). */
void pub_pump(void)
{
    uint64_t now, due = UINT64_MAX;
    long avg_fan;
    int dirty = 0;

    if (B.phase != PH_WARMUP && B.phase != PH_MEASURE && B.phase != PH_RPUB)
        return;
    now = now_ns();
    if (B.rate > 0)
        due = (uint64_t)((double)(now - B.t_pub_start) * B.rate / 1e9) + 1;
    avg_fan = B.nsubs / B.ntopics;
    if (avg_fan < 1)
        avg_fan = 1;
    for (int budget = 4096; budget > 0; budget--) {
        conn *c;
        if (!may_publish(due, (int64_t)(B.window * avg_fan)))
            break;
        c = next_ready_pub();
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
                net_flush(&B.pubs[i]);
}
