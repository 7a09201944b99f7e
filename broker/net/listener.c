#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/ssl.h>

#include "conn.h"
#include "log.h"
#include "loops.h"
#include "server.h"
#include "tls.h"

/* Pause before accepting again after accept() failed for another cause
 * than the descriptor limit, or when the spare descriptor is lost. */
#define ACCEPT_BACKOFF_MS 200

/* Connections refused per accept error at the descriptor limit. */
#define FD_LIMIT_SHED_MAX 64

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

static void refused(server *s, int cause)
{
    const config *cfg = s->cfg;
    uint64_t due = server_reject(s, (reject_cause)cause);
    log_fields f = {.suppressed = due - 1};

    if (!due)
        return;
    if (cause == REJECT_MAX_CONNECTIONS)
        log_with(LOG_WARN, &f,
                 "max_connections (%llu) reached, refusing connections",
                 (unsigned long long)cfg->max_connections);
    else
        log_with(LOG_WARN, &f,
                 "max_connections_per_ip (%llu) reached, refusing "
                 "connections",
                 (unsigned long long)cfg->max_connections_per_ip);
}

static void accept_conn(server *s, evutil_socket_t fd, struct sockaddr *sa,
                        int salen, int tls)
{
    broker *b = s->b;
    int cause, to = b->next_loop;
    ip_slot *ip;
    SSL *ssl = NULL;
    lmsg *m;

    if (!loops_admit(b, sa, &ip, &cause)) {
        refused(s, cause);
        refuse_fd(fd);
        return;
    }
    if (tls && !(ssl = SSL_new(s->tls_ctx))) {
        loops_release(b, ip);
        evutil_closesocket(fd);
        return;
    }
    b->next_loop = (b->next_loop + 1) % b->n;
    if (to == 0) {
        conn *c = conn_new(s, fd, sa, salen, ssl);
        if (c)
            c->ip = ip;
        else
            loops_release(b, ip);
        return;
    }
    m = lmsg_new(LMSG_CONN, NULL, 0);
    if (!m) {
        if (ssl)
            SSL_free(ssl);
        loops_release(b, ip);
        evutil_closesocket(fd);
        return;
    }
    m->fd = fd;
    m->ssl = ssl;
    m->token = ip;
    memcpy(&m->addr, sa, (size_t)salen);
    m->addrlen = salen;
    loops_post(b, to, m);
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

/* Holds one descriptor in reserve, so that at the open-file limit a
 * connection can still be accepted, to be told 503 and closed. */
static void take_spare(server *s)
{
    if (s->spare_fd < 0)
        s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* At the descriptor limit (EMFILE, ENFILE) the connections waiting in the
 * backlog would hang there, unanswered: gives up the spare descriptor
 * and takes them one at a time, each answered 503 and closed, until the
 * backlog is empty. Returns 0 when there was no spare to give up. */
static int refuse_at_fd_limit(server *s, struct evconnlistener *l)
{
    evutil_socket_t lfd = evconnlistener_get_fd(l), fd;
    struct rlimit rl = {0};
    uint64_t due;
    int n = 0;

    if (s->spare_fd < 0)
        return 0;
    close(s->spare_fd);
    s->spare_fd = -1;
    while (n < FD_LIMIT_SHED_MAX &&
           (fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        refuse_fd(fd);
        n++;
        if ((due = server_reject(s, REJECT_FD_LIMIT)) &&
            getrlimit(RLIMIT_NOFILE, &rl) == 0)
            log_with(LOG_WARN, &(log_fields){.suppressed = due - 1},
                     "open-file limit (%llu) reached: refusing connections "
                     "with 503",
                     (unsigned long long)rl.rlim_cur);
    }
    take_spare(s);
    return 1;
}

static void resume_accept_cb(evutil_socket_t fd, short what, void *arg)
{
    server *s = arg;

    (void)fd;
    (void)what;
    if (s->stopping)
        return;
    take_spare(s); /* lost when another thread took its number */
    if (s->listener)
        evconnlistener_enable(s->listener);
    if (s->tls_listener)
        evconnlistener_enable(s->tls_listener);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    server *s = arg;
    int err = EVUTIL_SOCKET_ERROR();

    if ((err == EMFILE || err == ENFILE) && refuse_at_fd_limit(s, l))
        return;
    server_log_limited(s, LOG_CAUSE_ACCEPT, LOG_WARN, &(log_fields){0},
                       "accept: %s; pausing for %d ms",
                       evutil_socket_error_to_string(err), ACCEPT_BACKOFF_MS);
    evconnlistener_disable(l);
    event_base_once(s->base, -1, EV_TIMEOUT, resume_accept_cb, s,
                    &(struct timeval){0, ACCEPT_BACKOFF_MS * 1000});
}

/* Accepted sockets inherit the listener's congestion control. Set on each
 * accepted socket, it would come too late: BBR as the system's default has
 * already turned on the socket's pacing, and a change does not undo it. */
static int set_congestion(struct evconnlistener *l, const char *name)
{
    return setsockopt(evconnlistener_get_fd(l), IPPROTO_TCP, TCP_CONGESTION,
                      name, (socklen_t)strlen(name));
}

static struct evconnlistener *open_one(server *s, const char *addr,
                                       evconnlistener_cb cb, char *err,
                                       size_t errlen)
{
    struct addrinfo hints = {0}, *ai = NULL;
    struct evconnlistener *l;
    char host[256], port[8];
    int portnum, rc;

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
    l = evconnlistener_new_bind(s->base, cb, s,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                    LEV_OPT_CLOSE_ON_EXEC,
                                1024, ai->ai_addr, (int)ai->ai_addrlen);
    freeaddrinfo(ai);
    if (!l) {
        snprintf(err, errlen, "listen %s: %s", addr, strerror(errno));
        return NULL;
    }
    if (s->cfg->tcp_congestion && set_congestion(l, s->cfg->tcp_congestion)) {
        snprintf(err, errlen, "listen %s: tcp_congestion %s: %s", addr,
                 s->cfg->tcp_congestion, strerror(errno));
        evconnlistener_free(l);
        return NULL;
    }
    evconnlistener_set_error_cb(l, accept_error_cb);
    return l;
}

int listener_open(server *s, char *err, size_t errlen)
{
    const config *cfg = s->cfg;

    take_spare(s);
    if (s->spare_fd < 0) {
        snprintf(err, errlen, "cannot open /dev/null: %s", strerror(errno));
        return -1;
    }
    if (cfg->tls_listen) {
        s->tls_ctx = tls_context_new(cfg->tls_cert, cfg->tls_key, err, errlen);
        if (!s->tls_ctx)
            return -1;
        s->tls_listener =
            open_one(s, cfg->tls_listen, accept_tls_cb, err, errlen);
        if (!s->tls_listener)
            return -1;
    }
    s->listener = open_one(s, cfg->listen, accept_cb, err, errlen);
    return s->listener ? 0 : -1;
}

void listener_close(server *s)
{
    if (s->listener) {
        evconnlistener_free(s->listener);
        s->listener = NULL;
    }
    if (s->tls_listener) {
        evconnlistener_free(s->tls_listener);
        s->tls_listener = NULL;
    }
    if (s->tls_ctx) {
        SSL_CTX_free(s->tls_ctx);
        s->tls_ctx = NULL;
    }
    if (s->spare_fd >= 0) {
        close(s->spare_fd);
        s->spare_fd = -1;
    }
}
