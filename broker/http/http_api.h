/* The HTTP API of PROTOCOL.md: POST /api/publish/{topic} and
 * GET /api/history/{topic}. Topic names in paths are percent-encoded. */
#ifndef CHORUS_HTTP_API_H
#define CHORUS_HTTP_API_H

#include <stddef.h>
#include <stdint.h>

#include "chorus/http_parse.h"

typedef struct conn conn;
typedef struct topic topic;

typedef enum {
    HTTP_API_NO_ROUTE, /* not an API path */
    HTTP_API_DONE,     /* replied */
    HTTP_API_PENDING,  /* reply follows via http_api_publish_done() */
} http_api_result;

/* History pages are capped at this many messages. */
#define HTTP_HISTORY_MAX_LIMIT 1000
#define HTTP_HISTORY_DEFAULT_LIMIT 100

http_api_result http_api_route(conn *c, const chorus_http_request *req,
                               const char *path, size_t path_len,
                               const char *query, size_t query_len,
                               const char *body, size_t body_len,
                               int keepalive);

/* Completes a publish made over HTTP: 200 with the offset once committed,
 * or 500 with error. */
void http_api_publish_done(conn *c, const char *name, const char *epoch,
                           uint64_t offset, const char *error);

#endif
