/* HTTP/1.1 on a connection before any upgrade: parses request heads (and
 * bodies announced by Content-Length), routes them, and writes replies.
 * Keep-alive and pipelining are supported; a request whose reply is not
 * ready yet (a publish waiting for its commit) holds back the next one. */
#ifndef CHORUS_HTTP_ROUTE_H
#define CHORUS_HTTP_ROUTE_H

#include <stddef.h>

typedef struct conn conn;

/* Limits on request heads (each has a test). */
#define HTTP_MAX_LINE 8192
#define HTTP_MAX_HEADERS 64
#define HTTP_MAX_HEAD 16384

/* Called when input arrives in the HTTP state. */
void http_route_read(conn *c);

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

/* Ends a deferred reply: serves pipelined requests that waited. */
void http_route_resume(conn *c);

#endif
