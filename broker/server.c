#include "server.h"

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/listener.h>

#include <openssl/ssl.h>

#include "chorus/wire.h"

#include "compress.h"
#include "config_ref.h"
#include "conn.h"
#include "http_api.h"
#include "http_route.h"
#include "feed.h"
#include "listener.h"
#include "log.h"
#include "loops.h"
#include "publish.h"
#include "reload.h"
#include "send_batch.h"
#include "session.h"

/* How long a shutdown waits for clients to finish the close handshake. */
#define SHUTDOWN_GRACE_MS 3000

/* Writes issued per io_uring_enter at the end of a turn. */
#define SEND_BATCH_ENTRIES 1024

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
    server *s = arg;

    (void)fd;
    (void)what;
    conn_reap(s);
    if (s->stopping && s->nconns == 0)
        event_base_loopexit(s->base, NULL);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_flush_pending(arg);
}

static void force_exit_cb(evutil_socket_t fd, short what, void *arg)
{
    server *s = arg;

    (void)fd;
    (void)what;
    log_warn("%zu connections did not close in time; exiting", s->nconns);
    event_base_loopexit(s->base, NULL);
}

void server_stop(server *s)
{
    if (s->stopping)
        return;
    s->stopping = 1;
    listener_close(s); /* stop accepting */
    publish_flush(s);  /* acks for what was already accepted */
    conn_close_all(s, CHORUS_WS_CLOSE_GOING_AWAY, "broker shutting down");
    if (s->nconns == 0)
        event_base_loopexit(s->base, NULL);
    else
        event_base_once(s->base, -1, EV_TIMEOUT, force_exit_cb, s,
                        &(struct timeval){SHUTDOWN_GRACE_MS / 1000, 0});
}

/* server_cut_off() closes clients in this many steps. */
#define CUTOFF_STEPS 20

static void cutoff_cb(evutil_socket_t fd, short what, void *arg)
{
    server *s = arg;
    size_t n =
        s->nconns /
            (size_t)(s->cutoff_steps_left > 0 ? s->cutoff_steps_left : 1) +
        1;
    struct timeval tv = {0, CUTOFF_SPREAD_MS / CUTOFF_STEPS * 1000};

    (void)fd;
    (void)what;
    for (conn *c = s->conns, *next; c && n; c = next) {
        next = c->next;
        if (c->state == CONN_WS) {
            conn_close(c, CHORUS_WS_CLOSE_GOING_AWAY, "store unavailable");
            n--;
        } else if (c->state == CONN_HTTP) {
            conn_abort(c);
            n--;
        }
    }
    if (--s->cutoff_steps_left > 0)
        evtimer_add(s->cutoff_ev, &tv);
}

void server_cut_off(server *s)
{
    if (s->stopping || s->cutoff_steps_left > 0)
        return;
    if (!s->cutoff_ev && !(s->cutoff_ev = evtimer_new(s->base, cutoff_cb, s)))
        return;
    s->cutoff_steps_left = CUTOFF_STEPS;
    cutoff_cb(-1, 0, s);
}

/* Loop 0, every second: an engine unavailable past the grace period has
 * every loop close its clients (once per outage). */
static void health_cb(evutil_socket_t fd, short what, void *arg)
{
    server *s = arg;
    const char *down = store_unavailable(s->b->store);
    int64_t now = server_now_ms(s);

    (void)fd;
    (void)what;
    if (!down) {
        s->down_since_ms = 0;
        return;
    }
    if (!s->down_since_ms)
        s->down_since_ms = now;
    if (s->down_since_ms < 0 || now - s->down_since_ms < CUTOFF_GRACE_MS)
        return;
    s->down_since_ms = -1; /* done for this outage */
    log_warn("%s for %ds: closing clients with 1001 so that they move to "
             "another node",
             down, CUTOFF_GRACE_MS / 1000);
    for (int i = 0; i < s->b->n; i++)
        loops_post(s->b, i, lmsg_new(LMSG_CUTOFF, NULL, 0));
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    server *s = arg;

    (void)what;
    if (sig == SIGHUP) {
        if (!s->stopping)
            reload_config(s);
        return;
    }
    if (s->stopping)
        return;
    log_info("received %s, shutting down",
             sig == SIGINT ? "SIGINT" : "SIGTERM");
    /* Publishes other loops forwarded before this are in our inbox:
     * take them into the batch so that they are committed and acked. */
    loops_drain_inbox(s);
    server_stop(s);
    for (int i = 1; i < s->b->n; i++)
        loops_post_stop(s->b, i);
}

static void http_publish_answered(conn *c, json_t *id, size_t data_len,
                                  const char *topic_name, const char *epoch,
                                  uint64_t offset, const char *error)
{
    (void)id;
    (void)data_len;
    http_api_publish_done(c, topic_name, epoch, offset, error);
}

/* epoll with a changelist: an event added and removed within one turn
 * costs no system call. */
static struct event_base *new_base(void)
{
    struct event_config *ec = event_config_new();
    struct event_base *base;

    if (!ec)
        return NULL;
    event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    base = event_base_new_with_config(ec);
    event_config_free(ec);
    return base;
}

/* io_uring for the end-of-turn writes, when configured and available;
 * else they are one writev each. */
static void open_send_batch(server *s)
{
    char why[128];

    if (!s->cfg->io_uring)
        return;
    s->sends =
        send_batch_new(SEND_BATCH_ENTRIES, CONN_PEND_MAX, why, sizeof why);
    if (!s->sends && s->index == 0)
        log_info("io_uring not available (%s): writing with writev", why);
}

/* Follows the topics subscribed to in this loop, for an engine with a
 * live feed. */
static void watch_topic(void *arg, topic *t, int on)
{
    server *s = arg;

    store_watch(s->store, t->name, t->name_len, on);
}

/* Attaches this loop to the broker's store and, for an engine with a
 * live feed, follows the topics subscribed to here. */
static int attach_store(server *s, store *st, char *err, size_t errlen)
{
    feed_init(s, &s->feed);
    if (store_attach(st, s->index, s->base, &s->feed, &s->store, err, errlen))
        return -1;
    if (s->store->engine->watch) {
        s->topics.watch = watch_topic;
        s->topics.watch_arg = s;
    }
    return 0;
}

/* What loop 0 alone has: the signal handlers, the timer that watches an
 * engine that can become unavailable, and the listeners. */
static int init_first_loop(server *s, char *err, size_t errlen)
{
    s->sig_term = evsignal_new(s->base, SIGTERM, signal_cb, s);
    s->sig_int = evsignal_new(s->base, SIGINT, signal_cb, s);
    s->sig_hup = evsignal_new(s->base, SIGHUP, signal_cb, s);
    if (!s->sig_term || !s->sig_int || !s->sig_hup) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    event_add(s->sig_term, NULL);
    event_add(s->sig_int, NULL);
    event_add(s->sig_hup, NULL);
    if (s->b->store && s->b->store->engine->unavailable) {
        s->health_ev = event_new(s->base, -1, EV_PERSIST, health_cb, s);
        if (!s->health_ev) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        event_add(s->health_ev, &(struct timeval){1, 0});
    }
    return listener_open(s, err, errlen);
}

int server_init(server *s, broker *b, int index, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    /* The layers above the connections, wired here so that those below
     * call them through these pointers only. */
    s->http = &http_route_handler;
    s->publish_answer[ACK_WS] = session_publish_answered;
    s->publish_answer[ACK_HTTP] = http_publish_answered;
    s->spare_fd = -1;
    s->cfg = config_ref_hold(b->cfg);
    s->b = b;
    s->index = index;
    s->base = new_base();
    if (!s->base) {
        snprintf(err, errlen, "cannot create the event loop");
        return -1;
    }
    if (topics_init(&s->topics)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (b->store && attach_store(s, b->store, err, errlen))
        return -1;
    s->reap_ev = event_new(s->base, -1, 0, reap_cb, s);
    s->flush_ev = event_new(s->base, -1, 0, flush_cb, s);
    if (!s->reap_ev || !s->flush_ev || loops_inbox_init(s)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (publish_init(s, err, errlen))
        return -1;
    open_send_batch(s);
    return index == 0 ? init_first_loop(s, err, errlen) : 0;
}

int server_run(server *s)
{
    if (s->index == 0)
        log_info("chorusd listening on %s%s%s (history %s%s, %d thread%s%s%s)",
                 s->cfg->listen, s->tls_listener ? ", TLS on " : "",
                 s->tls_listener ? s->cfg->tls_listen : "",
                 s->store ? "in " : "off",
                 !s->store                        ? ""
                 : s->cfg->engine == ENGINE_REDIS ? s->cfg->redis_urls[0]
                                                  : s->cfg->db_path,
                 s->b->n, s->b->n == 1 ? "" : "s",
                 s->cfg->tcp_congestion ? ", tcp_congestion " : "",
                 s->cfg->tcp_congestion ? s->cfg->tcp_congestion : "");
    /* A loop with no client yet has no pending event: its inbox is only
     * ever activated from another thread. */
    event_base_loop(s->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return s->exit_code;
}

void server_destroy(server *s)
{
    struct event **events[] = {&s->reap_ev,  &s->flush_ev, &s->sig_term,
                               &s->sig_int,  &s->sig_hup,  &s->health_ev,
                               &s->cutoff_ev};

    if (s->base) {
        /* Publishes, acks and blocks other loops left here: loop 0 is
         * destroyed first, so its last acks still reach the others. */
        if (s->in.ev)
            loops_drain_inbox(s);
        publish_flush(s);
        while (s->conns)
            conn_abort(s->conns);
        for (conn *c = s->flush_head; c; c = c->flush_next)
            c->flush_pending = 0; /* no flush will run: let reap free */
        s->flush_head = s->flush_tail = NULL;
        conn_reap(s);
    }
    listener_close(s);
    if (s->batch.commit_ev)
        publish_destroy(s);
    loops_inbox_destroy(s);
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
        if (*events[i])
            event_free(*events[i]);
    compress_free(s);
    send_batch_free(s->sends);
    store_detach(s->store);
    if (s->topics.by_name.buckets)
        topics_destroy(&s->topics);
    if (s->base)
        event_base_free(s->base);
    config_ref_release(s->cfg);
    s->cfg = NULL;
}
