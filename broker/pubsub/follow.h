/* Cluster mode (engine = redis): the live feed of the topics this node
 * has subscribers for, made gapless, and epoch changes.
 *
 * Loop 0 follows a topic while any loop has a subscriber to it (and for
 * FOLLOW_LINGER_MS after the last leaves): it subscribes to the topic's
 * Redis channel and hands each offset, once and in order, to every loop
 * as a block of frames (the same path as publishes in single-node mode).
 * Its topic's last_offset is the newest offset handed out. When the feed
 * jumps (a message lost between Redis and us), when the channel was
 * (re)subscribed, and every FOLLOW_CHECK_MS, it reads the topic's newest
 * offset and fills what is missing from the stream first.
 *
 * A topic whose epoch changed (Redis restarted or failed over, see
 * redis_scripts.h) is switched in every loop: each local subscriber gets
 * the unsolicited `subscribed` (recovered false, the newest offset) and
 * replays every retained message of the new epoch before live ones.
 *
 * Each loop also checks what it receives: a block that does not follow
 * the topic's last offset there makes its subscribers replay the missing
 * offsets from the stream, so no subscriber sees a gap. */
#ifndef CHORUS_FOLLOW_H
#define CHORUS_FOLLOW_H

#include <stddef.h>
#include <stdint.h>

typedef struct server server;
typedef struct topic topic;
typedef struct follow follow;

#define FOLLOW_LINGER_MS 5000
#define FOLLOW_CHECK_MS 5000
/* Cut off from Redis longer than this, a node closes its clients with
 * 1001 (spread over FOLLOW_CLOSE_SPREAD_MS) so that the load balancer
 * moves them to a node that can serve them. */
#define FOLLOW_GRACE_MS 15000
#define FOLLOW_CLOSE_SPREAD_MS 5000

/* Loop 0: starts the engine's feed. -1 with a message in err. */
int follow_init(server *s, char *err, size_t errlen);
void follow_destroy(server *s);

/* Any loop: t got its first local subscriber, or lost its last one.
 * Tells loop 0 (which may be this loop). */
void follow_interest(server *s, topic *t, int on);

/* Loop 0: a loop's interest in a topic (from follow_interest), with the
 * epoch and newest offset its first subscriber was told. */
void follow_watch(server *s, const char *name, size_t len, int on,
                  const char *epoch, uint64_t newest);

/* Any loop: topic name's epoch is now epoch with newest offset newest. */
void follow_epoch_changed(server *s, const char *name, size_t len,
                          const char *epoch, uint64_t newest);

/* Any loop: a read found t in another epoch in Redis. On loop 0 the
 * follower switches every loop; another loop switches its own
 * subscribers (loop 0 learns it from the feed or its next check). */
void follow_epoch_found(server *s, topic *t, const char *epoch,
                        uint64_t newest);

/* Any loop: switches t to a new epoch (see above). */
void follow_switch_epoch(server *s, topic *t, const char *epoch,
                         uint64_t newest);

/* Any loop, before a block (first .. first+count-1) of t is fanned out:
 * subscribers that would miss offsets before first replay them. */
void follow_before_block(server *s, topic *t, uint64_t first, size_t count);

/* 1 while the node can serve publishes (every Redis instance up). */
int follow_available(const server *s);

#endif
