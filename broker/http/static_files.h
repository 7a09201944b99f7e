/* Static content over HTTP: the browser client at /chorus.js and the demo
 * page at /, both built into the binary, or files under web_root when it
 * is set. GET and HEAD only; paths never leave web_root. */
#ifndef CHORUS_STATIC_FILES_H
#define CHORUS_STATIC_FILES_H

#include <stddef.h>

#include "chorus/http_parse.h"
#include "http_api.h"

typedef struct conn conn;

/* Replies and returns HTTP_API_DONE when path is static content, else
 * HTTP_API_NO_ROUTE (nothing sent). */
http_api_result static_files_route(conn *c, const chorus_http_request *req,
                                   const char *path, size_t path_len,
                                   int keepalive);

#endif
