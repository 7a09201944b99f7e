/* HTTP responses: status line, headers and body into the connection's
 * output queue. */
#include "http_reply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "chorus/wire.h"
#include "conn.h"
#include "http_cors.h"
#include "server.h"

static const char *status_text(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

void http_respond(conn *c, int status, const char *content_type,
                  const char *body, size_t len, const char *extra_headers,
                  int keepalive)
{
    struct evbuffer *out = conn_output(c);
    size_t before = evbuffer_get_length(out);

    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", status, status_text(status));
    if (status != 204) /* a 204 has no body, and no length */
        evbuffer_add_printf(out, "Content-Length: %zu\r\n", len);
    evbuffer_add_printf(out, "%s%s%s%s", content_type ? "Content-Type: " : "",
                        content_type ? content_type : "",
                        content_type ? "\r\n" : "",
                        keepalive ? "" : "Connection: close\r\n");
    http_cors_add_headers(c, out);
    if (extra_headers)
        evbuffer_add(out, extra_headers, strlen(extra_headers));
    evbuffer_add(out, "\r\n", 2);
    if (body && len)
        evbuffer_add(out, body, len);
    stat_add(&c->srv->stats.bytes_out, evbuffer_get_length(out) - before);
    if (!keepalive)
        conn_finish(c);
}

void http_respond_405(conn *c, const char *allow, int keepalive)
{
    char hdr[64];

    snprintf(hdr, sizeof hdr, "Allow: %s\r\n", allow);
    http_respond(c, 405, "text/plain", "method not allowed\n", 19, hdr,
                 keepalive);
}

void http_respond_error(conn *c, int status, const char *code,
                        const char *message, int keepalive)
{
    json_t *o = json_pack("{s:s,s:s}", "error", code, "message", message);
    char *body = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

    http_respond(c, status, "application/json", body, body ? strlen(body) : 0,
                 NULL, keepalive);
    free(body);
    json_decref(o);
}

/* How long a browser may cache a preflight answer (Chromium caps it at
 * two hours, Firefox at one day). */
#define CORS_MAX_AGE_S 600

void http_respond_preflight(conn *c, const chorus_http_request *req,
                            const char *methods, int keepalive)
{
    char hdr[256];

    if (http_cors_begin(c, req)) {
        server_reject(c->srv, REJECT_ORIGIN);
        http_respond_error(c, 403, CHORUS_ERR_FORBIDDEN, "origin not allowed",
                           keepalive);
        return;
    }
    /* Allow answers any OPTIONS; the Access-Control-* lines are for a
     * page's preflight, and http_respond adds Allow-Origin and Vary. */
    if (c->http_origin)
        snprintf(hdr, sizeof hdr,
                 "Allow: %s, OPTIONS\r\n"
                 "Access-Control-Allow-Methods: %s, OPTIONS\r\n"
                 "Access-Control-Allow-Headers: Authorization, Content-Type, "
                 "Last-Event-ID\r\n"
                 "Access-Control-Max-Age: %d\r\n",
                 methods, methods, CORS_MAX_AGE_S);
    else
        snprintf(hdr, sizeof hdr, "Allow: %s, OPTIONS\r\n", methods);
    http_respond(c, 204, NULL, NULL, 0, hdr, keepalive);
}

int http_method_is(const chorus_http_request *req, const char *m)
{
    return strlen(m) == req->method_len &&
           memcmp(req->method, m, req->method_len) == 0;
}

int http_path_topic(conn *c, const char *enc, size_t len, char *out,
                    size_t out_size, int keepalive)
{
    int n = chorus_http_percent_decode(enc, len, out, out_size);

    if (n < 0 || !chorus_topic_valid(out, (size_t)n)) {
        http_respond_error(c, 400, CHORUS_ERR_INVALID_TOPIC,
                           "topic must be 1-200 characters of A-Z a-z 0-9 "
                           ". _ - : / @",
                           keepalive);
        return -1;
    }
    return n;
}
