#include "http_admit.h"

#include "auth.h"
#include "chorus/wire.h"
#include "conn.h"
#include "http_reply.h"
#include "log.h"
#include "server.h"

int http_admit(conn *c, const chorus_http_request *req, const char *query,
               size_t query_len, const char *what)
{
    server *srv = c->srv;
    const char *why;
    uint64_t due;

    if (auth_check_origin(srv->cfg, req)) {
        if ((due = server_reject(srv, REJECT_ORIGIN)))
            log_with(LOG_WARN,
                     &(log_fields){.conn = c->id,
                                   .peer = c->peer,
                                   .code = CHORUS_ERR_FORBIDDEN,
                                   .suppressed = due - 1},
                     "refusing %s from a disallowed Origin", what);
        http_respond_error(c, 403, CHORUS_ERR_FORBIDDEN, "origin not allowed",
                           0);
        return -1;
    }
    if (auth_authenticate(srv->cfg, req, query, query_len, server_now_ms(srv),
                          &c->auth, &why)) {
        if ((due = server_reject(srv, REJECT_AUTH)))
            log_with(LOG_INFO,
                     &(log_fields){.conn = c->id,
                                   .peer = c->peer,
                                   .code = CHORUS_ERR_UNAUTHORIZED,
                                   .suppressed = due - 1},
                     "refusing %s: %s", what, why);
        http_respond_error(c, 401, CHORUS_ERR_UNAUTHORIZED, why, 0);
        return -1;
    }
    return 0;
}
