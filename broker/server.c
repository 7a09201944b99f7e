#include "server.h"

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "conn.h"
#include "log.h"

/* Retention runs in small steps so that no step blocks the loop for
 * long; a step that hit its budget is followed by another soon after. */
#define TRIM_BUDGET 1000
#define TRIM_IDLE_MS 1000
#define TRIM_BUSY_MS 10
/* How long a shutdown waits for clients to finish the close handshake. */
#define SHUTDOWN_GRACE_MS 3000
/* Pause before accepting again after accept() failed (e.g. EMFILE). */
#define ACCEPT_BACKOFF_MS 200

int64_t server_now_ms(server *s)
{
    struct timeval tv;

    event_base_gettimeofday_cached(s->base, &tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void arm_ms(struct event *ev, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    event_add(ev, &tv);
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
    server *s = arg;

    (void)fd;
    (void)what;
    conn_reap(s);
    if (s->stopping && s->nconns == 0)
        event_base_loopexit(s->base, NULL);
}

static void trim_cb(evutil_socket_t fd, short what, void *arg)
{
    server *s = arg;
    int n;

    (void)fd;
    (void)what;
    n = history_trim_step(s->hist, server_now_ms(s), TRIM_BUDGET);
    if (n < 0)
        log_error("history: trim failed: %s", history_errmsg(s->hist));
    arm_ms(s->trim_timer, n >= TRIM_BUDGET ? TRIM_BUSY_MS : TRIM_IDLE_MS);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd,
                      struct sockaddr *sa, int salen, void *arg)
{
    server *s = arg;
    uint64_t max = s->cfg->max_connections;

    (void)l;
    if (max && s->nconns >= max) {
        log_warn("max_connections (%llu) reached, refusing a connection",
                 (unsigned long long)max);
        evutil_closesocket(fd);
        return;
    }
    conn_new(s, fd, sa, salen);
}

static void resume_accept_cb(evutil_socket_t fd, short what, void *arg)
{
    server *s = arg;

    (void)fd;
    (void)what;
    if (s->listener && !s->stopping)
        evconnlistener_enable(s->listener);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    server *s = arg;
    int err = EVUTIL_SOCKET_ERROR();

    log_warn("accept: %s; pausing for %d ms",
             evutil_socket_error_to_string(err), ACCEPT_BACKOFF_MS);
    evconnlistener_disable(l);
    event_base_once(s->base, -1, EV_TIMEOUT, resume_accept_cb, s,
                    &(struct timeval){0, ACCEPT_BACKOFF_MS * 1000});
}

static void force_exit_cb(evutil_socket_t fd, short what, void *arg)
{
    server *s = arg;

    (void)fd;
    (void)what;
    log_warn("%zu connections did not close in time; exiting", s->nconns);
    event_base_loopexit(s->base, NULL);
}

static void shutdown_cb(evutil_socket_t sig, short what, void *arg)
{
    server *s = arg;

    (void)what;
    if (s->stopping)
        return;
    log_info("received %s, shutting down", sig == SIGINT ? "SIGINT"
                                                          : "SIGTERM");
    s->stopping = 1;
    if (s->listener) {
        evconnlistener_free(s->listener);
        s->listener = NULL;
    }
    publish_flush(s); /* acks for what was already accepted */
    conn_close_all(s, CHORUS_WS_CLOSE_GOING_AWAY, "broker shutting down");
    if (s->nconns == 0)
        event_base_loopexit(s->base, NULL);
    else
        event_base_once(s->base, -1, EV_TIMEOUT, force_exit_cb, s,
                        &(struct timeval){SHUTDOWN_GRACE_MS / 1000, 0});
}

static int open_listener(server *s, char *err, size_t errlen)
{
    char host[256];
    char port[8];
    int portnum;
    struct addrinfo hints = {0}, *ai = NULL;
    int rc;

    if (config_parse_listen(s->cfg->listen, host, sizeof host, &portnum)) {
        snprintf(err, errlen, "listen: bad address %s", s->cfg->listen);
        return -1;
    }
    snprintf(port, sizeof port, "%d", portnum);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host, port, &hints, &ai);
    if (rc) {
        snprintf(err, errlen, "listen %s: %s", s->cfg->listen,
                 gai_strerror(rc));
        return -1;
    }
    s->listener = evconnlistener_new_bind(
        s->base, accept_cb, s,
        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
        1024, ai->ai_addr, (int)ai->ai_addrlen);
    freeaddrinfo(ai);
    if (!s->listener) {
        snprintf(err, errlen, "listen %s: %s", s->cfg->listen,
                 strerror(errno));
        return -1;
    }
    evconnlistener_set_error_cb(s->listener, accept_error_cb);
    return 0;
}

int server_init(server *s, const config *cfg, char *err, size_t errlen)
{
    history_opts hopts = {cfg->durability == DURABILITY_FULL,
                          cfg->history_size, cfg->history_ttl_ms};

    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->base = event_base_new();
    if (!s->base || event_base_priority_init(s->base, 2)) {
        snprintf(err, errlen, "cannot create the event loop");
        return -1;
    }
    if (topics_init(&s->topics)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (cfg->history && history_open(&s->hist, cfg->db_path, &hopts, err,
                                     errlen))
        return -1;
    s->reap_ev = event_new(s->base, -1, 0, reap_cb, s);
    s->trim_timer = evtimer_new(s->base, trim_cb, s);
    s->sig_term = evsignal_new(s->base, SIGTERM, shutdown_cb, s);
    s->sig_int = evsignal_new(s->base, SIGINT, shutdown_cb, s);
    if (!s->reap_ev || !s->trim_timer || !s->sig_term || !s->sig_int ||
        publish_init(s)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    event_priority_set(s->reap_ev, 1);
    event_add(s->sig_term, NULL);
    event_add(s->sig_int, NULL);
    if (s->hist)
        arm_ms(s->trim_timer, TRIM_IDLE_MS);
    return open_listener(s, err, errlen);
}

int server_run(server *s)
{
    log_info("chorusd listening on %s (history %s%s)", s->cfg->listen,
             s->hist ? "in " : "off", s->hist ? s->cfg->db_path : "");
    event_base_dispatch(s->base);
    log_info("stopped");
    return s->exit_code;
}

void server_destroy(server *s)
{
    if (s->base) {
        publish_flush(s);
        while (s->conns)
            conn_abort(s->conns);
        conn_reap(s);
    }
    if (s->listener)
        evconnlistener_free(s->listener);
    if (s->batch.commit_ev)
        publish_destroy(s);
    if (s->reap_ev)
        event_free(s->reap_ev);
    if (s->trim_timer)
        event_free(s->trim_timer);
    if (s->sig_term)
        event_free(s->sig_term);
    if (s->sig_int)
        event_free(s->sig_int);
    if (s->hist)
        history_close(s->hist);
    if (s->topics.by_name.buckets)
        topics_destroy(&s->topics);
    if (s->base)
        event_base_free(s->base);
}
