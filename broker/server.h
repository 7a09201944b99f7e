/* One broker event loop and everything it owns: listener, connections,
 * topic table, history store and the current publish batch. All broker
 * state is reached from here; there are no mutable globals, so several
 * servers (loops) can later run side by side. */
#ifndef CHORUS_SERVER_H
#define CHORUS_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "history.h"
#include "metrics.h"
#include "publish.h"
#include "topics.h"

struct event_base;
struct event;
struct evconnlistener;
typedef struct conn conn;

typedef struct server {
    struct event_base *base;
    const config *cfg;
    history *hist;
    topics topics;
    struct evconnlistener *listener;
    struct event *sig_term;
    struct event *sig_int;
    struct event *trim_timer;
    struct event *reap_ev;   /* frees closed connections after the turn */
    conn *conns;             /* every open connection */
    conn *reap;              /* closed connections waiting to be freed */
    size_t nconns;
    publish_batch batch;
    metrics stats;
    int stopping;
    int exit_code;
} server;

/* Opens the store, binds the listener and installs signal handlers. On
 * failure returns -1 with a message in err; server_destroy() then frees
 * whatever was set up. */
int server_init(server *s, const config *cfg, char *err, size_t errlen);

/* Runs the loop until SIGTERM/SIGINT (then closes clients with 1001).
 * Returns the process exit code. */
int server_run(server *s);
void server_destroy(server *s);

/* Milliseconds since the Unix epoch, from the loop's cached clock. */
int64_t server_now_ms(server *s);

#endif
