/* CORS for the endpoints a browser page calls across origins: /sse and
 * the HTTP API. An Origin admitted by allowed_origins is echoed on every
 * answer (all statuses, so that the page can read a 401 or 403 body);
 * a refused one gets no CORS header at all. */
#ifndef CHORUS_HTTP_CORS_H
#define CHORUS_HTTP_CORS_H

#include <stddef.h>

#include "chorus/http_parse.h"

typedef struct conn conn;
struct evbuffer;

/* Forgets the previous request's Origin (every request starts here). */
void http_cors_reset(conn *c);

/* Remembers req's Origin for the answer when allowed_origins admits it.
 * Returns 0 when there is none or it is admitted, -1 when it is refused. */
int http_cors_begin(conn *c, const chorus_http_request *req);

/* Appends the CORS header lines of the current request (none when it had
 * no admitted Origin). */
void http_cors_add_headers(conn *c, struct evbuffer *out);

#endif
