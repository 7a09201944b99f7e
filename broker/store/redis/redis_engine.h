/* One event loop's connections to the Redis instances (engine = redis):
 * per instance an asynchronous command connection (the publish, meta and
 * read scripts, pipelined) and a pub/sub connection (the channels of the
 * topics the loop watches), all on the loop's event base. store_redis.c
 * makes one per loop, so no loop ever waits for another.
 *
 * Topics are spread over the instances by FNV-1a of the name modulo the
 * number of redis_url lines, so every node must list them in the same
 * order. Only broker/store/redis/ includes hiredis.h. */
#ifndef CHORUS_REDIS_ENGINE_H
#define CHORUS_REDIS_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "redis_payload.h"

struct event_base;
typedef struct metrics metrics;
typedef struct redis_engine redis_engine;

typedef struct redis_engine_hooks {
    /* A publish call's messages arrived on topic's channel. */
    void (*message)(void *arg, const char *topic, size_t len,
                    const redis_payload *pl);
    /* Topic's channel is subscribed (first time or again after
     * the pub/sub connection was lost): its position must be checked. */
    void (*subscribed)(void *arg, const char *topic, size_t len);
    /* A command connection is ready again (may be NULL): requests that
     * failed while it was down can be made now. */
    void (*ready)(void *arg);
    void *arg;
} redis_engine_hooks;

/* Starts connecting the loop's connections to every instance. NULL with
 * a message in err. */
redis_engine *redis_engine_new(struct event_base *base, const config *cfg,
                               const redis_engine_hooks *hooks, metrics *m,
                               char *err, size_t errlen);
void redis_engine_free(redis_engine *e);

/* 1 when every instance's command connection is ready (any thread). */
int redis_engine_up(const redis_engine *e);

/* For shutdown: waits (at most timeout_ms per instance) for the replies
 * to every request in flight; what has none by then is failed. */
void redis_engine_drain(redis_engine *e, uint64_t timeout_ms);

/* One topic's part of a publish call. */
typedef struct redis_pub {
    const char *topic;
    size_t len;
    const char *body; /* its n messages, a payload body (redis_payload.h) */
    size_t body_len;
    size_t n;
    /* set when the call succeeded: the epoch and the first message's
     * offset (the others follow it) */
    char epoch[33];
    uint64_t first;
} redis_pub;

/* Topics in one publish call at most, which bounds how long one script
 * keeps Redis busy. */
#define REDIS_PUBLISH_MAX_TOPICS 64

/* ok is 0 when Redis did not answer (down, timeout) or refused. */
typedef void (*redis_publish_fn)(void *arg, int ok, int64_t ts_ms);
/* Appends each topic's messages to it, all in one script call: the
 * topics (distinct, at most REDIS_PUBLISH_MAX_TOPICS) must live on one
 * instance (redis_engine_instance_of). pubs and the bodies must stay
 * valid until fn runs. Returns 0, or -1 (fn not called) when the
 * instance is unavailable. */
int redis_engine_publish(redis_engine *e, redis_pub *pubs, size_t n,
                         redis_publish_fn fn, void *arg);

typedef void (*redis_meta_fn)(void *arg, int ok, const char *epoch,
                              uint64_t newest, uint64_t oldest);
int redis_engine_meta(redis_engine *e, const char *topic, size_t len,
                      redis_meta_fn fn, void *arg);

typedef struct redis_row {
    uint64_t offset;
    int64_t ts_ms;
    const char *data;
    size_t len;
} redis_row;
/* rows (offset > after, at most limit, in order) are valid during fn. */
typedef void (*redis_read_fn)(void *arg, int ok, const redis_row *rows,
                              size_t n);
int redis_engine_read(redis_engine *e, const char *topic, size_t len,
                      uint64_t after, size_t limit, redis_read_fn fn,
                      void *arg);

/* Subscribes (on) or unsubscribes topic's channel; batched at the end of
 * the turn, and made again whenever the pub/sub connection comes back. */
void redis_engine_watch(redis_engine *e, const char *topic, size_t len, int on);

/* Which instance holds topic (exposed for tests). */
size_t redis_engine_instance_of(const char *topic, size_t len, size_t n);

#endif
