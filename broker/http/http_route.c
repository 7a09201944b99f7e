#include "http_route.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "chorus/handshake.h"
#include "chorus/http_parse.h"
#include "chorus/wire.h"
#include "chorus/deflate.h"
#include "compress.h"
#include "conn.h"
#include "http_admit.h"
#include "http_api.h"
#include "http_cors.h"
#include "log.h"
#include "server.h"
#include "session.h"
#include "sse.h"
#include "store.h"
#include "static_files.h"

typedef enum { WS_PUBSUB, WS_ECHO } ws_kind;

typedef enum {
    ROUTE_NEXT,    /* replied; serve the next request */
    ROUTE_WAIT,    /* the reply comes later (conn_http_resume) */
    ROUTE_UPGRADE, /* 101 queued: switch to WebSocket */
    ROUTE_CLOSE,   /* replied; close after the flush */
    ROUTE_STREAM,  /* the response streams on (/sse) */
} route_result;

static int wants_keepalive(const chorus_http_request *req)
{
    const chorus_http_header *h =
        chorus_http_find_header(req->headers, req->num_headers, "Connection");

    if (req->minor_version == 0)
        return h && chorus_http_has_token(h->value, h->value_len, "keep-alive");
    return !(h && chorus_http_has_token(h->value, h->value_len, "close"));
}

static int path_is(const char *path, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(path, want, len) == 0;
}

static route_result upgrade(conn *c, const chorus_http_request *req,
                            ws_kind kind, const char *query, size_t query_len)
{
    const char *key, *why;
    size_t key_len;
    char resp[512], ext[CHORUS_PMD_RESPONSE_MAX + 64] = "";
    int status = chorus_ws_check_upgrade(req, &key, &key_len, &why);

    if (status == 426) {
        http_respond(c, 426, "text/plain", why, strlen(why),
                     "Sec-WebSocket-Version: 13\r\n", 0);
        return ROUTE_CLOSE;
    }
    if (status) {
        http_respond(c, status, "text/plain", why, strlen(why), NULL, 0);
        return ROUTE_CLOSE;
    }
    if (c->srv->stopping) {
        http_respond(c, 503, "text/plain", "shutting down", 13, NULL, 0);
        return ROUTE_CLOSE;
    }
    if (kind == WS_PUBSUB && http_admit(c, req, query, query_len, "WebSocket"))
        return ROUTE_CLOSE;
    if (kind == WS_PUBSUB)
        compress_negotiate(c, req, ext, sizeof ext);
    if (chorus_ws_accept_response(key, key_len, ext, resp, sizeof resp) < 0)
        return ROUTE_CLOSE;
    evbuffer_add(conn_output(c), resp, strlen(resp));
    return ROUTE_UPGRADE;
}

/* GET /metrics; needs the API key when one is configured. */
static route_result metrics_route(conn *c, const chorus_http_request *req,
                                  int keepalive)
{
    struct evbuffer *body;
    auth_identity id;
    const char *why;

    if (!http_method_is(req, "GET")) {
        http_respond_405(c, "GET", keepalive);
        return keepalive ? ROUTE_NEXT : ROUTE_CLOSE;
    }
    if (c->srv->cfg->api_key) {
        int status = auth_authenticate(c->srv->cfg, req, NULL, 0,
                                       server_now_ms(c->srv), &id, &why);
        int ok = status == 0 && id.kind == AUTH_API_KEY;
        if (status == 0)
            auth_identity_free(&id);
        if (!ok) {
            http_respond_error(c, 401, CHORUS_ERR_UNAUTHORIZED,
                               "the API key is required", keepalive);
            return keepalive ? ROUTE_NEXT : ROUTE_CLOSE;
        }
    }
    body = evbuffer_new();
    if (!body)
        return ROUTE_CLOSE;
    metrics_render(c->srv, body);
    if (c->srv->b->store)
        store_metrics(c->srv->b->store, body);
    http_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8",
                 (const char *)evbuffer_pullup(body, -1),
                 evbuffer_get_length(body), NULL, keepalive);
    evbuffer_free(body);
    return keepalive ? ROUTE_NEXT : ROUTE_CLOSE;
}

static route_result route(conn *c, const chorus_http_request *req,
                          const char *body, size_t body_len, int keepalive,
                          ws_kind *kind)
{
    const char *path, *query;
    size_t path_len, query_len;

    chorus_http_split_target(req->target, req->target_len, &path, &path_len,
                             &query, &query_len);
    if (path_is(path, path_len, "/ws") ||
        (path_is(path, path_len, "/echo") && c->srv->cfg->echo_endpoint)) {
        *kind = path_len == 3 ? WS_PUBSUB : WS_ECHO;
        return upgrade(c, req, *kind, query, query_len);
    }
    switch (sse_route(c, req, path, path_len, query, query_len)) {
    case SSE_NO_ROUTE: break;
    case SSE_REFUSED: return ROUTE_CLOSE;
    case SSE_STREAMING: return ROUTE_STREAM;
    }
    if (path_is(path, path_len, "/metrics"))
        return metrics_route(c, req, keepalive);
    if (path_is(path, path_len, "/healthz")) {
        /* A page on an admitted origin may read it (chorus.js's ping()
         * and fallback check); a refused one only gets no CORS. */
        http_cors_begin(c, req);
        if (!http_method_is(req, "GET") && !http_method_is(req, "HEAD")) {
            http_respond_405(c, "GET, HEAD", keepalive);
            return keepalive ? ROUTE_NEXT : ROUTE_CLOSE;
        }
        /* 503 also while the engine cannot take publishes, naming the
         * cause ("redis unavailable"): a load balancer moves clients. */
        const char *down =
            c->srv->b->store ? store_unavailable(c->srv->b->store) : NULL;
        char text[128];
        int n = snprintf(text, sizeof text, "%s\n",
                         c->srv->stopping ? "stopping"
                         : down           ? down
                                          : "ok");
        http_respond(c, c->srv->stopping || down ? 503 : 200, "text/plain",
                     text, (size_t)n, NULL, keepalive);
        return keepalive ? ROUTE_NEXT : ROUTE_CLOSE;
    }
    switch (http_api_route(c, req, path, path_len, query, query_len, body,
                           body_len, keepalive)) {
    case HTTP_API_DONE: return keepalive ? ROUTE_NEXT : ROUTE_CLOSE;
    case HTTP_API_PENDING: return ROUTE_WAIT;
    case HTTP_API_NO_ROUTE: break;
    }
    if (static_files_route(c, req, path, path_len, keepalive) == HTTP_API_DONE)
        return keepalive ? ROUTE_NEXT : ROUTE_CLOSE;
    http_respond_error(c, 404, "not_found", "no such endpoint", keepalive);
    return keepalive ? ROUTE_NEXT : ROUTE_CLOSE;
}

/* Content-Length of the request, 0 if none; -1 malformed or chunked, -2
 * too large. */
static long long body_length(conn *c, const chorus_http_request *req)
{
    const chorus_http_header *h;
    unsigned long long n;
    char buf[24], *end;

    if (chorus_http_find_header(req->headers, req->num_headers,
                                "Transfer-Encoding"))
        return -1;
    if (chorus_http_count_header(req->headers, req->num_headers,
                                 "Content-Length") > 1)
        return -1;
    h = chorus_http_find_header(req->headers, req->num_headers,
                                "Content-Length");
    if (!h)
        return 0;
    if (h->value_len == 0 || h->value_len >= sizeof buf)
        return h->value_len ? -2 : -1;
    memcpy(buf, h->value, h->value_len);
    buf[h->value_len] = '\0';
    if (buf[0] < '0' || buf[0] > '9')
        return -1;
    errno = 0;
    n = strtoull(buf, &end, 10);
    if (*end || errno)
        return -1;
    if (n > c->srv->cfg->max_message_size)
        return -2;
    return (long long)n;
}

static void refuse(conn *c, int status, const char *code, const char *why)
{
    server_reject(c->srv, REJECT_BAD_HANDSHAKE);
    log_conn(LOG_DEBUG, c->id, c->peer, "HTTP %d: %s", status, why);
    http_respond_error(c, status, code, why, 0);
}

/* Serves one request if a whole one is buffered. Returns 1 to go on. */
/* What follows a routed request. Returns 1 to serve the next one. */
static int after_route(conn *c, route_result r, int keepalive, ws_kind kind)
{
    switch (r) {
    case ROUTE_NEXT: return 1;
    case ROUTE_WAIT:
        c->http_busy = 1;
        c->http_keepalive = keepalive;
        return 0;
    case ROUTE_UPGRADE:
        conn_arm_expiry(c);
        conn_upgrade(c,
                     kind == WS_ECHO ? &conn_echo_handler : &session_handler);
        return 0;
    case ROUTE_CLOSE:
        if (c->state == CONN_HTTP)
            conn_finish(c);
        return 0;
    case ROUTE_STREAM: return 0;
    }
    return 0;
}

static int serve_one(conn *c)
{
    static const chorus_http_limits limits = {HTTP_MAX_LINE, HTTP_MAX_HEADERS,
                                              HTTP_MAX_HEAD};
    struct evbuffer *in = conn_input(c);
    size_t total = evbuffer_get_length(in);
    size_t want = total < HTTP_MAX_HEAD ? total : HTTP_MAX_HEAD;
    chorus_http_request req;
    long long body;
    route_result r;
    ws_kind kind = WS_PUBSUB;
    char *p;
    int head, keepalive;

    if (total == 0)
        return 0;
    http_cors_reset(c); /* no CORS but where a route asks for it */
    p = (char *)evbuffer_pullup(in, (ssize_t)want);
    head = chorus_http_parse_request(p, want, &limits, &req);
    if (head == CHORUS_HTTP_INCOMPLETE)
        return 0;
    if (head == CHORUS_HTTP_TOO_LARGE) {
        refuse(c, 431, "bad_request", "request head too large");
        return 0;
    }
    if (head < 0) {
        refuse(c, 400, "bad_request", "malformed request");
        return 0;
    }
    body = body_length(c, &req);
    if (body == -1) {
        refuse(c, 400, "bad_request", "unsupported or malformed body length");
        return 0;
    }
    if (body == -2) {
        server_too_large(c->srv, c->id, c->peer, "answering 413");
        http_respond_error(c, 413, "too_large",
                           "body larger than max_message_size", 0);
        return 0;
    }
    if (total < (size_t)head + (size_t)body)
        return 0; /* wait for the whole body */
    p = (char *)evbuffer_pullup(in, head + body);
    stat_add(&c->srv->stats.bytes_in, (uint64_t)head + (uint64_t)body);
    chorus_http_parse_request(p, (size_t)head, &limits, &req);
    keepalive = wants_keepalive(&req) && !c->srv->stopping;
    r = route(c, &req, p + head, (size_t)body, keepalive, &kind);
    evbuffer_drain(in, (size_t)head + (size_t)body);
    c->head_started_ms = server_now_ms(c->srv);
    return after_route(c, r, keepalive, kind);
}

static void http_route_read(conn *c)
{
    const config *cfg = c->srv->cfg;

    if (c->http_busy)
        return;
    if (evbuffer_get_length(conn_input(c)) && cfg->handshake_timeout_ms &&
        server_now_ms(c->srv) - c->head_started_ms >
            (int64_t)cfg->handshake_timeout_ms) {
        server_reject(c->srv, REJECT_HANDSHAKE_TIMEOUT);
        log_conn(LOG_DEBUG, c->id, c->peer, "request head too slow");
        http_respond_error(c, 408, "bad_request", "request head too slow", 0);
        return;
    }
    while (c->state == CONN_HTTP && !c->http_busy && serve_one(c))
        ;
}

const conn_handler http_route_handler = {.on_http = http_route_read,
                                         .name = "http"};
