/* One asynchronous connection to one Redis instance, on one event loop
 * (hiredis's async API with its libevent adapter), that keeps itself
 * connected: AUTH and SELECT from the redis_url, the instance's run_id
 * read on every connect, jittered exponential backoff between attempts.
 *
 * Requests are answered in order. Every request gets its callback exactly
 * once: with the reply, or with NULL when the connection is down, goes
 * down, or the oldest request has waited longer than the timeout (the
 * connection is then dropped and made again: Redis answers in order, so a
 * late reply would block everything behind it anyway). The only module
 * besides its siblings in broker/store/redis/ that sees hiredis. */
#ifndef CHORUS_REDIS_CONN_H
#define CHORUS_REDIS_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct event_base;
struct redisReply;
typedef struct metrics metrics;
typedef struct rconn rconn;

/* reply is NULL when the request failed (down, timeout); else it is only
 * valid during the call. */
typedef void (*rconn_reply_fn)(rconn *rc, struct redisReply *reply, void *arg);

typedef struct rconn_hooks {
    /* The connection is ready (handshake done): run_id is known. */
    void (*up)(rconn *rc, void *arg);
    /* It went down; every request in flight has been failed. */
    void (*down)(rconn *rc, void *arg);
    /* Pub/sub connections: a channel is subscribed (Redis confirmed). */
    void (*subscribed)(rconn *rc, const char *channel, size_t len, void *arg);
    /* A pub/sub message. */
    void (*message)(rconn *rc, const char *channel, size_t channel_len,
                    const char *payload, size_t len, void *arg);
    void *arg;
} rconn_hooks;

/* Starts connecting. pubsub: a subscriber connection (no commands but
 * SUBSCRIBE/UNSUBSCRIBE). m gets the round-trip times, reconnects and
 * requests in flight (may be NULL). NULL on allocation failure. */
rconn *rconn_new(struct event_base *base, const redis_addr *addr,
                 uint64_t timeout_ms, int pubsub, const rconn_hooks *hooks,
                 metrics *m);
/* Fails what is in flight (callbacks run) and frees. */
void rconn_free(rconn *rc);

int rconn_ready(const rconn *rc);
/* The instance's run_id as read at the last connect ("" before). */
const char *rconn_run_id(const rconn *rc);
const redis_addr *rconn_addr(const rconn *rc);

/* Sends a command (argv copied by hiredis). Returns 0, or -1 when the
 * connection is not ready: fn is then not called. */
int rconn_command(rconn *rc, int argc, const char **argv, const size_t *argvlen,
                  rconn_reply_fn fn, void *arg);

/* Pub/sub connections: (un)subscribe these channels in one command.
 * Returns 0 or -1 (not ready). */
int rconn_subscribe(rconn *rc, int unsubscribe, int n, const char **channels,
                    const size_t *lens);

/* For shutdown: waits (blocking, at most timeout_ms) for the replies to
 * every request in flight, running their callbacks; what has no reply by
 * then is failed. */
void rconn_drain(rconn *rc, uint64_t timeout_ms);

/* Drops the connection (failing what is in flight) and reconnects after
 * the backoff. */
void rconn_reset(rconn *rc, const char *why);

#endif
