/* GET /sse/{topic}: a subscription as a Server-Sent Events stream
 * (docs/PROTOCOL.md). Admits the request as /ws admits an upgrade (Origin,
 * credentials from Authorization: Bearer or ?token=, the topic's
 * subscribe permission), reads where to resume from (Last-Event-ID, else
 * ?since=), queues the 200 head and hands the connection to the stream
 * (pubsub/sse_stream.h). Every refusal is a JSON error body. */
#ifndef CHORUS_SSE_H
#define CHORUS_SSE_H

#include <stddef.h>

#include "chorus/http_parse.h"

typedef struct conn conn;

typedef enum {
    SSE_NO_ROUTE,  /* not an /sse/ path */
    SSE_REFUSED,   /* an error reply was queued; close after it */
    SSE_STREAMING, /* the connection is a stream now */
} sse_route_result;

sse_route_result sse_route(conn *c, const chorus_http_request *req,
                           const char *path, size_t path_len, const char *query,
                           size_t query_len);

#endif
