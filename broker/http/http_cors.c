#include "http_cors.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "auth.h"
#include "conn.h"
#include "server.h"

void http_cors_reset(conn *c)
{
    free(c->http_origin);
    c->http_origin = NULL;
}

int http_cors_begin(conn *c, const chorus_http_request *req)
{
    const chorus_http_header *h =
        chorus_http_find_header(req->headers, req->num_headers, "Origin");

    http_cors_reset(c);
    if (!h)
        return 0;
    if (auth_check_origin(c->srv->cfg, req))
        return -1;
    /* Out of memory: the answer goes without CORS, which the page sees as
     * a network error, as it would any other failure. */
    c->http_origin = strndup(h->value, h->value_len);
    return 0;
}

void http_cors_add_headers(conn *c, struct evbuffer *out)
{
    if (c->http_origin)
        evbuffer_add_printf(out,
                            "Access-Control-Allow-Origin: %s\r\n"
                            "Vary: Origin\r\n",
                            c->http_origin);
}
