/* Shared by the Redis engine's files only. */
#ifndef CHORUS_REDIS_INTERNAL_H
#define CHORUS_REDIS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "dict.h"
#include "redis_engine.h"

struct event;
struct redisContext;
typedef struct rconn rconn;

#define REDIS_RUN_ID_KEY "chorus:run_id"
#define REDIS_SEED_KEY "chorus:seed"

/* The scripts' fence key (redis_scripts.h). */
#define REDIS_FENCE_KEY(cfg) \
    ((cfg)->redis_durable ? REDIS_SEED_KEY : REDIS_RUN_ID_KEY)

typedef struct pending_sub {
    char *channel; /* owned */
    size_t len;
    int on;
} pending_sub;

typedef struct instance {
    struct redis_engine *e;
    size_t index;
    redis_addr addr;
    char prefix[32]; /* of channel names: "chorus:<db>:" */
    size_t prefix_len;
    rconn *cmd, *sub;
    dict watched; /* topics whose channel we subscribe to */
    pending_sub *pend;
    size_t npend, cap;
} instance;

struct redis_engine {
    struct event_base *base;
    const config *cfg;
    redis_engine_hooks hooks;
    metrics *m;
    instance *inst;
    size_t n;
    struct event *flush_ev; /* queued (un)subscribes */
    uint8_t key[16];
};

typedef struct redis_keys {
    char meta[256];
    char stream[256];
} redis_keys;

instance *redis_instance(redis_engine *e, const char *topic, size_t len);
int redis_topic_keys(const char *topic, size_t len, redis_keys *k);
void redis_new_epoch(char out[33]);

#endif
