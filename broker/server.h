/* One broker event loop and everything it owns: connections, topic
 * table, store handle (store.h), inbox, publish batch and, for loop 0,
 * the listeners. All broker state is reached from here or from the broker
 * the loops share (loops.h); there are no mutable globals. */
#ifndef CHORUS_SERVER_H
#define CHORUS_SERVER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "loops.h"
#include "metrics.h"
#include "publish.h"
#include "store.h"
#include "topics.h"

struct event_base;
struct event;
struct evconnlistener;
typedef struct conn conn;

/* Causes of log lines that could flood: at most one line per second each
 * in the whole broker (b->log_limits). The first ones are the reject
 * causes of metrics.h. */
enum {
    LOG_CAUSE_RATE_LIMIT = REJECT__COUNT,
    LOG_CAUSE_SLOW_CONSUMER,
    LOG_CAUSE_HISTORY,
    LOG_CAUSE_TOO_LARGE,
    LOG_CAUSE_SUB_LIMIT,
    LOG_CAUSE_SLOW_MESSAGE,
    LOG_CAUSE_HISTORY_READ,
    LOG_CAUSE_IDLE_CLOSE,
    LOG_CAUSE_TOKEN_EXPIRED,
    LOG_CAUSE_ACCEPT, /* accept() failed */
    /* A close gave up waiting for publish acks (conn.c). */
    LOG_CAUSE_ACK_WAIT,
    LOG_CAUSE__COUNT
};

typedef struct server {
    struct event_base *base;
    const config *cfg; /* a reference; a reload swaps it between turns */
    broker *b;         /* the loops this one runs beside */
    int index;         /* 0 accepts (and publishes, see publish_here) */
    inbox in;          /* messages from the other loops */
    store_loop *store; /* this loop's handle; NULL with history off */
    store_feed feed;   /* what the store's live feed calls, if it has one */
    struct chorus_pmd_compressor *deflater; /* compression; lazily */
    struct chorus_pmd_inflater *inflater;
    topics topics;
    struct evconnlistener *listener;
    struct evconnlistener *tls_listener;
    struct ssl_ctx_st *tls_ctx; /* new TLS connections use this one */
    int spare_fd; /* loop 0: closed to accept and refuse at the fd limit */
    struct event *sig_hup;
    struct event *sig_term;
    struct event *sig_int;
    struct event *health_ev; /* loop 0: watches store_unavailable() */
    int64_t down_since_ms;   /* loop 0: the engine unavailable since */
    struct event *cutoff_ev; /* closing clients, a few at a time */
    int cutoff_steps_left;
    struct event *reap_ev; /* frees closed connections: server_reap_soon */
    conn *conns;           /* every open connection */
    conn *reap;            /* closed connections waiting to be freed */
    conn *flush_head;      /* connections with output queued this turn */
    conn *flush_tail;
    struct event *flush_ev;   /* writes it out after everything else */
    struct send_batch *sends; /* io_uring for those writes, or NULL */
    /* Atomic, like stats: GET /metrics on any loop reads them. Only this
     * loop writes them. */
    _Atomic size_t nconns;
    const struct conn_handler *http;     /* what new connections talk */
    publish_answer_fn publish_answer[2]; /* by ack_kind (publish.h) */
    publish_batch batch;
    metrics stats;
    int stopping;
    int exit_code;
} server;

/* Sets up loop `index` of b: its event base, store connection and inbox;
 * loop 0 also binds the listeners and installs the signal handlers. On
 * failure returns -1 with a message in err; server_destroy() then frees
 * whatever was set up. */
int server_init(server *s, broker *b, int index, char *err, size_t errlen);

/* Frees the closed connections (conn_reap) once the loop has been through
 * its next epoll_wait. Not sooner: the base batches epoll_ctl calls (a
 * changelist) and makes them at the start of that wait, so a connection's
 * last call, its removal, is still pending at the end of the turn that
 * closed it. Were its socket closed then, another loop could accept a
 * connection under the same descriptor number before the stale removal
 * runs; a timer fires only after the wait, when the removal is done. */
void server_reap_soon(server *s);

/* Runs the loop until it is stopped. Returns the process exit code. */
int server_run(server *s);

/* Stops accepting, commits what was accepted, closes every client with
 * 1001, and ends the loop once they are gone (or after a grace time). */
void server_stop(server *s);
void server_destroy(server *s);

/* Counts a refused connection or request; returns what server_log_due()
 * returns for that cause. */
uint64_t server_reject(server *s, reject_cause cause);

/* log_due() for cause: 0 when a line about it is to be left out, else
 * 1 + the number left out since the last (log_fields.suppressed is that
 * minus one). At most one line per second per cause. */
uint64_t server_log_due(server *s, int cause);

/* A line about cause, if one is due (server_log_due), with the count of
 * those left out since the last (f->suppressed is set here). */
void server_log_limited(server *s, int cause, int level, const log_fields *f,
                        const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Counts a message refused for max_message_size, and logs it (at most
 * once a second). */
void server_too_large(server *s, uint64_t conn_id, const char *peer,
                      const char *how);

/* Makes loop s use cfg (whose reference it takes) from now on, and drops
 * its reference to the one it used. Between turns only. */
void server_use_config(server *s, const config *cfg);

/* The engine (Redis) has been unavailable longer than CUTOFF_GRACE_MS:
 * closes this loop's clients with 1001, spread over CUTOFF_SPREAD_MS so
 * that they do not all reconnect in the same second, and the load
 * balancer moves them to a node that can serve them. */
#define CUTOFF_GRACE_MS 15000
#define CUTOFF_SPREAD_MS 5000
void server_cut_off(server *s);

/* Milliseconds since the Unix epoch, from the loop's cached clock. */
int64_t server_now_ms(server *s);

#endif
