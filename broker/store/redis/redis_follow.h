/* The Redis engine's live feed for one loop (store.h's store_feed): the
 * topics the loop watches, followed on its pub/sub connection and handed
 * to the feed once each, in offset order.
 *
 * When the channel jumps (a message lost between Redis and us), when the
 * channel was (re)subscribed (the pub/sub connection dropped: Redis
 * restarted, the network failed, Redis's client-output-buffer-limit cut
 * us off), when a command connection is back, and for a channel quiet for
 * REDIS_FOLLOW_CHECK_MS (a busy one shows a loss by its next message), the
 * follower reads the topic's newest offset and fills what is missing from
 * the stream before anything newer. A topic found in another epoch is reported
 * through feed->epoch_changed, and followed from its newest offset on.
 *
 * A topic stays followed REDIS_FOLLOW_LINGER_MS after the loop stops
 * watching it. The state a topic() answer reported is kept as long: a
 * watch that follows it starts from that offset, so that nothing
 * published between the subscriber's read and the SUBSCRIBE is missed. */
#ifndef CHORUS_REDIS_FOLLOW_H
#define CHORUS_REDIS_FOLLOW_H

#include <stddef.h>
#include <stdint.h>

#include "redis_payload.h"
#include "store.h"

typedef struct redis_engine redis_engine;
typedef struct rfollow rfollow;
struct event_base;

#define REDIS_FOLLOW_LINGER_MS 5000
#define REDIS_FOLLOW_CHECK_MS 5000

/* feed may be NULL (nothing is delivered, watch does nothing). */
rfollow *rfollow_new(struct event_base *base, const store_feed *feed);
/* Before the engine is freed: requests in flight are failed into it. */
void rfollow_set_engine(rfollow *f, redis_engine *e, uint64_t *gap_fills,
                        uint64_t *epoch_changes);
void rfollow_free(rfollow *f);

void rfollow_watch(rfollow *f, const char *name, size_t len, int on);

/* A topic() answer of this loop: where a watch that follows starts.
 * Returns the newest offset to report: when the topic is followed here
 * and its feed has already handed out more (the channel's message can
 * overtake the command's reply), that offset, so that the subscriber's
 * live start and the feed meet without a gap. */
uint64_t rfollow_seen(rfollow *f, const char *name, size_t len,
                      const char *epoch, uint64_t newest);

/* The engine's hooks (redis_engine_hooks), arg being the follower. */
void rfollow_on_message(void *arg, const char *name, size_t len,
                        const redis_payload *pl);
void rfollow_on_subscribed(void *arg, const char *name, size_t len);
void rfollow_on_ready(void *arg);

#endif
