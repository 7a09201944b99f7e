/* Admission of a subscriber's request (/ws upgrade, /sse stream): the
 * Origin policy, then the credentials, which go to c->auth. */
#ifndef CHORUS_HTTP_ADMIT_H
#define CHORUS_HTTP_ADMIT_H

#include <stddef.h>

#include "chorus/http_parse.h"

typedef struct conn conn;

/* 0, or the refusal (403 disallowed Origin, 401 credentials) was queued
 * and the connection closes after it; what ("WebSocket") is for the log.
 * query may hold the token: it is never logged. */
int http_admit(conn *c, const chorus_http_request *req, const char *query,
               size_t query_len, const char *what);

#endif
