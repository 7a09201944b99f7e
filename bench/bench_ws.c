/* Decoder of the frames a WebSocket server sends (unmasked). Pure: no I/O.
 *
 * The bench reads hundreds of MB/s of broker traffic; the lib's strict
 * decoder (chorus_ws_decode) spends a fifth of the bench's CPU on UTF-8
 * validation of every text byte, which a load generator does not need.
 * This one checks the framing (reserved bits, opcodes, masking, control
 * frame rules, fragmentation order) and nothing inside payloads; loss and
 * duplication are still caught by the sequence numbers in each payload.
 *
 * As with chorus_ws_decode(): data frames are delivered as they arrive
 * (one DATA event per call, the header consumed with the first chunk);
 * control frames only whole. */
#include <string.h>

#include "bench.h"

#define MAX_CONTROL 125

void ws_dec_init(ws_dec *d)
{
    memset(d, 0, sizeof *d);
}

static void fail(ws_dec *d, chorus_ws_event *ev, uint16_t code,
                 const char *reason)
{
    d->failed = 1;
    ev->type = CHORUS_WS_EV_ERROR;
    ev->close_code = code;
    ev->reason = reason;
}

/* What the first two bytes alone tell: NULL if acceptable. */
static const char *check_first(const ws_dec *d, uint8_t b0, uint8_t b1)
{
    int op = b0 & 0x0F;

    if (b0 & 0x70)
        return "reserved bits set";
    if (b1 & 0x80)
        return "masked frame";
    if (op >= CHORUS_WS_OP_CLOSE) {
        if (op > CHORUS_WS_OP_PONG)
            return "reserved opcode";
        if (!(b0 & 0x80))
            return "fragmented control frame";
        if ((b1 & 0x7F) > MAX_CONTROL)
            return "control frame too long";
        return NULL;
    }
    if (op > CHORUS_WS_OP_BINARY)
        return "reserved opcode";
    if (op == CHORUS_WS_OP_CONT && !d->msg_open)
        return "continuation without message";
    if (op != CHORUS_WS_OP_CONT && d->msg_open)
        return "message already open";
    return NULL;
}

/* A whole control frame's payload p[0..n). */
static void control(ws_dec *d, int op, uint8_t *p, size_t n,
                    chorus_ws_event *ev)
{
    ev->close_code = 0;
    if (op == CHORUS_WS_OP_CLOSE) {
        if (n == 1) {
            fail(d, ev, CHORUS_WS_CLOSE_PROTOCOL, "close payload of 1 byte");
            return;
        }
        ev->close_code =
            n == 0 ? CHORUS_WS_CLOSE_NO_STATUS : (uint16_t)(p[0] << 8 | p[1]);
    }
    ev->type = CHORUS_WS_EV_CONTROL;
    ev->opcode = op;
    ev->data = p;
    ev->len = n;
    ev->fin = 1;
}

/* Parses a header at buf: its length, 0 if incomplete, or -1 after an
 * ERROR event. A complete control frame is delivered at once (the result
 * then covers its payload too); a data frame opens d->in_frame. */
static long header(ws_dec *d, uint8_t *buf, size_t len, chorus_ws_event *ev)
{
    const char *bad;
    uint64_t plen;
    size_t hlen = 2;
    int op;

    if (len < 2)
        return 0;
    bad = check_first(d, buf[0], buf[1]);
    if (bad) {
        fail(d, ev, CHORUS_WS_CLOSE_PROTOCOL, bad);
        return -1;
    }
    op = buf[0] & 0x0F;
    plen = buf[1] & 0x7F;
    if (plen == 126) {
        if (len < 4)
            return 0;
        plen = (uint64_t)buf[2] << 8 | buf[3];
        hlen = 4;
    } else if (plen == 127) {
        if (len < 10)
            return 0;
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = plen << 8 | buf[2 + i];
        if (plen >> 63) {
            fail(d, ev, CHORUS_WS_CLOSE_PROTOCOL, "length top bit set");
            return -1;
        }
        hlen = 10;
    }
    if (op >= CHORUS_WS_OP_CLOSE) {
        if (len - hlen < plen)
            return 0;
        control(d, op, buf + hlen, (size_t)plen, ev);
        return ev->type == CHORUS_WS_EV_ERROR ? -1 : (long)(hlen + plen);
    }
    d->in_frame = 1;
    d->frame_fin = buf[0] >> 7;
    d->msg_open = !d->frame_fin;
    d->frame_left = plen;
    ev->opcode = op;
    return (long)hlen;
}

void ws_dec_decode(ws_dec *d, uint8_t *buf, size_t len, size_t *consumed,
                   chorus_ws_event *ev)
{
    size_t off = 0, n;

    ev->type = CHORUS_WS_EV_NEED_MORE;
    *consumed = 0;
    if (d->failed) {
        fail(d, ev, CHORUS_WS_CLOSE_PROTOCOL, "decoder failed earlier");
        return;
    }
    if (!d->in_frame) {
        long h = header(d, buf, len, ev);
        if (h <= 0)
            return; /* NEED_MORE or ERROR */
        if (ev->type == CHORUS_WS_EV_CONTROL) {
            *consumed = (size_t)h;
            return;
        }
        off = (size_t)h;
    }
    /* An empty frame still gets its DATA event. */
    if (off == len && d->frame_left > 0) {
        *consumed = off;
        return;
    }
    n = len - off;
    if ((uint64_t)n > d->frame_left)
        n = (size_t)d->frame_left;
    d->frame_left -= n;
    ev->fin = 0;
    if (d->frame_left == 0) {
        d->in_frame = 0;
        ev->fin = d->frame_fin;
    }
    ev->type = CHORUS_WS_EV_DATA;
    ev->data = buf + off;
    ev->len = n;
    *consumed = off + n;
}
