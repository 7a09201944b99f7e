/* Fan-out: a topic's messages of one commit are encoded once, as one
 * block of consecutive frames, and that block is shared by reference with
 * every live subscriber, in every loop: one buffer reference per
 * subscriber per commit, whatever the number of messages, and no copy. */
#ifndef CHORUS_FANOUT_H
#define CHORUS_FANOUT_H

#include <stddef.h>
#include <stdint.h>

typedef struct server server;
typedef struct topic topic;
typedef struct frame_ref frame_ref;
typedef struct store_msg store_msg;

/* Encodes the messages of t linked from msgs[first] (through next_same)
 * into one block. *pos gets count + 1 byte offsets (frame i spans
 * pos[i]..pos[i+1]); both are the caller's to free. NULL on allocation
 * failure. */
frame_ref *fanout_build(const topic *t, const store_msg *msgs, size_t first,
                        size_t *count, size_t **pos);

/* The same for msgs[0..n), consecutive offsets of t (a live feed's). */
frame_ref *fanout_build_run(const topic *t, const store_msg *msgs, size_t n,
                            size_t *count, size_t **pos);

/* Delivers a committed block (offsets first .. first+count-1) to t's live
 * subscribers in this loop, skipping what each has had already. */
void fanout_deliver(server *s, topic *t, frame_ref *f, uint64_t first,
                    size_t count, const size_t *pos);

/* A committed block could not be built or passed on (out of memory):
 * its subscribers here would see a gap. They are closed with 1013 instead
 * (reconnect and resume), so that each resumes from the last offset it
 * got and replays the rest. fanout_lost: t's subscribers;
 * fanout_lost_all: every connection with a subscription in this loop
 * (when which topic is not known). */
void fanout_lost(topic *t);
void fanout_lost_all(server *s);

/* The same for a block that loop 0 committed: only topics this loop has
 * subscribers for are concerned. */
void publish_deliver_block(server *s, const char *name, size_t len,
                           frame_ref *f, uint64_t first, size_t count,
                           const size_t *pos);

#endif
