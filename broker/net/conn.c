/* A connection's life: creation on a transport, the upgrade, timeouts,
 * the closing handshake, the lingering close and freeing after the turn;
 * and what the transport reports (conn_io.h). */
#include "conn.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "conn_io.h"
#include "log.h"
#include "loops.h"
#include "server.h"

/* How long a closing connection may go without write progress while it
 * flushes what is queued, and then to send its EOF after ours (a
 * lingering close, as nginx does, so that unread input does not turn our
 * close frame into a TCP reset). The flush is generous because the
 * socket turns writable again only once the peer has taken about half of
 * the kernel's send buffer (megabytes on loopback): a browser whose main
 * thread is busy for a few seconds must still get its 1013 close frame,
 * not a connection dropped without one (1006). */
#define CLOSE_FLUSH_MS 30000
#define CLOSE_LINGER_MS 2000
/* How long a close that waits for publish acks waits for the next one:
 * past it the store is taken for stalled (an ack lost, a Redis that
 * stopped answering within a long redis_timeout) and the close goes on
 * without the acks still due. Reading is off meanwhile, so no other
 * timeout would end the wait. */
#define CLOSE_ACK_WAIT_MS 5000

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

    if (c) {
        c->srv = srv;
        c->io = ssl ? &conn_io_tls : &conn_io_tcp;
    }
    if (!c || c->io->start(c, fd, ssl)) {
        if (ssl)
            SSL_free(ssl);
        evutil_closesocket(fd);
        free(c);
        return NULL;
    }
    c->tls = ssl != NULL;
    c->h = srv->http;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (getnameinfo(sa, (socklen_t)salen, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0)
        snprintf(c->peer, sizeof c->peer, "%s:%s", host, port);
    c->state = CONN_HTTP;
    c->head_started_ms = server_now_ms(srv);
    stat_inc(&srv->stats.connections_total);
    c->id = loops_new_conn_id(srv->b);
    link_conn(&srv->conns, c);
    srv->nconns++;
    c->io->set_timeouts(c, srv->cfg->handshake_timeout_ms, 0);
    log_conn(LOG_DEBUG, c->id, c->peer, "accepted");
    return c;
}

struct evbuffer *conn_input(conn *c)
{
    return c->in;
}

static uint64_t heartbeat_ms(const conn *c)
{
    const config *cfg = c->srv->cfg;
    return cfg->ping_interval_ms ? cfg->ping_interval_ms : cfg->idle_timeout_ms;
}

void conn_upgrade(conn *c, const conn_handler *ws)
{
    c->state = CONN_WS;
    c->h = ws;
    chorus_ws_decoder_init(&c->dec, CHORUS_WS_SERVER,
                           c->srv->cfg->max_message_size);
    c->dec.allow_rsv1 = c->pmd;
    c->io->set_timeouts(c, heartbeat_ms(c), 0);
    log_conn(LOG_DEBUG, c->id, c->peer, "upgraded to %s", ws->name);
    /* Frames may have arrived with the request head. */
    if (evbuffer_get_length(c->in))
        conn_io_readable(c);
}

void conn_start_stream(conn *c, const conn_handler *h)
{
    c->state = CONN_WS;
    c->h = h;
    /* The read timeout paces the pings: a stream's client sends nothing. */
    c->io->set_timeouts(c, c->srv->cfg->ping_interval_ms, 0);
    log_conn(LOG_DEBUG, c->id, c->peer, "streaming %s", h->name);
}

void conn_http_resume(conn *c)
{
    c->http_busy = 0;
    if (c->state == CONN_HTTP)
        c->h->on_http(c);
    if (c->state != CONN_HTTP || c->http_busy)
        return;
    if (c->peer_eof) /* a half-closed client has its answers */
        conn_finish(c);
    else
        c->io->want_read(c, 1);
}

/* Tells the layer above that nothing more may be queued for c. */
static void detach(conn *c)
{
    if (c->h->on_detach)
        c->h->on_detach(c);
}

static void start_linger(conn *c)
{
    if (c->io->shutdown(c) < 0) {
        conn_abort(c);
        return;
    }
    c->io->set_timeouts(c, CLOSE_LINGER_MS, 0);
    c->io->want_read(c, 1);
}

static void begin_closing(conn *c)
{
    c->state = CONN_CLOSING;
    c->io->set_timeouts(c, 0, CLOSE_FLUSH_MS);
    /* Ignore input until the flush is done; then linger reads it away. */
    c->io->want_read(c, 0);
    if (conn_queued(c) == 0)
        start_linger(c);
}

/* Ends a stream: its last event (on_end) and the flush; no frame. */
static void end_stream(conn *c, uint16_t code, const char *reason)
{
    char last[256];
    size_t n =
        c->h->on_end ? c->h->on_end(c, code, reason, last, sizeof last) : 0;

    log_conn(LOG_DEBUG, c->id, c->peer, "ending the stream with %u %s", code,
             reason ? reason : "");
    if (n && conn_queue_bytes(c, last, n)) {
        conn_abort(c);
        return;
    }
    begin_closing(c);
}

/* Queues the close frame and starts closing. */
static void send_close(conn *c, uint16_t code, const char *reason)
{
    uint8_t payload[125];
    size_t n = 0;

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

static void ack_wait_cb(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;

    (void)fd;
    (void)what;
    if (c->state != CONN_WS || !c->close_deferred)
        return;
    server_log_limited(c->srv, LOG_CAUSE_ACK_WAIT, LOG_WARN,
                       &(log_fields){.conn = c->id, .peer = c->peer},
                       "closing without %u publish ack(s): none came for "
                       "%d ms",
                       (unsigned)c->unacked, CLOSE_ACK_WAIT_MS);
    conn_end_deferred_close(c);
}

void conn_ack_wait_arm(conn *c)
{
    struct timeval tv = {CLOSE_ACK_WAIT_MS / 1000,
                         (CLOSE_ACK_WAIT_MS % 1000) * 1000};

    if (!c->ack_timer)
        c->ack_timer = evtimer_new(c->srv->base, ack_wait_cb, c);
    if (c->ack_timer)
        evtimer_add(c->ack_timer, &tv);
}

void conn_end_deferred_close(conn *c)
{
    if (c->ack_timer)
        evtimer_del(c->ack_timer);
    if (c->peer_eof)
        conn_finish(c);
    else
        send_close(c, c->close_code,
                   c->close_reason[0] ? c->close_reason : NULL);
}

/* A close while publishes await their acks (PROTOCOL.md: `published`
 * once the message is stored) waits for them: nothing more is read or
 * delivered, and conn_publish_answered closes after the last ack, or
 * ack_wait_cb when none comes for CLOSE_ACK_WAIT_MS. The first close
 * wins. */
static void defer_close(conn *c, uint16_t code, const char *reason)
{
    if (c->close_deferred)
        return;
    c->close_deferred = 1;
    c->close_code = code;
    snprintf(c->close_reason, sizeof c->close_reason, "%s",
             reason ? reason : "");
    c->read_paused = 1;
    c->io->want_read(c, 0);
    conn_ack_wait_arm(c);
}

void conn_close(conn *c, uint16_t code, const char *reason)
{
    if (c->state != CONN_WS) {
        if (c->state == CONN_HTTP)
            conn_abort(c);
        return;
    }
    detach(c);
    if (c->h->stream)
        end_stream(c, code, reason);
    else if (c->unacked)
        defer_close(c, code, reason);
    else
        send_close(c, code, reason);
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
    if (c->h->on_gone)
        c->h->on_gone(c);
    c->state = CONN_DEAD;
    if (c->expiry_ev)
        evtimer_del(c->expiry_ev);
    if (c->ack_timer)
        evtimer_del(c->ack_timer);
    c->io->want_read(c, 0);
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
        if (c->ack_timer)
            event_free(c->ack_timer);
        auth_identity_free(&c->auth);
        free(c->http_origin);
        c->io->close(c);
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

/* ---- what the transport reports -------------------------------------- */

void conn_io_readable(conn *c)
{
    switch (c->state) {
    case CONN_HTTP:
        c->h->on_http(c);
        /* Requests pipelined behind a pending reply wait in the socket,
         * not in our memory, until conn_http_resume. */
        if (c->state == CONN_HTTP && c->http_busy)
            c->io->want_read(c, 0);
        break;
    case CONN_WS:
        if (c->h->stream) { /* nothing is expected after the request */
            evbuffer_drain(c->in, evbuffer_get_length(c->in));
            break;
        }
        if (c->awaiting_pong) { /* any input answers the ping */
            c->awaiting_pong = 0;
            c->io->set_timeouts(c, heartbeat_ms(c), 0);
        }
        conn_ws_read(c);
        break;
    default: /* closing: discard until EOF */
        evbuffer_drain(c->in, evbuffer_get_length(c->in));
        break;
    }
}

void conn_io_drained(conn *c)
{
    if (c->state == CONN_CLOSING && conn_queued(c) == 0)
        start_linger(c);
    else if (c->state == CONN_WS && c->replay_head && c->h->on_drain)
        c->h->on_drain(c);
}

static void on_read_timeout(conn *c)
{
    const config *cfg = c->srv->cfg;

    if (c->state == CONN_WS && c->h->stream) {
        if (c->h->on_ping)
            c->h->on_ping(c);
        if (c->state == CONN_WS)
            c->io->set_timeouts(c, cfg->ping_interval_ms, 0);
        return;
    }
    if (c->state == CONN_WS && cfg->ping_interval_ms && !c->awaiting_pong) {
        c->awaiting_pong = 1;
        conn_send(c, CHORUS_WS_OP_PING, NULL, 0);
        if (c->state != CONN_WS)
            return;
        /* idle_timeout counts from the last byte received, which was
         * ping_interval ago (config_validate keeps it the larger). */
        c->io->set_timeouts(c,
                            cfg->idle_timeout_ms
                                ? cfg->idle_timeout_ms - cfg->ping_interval_ms
                                : cfg->ping_interval_ms,
                            0);
        return;
    }
    if (c->state == CONN_WS && !cfg->idle_timeout_ms) {
        c->awaiting_pong = 0; /* pings without a deadline */
        c->io->set_timeouts(c, heartbeat_ms(c), 0);
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
static void on_peer_eof(conn *c)
{
    c->peer_eof = 1;
    c->io->want_read(c, 0);
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
    if (c->unacked) { /* conn_publish_answered finishes it */
        if (!c->close_deferred)
            conn_ack_wait_arm(c);
        c->close_deferred = 1;
        return;
    }
    conn_finish(c);
}

void conn_io_report(conn *c, conn_io_event what, int err)
{
    uint64_t due;

    if (c->state == CONN_DEAD)
        return;
    switch (what) {
    case CONN_IO_CONNECTED: c->tls_ok = 1; return;
    case CONN_IO_READ_TIMEOUT: on_read_timeout(c); return;
    case CONN_IO_EOF:
        if (!c->tls || c->tls_ok) {
            on_peer_eof(c);
            return;
        }
        break;
    case CONN_IO_ERROR:
        log_conn(LOG_DEBUG, c->id, c->peer, "socket error: %s",
                 evutil_socket_error_to_string(err));
        break;
    case CONN_IO_WRITE_TIMEOUT:
        log_conn(LOG_DEBUG, c->id, c->peer, "write timed out");
        break;
    }
    if (c->tls && !c->tls_ok && (due = server_reject(c->srv, REJECT_TLS)))
        log_with(LOG_INFO,
                 &(log_fields){
                     .conn = c->id, .peer = c->peer, .suppressed = due - 1},
                 "TLS handshake failed");
    conn_abort(c);
}
