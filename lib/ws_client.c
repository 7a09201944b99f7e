/* WebSocket client on libevent bufferevents, ws:// and wss://.
 *
 * Life of a client: a deferred "step" event starts the work (so no
 * callback ever fires inside chorus_ws_client_connect), the host is
 * resolved (getaddrinfo for literal addresses, evdns for names), each
 * address is tried in turn, TLS is negotiated for wss://, the upgrade
 * request is sent and the 101 response checked; then frames are decoded
 * with the shared codec in CLIENT role.
 *
 * Re-entrancy: every libevent callback runs between enter() and leave().
 * chorus_ws_client_free() called while a callback is on the stack (from
 * on_open, on_message or on_close) only sets a flag; leave() does the real
 * free once the outermost callback returns. finish() is the only place
 * that calls on_close, and it does so at most once.
 *
 * Writes to a socket whose peer has gone may raise SIGPIPE: programs using
 * this client should ignore SIGPIPE (the chorus CLI does). */
#include "chorus/ws_client.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "chorus/handshake.h"
#include "chorus/http_parse.h"
#include "chorus/ws_frame.h"

#define HEAD_MAX 8192 /* 101 response head */
#define DEFAULT_MAX_MESSAGE (64ull << 20)
#define DEFAULT_CONNECT_MS 10000u
#define CLOSE_WAIT_MS 5000u /* close handshake bound */

typedef enum {
    ST_START,      /* step event pending */
    ST_RESOLVING,  /* evdns lookup in flight */
    ST_CONNECTING, /* TCP connect and TLS handshake */
    ST_HANDSHAKE,  /* upgrade request sent, waiting for 101 */
    ST_OPEN,
    ST_CLOSING,  /* our close frame sent, waiting for the peer's */
    ST_DRAINING, /* last frame queued; on_close when it is written */
    ST_DONE,     /* on_close called */
} client_state;

struct chorus_ws_client {
    struct event_base *base;
    chorus_ws_client_cbs cbs;
    void *arg;
    chorus_url url;
    char *bearer;
    uint64_t max_message;
    unsigned connect_timeout_ms;

    SSL_CTX *ssl_ctx;
    struct evdns_base *dns;
    struct evdns_getaddrinfo_request *dns_req;
    int dns_result;
    struct evutil_addrinfo *addrs, *next_addr;
    struct bufferevent *bev;
    struct event *step_ev;
    struct event *timer;

    client_state state;
    char key[25];
    chorus_ws_decoder dec;
    uint8_t *msg; /* reassembly of a fragmented message */
    size_t msg_len, msg_cap;
    uint64_t prng; /* mask keys: xorshift64* seeded by RAND_bytes */

    int done_code; /* code reported by on_close (ST_DRAINING) */
    char reason[320];
    char last_err[320]; /* last connect failure, for the final report */

    int depth;        /* callbacks on the stack */
    int free_pending; /* chorus_ws_client_free called inside one */
};

static void destroy(chorus_ws_client *c);

static void enter(chorus_ws_client *c)
{
    c->depth++;
}

static void leave(chorus_ws_client *c)
{
    if (--c->depth == 0 && c->free_pending)
        destroy(c);
}

/* Stop processing input: the client is finished or being freed. */
static int stopped(const chorus_ws_client *c)
{
    return c->free_pending || c->state == ST_DONE;
}

/* ---- URL ---- */

static int url_scheme(const char *s, size_t n, chorus_url *out)
{
    static const struct {
        const char *name;
        int tls, port;
    } schemes[] = {
        {"ws", 0, 80},
        {"wss", 1, 443},
        {"http", 0, 80},
        {"https", 1, 443},
    };
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        if (strlen(schemes[i].name) == n &&
            strncasecmp(s, schemes[i].name, n) == 0) {
            out->tls = schemes[i].tls;
            out->port = schemes[i].port;
            return 0;
        }
    }
    return -1;
}

static int host_char_ok(unsigned char ch)
{
    return isalnum(ch) || ch == '.' || ch == '-' || ch == '_';
}

int chorus_url_parse(const char *url, chorus_url *out)
{
    memset(out, 0, sizeof *out);
    const char *p = strstr(url, "://");
    if (!p || url_scheme(url, (size_t)(p - url), out) < 0)
        return -1;
    p += 3;

    const char *host = p;
    size_t host_len;
    if (*p == '[') {
        const char *end = strchr(p, ']');
        if (!end)
            return -1;
        host = p + 1;
        host_len = (size_t)(end - host);
        p = end + 1;
        struct in6_addr a6;
        char tmp[64];
        if (host_len == 0 || host_len >= sizeof tmp)
            return -1;
        memcpy(tmp, host, host_len);
        tmp[host_len] = '\0';
        if (inet_pton(AF_INET6, tmp, &a6) != 1)
            return -1;
    } else {
        host_len = strcspn(p, ":/?#");
        for (size_t i = 0; i < host_len; i++)
            if (!host_char_ok((unsigned char)host[i]))
                return -1; /* includes userinfo '@' */
        p += host_len;
    }
    if (host_len == 0 || host_len >= sizeof out->host)
        return -1;
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';

    if (*p == ':') {
        long port = 0;
        p++;
        if (!isdigit((unsigned char)*p))
            return -1;
        while (isdigit((unsigned char)*p)) {
            port = port * 10 + (*p++ - '0');
            if (port > 65535)
                return -1;
        }
        if (port == 0)
            return -1;
        out->port = (int)port;
    }
    if (*p != '\0' && *p != '/' && *p != '?' && *p != '#')
        return -1;

    size_t path_len = strcspn(p, "#");
    for (size_t i = 0; i < path_len; i++)
        if ((unsigned char)p[i] <= 0x20 || p[i] == 0x7f)
            return -1; /* would corrupt the request line */
    size_t lead = (path_len == 0 || p[0] == '?') ? 1 : 0;
    if (lead + path_len >= sizeof out->path)
        return -1;
    if (lead)
        out->path[0] = '/';
    memcpy(out->path + lead, p, path_len);
    out->path[lead + path_len] = '\0';
    return 0;
}

/* ---- helpers ---- */

static int host_is_literal(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 ||
           inet_pton(AF_INET6, host, buf) == 1;
}

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
static void errno_text(int err, char *out, size_t n)
{
    snprintf(out, n, "%s", strerror(err));
    out[0] = (char)tolower((unsigned char)out[0]);
}

static void timer_start(chorus_ws_client *c, unsigned ms)
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
static void finish(chorus_ws_client *c, int code, const char *reason)
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
static int send_frame(chorus_ws_client *c, int opcode, const void *data,
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
static void close_and_drain(chorus_ws_client *c, uint16_t send_code,
                            int report_code, const char *reason)
{
    uint8_t payload[125];
    size_t n = send_code == CHORUS_WS_CLOSE_NO_STATUS
                   ? 0
                   : chorus_ws_close_payload(payload, send_code, reason);
    snprintf(c->reason, sizeof c->reason, "%s", reason ? reason : "");
    if (send_frame(c, CHORUS_WS_OP_CLOSE, payload, n) < 0) {
        finish(c, report_code, c->reason);
        return;
    }
    c->state = ST_DRAINING;
    c->done_code = report_code;
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_enable(c->bev, EV_WRITE);
    timer_start(c, CLOSE_WAIT_MS);
}

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
        finish(c, ev->close_code, reason);
        return;
    }
    /* Echo the code (RFC 6455 5.5.1), then report once it is sent. */
    close_and_drain(c, ev->close_code, ev->close_code, reason);
}

static void on_control(chorus_ws_client *c, const chorus_ws_event *ev)
{
    switch (ev->opcode) {
    case CHORUS_WS_OP_PING:
        if (c->state == ST_OPEN &&
            send_frame(c, CHORUS_WS_OP_PONG, ev->data, ev->len) < 0)
            finish(c, 1006, "out of memory");
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
                close_and_drain(c, CHORUS_WS_CLOSE_TOO_BIG,
                                CHORUS_WS_CLOSE_TOO_BIG, "out of memory");
        } else if (ev.type == CHORUS_WS_EV_CONTROL) {
            on_control(c, &ev);
        } else {
            close_and_drain(c, ev.close_code, ev.close_code,
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

static int send_upgrade(chorus_ws_client *c)
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
        finish(c, 1006, "handshake: response head too large");
        return -1;
    }
    if (r < 0) {
        finish(c, 1006, "handshake: malformed HTTP response");
        return -1;
    }
    if (res.status != 101) {
        snprintf(why, sizeof why, "HTTP %d%s%.*s", res.status,
                 res.reason_len ? " " : "",
                 (int)(res.reason_len > 64 ? 64 : res.reason_len),
                 res.reason ? res.reason : "");
        finish(c, 1006, why);
        return -1;
    }
    const char *bad = NULL;
    if (chorus_ws_check_accept(&res, c->key, &bad) != 0) {
        snprintf(why, sizeof why, "handshake: %s", bad ? bad : "refused");
        finish(c, 1006, why);
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

static void read_cb(struct bufferevent *bev, void *arg)
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

static void write_cb(struct bufferevent *bev, void *arg)
{
    chorus_ws_client *c = arg;
    enter(c);
    if (c->state == ST_DRAINING &&
        evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        finish(c, c->done_code, c->reason);
    leave(c);
}

/* Describes why the connection or TLS handshake failed. */
static void connect_error(chorus_ws_client *c, struct bufferevent *bev, int err)
{
    SSL *ssl = c->url.tls ? bufferevent_openssl_get_ssl(bev) : NULL;
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    unsigned long e = 0, x;
    /* libevent also queues SSL_get_error() codes (lib 0): skip those. */
    while (c->url.tls && (x = bufferevent_get_openssl_error(bev)) != 0)
        if (!e && ERR_GET_LIB(x) != 0)
            e = x;
    if (vr != X509_V_OK) {
        snprintf(c->last_err, sizeof c->last_err,
                 "TLS: certificate verify failed: %s",
                 X509_verify_cert_error_string(vr));
    } else if (e) {
        char buf[120];
        ERR_error_string_n(e, buf, sizeof buf);
        snprintf(c->last_err, sizeof c->last_err, "TLS: %s", buf);
    } else if (err && err != EAGAIN && err != EINPROGRESS) {
        errno_text(err, c->last_err, sizeof c->last_err);
    } else {
        snprintf(c->last_err, sizeof c->last_err, "%s",
                 c->url.tls ? "TLS handshake failed" : "connection failed");
    }
}

static void try_next_addr(chorus_ws_client *c);

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    chorus_ws_client *c = arg;
    int err = EVUTIL_SOCKET_ERROR();
    enter(c);
    if (c->state == ST_CONNECTING) {
        if (what & BEV_EVENT_CONNECTED) {
            evutil_freeaddrinfo(c->addrs);
            c->addrs = c->next_addr = NULL;
            c->state = ST_HANDSHAKE;
            if (send_upgrade(c) < 0)
                finish(c, 1006, "cannot build the upgrade request");
            else
                bufferevent_enable(bev, EV_READ | EV_WRITE);
        } else {
            connect_error(c, bev, err);
            try_next_addr(c);
        }
    } else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        if (c->state == ST_DRAINING) {
            finish(c, c->done_code, c->reason);
        } else if (c->state == ST_HANDSHAKE) {
            finish(c, 1006, "connection closed during the handshake");
        } else {
            char why[160] = "connection closed";
            if ((what & BEV_EVENT_ERROR) && err)
                errno_text(err, why, sizeof why);
            finish(c, 1006, why);
        }
    }
    leave(c);
}

/* ---- connecting ---- */

static struct bufferevent *new_bev(chorus_ws_client *c)
{
    int flags = BEV_OPT_CLOSE_ON_FREE;
    if (!c->url.tls)
        return bufferevent_socket_new(c->base, -1, flags);
    SSL *ssl = SSL_new(c->ssl_ctx);
    if (!ssl)
        return NULL;
    int ok;
    if (host_is_literal(c->url.host)) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), c->url.host);
    } else {
        ok = SSL_set_tlsext_host_name(ssl, c->url.host) &&
             SSL_set1_host(ssl, c->url.host);
    }
    if (!ok) {
        SSL_free(ssl);
        return NULL;
    }
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        c->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, flags);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    /* A peer that closes without close_notify is an EOF, not an error. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

static void try_next_addr(chorus_ws_client *c)
{
    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    while (c->next_addr) {
        struct evutil_addrinfo *ai = c->next_addr;
        c->next_addr = ai->ai_next;
        c->bev = new_bev(c);
        if (!c->bev) {
            finish(c, 1006, "cannot set up the connection (TLS)");
            return;
        }
        bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
        c->state = ST_CONNECTING;
        if (bufferevent_socket_connect(c->bev, ai->ai_addr,
                                       (int)ai->ai_addrlen) == 0)
            return;
        errno_text(EVUTIL_SOCKET_ERROR(), c->last_err, sizeof c->last_err);
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    finish(c, 1006, c->last_err[0] ? c->last_err : "no address to connect to");
}

static void dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
    if (result == EVUTIL_EAI_CANCEL)
        return; /* from release_net(): the client may be going away */
    chorus_ws_client *c = arg;
    /* Continue from the step event, outside evdns's own call stack, so
     * that on_close may free the client (and the evdns base). */
    c->dns_req = NULL;
    c->dns_result = result;
    c->addrs = c->next_addr = res;
    event_active(c->step_ev, EV_TIMEOUT, 1);
}

static void start_resolve(chorus_ws_client *c)
{
    char port[8];
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    snprintf(port, sizeof port, "%d", c->url.port);

    if (host_is_literal(c->url.host)) {
        hints.ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV;
        int r = evutil_getaddrinfo(c->url.host, port, &hints, &c->addrs);
        if (r != 0) {
            snprintf(c->last_err, sizeof c->last_err, "%s: %s", c->url.host,
                     evutil_gai_strerror(r));
            finish(c, 1006, c->last_err);
            return;
        }
        c->next_addr = c->addrs;
        try_next_addr(c);
        return;
    }
    if (!c->dns)
        c->dns = evdns_base_new(c->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (!c->dns) {
        finish(c, 1006, "cannot initialise the DNS resolver");
        return;
    }
    c->state = ST_RESOLVING;
    c->dns_result = -1;
    hints.ai_flags = EVUTIL_AI_NUMERICSERV;
    /* dns_cb may run before this returns (hosts file): it then returns
     * NULL, and dns_cb has already activated the step event. */
    struct evdns_getaddrinfo_request *r =
        evdns_getaddrinfo(c->dns, c->url.host, port, &hints, dns_cb, c);
    if (c->state == ST_RESOLVING && c->dns_result == -1)
        c->dns_req = r;
}

static void step_cb(evutil_socket_t fd, short what, void *arg)
{
    chorus_ws_client *c = arg;
    (void)fd;
    (void)what;
    enter(c);
    if (c->state == ST_START) {
        timer_start(c, c->connect_timeout_ms);
        start_resolve(c);
    } else if (c->state == ST_RESOLVING && c->dns_result != -1) {
        if (c->dns_result != 0) {
            snprintf(c->last_err, sizeof c->last_err, "cannot resolve %s: %s",
                     c->url.host, evutil_gai_strerror(c->dns_result));
            finish(c, 1006, c->last_err);
        } else {
            try_next_addr(c);
        }
    }
    leave(c);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    chorus_ws_client *c = arg;
    (void)fd;
    (void)what;
    enter(c);
    if (c->state == ST_DRAINING)
        finish(c, c->done_code, c->reason);
    else if (c->state == ST_CLOSING)
        finish(c, 1006, "close handshake timed out");
    else if (c->state != ST_OPEN)
        finish(c, 1006, "connection timed out");
    leave(c);
}

static SSL_CTX *make_ssl_ctx(const char *cacert, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = cacert ? SSL_CTX_load_verify_locations(ctx, cacert, NULL)
                    : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        snprintf(err, errlen, "cannot load CA certificates%s%s",
                 cacert ? " from " : "", cacert ? cacert : "");
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
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
    if (c->url.tls &&
        !(c->ssl_ctx = make_ssl_ctx(opts ? opts->cacert : NULL, err, errlen)))
        goto fail;
    if (RAND_bytes((unsigned char *)&c->prng, sizeof c->prng) != 1) {
        snprintf(err, errlen, "no randomness");
        goto fail;
    }
    c->prng |= 1; /* xorshift state must not be zero */
    chorus_ws_decoder_init(&c->dec, CHORUS_WS_CLIENT, c->max_message);
    c->step_ev = event_new(base, -1, 0, step_cb, c);
    c->timer = evtimer_new(base, timer_cb, c);
    if (!c->step_ev || !c->timer) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    c->state = ST_START;
    event_active(c->step_ev, EV_TIMEOUT, 1);
    return c;
fail:
    destroy(c);
    return NULL;
}

int chorus_ws_client_send_text(chorus_ws_client *c, const char *data,
                               size_t len)
{
    if (c->state != ST_OPEN || c->free_pending)
        return -1;
    return send_frame(c, CHORUS_WS_OP_TEXT, data, len) < 0 ? -1 : 0;
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
        finish(c, 1006, "closed before the connection opened");
    } else {
        uint8_t payload[125];
        size_t n = chorus_ws_close_payload(payload, code, reason);
        if (send_frame(c, CHORUS_WS_OP_CLOSE, payload, n) < 0) {
            finish(c, 1006, "out of memory");
        } else {
            c->state = ST_CLOSING;
            timer_start(c, CLOSE_WAIT_MS);
        }
    }
    leave(c);
}

static void destroy(chorus_ws_client *c)
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
    destroy(c);
}
