/* WebSocket client, the open connection: the upgrade request and its 101
 * response, then frame decoding and message reassembly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "chorus/handshake.h"
#include "chorus/http_parse.h"
#include "ws_client_internal.h"

#define HEAD_MAX 8192 /* 101 response head */

/* ---- frames ---- */

static void deliver(chorus_ws_client *c, int opcode, const uint8_t *data,
                    size_t len)
{
    if (c->cbs.on_message)
        c->cbs.on_message(c, opcode, len ? data : (const uint8_t *)"", len,
                          c->arg);
}

static int on_data(chorus_ws_client *c, const chorus_ws_event *ev)
{
    if (ev->fin && c->msg_len == 0) { /* common case: no copy */
        deliver(c, ev->opcode, ev->data, ev->len);
        return 0;
    }
    if (c->msg_len + ev->len > c->msg_cap) {
        size_t cap = c->msg_cap ? c->msg_cap : 4096;
        while (cap < c->msg_len + ev->len)
            cap *= 2;
        uint8_t *m = realloc(c->msg, cap);
        if (!m)
            return -1;
        c->msg = m;
        c->msg_cap = cap;
    }
    if (ev->len)
        memcpy(c->msg + c->msg_len, ev->data, ev->len);
    c->msg_len += ev->len;
    if (ev->fin) {
        size_t n = c->msg_len;
        c->msg_len = 0;
        deliver(c, ev->opcode, c->msg, n);
    }
    return 0;
}

static void on_peer_close(chorus_ws_client *c, const chorus_ws_event *ev)
{
    const uint8_t *r = ev->data;
    size_t rlen = ev->len;
    if (rlen >= 2 && ((r[0] << 8) | r[1]) == ev->close_code) {
        r += 2; /* payload is code + reason */
        rlen -= 2;
    }
    char reason[126];
    if (rlen > sizeof reason - 1)
        rlen = sizeof reason - 1;
    memcpy(reason, r, rlen);
    reason[rlen] = '\0';
    if (c->state == ST_CLOSING) { /* the answer to our close */
        wsc_finish(c, ev->close_code, reason);
        return;
    }
    /* Echo the code (RFC 6455 5.5.1), then report once it is sent. */
    wsc_close_and_drain(c, ev->close_code, ev->close_code, reason);
}

static void on_control(chorus_ws_client *c, const chorus_ws_event *ev)
{
    switch (ev->opcode) {
    case CHORUS_WS_OP_PING:
        if (c->state == ST_OPEN &&
            wsc_send_frame(c, CHORUS_WS_OP_PONG, ev->data, ev->len) < 0)
            wsc_finish(c, 1006, "out of memory");
        break;
    case CHORUS_WS_OP_CLOSE: on_peer_close(c, ev); break;
    default: /* unsolicited pong */ break;
    }
}

/* Decodes everything buffered. Stops when the client finishes or is freed
 * from a callback; then the input is not touched again. */
static void read_frames(chorus_ws_client *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t len = evbuffer_get_length(in);
    if (len == 0)
        return;
    uint8_t *buf = evbuffer_pullup(in, -1);
    size_t off = 0;
    while (!stopped(c) && (c->state == ST_OPEN || c->state == ST_CLOSING)) {
        size_t used = 0;
        chorus_ws_event ev;
        chorus_ws_decode(&c->dec, buf + off, len - off, &used, &ev);
        off += used;
        if (ev.type == CHORUS_WS_EV_NEED_MORE)
            break;
        if (ev.type == CHORUS_WS_EV_DATA) {
            if (on_data(c, &ev) < 0)
                wsc_close_and_drain(c, CHORUS_WS_CLOSE_TOO_BIG,
                                    CHORUS_WS_CLOSE_TOO_BIG, "out of memory");
        } else if (ev.type == CHORUS_WS_EV_CONTROL) {
            on_control(c, &ev);
        } else {
            wsc_close_and_drain(c, ev.close_code, ev.close_code,
                                ev.reason ? ev.reason : "protocol error");
        }
    }
    if (stopped(c))
        return; /* the bufferevent may be gone */
    if (c->state == ST_DRAINING)
        evbuffer_drain(in, len);
    else
        evbuffer_drain(in, off);
}

/* ---- upgrade ---- */

int wsc_send_upgrade(chorus_ws_client *c)
{
    char host[300];
    int defport = c->url.tls ? 443 : 80;
    int v6 = strchr(c->url.host, ':') != NULL;
    if (c->url.port == defport)
        snprintf(host, sizeof host, v6 ? "[%s]" : "%s", c->url.host);
    else
        snprintf(host, sizeof host, v6 ? "[%s]:%d" : "%s:%d", c->url.host,
                 c->url.port);

    char *extra = NULL;
    if (c->bearer) {
        size_t n = strlen(c->bearer) + 32;
        extra = malloc(n);
        if (!extra)
            return -1;
        snprintf(extra, n, "Authorization: Bearer %s\r\n", c->bearer);
    }
    if (chorus_ws_client_key(c->key) != 0) {
        free(extra);
        return -1;
    }
    size_t size =
        strlen(c->url.path) + strlen(host) + 512 + (extra ? strlen(extra) : 0);
    char *req = malloc(size);
    int n = req ? chorus_ws_client_request(host, c->url.path, c->key, extra,
                                           req, size)
                : -1;
    int rc = n < 0 ? -1 : bufferevent_write(c->bev, req, (size_t)n);
    free(req);
    free(extra);
    return rc;
}

/* Returns 1 when the head was consumed and the connection is open, 0 when
 * more bytes are needed; on failure the client is finished. */
static int read_head(chorus_ws_client *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t n = evbuffer_get_length(in);
    size_t take = n < HEAD_MAX ? n : HEAD_MAX;
    const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)take);
    chorus_http_limits lim = {HEAD_MAX, CHORUS_HTTP_MAX_HEADERS, HEAD_MAX};
    chorus_http_response res;
    int r = chorus_http_parse_response(p, take, &lim, &res);
    char why[160];
    if (r == CHORUS_HTTP_INCOMPLETE && n < HEAD_MAX)
        return 0;
    if (r == CHORUS_HTTP_INCOMPLETE || r == CHORUS_HTTP_TOO_LARGE) {
        wsc_finish(c, 1006, "handshake: response head too large");
        return -1;
    }
    if (r < 0) {
        wsc_finish(c, 1006, "handshake: malformed HTTP response");
        return -1;
    }
    if (res.status != 101) {
        snprintf(why, sizeof why, "HTTP %d%s%.*s", res.status,
                 res.reason_len ? " " : "",
                 (int)(res.reason_len > 64 ? 64 : res.reason_len),
                 res.reason ? res.reason : "");
        wsc_finish(c, 1006, why);
        return -1;
    }
    const char *bad = NULL;
    if (chorus_ws_check_accept(&res, c->key, &bad) != 0) {
        snprintf(why, sizeof why, "handshake: %s", bad ? bad : "refused");
        wsc_finish(c, 1006, why);
        return -1;
    }
    evbuffer_drain(in, (size_t)r);
    evtimer_del(c->timer);
    c->state = ST_OPEN;
    if (c->cbs.on_open)
        c->cbs.on_open(c, c->arg);
    return stopped(c) ? -1 : 1;
}

/* ---- bufferevent callbacks ---- */

void wsc_read_cb(struct bufferevent *bev, void *arg)
{
    chorus_ws_client *c = arg;
    (void)bev;
    enter(c);
    if (c->state == ST_HANDSHAKE && read_head(c) <= 0) {
        leave(c);
        return;
    }
    if (c->state == ST_OPEN || c->state == ST_CLOSING)
        read_frames(c);
    leave(c);
}

void wsc_write_cb(struct bufferevent *bev, void *arg)
{
    chorus_ws_client *c = arg;
    enter(c);
    if (c->state == ST_DRAINING &&
        evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        wsc_finish(c, c->done_code, c->reason);
    leave(c);
}
