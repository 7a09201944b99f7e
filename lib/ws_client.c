/* WebSocket client on libevent bufferevents, ws:// and wss://.
 *
 * Life of a client: a deferred "step" event starts the work (so no
 * callback ever fires inside chorus_ws_client_connect), the host is
 * resolved (getaddrinfo for literal addresses, evdns for names), each
 * address is tried in turn, TLS is negotiated for wss://, the upgrade
 * request is sent and the 101 response checked; then frames are decoded
 * with the shared codec in CLIENT role. This file owns the client's life
 * (connect, close, free) and sending; ws_client_connect.c gets it
 * connected and ws_client_read.c reads the upgrade answer and frames.
 *
 * Re-entrancy: every libevent callback runs between enter() and leave().
 * chorus_ws_client_free() called while a callback is on the stack (from
 * on_open, on_message or on_close) only sets a flag; leave() does the real
 * free once the outermost callback returns. wsc_finish() is the only place
 * that calls on_close, and it does so at most once.
 *
 * Writes to a socket whose peer has gone may raise SIGPIPE: programs using
 * this client should ignore SIGPIPE (the chorus CLI does). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "ws_client_internal.h"

#define DEFAULT_MAX_MESSAGE (64ull << 20)
#define DEFAULT_CONNECT_MS 10000u

static uint64_t prng_next(chorus_ws_client *c)
{
    uint64_t x = c->prng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    c->prng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* strerror with a lower-case first letter: "connection refused". */
void wsc_errno_text(int err, char *out, size_t n)
{
    snprintf(out, n, "%s", strerror(err));
    out[0] = (char)tolower((unsigned char)out[0]);
}

void wsc_timer_start(chorus_ws_client *c, unsigned ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

/* Drops every network resource (not the client itself). */
static void release_net(chorus_ws_client *c)
{
    if (c->dns_req) {
        struct evdns_getaddrinfo_request *r = c->dns_req;
        c->dns_req = NULL;
        evdns_getaddrinfo_cancel(r); /* dns_cb ignores the cancel */
    }
    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    if (c->addrs) {
        evutil_freeaddrinfo(c->addrs);
        c->addrs = c->next_addr = NULL;
    }
    if (c->timer)
        evtimer_del(c->timer);
    if (c->step_ev)
        event_del(c->step_ev);
}

/* Ends the connection and reports it, exactly once. The caller is inside
 * enter()/leave(), so a free from on_close is deferred. */
void wsc_finish(chorus_ws_client *c, int code, const char *reason)
{
    if (c->state == ST_DONE)
        return;
    c->state = ST_DONE;
    if (reason != c->reason)
        snprintf(c->reason, sizeof c->reason, "%s", reason ? reason : "");
    release_net(c);
    if (c->cbs.on_close && !c->free_pending)
        c->cbs.on_close(c, code, c->reason, c->arg);
}

/* Queues one masked frame. */
int wsc_send_frame(chorus_ws_client *c, int opcode, const void *data,
                   size_t len)
{
    uint8_t hdr[CHORUS_WS_MAX_HEADER];
    uint8_t key[4];
    uint64_t r = prng_next(c);
    memcpy(key, &r, 4);
    size_t hlen = chorus_ws_write_header(hdr, 1, opcode, len, key);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (evbuffer_add(out, hdr, hlen) < 0)
        return -1;
    if (len == 0)
        return 0;
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(out, (ev_ssize_t)len, &v, 1) != 1)
        return -1;
    memcpy(v.iov_base, data, len);
    chorus_ws_mask(v.iov_base, len, key, 0);
    v.iov_len = len;
    return evbuffer_commit_space(out, &v, 1);
}

/* Queues a close frame and reports on_close once it has been written. */
void wsc_close_and_drain(chorus_ws_client *c, uint16_t send_code,
                         int report_code, const char *reason)
{
    uint8_t payload[125];
    size_t n = send_code == CHORUS_WS_CLOSE_NO_STATUS
                   ? 0
                   : chorus_ws_close_payload(payload, send_code, reason);
    snprintf(c->reason, sizeof c->reason, "%s", reason ? reason : "");
    if (wsc_send_frame(c, CHORUS_WS_OP_CLOSE, payload, n) < 0) {
        wsc_finish(c, report_code, c->reason);
        return;
    }
    c->state = ST_DRAINING;
    c->done_code = report_code;
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_enable(c->bev, EV_WRITE);
    wsc_timer_start(c, CLOSE_WAIT_MS);
}

chorus_ws_client *chorus_ws_client_connect(struct event_base *base,
                                           const char *url,
                                           const chorus_ws_client_opts *opts,
                                           const chorus_ws_client_cbs *cbs,
                                           void *arg, char *err, size_t errlen)
{
    chorus_ws_client *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->base = base;
    c->cbs = *cbs;
    c->arg = arg;
    c->max_message =
        opts && opts->max_message ? opts->max_message : DEFAULT_MAX_MESSAGE;
    c->connect_timeout_ms = opts && opts->connect_timeout_ms
                                ? opts->connect_timeout_ms
                                : DEFAULT_CONNECT_MS;
    if (chorus_url_parse(url, &c->url) < 0) {
        snprintf(err, errlen, "bad URL: %s", url);
        goto fail;
    }
    if (opts && opts->bearer) {
        if (strpbrk(opts->bearer, "\r\n")) {
            snprintf(err, errlen, "bad token");
            goto fail;
        }
        c->bearer = strdup(opts->bearer);
        if (!c->bearer) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    if (c->url.tls && !(c->ssl_ctx = wsc_make_ssl_ctx(
                            opts ? opts->cacert : NULL, err, errlen)))
        goto fail;
    if (RAND_bytes((unsigned char *)&c->prng, sizeof c->prng) != 1) {
        snprintf(err, errlen, "no randomness");
        goto fail;
    }
    c->prng |= 1; /* xorshift state must not be zero */
    chorus_ws_decoder_init(&c->dec, CHORUS_WS_CLIENT, c->max_message);
    c->step_ev = event_new(base, -1, 0, wsc_step_cb, c);
    c->timer = evtimer_new(base, wsc_timer_cb, c);
    if (!c->step_ev || !c->timer) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    c->state = ST_START;
    event_active(c->step_ev, EV_TIMEOUT, 1);
    return c;
fail:
    wsc_destroy(c);
    return NULL;
}

int chorus_ws_client_send_text(chorus_ws_client *c, const char *data,
                               size_t len)
{
    if (c->state != ST_OPEN || c->free_pending)
        return -1;
    return wsc_send_frame(c, CHORUS_WS_OP_TEXT, data, len) < 0 ? -1 : 0;
}

size_t chorus_ws_client_pending(const chorus_ws_client *c)
{
    return c->bev ? evbuffer_get_length(bufferevent_get_output(c->bev)) : 0;
}

void chorus_ws_client_close(chorus_ws_client *c, uint16_t code,
                            const char *reason)
{
    if (c->free_pending || c->state == ST_DONE || c->state == ST_CLOSING ||
        c->state == ST_DRAINING)
        return;
    enter(c);
    if (c->state != ST_OPEN) {
        wsc_finish(c, 1006, "closed before the connection opened");
    } else {
        uint8_t payload[125];
        size_t n = chorus_ws_close_payload(payload, code, reason);
        if (wsc_send_frame(c, CHORUS_WS_OP_CLOSE, payload, n) < 0) {
            wsc_finish(c, 1006, "out of memory");
        } else {
            c->state = ST_CLOSING;
            wsc_timer_start(c, CLOSE_WAIT_MS);
        }
    }
    leave(c);
}

void wsc_destroy(chorus_ws_client *c)
{
    release_net(c);
    if (c->dns)
        evdns_base_free(c->dns, 0);
    if (c->step_ev)
        event_free(c->step_ev);
    if (c->timer)
        event_free(c->timer);
    if (c->ssl_ctx)
        SSL_CTX_free(c->ssl_ctx);
    free(c->bearer);
    free(c->msg);
    free(c);
}

/* Safe from any of the client's own callbacks: the free then happens when
 * the outermost callback returns, and no further callback is made. */
void chorus_ws_client_free(chorus_ws_client *c)
{
    if (!c)
        return;
    if (c->depth > 0) {
        c->free_pending = 1;
        return;
    }
    wsc_destroy(c);
}
