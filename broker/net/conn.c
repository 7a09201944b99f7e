#include "conn.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "http_route.h"
#include "log.h"
#include "replay.h"
#include "server.h"

/* How long a closing connection may take to flush what is queued, and
 * then to send its EOF after ours (a lingering close, as nginx does, so
 * that unread input does not turn our close frame into a TCP reset). */
#define CLOSE_FLUSH_MS 5000
#define CLOSE_LINGER_MS 2000

static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);

static void set_timeouts(conn *c, uint64_t read_ms, uint64_t write_ms)
{
    struct timeval r = {(time_t)(read_ms / 1000),
                        (suseconds_t)(read_ms % 1000) * 1000};
    struct timeval w = {(time_t)(write_ms / 1000),
                        (suseconds_t)(write_ms % 1000) * 1000};

    bufferevent_set_timeouts(c->bev, read_ms ? &r : NULL, write_ms ? &w : NULL);
}

static void link_conn(conn **head, conn *c)
{
    c->prev = NULL;
    c->next = *head;
    if (*head)
        (*head)->prev = c;
    *head = c;
}

static void unlink_conn(conn **head, conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        *head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

conn *conn_new(server *srv, evutil_socket_t fd, const struct sockaddr *sa,
               int salen, SSL *ssl)
{
    char host[INET6_ADDRSTRLEN], port[8];
    int one = 1;
    conn *c = calloc(1, sizeof *c);

    if (!c) {
        evutil_closesocket(fd);
        return NULL;
    }
    if (ssl) {
        c->bev = bufferevent_openssl_socket_new(srv->base, fd, ssl,
                                                BUFFEREVENT_SSL_ACCEPTING,
                                                BEV_OPT_CLOSE_ON_FREE);
        if (c->bev) /* a peer that just drops the TCP connection is fine */
            bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    } else {
        c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!c->bev) {
        if (ssl)
            SSL_free(ssl);
        evutil_closesocket(fd);
        free(c);
        return NULL;
    }
    c->tls = ssl != NULL;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (getnameinfo(sa, (socklen_t)salen, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0)
        snprintf(c->peer, sizeof c->peer, "%s:%s", host, port);
    c->srv = srv;
    c->state = CONN_HTTP;
    c->head_started_ms = server_now_ms(srv);
    stat_inc(&srv->stats.connections_total);
    c->id = loops_new_conn_id(srv->b);
    link_conn(&srv->conns, c);
    srv->nconns++;
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    set_timeouts(c, srv->cfg->handshake_timeout_ms, 0);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    log_conn(LOG_DEBUG, c->id, c->peer, "accepted");
    return c;
}

static uint64_t heartbeat_ms(const conn *c)
{
    const config *cfg = c->srv->cfg;
    return cfg->ping_interval_ms ? cfg->ping_interval_ms : cfg->idle_timeout_ms;
}

void conn_upgrade(conn *c, ws_kind kind)
{
    c->state = CONN_WS;
    c->kind = kind;
    chorus_ws_decoder_init(&c->dec, CHORUS_WS_SERVER,
                           c->srv->cfg->max_message_size);
    c->dec.allow_rsv1 = c->pmd;
    set_timeouts(c, heartbeat_ms(c), 0);
    bufferevent_setwatermark(c->bev, EV_WRITE, REPLAY_LOW_WATER, 0);
    if (!c->tls && conn_queued(c) == 0) {
        /* Plain TCP: write at the end of each turn ourselves (as Redis
         * does) instead of an epoll round trip per delivery. */
        c->direct_write = 1;
        bufferevent_disable(c->bev, EV_WRITE);
    }
    log_conn(LOG_DEBUG, c->id, c->peer, "upgraded to %s",
             kind == WS_ECHO ? "/echo" : "/ws");
    /* Frames may have arrived with the request head. */
    if (evbuffer_get_length(bufferevent_get_input(c->bev)))
        conn_ws_read(c);
}

/* Drops every subscription, so that nothing more is queued for c. */
static void detach(conn *c)
{
    replay_cancel_all(c);
    c->nsubs = 0;
    topics_unsubscribe_all(&c->srv->topics, &c->subs);
}

static void start_linger(conn *c)
{
    if (c->tls) { /* freeing the bufferevent sends close_notify */
        conn_abort(c);
        return;
    }
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    set_timeouts(c, CLOSE_LINGER_MS, 0);
    bufferevent_enable(c->bev, EV_READ);
}

static void begin_closing(conn *c)
{
    if (c->direct_write)
        conn_write_when_ready(c);
    c->state = CONN_CLOSING;
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    set_timeouts(c, 0, CLOSE_FLUSH_MS);
    /* Ignore input until the flush is done; then linger reads it away. */
    bufferevent_disable(c->bev, EV_READ);
    if (conn_queued(c) == 0)
        start_linger(c);
}

/* A close while publishes await their acks (PROTOCOL.md: `published`
 * once the message is stored) waits for them: nothing more is read or
 * delivered, and conn_publish_answered closes after the last ack. The
 * first close wins. */
static void defer_close(conn *c, uint16_t code, const char *reason)
{
    if (c->close_deferred)
        return;
    c->close_deferred = 1;
    c->close_code = code;
    snprintf(c->close_reason, sizeof c->close_reason, "%s",
             reason ? reason : "");
    if (!c->read_paused) {
        c->read_paused = 1;
        bufferevent_disable(c->bev, EV_READ);
    }
}

void conn_close(conn *c, uint16_t code, const char *reason)
{
    uint8_t payload[125];
    size_t n = 0;

    if (c->state != CONN_WS) {
        if (c->state == CONN_HTTP)
            conn_abort(c);
        return;
    }
    detach(c);
    if (c->unacked) {
        defer_close(c, code, reason);
        return;
    }
    if (code != CHORUS_WS_CLOSE_NO_STATUS)
        n = chorus_ws_close_payload(payload, code, reason);
    log_conn(LOG_DEBUG, c->id, c->peer, "closing with %u %s", code,
             reason ? reason : "");
    /* The close frame goes out even past the outbound bound. */
    if (conn_queue_frame(c, CHORUS_WS_OP_CLOSE, payload, n)) {
        conn_abort(c);
        return;
    }
    begin_closing(c);
}

void conn_finish(conn *c)
{
    if (c->state == CONN_HTTP || c->state == CONN_WS) {
        detach(c);
        begin_closing(c);
    }
}

void conn_abort(conn *c)
{
    server *srv = c->srv;

    if (c->state == CONN_DEAD)
        return;
    detach(c);
    c->state = CONN_DEAD;
    if (c->expiry_ev)
        evtimer_del(c->expiry_ev);
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    unlink_conn(&srv->conns, c);
    srv->nconns--;
    /* It no longer counts against max_connections, though its socket is
     * closed only when it is reaped, after the loop's next epoll_wait. */
    loops_release(srv->b, c->ip);
    c->ip = NULL;
    link_conn(&srv->reap, c);
    server_reap_soon(srv);
    log_conn(LOG_DEBUG, c->id, c->peer, "closed");
}

static void expiry_cb(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;

    (void)fd;
    (void)what;
    stat_inc(&c->srv->stats.token_expired_closes);
    server_log_limited(c->srv, LOG_CAUSE_TOKEN_EXPIRED, LOG_INFO,
                       &(log_fields){.conn = c->id, .peer = c->peer},
                       "token expired, closing with 1008");
    if (c->state == CONN_WS)
        conn_close(c, CHORUS_WS_CLOSE_POLICY, "token expired");
    else
        conn_abort(c);
}

void conn_arm_expiry(conn *c)
{
    int64_t left = c->auth.expires_ms - server_now_ms(c->srv);
    struct timeval tv;

    if (!c->auth.expires_ms)
        return;
    if (left < 0)
        left = 0;
    tv.tv_sec = (time_t)(left / 1000);
    tv.tv_usec = (suseconds_t)(left % 1000) * 1000;
    c->expiry_ev = evtimer_new(c->srv->base, expiry_cb, c);
    if (c->expiry_ev)
        evtimer_add(c->expiry_ev, &tv);
}

void conn_ref(conn *c)
{
    c->refs++;
}

void conn_unref(conn *c)
{
    if (--c->refs == 0 && c->state == CONN_DEAD)
        server_reap_soon(c->srv);
}

void conn_reap(server *srv)
{
    conn *c = srv->reap, *next;

    for (; c; c = next) {
        next = c->next;
        if (c->refs || c->flush_pending) /* still referenced or listed */
            continue;
        unlink_conn(&srv->reap, c);
        for (int i = 0; i < c->npend; i++)
            frame_ref_decref(c->pend[i].f);
        if (c->expiry_ev)
            event_free(c->expiry_ev);
        auth_identity_free(&c->auth);
        bufferevent_free(c->bev);
        if (c->msg)
            evbuffer_free(c->msg);
        free(c);
    }
}

void conn_close_all(server *srv, uint16_t code, const char *reason)
{
    conn *c = srv->conns, *next;

    for (; c; c = next) {
        next = c->next;
        if (c->state == CONN_WS)
            conn_close(c, code, reason);
        else if (c->state == CONN_HTTP)
            conn_abort(c);
    }
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    conn *c = arg;

    switch (c->state) {
    case CONN_HTTP: http_route_read(c); break;
    case CONN_WS:
        if (c->awaiting_pong) { /* any input answers the ping */
            c->awaiting_pong = 0;
            set_timeouts(c, heartbeat_ms(c), 0);
        }
        conn_ws_read(c);
        break;
    default: /* closing: discard until EOF */
        evbuffer_drain(bufferevent_get_input(bev),
                       evbuffer_get_length(bufferevent_get_input(bev)));
        break;
    }
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    conn *c = arg;

    (void)bev;
    if (c->state == CONN_CLOSING) {
        if (conn_queued(c) == 0)
            start_linger(c);
    } else if (c->state == CONN_WS) {
        if (c->replay_head)
            replay_pump(c);
        if (!c->tls && conn_queued(c) == 0 && c->state == CONN_WS) {
            c->direct_write = 1; /* drained: back to writing ourselves */
            c->turn_bytes = 0;
            bufferevent_disable(c->bev, EV_WRITE);
        }
    }
}

static void on_read_timeout(conn *c)
{
    const config *cfg = c->srv->cfg;

    if (c->state == CONN_WS && cfg->ping_interval_ms && !c->awaiting_pong) {
        c->awaiting_pong = 1;
        conn_send(c, CHORUS_WS_OP_PING, NULL, 0);
        if (c->state != CONN_WS)
            return;
        /* idle_timeout counts from the last byte received, which was
         * ping_interval ago (config_validate keeps it the larger). */
        set_timeouts(c,
                     cfg->idle_timeout_ms
                         ? cfg->idle_timeout_ms - cfg->ping_interval_ms
                         : cfg->ping_interval_ms,
                     0);
        bufferevent_enable(c->bev, EV_READ);
        return;
    }
    if (c->state == CONN_WS && !cfg->idle_timeout_ms) {
        c->awaiting_pong = 0; /* pings without a deadline */
        set_timeouts(c, heartbeat_ms(c), 0);
        bufferevent_enable(c->bev, EV_READ);
        return;
    }
    if (c->state == CONN_WS) {
        stat_inc(&c->srv->stats.idle_closes);
        server_log_limited(c->srv, LOG_CAUSE_IDLE_CLOSE, LOG_INFO,
                           &(log_fields){.conn = c->id, .peer = c->peer},
                           "no answer to ping, closing");
        conn_close(c, CHORUS_WS_CLOSE_GOING_AWAY, "idle timeout");
        return;
    }
    if (c->state == CONN_HTTP) {
        stat_inc(&c->srv->stats.rejected[REJECT_HANDSHAKE_TIMEOUT]);
        log_conn(LOG_DEBUG, c->id, c->peer, "request head timed out");
    }
    conn_abort(c);
}

/* The peer half-closed (EOF, no error): it may still read. Whatever it
 * asked for before leaving is answered, an HTTP publish or the acks of
 * WebSocket publishes waiting for their commit, then the connection is
 * flushed and closed. A lingering close just ends here. */
void conn_peer_eof(conn *c)
{
    c->peer_eof = 1;
    if (c->state == CONN_HTTP) {
        if (!c->http_busy) /* else the reply finishes it */
            conn_finish(c);
        return;
    }
    if (c->state != CONN_WS) {
        conn_abort(c);
        return;
    }
    log_conn(LOG_DEBUG, c->id, c->peer, "EOF from the peer");
    detach(c);
    if (c->unacked) {
        c->close_deferred = 1; /* conn_publish_answered finishes it */
        return;
    }
    conn_finish(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    conn *c = arg;
    uint64_t due;

    (void)bev;
    if (what & BEV_EVENT_CONNECTED) { /* the TLS handshake is done */
        c->tls_ok = 1;
        return;
    }
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING)) {
        on_read_timeout(c);
        return;
    }
    if (c->tls && !c->tls_ok && (due = server_reject(c->srv, REJECT_TLS)))
        log_with(LOG_INFO,
                 &(log_fields){
                     .conn = c->id, .peer = c->peer, .suppressed = due - 1},
                 "TLS handshake failed");
    if (what & BEV_EVENT_ERROR)
        log_conn(LOG_DEBUG, c->id, c->peer, "socket error: %s",
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    if ((what & BEV_EVENT_EOF) && (what & BEV_EVENT_READING))
        conn_peer_eof(c);
    else
        conn_abort(c); /* error or write timeout */
}
