/* publish_rate for anonymous publishers over HTTP. Over /ws the bucket
 * is the connection's; an HTTP client may open one connection per
 * request, so anonymous HTTP publishes share one bucket per client
 * address instead, across the broker's loops. */
#ifndef CHORUS_HTTP_RATE_H
#define CHORUS_HTTP_RATE_H

#include <stdint.h>

typedef struct conn conn;

/* Takes one publish from the bucket of c's address (publish_rate per
 * second, publish_burst deep). 1 when allowed (or no rate is set, or c
 * has no IP address), 0 when the bucket is empty. */
int http_rate_take(conn *c);

#endif
