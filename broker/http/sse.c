#include "sse.h"

#include <string.h>

#include <event2/buffer.h>

#include "auth.h"
#include "chorus/wire.h"
#include "conn.h"
#include "http_admit.h"
#include "http_cors.h"
#include "http_reply.h"
#include "server.h"
#include "sse_position.h"
#include "sse_stream.h"
#include "store.h"

#define SSE_PREFIX "/sse/"
#define SSE_PREFIX_LEN (sizeof SSE_PREFIX - 1)

_Static_assert(STORE_EPOCH_LEN == CHORUS_EPOCH_LEN,
               "a stream resumes from a wire epoch");

/* Fills since from "<epoch>:<offset>" (sse_position.h). 0 or -1. */
static int parse_position(const char *text, size_t len, sse_since *since)
{
    if (sse_position_parse(text, len, since->epoch, &since->offset))
        return -1;
    since->has = 1;
    return 0;
}

/* Where the client resumes: Last-Event-ID first (EventSource sends it
 * when it reconnects, to the same URL, whose ?since= is older), else
 * ?since=. Replies 400 and returns -1 when the one given is malformed. */
static int resume_position(conn *c, const chorus_http_request *req,
                           const char *query, size_t query_len,
                           sse_since *since)
{
    const chorus_http_header *h = chorus_http_find_header(
        req->headers, req->num_headers, "Last-Event-ID");
    char buf[128];
    int n;

    memset(since, 0, sizeof *since);
    if (h && h->value_len) {
        if (parse_position(h->value, h->value_len, since) == 0)
            return 0;
        http_respond_error(c, 400, CHORUS_ERR_BAD_REQUEST,
                           "Last-Event-ID must be <epoch>:<offset>", 0);
        return -1;
    }
    n = query ? chorus_http_query_param(query, query_len, "since", buf,
                                        sizeof buf)
              : -1;
    if (n == -1 || (n >= 0 && parse_position(buf, (size_t)n, since) == 0))
        return 0;
    http_respond_error(c, 400, CHORUS_ERR_BAD_REQUEST,
                       "since must be <epoch>:<offset>", 0);
    return -1;
}

/* The 200 head. No length: the stream ends when the connection does. A
 * cross-origin EventSource needs CORS, given to an admitted Origin. */
static void send_head(conn *c)
{
    struct evbuffer *out = conn_output(c);
    size_t before = evbuffer_get_length(out);

    evbuffer_add_printf(out, "HTTP/1.1 200 OK\r\n"
                             "Content-Type: text/event-stream\r\n"
                             "Cache-Control: no-cache\r\n"
                             "X-Accel-Buffering: no\r\n"
                             "Connection: close\r\n");
    http_cors_add_headers(c, out);
    evbuffer_add(out, "\r\n", 2);
    stat_add(&c->srv->stats.bytes_out, evbuffer_get_length(out) - before);
}

/* 503 while the broker stops or its engine cannot serve. 0 or -1. */
static int available(conn *c)
{
    const char *down =
        c->srv->b->store ? store_unavailable(c->srv->b->store) : NULL;

    if (!c->srv->stopping && !down)
        return 0;
    http_respond_error(c, 503, CHORUS_ERR_INTERNAL,
                       c->srv->stopping ? "shutting down" : down, 0);
    return -1;
}

sse_route_result sse_route(conn *c, const chorus_http_request *req,
                           const char *path, size_t path_len, const char *query,
                           size_t query_len)
{
    const config *cfg = c->srv->cfg;
    char name[CHORUS_TOPIC_MAX * 3 + 1];
    sse_since since;
    int n;

    if (path_len < SSE_PREFIX_LEN ||
        memcmp(path, SSE_PREFIX, SSE_PREFIX_LEN) != 0)
        return SSE_NO_ROUTE;
    if (http_method_is(req, "OPTIONS")) {
        http_respond_preflight(c, req, "GET", 0);
        return SSE_REFUSED;
    }
    /* Every answer from here on carries CORS for an admitted Origin, so
     * that a page can read why its stream was refused; a refused Origin
     * gets none (http_admit answers it 403). */
    http_cors_begin(c, req);
    if (!http_method_is(req, "GET")) {
        http_respond_405(c, "GET, OPTIONS", 0);
        return SSE_REFUSED;
    }
    n = http_path_topic(c, path + SSE_PREFIX_LEN, path_len - SSE_PREFIX_LEN,
                        name, sizeof name, 0);
    if (n < 0)
        return SSE_REFUSED;
    if (http_admit(c, req, query, query_len, "SSE stream"))
        return SSE_REFUSED;
    if (!auth_can_subscribe(cfg, &c->auth, name, (size_t)n)) {
        server_reject(c->srv, REJECT_AUTH);
        metrics_count_error(&c->srv->stats, CHORUS_ERR_FORBIDDEN);
        http_respond_error(c, 403, CHORUS_ERR_FORBIDDEN,
                           "no subscribe permission for this topic", 0);
        return SSE_REFUSED;
    }
    if (resume_position(c, req, query, query_len, &since) || available(c))
        return SSE_REFUSED;
    send_head(c);
    conn_arm_expiry(c);
    conn_start_stream(c, &sse_stream_handler);
    sse_stream_start(c, name, (size_t)n, &since);
    return SSE_STREAMING;
}
