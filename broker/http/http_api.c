#include "http_api.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "auth.h"
#include "chorus/wire.h"
#include "conn.h"
#include "http_cors.h"
#include "http_rate.h"
#include "http_reply.h"
#include "log.h"
#include "publish.h"
#include "server.h"
#include "store.h"
#include "topics.h"

#define PUBLISH_PREFIX "/api/publish/"
#define HISTORY_PREFIX "/api/history/"

static int has_prefix(const char *path, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(path, prefix, n) == 0;
}

/* With authentication on, the HTTP API takes the API key, a token that
 * allows the topic, or no credentials from an anonymous client exactly
 * where /ws would take them (allow_anonymous; anonymous_publish to
 * publish). Replies 401 or 403 itself and returns -1 when the request may
 * not go on; *anonymous tells who it was. */
static int api_authorize(conn *c, const chorus_http_request *req,
                         const char *query, size_t query_len, const char *name,
                         size_t len, int publish, int keepalive, int *anonymous)
{
    const config *cfg = c->srv->cfg;
    auth_identity id;
    const char *why;
    int allowed;

    *anonymous = 0;
    if (!auth_enabled(cfg))
        return 0;
    if (auth_authenticate(cfg, req, query, query_len, server_now_ms(c->srv),
                          &id, &why)) {
        server_reject(c->srv, REJECT_AUTH);
        http_respond_error(c, 401, CHORUS_ERR_UNAUTHORIZED, why, keepalive);
        return -1;
    }
    *anonymous = id.kind == AUTH_ANONYMOUS;
    allowed = publish ? auth_can_publish(cfg, &id, name, len)
                      : auth_can_subscribe(cfg, &id, name, len);
    auth_identity_free(&id);
    if (!allowed) {
        metrics_count_error(&c->srv->stats, CHORUS_ERR_FORBIDDEN);
        http_respond_error(c, 403, CHORUS_ERR_FORBIDDEN,
                           publish ? "no publish permission for this topic"
                                   : "no subscribe permission for this topic",
                           keepalive);
        return -1;
    }
    return 0;
}

/* publish_rate for an anonymous publisher, per client address. Replies
 * 429 itself and returns -1 when its bucket is empty. */
static int anonymous_rate(conn *c, const char *name, size_t len, int keepalive)
{
    if (http_rate_take(c))
        return 0;
    server_log_limited(c->srv, LOG_CAUSE_RATE_LIMIT, LOG_INFO,
                       &(log_fields){.conn = c->id,
                                     .peer = c->peer,
                                     .topic = name,
                                     .topic_len = len,
                                     .code = CHORUS_ERR_RATE_LIMITED},
                       "publish_rate exceeded publishing to %.*s over HTTP",
                       (int)len, name);
    http_respond_error(c, 429, CHORUS_ERR_RATE_LIMITED,
                       "publish rate limit exceeded; slow down", keepalive);
    return -1;
}

/* Parses an unsigned decimal query parameter; def when absent. */
static int query_u64(const char *query, size_t len, const char *name,
                     uint64_t def, uint64_t *out)
{
    char buf[24], *end;
    int n;

    if (!query) {
        *out = def;
        return 0;
    }
    n = chorus_http_query_param(query, len, name, buf, sizeof buf);
    if (n == -1) {
        *out = def;
        return 0;
    }
    if (n <= 0 || buf[0] < '0' || buf[0] > '9')
        return -1;
    errno = 0;
    *out = strtoull(buf, &end, 10);
    return *end || errno ? -1 : 0;
}

static http_api_result publish_body(conn *c, const chorus_http_request *req,
                                    const char *enc, size_t enc_len,
                                    const char *query, size_t query_len,
                                    const char *body, size_t body_len,
                                    int keepalive)
{
    server *srv = c->srv;
    char name[CHORUS_TOPIC_MAX * 3 + 1];
    json_error_t jerr;
    json_t *data;
    char *text;
    int anonymous;
    int n = http_path_topic(c, enc, enc_len, name, sizeof name, keepalive);

    if (n < 0 ||
        api_authorize(c, req, query, query_len, name, (size_t)n, 1, keepalive,
                      &anonymous) ||
        (anonymous && anonymous_rate(c, name, (size_t)n, keepalive)))
        return HTTP_API_DONE;
    data = json_loadb(body, body_len, JSON_DECODE_ANY, &jerr);
    if (!data) {
        http_respond_error(c, 400, CHORUS_ERR_BAD_REQUEST, "body is not JSON",
                           keepalive);
        return HTTP_API_DONE;
    }
    text = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(data);
    if (!text || publish_submit(srv, c, ACK_HTTP, NULL, name, (size_t)n, text,
                                strlen(text))) {
        http_respond_error(c, 500, CHORUS_ERR_INTERNAL,
                           "history store unavailable", keepalive);
        return HTTP_API_DONE;
    }
    return HTTP_API_PENDING;
}

void http_api_publish_done(conn *c, const char *name, const char *epoch,
                           uint64_t offset, const char *error)
{
    int keepalive = c->http_keepalive;
    json_t *o;
    char *body;

    if (error) {
        http_respond_error(c, 500, CHORUS_ERR_INTERNAL, error, keepalive);
    } else {
        o = json_pack("{s:s,s:s,s:I}", "topic", name, "epoch", epoch, "offset",
                      (json_int_t)offset);
        body = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        if (body)
            http_respond(c, 200, "application/json", body, strlen(body), NULL,
                         keepalive);
        else
            http_respond_error(c, 500, CHORUS_ERR_INTERNAL, "out of memory",
                               keepalive);
        free(body);
        json_decref(o);
    }
    conn_http_resume(c);
}

/* A GET /api/history request waiting for the store. */
typedef struct history_req {
    conn *c; /* referenced */
    int keepalive;
    uint64_t since, limit;
    struct evbuffer *out;
    int count;
    int sync; /* read_history has not returned yet */
    int done; /* answered while sync */
    size_t len;
    char name[];
} history_req;

/* The answer is sent (or the client is gone): resumes the connection's
 * next request, unless read_history is still on the stack and returns
 * HTTP_API_DONE itself. */
static void history_req_end(history_req *r)
{
    conn *c = r->c;

    if (r->out)
        evbuffer_free(r->out);
    r->out = NULL;
    if (r->sync) {
        r->done = 1;
        return;
    }
    free(r);
    conn_http_resume(c);
    conn_unref(c);
}

static void history_fail(history_req *r, const char *why)
{
    if (r->c->state == CONN_HTTP)
        http_respond_error(r->c, 500, CHORUS_ERR_INTERNAL, why, r->keepalive);
    history_req_end(r);
}

static int add_row(void *arg, uint64_t offset, int64_t ts_ms, const char *data,
                   size_t data_len)
{
    history_req *r = arg;

    evbuffer_add_printf(r->out, "%s{\"offset\":%llu,\"ts\":%lld,\"data\":",
                        r->count++ ? "," : "", (unsigned long long)offset,
                        (long long)ts_ms);
    evbuffer_add(r->out, data, data_len);
    evbuffer_add(r->out, "}", 1);
    return 0;
}

static void history_read_done(void *arg, int status, size_t rows)
{
    history_req *r = arg;
    size_t len;

    (void)rows;
    if (status != STORE_OK) {
        history_fail(r, "history read failed");
        return;
    }
    evbuffer_add(r->out, "]}", 2);
    len = evbuffer_get_length(r->out);
    if (r->c->state == CONN_HTTP)
        http_respond(r->c, 200, "application/json",
                     (const char *)evbuffer_pullup(r->out, -1), len,
                     "Cache-Control: no-store\r\n", r->keepalive);
    history_req_end(r);
}

static void history_got_topic(void *arg, int status,
                              const store_topic_info *info)
{
    history_req *r = arg;
    server *srv = r->c->srv;

    if (status != STORE_OK) {
        history_fail(r, "history store unavailable");
        return;
    }
    evbuffer_add_printf(r->out,
                        "{\"topic\":\"%s\",\"epoch\":\"%s\",\"offset\":%llu,"
                        "\"messages\":[",
                        r->name, info->epoch, (unsigned long long)info->newest);
    if (!srv->store) {
        history_read_done(r, STORE_OK, 0);
        return;
    }
    store_read(srv->store, r->name, r->len, r->since, (size_t)r->limit, add_row,
               history_read_done, r);
}

/* Reads the topic's state, then its messages, from the store: neither
 * creates anything, so readers cannot grow the database. */
static http_api_result read_history(conn *c, const chorus_http_request *req,
                                    const char *enc, size_t enc_len,
                                    const char *query, size_t query_len,
                                    int keepalive)
{
    char name[CHORUS_TOPIC_MAX * 3 + 1];
    uint64_t since, limit;
    history_req *r;
    int anonymous;
    int n = http_path_topic(c, enc, enc_len, name, sizeof name, keepalive);

    if (n < 0 || api_authorize(c, req, query, query_len, name, (size_t)n, 0,
                               keepalive, &anonymous))
        return HTTP_API_DONE;
    if (query_u64(query, query_len, "since", 0, &since) ||
        query_u64(query, query_len, "limit", HTTP_HISTORY_DEFAULT_LIMIT,
                  &limit) ||
        limit == 0) {
        http_respond_error(c, 400, CHORUS_ERR_BAD_REQUEST,
                           "since and limit must be non-negative integers "
                           "(limit at least 1)",
                           keepalive);
        return HTTP_API_DONE;
    }
    if (limit > HTTP_HISTORY_MAX_LIMIT)
        limit = HTTP_HISTORY_MAX_LIMIT;
    r = calloc(1, sizeof *r + (size_t)n + 1);
    if (!r || !(r->out = evbuffer_new())) {
        free(r);
        http_respond_error(c, 500, CHORUS_ERR_INTERNAL, "out of memory",
                           keepalive);
        return HTTP_API_DONE;
    }
    r->c = c;
    conn_ref(c);
    r->keepalive = keepalive;
    r->since = since;
    r->limit = limit;
    r->sync = 1;
    r->len = (size_t)n;
    memcpy(r->name, name, (size_t)n);
    publish_topic_info(c->srv, r->name, r->len, history_got_topic, r);
    if (!r->done) {
        r->sync = 0; /* answered later: conn_http_resume */
        return HTTP_API_PENDING;
    }
    free(r);
    conn_unref(c);
    return HTTP_API_DONE;
}

/* The Origin policy of /ws and /sse, for a page calling the API: an
 * admitted Origin gets CORS on the answer, a refused one 403. 0 or -1. */
static int api_origin(conn *c, const chorus_http_request *req, int keepalive)
{
    if (http_cors_begin(c, req) == 0)
        return 0;
    server_reject(c->srv, REJECT_ORIGIN);
    http_respond_error(c, 403, CHORUS_ERR_FORBIDDEN, "origin not allowed",
                       keepalive);
    return -1;
}

http_api_result http_api_route(conn *c, const chorus_http_request *req,
                               const char *path, size_t path_len,
                               const char *query, size_t query_len,
                               const char *body, size_t body_len, int keepalive)
{
    size_t pn = strlen(PUBLISH_PREFIX), hn = strlen(HISTORY_PREFIX);
    int publish = has_prefix(path, path_len, PUBLISH_PREFIX);
    const char *method = publish ? "POST" : "GET";

    if (!publish && !has_prefix(path, path_len, HISTORY_PREFIX))
        return HTTP_API_NO_ROUTE;
    if (http_method_is(req, "OPTIONS")) {
        http_respond_preflight(c, req, method, keepalive);
        return HTTP_API_DONE;
    }
    if (api_origin(c, req, keepalive))
        return HTTP_API_DONE;
    if (!http_method_is(req, method)) {
        http_respond_405(c, publish ? "POST, OPTIONS" : "GET, OPTIONS",
                         keepalive);
        return HTTP_API_DONE;
    }
    if (publish)
        return publish_body(c, req, path + pn, path_len - pn, query, query_len,
                            body, body_len, keepalive);
    return read_history(c, req, path + hn, path_len - hn, query, query_len,
                        keepalive);
}
