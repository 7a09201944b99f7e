/* HTTP/1.1 on a connection before any upgrade: parses request heads (and
 * bodies announced by Content-Length), routes them, and writes replies.
 * Keep-alive and pipelining are supported; a request whose reply is not
 * ready yet (a publish waiting for its commit) holds back the next one. */
#ifndef CHORUS_HTTP_ROUTE_H
#define CHORUS_HTTP_ROUTE_H

#include <stddef.h>

#include "http_reply.h"

typedef struct conn conn;

/* Limits on request heads (each has a test). */
#define HTTP_MAX_LINE 8192
#define HTTP_MAX_HEADERS 64
#define HTTP_MAX_HEAD 16384

/* The handler of connections before any upgrade: routes requests. */
extern const struct conn_handler http_route_handler;

#endif
