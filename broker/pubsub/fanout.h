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
typedef struct publish_item publish_item;

/* Encodes the items of t linked from items[first] (through next_same)
 * into one block. *pos gets count + 1 byte offsets (frame i spans
 * pos[i]..pos[i+1]); both are the caller's to free. NULL on allocation
 * failure. */
frame_ref *fanout_build(const topic *t, const publish_item *items, size_t first,
                        size_t *count, size_t **pos);

/* Delivers a committed block (offsets first .. first+count-1) to t's live
 * subscribers in this loop, skipping what each has had already, and
 * advances each one's live_from past it. */
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
 * subscribers for are concerned. In cluster mode a block of another
 * epoch than the topic's here is dropped (the epoch change reaches this
 * loop on its own), and one that does not follow the last offset makes
 * subscribers replay the missing ones first (follow.h). */
void publish_deliver_block(server *s, const char *name, size_t len,
                           const char *epoch, frame_ref *f, uint64_t first,
                           size_t count, const size_t *pos);

#endif
