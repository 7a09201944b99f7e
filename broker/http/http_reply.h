/* HTTP responses, for the router, the API, /sse and the static files,
 * and the request checks they share. */
#ifndef CHORUS_HTTP_REPLY_H
#define CHORUS_HTTP_REPLY_H

#include <stddef.h>

#include "chorus/http_parse.h"

typedef struct conn conn;

/* Writes a whole response. body may be NULL; extra_headers are complete
 * CRLF-ended lines or NULL. Unless keepalive, closes after the flush. */
void http_respond(conn *c, int status, const char *content_type,
                  const char *body, size_t len, const char *extra_headers,
                  int keepalive);

/* 405 with the methods the path allows ("GET, HEAD"). */
void http_respond_405(conn *c, const char *allow, int keepalive);

/* A JSON error body {"error":code,"message":...}. */
void http_respond_error(conn *c, int status, const char *code,
                        const char *message, int keepalive);

/* Answers an OPTIONS request on a path that allows methods ("POST"):
 * 204 with the CORS preflight headers for an admitted Origin, or 403
 * (JSON, no CORS) for a refused one. */
void http_respond_preflight(conn *c, const chorus_http_request *req,
                            const char *methods, int keepalive);

/* Whether the request's method is m ("GET"). */
int http_method_is(const chorus_http_request *req, const char *m);

/* Decodes and validates the percent-encoded topic at the end of a path
 * into out. Returns its length, or replies 400 itself and returns -1. */
int http_path_topic(conn *c, const char *enc, size_t len, char *out,
                    size_t out_size, int keepalive);

#endif
