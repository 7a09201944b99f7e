#include "server.h"

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/listener.h>

#include <openssl/ssl.h>

#include "conn.h"
#include "log.h"
#include "tls.h"

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

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_flush_pending(arg);
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

int server_log_due(server *s, int cause)
{
    int64_t now = server_now_ms(s);

    if (now - s->logged_ms[cause] < 1000)
        return 0;
    s->logged_ms[cause] = now;
    return 1;
}

int server_reject(server *s, reject_cause cause)
{
    s->stats.rejected[cause]++;
    return server_log_due(s, (int)cause);
}

/* Refuses a connection before it gets any state: a short 503 written
 * straight to the new socket (best effort), then close. */
static void refuse_fd(evutil_socket_t fd)
{
    static const char resp[] = "HTTP/1.1 503 Service Unavailable\r\n"
                               "Content-Length: 0\r\n"
                               "Connection: close\r\n\r\n";
    ssize_t n = send(fd, resp, sizeof resp - 1, MSG_NOSIGNAL | MSG_DONTWAIT);

    (void)n;
    evutil_closesocket(fd);
}

static void accept_conn(server *s, evutil_socket_t fd, struct sockaddr *sa,
                        int salen, int tls)
{
    uint64_t max = s->cfg->max_connections;
    ip_slot *ip;
    SSL *ssl = NULL;
    conn *c;

    if (max && s->nconns >= max) {
        if (server_reject(s, REJECT_MAX_CONNECTIONS))
            log_warn("max_connections (%llu) reached, refusing connections",
                     (unsigned long long)max);
        refuse_fd(fd);
        return;
    }
    ip = ip_table_acquire(&s->ips, sa, s->cfg->max_connections_per_ip);
    if (!ip && (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)) {
        if (server_reject(s, REJECT_PER_IP))
            log_warn("max_connections_per_ip (%llu) reached, refusing "
                     "connections", (unsigned long long)s->cfg->max_connections_per_ip);
        refuse_fd(fd);
        return;
    }
    if (tls && !(ssl = SSL_new(s->tls_ctx))) {
        if (ip)
            ip_table_release(&s->ips, ip);
        evutil_closesocket(fd);
        return;
    }
    c = conn_new(s, fd, sa, salen, ssl);
    if (!c) {
        if (ip)
            ip_table_release(&s->ips, ip);
        return;
    }
    c->ip = ip;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd,
                      struct sockaddr *sa, int salen, void *arg)
{
    (void)l;
    accept_conn(arg, fd, sa, salen, 0);
}

static void accept_tls_cb(struct evconnlistener *l, evutil_socket_t fd,
                          struct sockaddr *sa, int salen, void *arg)
{
    (void)l;
    accept_conn(arg, fd, sa, salen, 1);
}

/* SIGHUP: load the certificate and key again. New connections use the
 * new context; open ones keep theirs (an SSL holds its context). */
static void reload_cb(evutil_socket_t sig, short what, void *arg)
{
    server *s = arg;
    char err[512];
    SSL_CTX *ctx;

    (void)sig;
    (void)what;
    if (!s->tls_ctx)
        return;
    ctx = tls_context_new(s->cfg->tls_cert, s->cfg->tls_key, err,
                          sizeof err);
    if (!ctx) {
        log_error("SIGHUP: keeping the old certificate: %s", err);
        return;
    }
    SSL_CTX_free(s->tls_ctx);
    s->tls_ctx = ctx;
    log_info("SIGHUP: reloaded %s and %s", s->cfg->tls_cert,
             s->cfg->tls_key);
}

static void resume_accept_cb(evutil_socket_t fd, short what, void *arg)
{
    server *s = arg;

    (void)fd;
    (void)what;
    if (s->stopping)
        return;
    if (s->listener)
        evconnlistener_enable(s->listener);
    if (s->tls_listener)
        evconnlistener_enable(s->tls_listener);
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
    if (s->listener) { /* closes the socket: stop accepting */
        evconnlistener_free(s->listener);
        s->listener = NULL;
    }
    if (s->tls_listener) {
        evconnlistener_free(s->tls_listener);
        s->tls_listener = NULL;
    }
    publish_flush(s); /* acks for what was already accepted */
    conn_close_all(s, CHORUS_WS_CLOSE_GOING_AWAY, "broker shutting down");
    if (s->nconns == 0)
        event_base_loopexit(s->base, NULL);
    else
        event_base_once(s->base, -1, EV_TIMEOUT, force_exit_cb, s,
                        &(struct timeval){SHUTDOWN_GRACE_MS / 1000, 0});
}

static struct evconnlistener *open_listener(server *s, const char *addr,
                                            evconnlistener_cb cb, char *err,
                                            size_t errlen)
{
    struct evconnlistener *l;
    char host[256];
    char port[8];
    int portnum;
    struct addrinfo hints = {0}, *ai = NULL;
    int rc;

    if (config_parse_listen(addr, host, sizeof host, &portnum)) {
        snprintf(err, errlen, "listen: bad address %s", addr);
        return NULL;
    }
    snprintf(port, sizeof port, "%d", portnum);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host, port, &hints, &ai);
    if (rc) {
        snprintf(err, errlen, "listen %s: %s", addr, gai_strerror(rc));
        return NULL;
    }
    l = evconnlistener_new_bind(
        s->base, cb, s,
        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
        1024, ai->ai_addr, (int)ai->ai_addrlen);
    freeaddrinfo(ai);
    if (!l) {
        snprintf(err, errlen, "listen %s: %s", addr, strerror(errno));
        return NULL;
    }
    evconnlistener_set_error_cb(l, accept_error_cb);
    return l;
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

int server_init(server *s, const config *cfg, char *err, size_t errlen)
{
    history_opts hopts = {cfg->durability == DURABILITY_FULL,
                          cfg->history_size, cfg->history_ttl_ms};

    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->base = new_base();
    if (!s->base) {
        snprintf(err, errlen, "cannot create the event loop");
        return -1;
    }
    if (topics_init(&s->topics) || ip_table_init(&s->ips)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (cfg->history && history_open(&s->hist, cfg->db_path, &hopts, err,
                                     errlen))
        return -1;
    s->reap_ev = event_new(s->base, -1, 0, reap_cb, s);
    s->flush_ev = event_new(s->base, -1, 0, flush_cb, s);
    s->trim_timer = evtimer_new(s->base, trim_cb, s);
    s->sig_term = evsignal_new(s->base, SIGTERM, shutdown_cb, s);
    s->sig_int = evsignal_new(s->base, SIGINT, shutdown_cb, s);
    s->sig_hup = evsignal_new(s->base, SIGHUP, reload_cb, s);
    if (!s->reap_ev || !s->flush_ev || !s->trim_timer || !s->sig_term || !s->sig_int ||
        !s->sig_hup ||
        publish_init(s)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    event_add(s->sig_term, NULL);
    event_add(s->sig_int, NULL);
    event_add(s->sig_hup, NULL);
    if (s->hist)
        arm_ms(s->trim_timer, TRIM_IDLE_MS);
    if (cfg->tls_listen) {
        s->tls_ctx = tls_context_new(cfg->tls_cert, cfg->tls_key, err,
                                     errlen);
        if (!s->tls_ctx)
            return -1;
        s->tls_listener = open_listener(s, cfg->tls_listen, accept_tls_cb,
                                        err, errlen);
        if (!s->tls_listener)
            return -1;
    }
    s->listener = open_listener(s, cfg->listen, accept_cb, err, errlen);
    return s->listener ? 0 : -1;
}

int server_run(server *s)
{
    log_info("chorusd listening on %s%s%s (history %s%s)", s->cfg->listen,
             s->tls_listener ? ", TLS on " : "",
             s->tls_listener ? s->cfg->tls_listen : "",
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
    if (s->tls_listener)
        evconnlistener_free(s->tls_listener);
    if (s->tls_ctx)
        SSL_CTX_free(s->tls_ctx);
    if (s->batch.commit_ev)
        publish_destroy(s);
    if (s->reap_ev)
        event_free(s->reap_ev);
    if (s->flush_ev)
        event_free(s->flush_ev);
    if (s->trim_timer)
        event_free(s->trim_timer);
    if (s->sig_term)
        event_free(s->sig_term);
    if (s->sig_int)
        event_free(s->sig_int);
    if (s->sig_hup)
        event_free(s->sig_hup);
    if (s->hist)
        history_close(s->hist);
    if (s->topics.by_name.buckets)
        topics_destroy(&s->topics);
    if (s->ips.slots.buckets)
        ip_table_destroy(&s->ips);
    if (s->base)
        event_base_free(s->base);
}
