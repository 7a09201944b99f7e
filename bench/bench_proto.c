/* From decoded WebSocket data to the bench payload, per protocol:
 *   Chorus: JSON events; the payload is the "message" event's data string;
 *   nchan:  each WebSocket message is the payload itself;
 *   NATS:   a byte stream of protocol lines, "MSG subject sid len" then
 *           len payload bytes and CRLF, cut into frames at will.
 * A message is parsed in place when it arrived whole in one read; else
 * its first PFX_MAX bytes (enough for the payload header) are kept. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

/* lib/wire.c encodes every delivery, in this field order, as
 * {"op":"message","topic":"T","offset":N,"ts":N,"data":D} */
#define MSG_HEAD "{\"op\":\"message\",\"topic\":\""
#define MSG_OFFSET "\",\"offset\":"
#define MSG_TS ",\"ts\":"
#define MSG_DATA ",\"data\":\""
#define LIT(s) (sizeof(s) - 1)

static const uint8_t *find(const uint8_t *s, size_t n, const char *lit)
{
    return memmem(s, n, lit, strlen(lit));
}

static const uint8_t *skip_int(const uint8_t *p, const uint8_t *e)
{
    if (p < e && *p == '-')
        p++;
    while (p < e && (unsigned)(*p - '0') < 10)
        p++;
    return p;
}

/* Start of the data string of a "message" event s[0..n) whose JSON
 * starts with head (hl bytes), or NULL. whole: s is the entire message,
 * so a P-byte payload string ends it; else s is a prefix, read forward
 * past topic, offset and ts. Anything unexpected (another broker
 * version, a wrong length) falls back to a search. */
const uint8_t *proto_chorus_data(const conn *c, const uint8_t *s, size_t n,
                                 int whole, const char *head, size_t hl)
{
    const uint8_t *e = s + n, *p, *d;
    size_t tl = B.tlen[c->topic], P = B.payload;

    if (whole && n >= hl + LIT(MSG_DATA) + P + 2 && s[n - 1] == '}' &&
        s[n - 2] == '"' &&
        memcmp(e - 2 - P - LIT(MSG_DATA), MSG_DATA, LIT(MSG_DATA)) == 0)
        return e - 2 - P;
    if (n > hl + tl + LIT(MSG_OFFSET) && memcmp(s, head, hl) == 0 &&
        memcmp(s + hl, B.tname[c->topic], tl) == 0 &&
        memcmp(s + hl + tl, MSG_OFFSET, LIT(MSG_OFFSET)) == 0) {
        p = skip_int(s + hl + tl + LIT(MSG_OFFSET), e);
        if ((size_t)(e - p) > LIT(MSG_TS) &&
            memcmp(p, MSG_TS, LIT(MSG_TS)) == 0) {
            p = skip_int(p + LIT(MSG_TS), e);
            if ((size_t)(e - p) >= LIT(MSG_DATA) &&
                memcmp(p, MSG_DATA, LIT(MSG_DATA)) == 0)
                return p + LIT(MSG_DATA);
        }
    }
    d = find(s, n, "\"data\":\"");
    return d ? d + 8 : NULL;
}

void proto_on_ack(conn *c)
{
    if (c->acks_out)
        c->acks_out--;
    B.acked++;
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

/* Replay mode: the first "subscribed" (at the live end) gives the epoch;
 * subscribe again from offset 0 and time the replay. */
static void replay_subscribed(conn *c, const uint8_t *s, size_t n)
{
    char buf[512];
    int k;

    parse_epoch(s, n);
    if (c->resubscribed) {
        if (!B.subs_ok)
            B.subs_ok = 1;
        return;
    }
    k = snprintf(buf, sizeof buf,
                 "{\"op\":\"subscribe\",\"topic\":\"%s\","
                 "\"since\":{\"epoch\":\"%s\",\"offset\":0}}",
                 B.tname[0], B.epoch);
    c->resubscribed = 1;
    c->subscribed = 1;
    B.phase = PH_RSUB;
    B.t_rsub = now_ns();
    net_ws_send_text(c, buf, (size_t)k);
}

/* A Chorus event other than "message". */
static void chorus_event(conn *c, const uint8_t *s, size_t n)
{
    if (find(s, n, "\"op\":\"published\"")) {
        proto_on_ack(c);
    } else if (find(s, n, "\"op\":\"subscribed\"")) {
        if (B.replay_n && c->kind == K_SUB) {
            replay_subscribed(c, s, n);
        } else if (!c->subscribed) {
            c->subscribed = 1;
            B.subs_ok++;
        }
    } else if (find(s, n, "\"op\":\"error\"")) {
        if (B.errors++ < 5)
            note("error from broker: %.*s", (int)(n > 160 ? 160 : n), s);
        if (c->kind == K_PUB_WS)
            proto_on_ack(c);
    }
}

/* A whole Chorus or nchan message; s holds its first n bytes, all of it
 * when whole. */
static void on_message(conn *c, const uint8_t *s, size_t n, int whole,
                       uint64_t now)
{
    const uint8_t *d;

    if (B.proto == PROTO_NCHAN) {
        stats_record(c, s, n, now);
        return;
    }
    if (n < 15 || memcmp(s, "{\"op\":\"message\"", 15) != 0) {
        chorus_event(c, s, n);
        return;
    }
    d = proto_chorus_data(c, s, n, whole, MSG_HEAD, LIT(MSG_HEAD));
    if (d)
        stats_record(c, d, (size_t)(s + n - d), now);
    else if (B.bad++ < 3)
        note("message without string data: %.*s", (int)n, s);
}

/* NATS protocol line (without CRLF). */
static void nats_line(conn *c, const uint8_t *s, size_t n)
{
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
    } else if (n == 4 && memcmp(s, "PING", 4) == 0) {
        net_ws_send_text(c, "PONG\r\n", 6);
    } else if (n == 4 && memcmp(s, "PONG", 4) == 0) {
        if (c->kind == K_SUB && !c->subscribed) {
            c->subscribed = 1;
            B.subs_ok++;
        }
    } else if (n >= 4 && memcmp(s, "-ERR", 4) == 0) {
        if (B.errors++ < 5)
            note("nats error: %.*s", (int)n, s);
    }
    /* INFO, +OK: ignored */
}

/* Up to and including the next LF of a protocol line; bytes used. */
static size_t nats_line_feed(conn *c, const uint8_t *p, size_t len)
{
    const uint8_t *nl = memchr(p, '\n', len);
    size_t take = nl ? (size_t)(nl - p) + 1 : len;
    size_t ln, room, cp;

    if (c->pfx_len == 0 && nl) {
        ln = take - 1;
        if (ln && p[ln - 1] == '\r')
            ln--;
        nats_line(c, p, ln);
        return take;
    }
    room = PFX_MAX - c->pfx_len;
    cp = take < room ? take : room;
    memcpy(c->pfx + c->pfx_len, p, cp);
    c->pfx_len = (uint16_t)(c->pfx_len + cp);
    if (nl) {
        ln = c->pfx_len - 1;
        if (ln && c->pfx[ln - 1] == '\r')
            ln--;
        nats_line(c, c->pfx, ln);
        c->pfx_len = 0;
    }
    return take;
}

/* Payload bytes of a MSG (and its CRLF); bytes used. */
static size_t nats_payload_feed(conn *c, const uint8_t *p, size_t len,
                                uint64_t now)
{
    size_t m = len < c->nats_left ? len : (size_t)c->nats_left;

    if (c->pfx_len == 0 && c->msg_len == 0 && m == c->nats_left) {
        stats_record(c, p, m >= 2 ? m - 2 : 0, now);
    } else {
        if (c->pfx_len < HDR_LEN) {
            size_t cp = HDR_LEN - c->pfx_len;
            if (cp > m)
                cp = m;
            memcpy(c->pfx + c->pfx_len, p, cp);
            c->pfx_len = (uint16_t)(c->pfx_len + cp);
        }
        if (m == c->nats_left) {
            stats_record(c, c->pfx, c->pfx_len, now);
            c->pfx_len = 0;
        }
    }
    c->msg_len += m;
    c->nats_left -= m;
    if (c->nats_left == 0) {
        c->in_payload = 0;
        c->msg_len = 0;
        c->pfx_len = 0;
    }
    return m;
}

static void nats_feed(conn *c, const uint8_t *p, size_t len, uint64_t now)
{
    while (len) {
        size_t used = c->in_payload ? nats_payload_feed(c, p, len, now)
                                    : nats_line_feed(c, p, len);
        p += used;
        len -= used;
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
        on_message(c, p, len, 1, now); /* whole message in place */
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
        on_message(c, c->pfx, c->pfx_len, c->msg_len == c->pfx_len, now);
        c->pfx_len = 0;
        c->msg_len = 0;
    }
}

/* A close frame: answer it and drop the connection. */
static void on_close(conn *c, const chorus_ws_event *ev)
{
    char reason[128];
    uint8_t pl[125];
    size_t rl = ev->len > 2 ? ev->len - 2 : 0;
    size_t pn;

    if (rl > sizeof reason - 1)
        rl = sizeof reason - 1;
    memcpy(reason, ev->data + (ev->len > 2 ? 2 : 0), rl);
    reason[rl] = 0;
    pn = chorus_ws_close_payload(pl, ev->close_code, NULL);
    net_ws_queue(c, CHORUS_WS_OP_CLOSE, pl, pn);
    if (c->out_len > c->out_off)
        (void)!write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
    net_dead(c, ev->close_code, reason);
}

static void ws_feed(conn *c, uint8_t *buf, size_t len, uint64_t now)
{
    size_t off = 0, used;
    chorus_ws_event ev;

    while (c->state == S_OPEN) {
        ws_dec_decode(&c->dec, buf + off, len - off, &used, &ev);
        off += used;
        switch (ev.type) {
        case CHORUS_WS_EV_NEED_MORE:
            if (len - off > CARRY_MAX) {
                net_dead(c, 1002, "frame header too long");
                return;
            }
            memcpy(c->carry, buf + off, len - off);
            c->carry_len = (uint16_t)(len - off);
            return;
        case CHORUS_WS_EV_DATA: on_data(c, ev.data, ev.len, ev.fin, now); break;
        case CHORUS_WS_EV_CONTROL:
            if (ev.opcode == CHORUS_WS_OP_PING) {
                net_ws_queue(c, CHORUS_WS_OP_PONG, ev.data, ev.len);
                net_flush(c);
            } else if (ev.opcode == CHORUS_WS_OP_CLOSE) {
                on_close(c, &ev);
                return;
            }
            break;
        case CHORUS_WS_EV_ERROR: net_dead(c, ev.close_code, ev.reason); return;
        }
    }
}

void proto_feed(conn *c, uint8_t *buf, size_t len, uint64_t now)
{
    if (c->sse)
        sse_feed(c, buf, len, now);
    else
        ws_feed(c, buf, len, now);
}
