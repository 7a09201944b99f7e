/* chorus history: GET /api/history/{topic} and print one JSON line per
 * stored message, {"topic":..,"offset":..,"ts":..,"data":..}.
 *
 * The HTTP base is derived from the broker URL: ws -> http, wss -> https,
 * same host and port, and a path prefix in front of a final "/ws" is kept
 * (wss://h/chorus/ws -> https://h/chorus/api/history/...). Requests go
 * through libevent's evhttp client, over an OpenSSL bufferevent for https.
 *
 * The body is validated with jansson; cli_history_json.c prints its
 * messages from the raw text. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "chorus/ws_client.h"
#include "cli.h"
#include "cli_history_json.h"

#define HTTP_TIMEOUT_S 30
#define ALL_PAGE_LIMIT 1000 /* page size of --all without --limit */

typedef struct hist_ctx {
    const cli_args *a;
    struct event_base *base;
    struct evhttp_connection *conn;
    SSL_CTX *ssl_ctx;
    chorus_url url;
    char hostport[300]; /* Host header */
    char *prefix;       /* "/.../api/history/<topic>" */
    char *topic_json;   /* the topic as a JSON string */
    uint64_t since;
    uint64_t limit; /* 0: the broker's default */
    int all;
    char *epoch;     /* of the first page (--all) */
    uint64_t target; /* newest offset at the first page (--all) */
    int pages;
    int status;
    int done;
    enum evhttp_request_error err;
    int err_set;
} hist_ctx;

/* ---- HTTP ---- */

static int send_request(hist_ctx *h);

static void finish(hist_ctx *h, int status)
{
    h->status = status;
    h->done = 1;
    event_base_loopbreak(h->base);
}

static const char *req_error_text(enum evhttp_request_error e)
{
    switch (e) {
    case EVREQ_HTTP_TIMEOUT: return "timed out";
    case EVREQ_HTTP_EOF: return "connection closed or refused";
    case EVREQ_HTTP_INVALID_HEADER: return "invalid response";
    case EVREQ_HTTP_BUFFER_ERROR: return "connection failed";
    case EVREQ_HTTP_REQUEST_CANCEL: return "cancelled";
    case EVREQ_HTTP_DATA_TOO_LONG: return "response too large";
    }
    return "failed";
}

static void error_cb(enum evhttp_request_error e, void *arg)
{
    hist_ctx *h = arg;
    h->err = e;
    h->err_set = 1;
}

/* A non-200 answer: "HTTP 404 Not Found: <message of the JSON body>". */
static void report_status(hist_ctx *h, struct evhttp_request *req,
                          const char *body, size_t len)
{
    int code = evhttp_request_get_response_code(req);
    const char *line = evhttp_request_get_response_code_line(req);
    json_error_t jerr;
    json_t *j = json_loadb(body, len, 0, &jerr);
    const char *msg = json_string_value(json_object_get(j, "message"));
    const char *ecode = json_string_value(json_object_get(j, "code"));
    json_t *err = json_object_get(j, "error");
    if (json_is_object(err)) {
        msg = msg ? msg : json_string_value(json_object_get(err, "message"));
        ecode = ecode ? ecode : json_string_value(json_object_get(err, "code"));
    } else if (!ecode && json_is_string(err)) {
        ecode = json_string_value(err);
    }
    int n = (int)(len > 200 ? 200 : len);
    while (n > 0 && (body[n - 1] == '\n' || body[n - 1] == '\r'))
        n--;
    if (msg || ecode)
        cli_error("history: HTTP %d %s: %s%s%s", code, line ? line : "",
                  ecode ? ecode : "", ecode && msg ? ": " : "", msg ? msg : "");
    else
        cli_error("history: HTTP %d %s%s%.*s", code, line ? line : "",
                  n ? ": " : "", n, body);
    (void)h;
    json_decref(j);
}

/* The transport failed, or no HTTP answer came. */
static void report_no_answer(hist_ctx *h)
{
    cli_error("history: request to %s:%d failed: %s", h->url.host, h->url.port,
              h->err_set ? req_error_text(h->err)
                         : "no answer (refused or closed)");
}

/* Checks the answer's shape, and that its epoch stays that of the first
 * page; the first page sets the epoch and the newest offset to reach. */
static int check_envelope(hist_ctx *h, const char *body, size_t len)
{
    json_error_t jerr;
    json_t *j = json_loadb(body, len, JSON_DECODE_INT_AS_REAL, &jerr);
    const char *epoch = json_string_value(json_object_get(j, "epoch"));
    json_t *newest = json_object_get(j, "offset");
    int rc = 0;
    if (!json_is_object(j) || !epoch || !json_is_number(newest) ||
        !json_is_array(json_object_get(j, "messages"))) {
        cli_error("history: unexpected answer: %.*s",
                  (int)(len > 200 ? 200 : len), body);
        rc = -1;
    } else if (h->pages++ == 0) {
        h->epoch = strdup(epoch);
        h->target = (uint64_t)json_number_value(newest);
    } else if (!h->epoch || strcmp(h->epoch, epoch) != 0) {
        cli_error("history: the topic's epoch changed while paging "
                  "(%s, now %s)",
                  h->epoch ? h->epoch : "?", epoch);
        rc = -1;
    }
    json_decref(j);
    return rc;
}

/* Prints the page; returns -1 with the exit status in *status when the
 * command must end. */
static int print_page(hist_ctx *h, const char *body, size_t len, hist_page *pg,
                      int *status)
{
    int r = hist_print_page(body, len, pg);
    if (fflush(stdout) == EOF || pg->write_failed) {
        if (errno != EPIPE)
            cli_error("cannot write to stdout: %s", strerror(errno));
        *status = errno == EPIPE ? CLI_OK : CLI_FAIL;
        return -1;
    }
    if (r < 0) {
        cli_error("history: malformed or out-of-order messages in the "
                  "answer");
        *status = CLI_FAIL;
        return -1;
    }
    if (h->a->verbose)
        fprintf(stderr,
                "chorus: %d messages after %llu (epoch %s, newest "
                "%llu)\n",
                pg->count, (unsigned long long)h->since, h->epoch,
                (unsigned long long)h->target);
    return 0;
}

static void response_cb(struct evhttp_request *req, void *arg)
{
    hist_ctx *h = arg;
    if (!req || evhttp_request_get_response_code(req) == 0) {
        report_no_answer(h);
        finish(h, CLI_FAIL);
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const char *body = len ? (const char *)evbuffer_pullup(in, -1) : "";
    if (evhttp_request_get_response_code(req) != 200) {
        report_status(h, req, body, len);
        finish(h, CLI_FAIL);
        return;
    }
    if (check_envelope(h, body, len) < 0) {
        finish(h, CLI_FAIL);
        return;
    }
    hist_page pg = {h->topic_json, 0, h->since, 0};
    int status;
    if (print_page(h, body, len, &pg, &status) < 0) {
        finish(h, status);
        return;
    }
    if (!h->all || pg.count == 0 || pg.last >= h->target) {
        finish(h, CLI_OK);
        return;
    }
    h->since = pg.last;
    if (send_request(h) < 0)
        finish(h, CLI_FAIL);
}

static int send_request(hist_ctx *h)
{
    struct evhttp_request *req = evhttp_request_new(response_cb, h);
    if (!req) {
        cli_error("out of memory");
        return -1;
    }
    evhttp_request_set_error_cb(req, error_cb);
    h->err_set = 0;
    struct evkeyvalq *hd = evhttp_request_get_output_headers(req);
    evhttp_add_header(hd, "Host", h->hostport);
    evhttp_add_header(hd, "Accept", "application/json");
    evhttp_add_header(hd, "User-Agent", "chorus-cli");
    char *auth = NULL;
    if (h->a->token) {
        size_t n = strlen(h->a->token) + 16;
        auth = malloc(n);
        if (!auth) {
            evhttp_request_free(req);
            return -1;
        }
        snprintf(auth, n, "Bearer %s", h->a->token);
        evhttp_add_header(hd, "Authorization", auth);
        free(auth);
    }
    size_t n = strlen(h->prefix) + 80;
    char *uri = malloc(n);
    if (!uri) {
        evhttp_request_free(req);
        return -1;
    }
    int len = snprintf(uri, n, "%s?since=%llu", h->prefix,
                       (unsigned long long)h->since);
    if (h->limit)
        snprintf(uri + len, n - (size_t)len, "&limit=%llu",
                 (unsigned long long)h->limit);
    /* evhttp frees req after the callback, or now on failure */
    int r = evhttp_make_request(h->conn, req, EVHTTP_REQ_GET, uri);
    free(uri);
    if (r < 0)
        cli_error("history: cannot send the request");
    return r;
}

/* ---- set-up ---- */

static int parse_u64(const char *s, uint64_t *out)
{
    char *e;
    if (!s || !*s || *s == '-' || *s == '+')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &e, 10);
    if (*e || errno)
        return -1;
    *out = v;
    return 0;
}

/* Unreserved characters stay, everything else is %XX ('/' is %2F). */
static char *pct_encode(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(strlen(s) * 3 + 1), *o = out;
    if (!out)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
            (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' ||
            *p == '~') {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}

/* "/x/ws?q" -> "/x/", "/" -> "/", "/x" -> "/x/". */
static char *base_path(const char *path)
{
    size_t n = strcspn(path, "?");
    if (n >= 3 && memcmp(path + n - 3, "/ws", 3) == 0)
        n -= 2;
    char *b = malloc(n + 2);
    if (!b)
        return NULL;
    memcpy(b, path, n);
    if (n == 0 || b[n - 1] != '/')
        b[n++] = '/';
    b[n] = '\0';
    return b;
}

static struct bufferevent *tls_bev(hist_ctx *h)
{
    h->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (!h->ssl_ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(h->ssl_ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(h->ssl_ctx, SSL_VERIFY_PEER, NULL);
    int ok = h->a->cacert
                 ? SSL_CTX_load_verify_locations(h->ssl_ctx, h->a->cacert, NULL)
                 : SSL_CTX_set_default_verify_paths(h->ssl_ctx);
    if (ok != 1) {
        cli_error("cannot load CA certificates%s%s",
                  h->a->cacert ? " from " : "",
                  h->a->cacert ? h->a->cacert : "");
        return NULL;
    }
    SSL *ssl = SSL_new(h->ssl_ctx);
    if (!ssl)
        return NULL;
    unsigned char addr[16];
    if (inet_pton(AF_INET, h->url.host, addr) == 1 ||
        inet_pton(AF_INET6, h->url.host, addr) == 1)
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), h->url.host);
    else
        ok = SSL_set_tlsext_host_name(ssl, h->url.host) &&
             SSL_set1_host(ssl, h->url.host);
    struct bufferevent *bev =
        ok ? bufferevent_openssl_socket_new(
                 h->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                 BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS)
           : NULL;
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

static int setup(hist_ctx *h, const cli_args *a)
{
    h->a = a;
    if (chorus_url_parse(a->url, &h->url) < 0) {
        cli_error("bad URL: %s", a->url);
        return CLI_USAGE;
    }
    const char *v;
    if ((v = cli_opt(a, "since")) && parse_u64(v, &h->since) < 0) {
        cli_error("history: --since wants a non-negative integer");
        return CLI_USAGE;
    }
    if ((v = cli_opt(a, "limit")) &&
        (parse_u64(v, &h->limit) < 0 || h->limit == 0)) {
        cli_error("history: --limit wants a positive integer");
        return CLI_USAGE;
    }
    h->all = cli_opt(a, "all") != NULL;
    if (h->all && !h->limit)
        h->limit = ALL_PAGE_LIMIT;
    json_t *t = json_string(a->pos[0]);
    h->topic_json = t ? json_dumps(t, JSON_ENCODE_ANY) : NULL;
    json_decref(t);
    if (!h->topic_json) {
        cli_error("history: topic is not valid UTF-8");
        return CLI_USAGE;
    }
    char *enc = pct_encode(a->pos[0]);
    char *base = base_path(h->url.path);
    if (enc && base) {
        size_t n = strlen(base) + strlen(enc) + 16;
        if ((h->prefix = malloc(n)))
            snprintf(h->prefix, n, "%sapi/history/%s", base, enc);
    }
    free(enc);
    free(base);
    if (!h->prefix)
        return CLI_FAIL;
    int v6 = strchr(h->url.host, ':') != NULL;
    snprintf(h->hostport, sizeof h->hostport, "%s%s%s:%d", v6 ? "[" : "",
             h->url.host, v6 ? "]" : "", h->url.port);
    if (!(h->base = event_base_new()))
        return CLI_FAIL;
    struct bufferevent *bev = NULL;
    if (h->url.tls && !(bev = tls_bev(h)))
        return CLI_FAIL;
    h->conn = evhttp_connection_base_bufferevent_new(
        h->base, NULL, bev, h->url.host, (unsigned short)h->url.port);
    if (!h->conn) {
        if (bev)
            bufferevent_free(bev);
        return CLI_FAIL;
    }
    evhttp_connection_set_timeout(h->conn, HTTP_TIMEOUT_S);
    return CLI_OK;
}

int cli_history(const cli_args *a)
{
    hist_ctx h;
    memset(&h, 0, sizeof h);
    int r = setup(&h, a);
    if (r == CLI_OK) {
        if (send_request(&h) < 0)
            r = CLI_FAIL;
        else {
            event_base_dispatch(h.base);
            r = h.done ? h.status : CLI_FAIL;
        }
    } else if (r == CLI_FAIL) {
        cli_error("history: cannot set up the request");
    }
    if (h.conn)
        evhttp_connection_free(h.conn);
    if (h.base)
        event_base_free(h.base);
    if (h.ssl_ctx)
        SSL_CTX_free(h.ssl_ctx);
    free(h.prefix);
    free(h.topic_json);
    free(h.epoch);
    return r;
}
