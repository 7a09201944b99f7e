/* The WebSocket side of a connection: turns input into frames with the
 * codec, reassembles messages (inflating compressed ones) and hands each
 * whole message to the handler set at the upgrade (the pub/sub session,
 * or the echo below); answers pings and the close handshake. */
#include <stdlib.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "chorus/utf8.h"
#include "compress.h"
#include "conn.h"
#include "conn_io.h"
#include "log.h"
#include "server.h"

/* Control frames are at most 2 + 4 + 125 bytes and data headers 14, so
 * with this much contiguous input the decoder always makes progress. */
#define DECODE_CONTIG 256

static void echo_message(conn *c, int opcode, uint8_t *data, size_t len)
{
    conn_send(c, opcode, data, len);
}

const conn_handler conn_echo_handler = {
    .on_message = echo_message, .binary_ok = 1, .name = "/echo"};

/* A whole message, to the layer above. */
static void deliver(conn *c, int opcode, uint8_t *data, size_t len)
{
    c->h->on_message(c, opcode, data, len);
}

/* A whole compressed message: inflated, then checked as UTF-8 (the
 * decoder cannot check compressed text). */
static void deliver_compressed(conn *c, int opcode, const uint8_t *data,
                               size_t len)
{
    uint8_t *plain;
    size_t n;
    uint16_t code = compress_inflate(c, data, len, &plain, &n);

    if (code) {
        conn_close(c, code, "bad compressed message");
        return;
    }
    if (opcode == CHORUS_WS_OP_TEXT && !chorus_utf8_valid(plain, n))
        conn_close(c, CHORUS_WS_CLOSE_BAD_DATA, "invalid utf-8");
    else
        deliver(c, opcode, plain, n);
    free(plain);
}

static void on_data(conn *c, const chorus_ws_event *ev)
{
    if (!c->h->binary_ok && ev->opcode == CHORUS_WS_OP_BINARY) {
        conn_close(c, CHORUS_WS_CLOSE_UNSUPPORTED,
                   "binary frames are not accepted on /ws");
        return;
    }
    if (!c->msg_opcode && ev->fin) { /* whole message in one piece */
        if (ev->compressed)
            deliver_compressed(c, ev->opcode, ev->data, ev->len);
        else
            deliver(c, ev->opcode, ev->data, ev->len);
        return;
    }
    if (!c->msg && !(c->msg = evbuffer_new())) {
        conn_close(c, CHORUS_WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    c->msg_opcode = ev->opcode;
    if (evbuffer_add(c->msg, ev->data, ev->len)) {
        conn_close(c, CHORUS_WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    if (ev->fin) {
        size_t n = evbuffer_get_length(c->msg);
        uint8_t *m = evbuffer_pullup(c->msg, -1);
        c->msg_opcode = 0;
        if (ev->compressed)
            deliver_compressed(c, ev->opcode, m, n);
        else
            deliver(c, ev->opcode, m, n);
        evbuffer_drain(c->msg, n);
    }
}

static void on_control(conn *c, const chorus_ws_event *ev)
{
    switch (ev->opcode) {
    case CHORUS_WS_OP_PING:
        conn_send(c, CHORUS_WS_OP_PONG, ev->data, ev->len);
        break;
    case CHORUS_WS_OP_PONG: break; /* any input already counts as life */
    case CHORUS_WS_OP_CLOSE:
        /* Echo the peer's code (none if it sent none), then close; after
         * the acks of the publishes sent before it (conn_close waits). */
        conn_close(c, ev->close_code, NULL);
        break;
    }
}

static void too_big(conn *c, const chorus_ws_event *ev)
{
    server_too_large(c->srv, c->id, c->peer, "closing with 1009");
    conn_close(c, ev->close_code, ev->reason);
}

/* Notes when the message being received began (0: none is), for
 * message_timeout. Input waiting while reading is paused is ours to
 * take, not the client's delay. */
static void time_message(conn *c, size_t left)
{
    if (c->state != CONN_WS || c->read_paused ||
        (!left && !chorus_ws_decoder_busy(&c->dec)))
        c->msg_started_ms = 0;
    else if (!c->msg_started_ms)
        c->msg_started_ms = server_now_ms(c->srv);
}

/* A message trickled in slower than message_timeout (a slowloris): each
 * byte resets the idle timer, so this bounds the whole message. */
static int message_too_slow(conn *c)
{
    uint64_t limit = c->srv->cfg->message_timeout_ms;

    if (!limit || !c->msg_started_ms ||
        server_now_ms(c->srv) - c->msg_started_ms <= (int64_t)limit)
        return 0;
    server_log_limited(c->srv, LOG_CAUSE_SLOW_MESSAGE, LOG_INFO,
                       &(log_fields){.conn = c->id, .peer = c->peer},
                       "message not complete after message_timeout (%llums); "
                       "closing with 1008",
                       (unsigned long long)limit);
    conn_close(c, CHORUS_WS_CLOSE_POLICY, "message too slow");
    return 1;
}

static void consume(conn *c)
{
    struct evbuffer *in = c->in;

    if (c->close_deferred) /* closing: what follows is not read */
        return;

    while (c->state == CONN_WS) {
        size_t total = evbuffer_get_length(in), seg, used = 0;
        struct evbuffer_iovec v;
        uint8_t *p;

        if (total == 0)
            break;
        evbuffer_peek(in, -1, NULL, &v, 1);
        seg = v.iov_len;
        if (seg < DECODE_CONTIG && seg < total)
            seg = total < DECODE_CONTIG ? total : DECODE_CONTIG;
        p = evbuffer_pullup(in, (ssize_t)seg);
        for (;;) {
            chorus_ws_event ev;
            size_t consumed;

            chorus_ws_decode(&c->dec, p + used, seg - used, &consumed, &ev);
            used += consumed;
            if (ev.type == CHORUS_WS_EV_NEED_MORE)
                break;
            if (ev.type == CHORUS_WS_EV_DATA)
                on_data(c, &ev);
            else if (ev.type == CHORUS_WS_EV_CONTROL)
                on_control(c, &ev);
            else if (ev.close_code == CHORUS_WS_CLOSE_TOO_BIG)
                too_big(c, &ev);
            else
                conn_close(c, ev.close_code, ev.reason);
            if (c->state != CONN_WS || c->read_paused)
                break;
        }
        evbuffer_drain(in, used);
        stat_add(&c->srv->stats.bytes_in, used);
        if (used == 0 || c->read_paused)
            break; /* the rest of a frame has not arrived yet */
    }
    time_message(c, evbuffer_get_length(in));
    if (c->state != CONN_WS && c->state != CONN_DEAD)
        evbuffer_drain(in, evbuffer_get_length(in));
}

void conn_ws_read(conn *c)
{
    if (!message_too_slow(c))
        consume(c);
}

/* Input that waited while reading was paused, taken in a later callback
 * (an ack is sent from the middle of completing a batch). */
static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;

    (void)fd;
    (void)what;
    if (c->state == CONN_WS && !c->read_paused)
        conn_ws_read(c);
    conn_unref(c);
}

void conn_publish_taken(conn *c, size_t len)
{
    c->unacked++;
    c->unacked_bytes += len;
    if (c->read_paused || c->unacked_bytes < c->srv->cfg->max_unacked_bytes)
        return;
    c->read_paused = 1;
    stat_inc(&c->srv->stats.publish_read_pauses);
    c->io->want_read(c, 0);
}

void conn_publish_answered(conn *c, size_t len)
{
    c->unacked_bytes -= len < c->unacked_bytes ? len : c->unacked_bytes;
    c->unacked -= c->unacked > 0;
    if (c->close_deferred) {
        if (c->state != CONN_WS)
            return;
        if (c->unacked == 0)
            conn_end_deferred_close(c);
        else
            conn_ack_wait_arm(c); /* progress: the wait starts again */
        return;
    }
    if (!c->read_paused ||
        c->unacked_bytes > c->srv->cfg->max_unacked_bytes / 2)
        return;
    c->read_paused = 0;
    if (c->state != CONN_WS)
        return;
    c->io->want_read(c, 1);
    /* What was read before the pause is already in the input buffer and
     * brings no new read event. */
    if (evbuffer_get_length(c->in) &&
        event_base_once(c->srv->base, -1, EV_TIMEOUT, resume_cb, c,
                        &(struct timeval){0, 0}) == 0)
        conn_ref(c);
}
