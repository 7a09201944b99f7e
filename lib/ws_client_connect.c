/* WebSocket client, getting connected: name resolution (getaddrinfo for
 * literal addresses, evdns for names), each address tried in turn, TLS
 * set-up and its errors, and the connect and close timers. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "ws_client_internal.h"

static int host_is_literal(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 ||
           inet_pton(AF_INET6, host, buf) == 1;
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
        wsc_errno_text(err, c->last_err, sizeof c->last_err);
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
            if (wsc_send_upgrade(c) < 0)
                wsc_finish(c, 1006, "cannot build the upgrade request");
            else
                bufferevent_enable(bev, EV_READ | EV_WRITE);
        } else {
            connect_error(c, bev, err);
            try_next_addr(c);
        }
    } else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        if (c->state == ST_DRAINING) {
            wsc_finish(c, c->done_code, c->reason);
        } else if (c->state == ST_HANDSHAKE) {
            wsc_finish(c, 1006, "connection closed during the handshake");
        } else {
            char why[160] = "connection closed";
            if ((what & BEV_EVENT_ERROR) && err)
                wsc_errno_text(err, why, sizeof why);
            wsc_finish(c, 1006, why);
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
            wsc_finish(c, 1006, "cannot set up the connection (TLS)");
            return;
        }
        bufferevent_setcb(c->bev, wsc_read_cb, wsc_write_cb, event_cb, c);
        c->state = ST_CONNECTING;
        if (bufferevent_socket_connect(c->bev, ai->ai_addr,
                                       (int)ai->ai_addrlen) == 0)
            return;
        wsc_errno_text(EVUTIL_SOCKET_ERROR(), c->last_err, sizeof c->last_err);
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    wsc_finish(c, 1006,
               c->last_err[0] ? c->last_err : "no address to connect to");
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
            wsc_finish(c, 1006, c->last_err);
            return;
        }
        c->next_addr = c->addrs;
        try_next_addr(c);
        return;
    }
    if (!c->dns)
        c->dns = evdns_base_new(c->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (!c->dns) {
        wsc_finish(c, 1006, "cannot initialise the DNS resolver");
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

void wsc_step_cb(evutil_socket_t fd, short what, void *arg)
{
    chorus_ws_client *c = arg;
    (void)fd;
    (void)what;
    enter(c);
    if (c->state == ST_START) {
        wsc_timer_start(c, c->connect_timeout_ms);
        start_resolve(c);
    } else if (c->state == ST_RESOLVING && c->dns_result != -1) {
        if (c->dns_result != 0) {
            snprintf(c->last_err, sizeof c->last_err, "cannot resolve %s: %s",
                     c->url.host, evutil_gai_strerror(c->dns_result));
            wsc_finish(c, 1006, c->last_err);
        } else {
            try_next_addr(c);
        }
    }
    leave(c);
}

void wsc_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    chorus_ws_client *c = arg;
    (void)fd;
    (void)what;
    enter(c);
    if (c->state == ST_DRAINING)
        wsc_finish(c, c->done_code, c->reason);
    else if (c->state == ST_CLOSING)
        wsc_finish(c, 1006, "close handshake timed out");
    else if (c->state != ST_OPEN)
        wsc_finish(c, 1006, "connection timed out");
    leave(c);
}

SSL_CTX *wsc_make_ssl_ctx(const char *cacert, char *err, size_t errlen)
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
