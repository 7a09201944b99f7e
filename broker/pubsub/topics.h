/* The topic table, indexed both ways: topic -> subscribers and owner
 * (a connection, opaque here) -> subscriptions. Subscribe, unsubscribe and
 * the lookup of one owner's subscription to one topic are O(1); dropping
 * an owner costs only its own subscriptions. A topic is freed as soon as
 * it has no subscriber and no pin. Knows nothing of sockets or storage. */
#ifndef CHORUS_TOPICS_H
#define CHORUS_TOPICS_H

#include <stddef.h>
#include <stdint.h>

#include "dict.h"

typedef struct topic topic;

typedef struct sub {
    dict_node node; /* in topics.subs, keyed by (topic, owner) */
    topic *t;
    void *owner;
    struct sub *t_prev, *t_next; /* the topic's subscribers */
    struct sub *o_prev, *o_next; /* the owner's subscriptions */
    /* Replay state, used by the owner: while replaying, live messages are
     * not delivered; the owner streams stored ones after cursor. */
    uint64_t cursor;
    int replaying;
    /* The owner takes Server-Sent Events (sse_event.h), not WebSocket
     * frames: fan-out and replay encode for it accordingly. */
    int sse;
    /* Offsets up to this one reached the subscriber otherwise (they were
     * older than its subscription, or replayed): live delivery skips
     * them, so that nothing arrives twice. */
    uint64_t live_from;
    struct sub *replay_next;
} sub;

struct topic {
    dict_node node; /* in topics.by_name */
    sub *subs;
    size_t nsubs;
    uint32_t pins; /* holders other than subscribers */
    /* The topic's state as this loop knows it, filled in from the store
     * (a subscribe, a committed block) or, with history off, drawn here. */
    int loaded;
    char epoch[33];
    uint64_t last_offset; /* newest committed (visible) offset */
    uint64_t next_offset; /* history off: newest assigned offset */
    /* This topic's items in the pending publish batch, as index + 1 (0 =
     * none), so that the batch fans out per topic in one block. */
    size_t batch_head, batch_tail;
    size_t name_len;
    char name[]; /* NUL-terminated */
};

typedef struct topics {
    dict by_name;
    dict subs;
    uint8_t key[16]; /* SipHash key, random per process */
    /* Called when a topic gets its first subscriber (on = 1) or loses its
     * last (on = 0), if set: so that a store with a live feed follows
     * exactly the topics subscribed to here. */
    void (*watch)(void *arg, topic *t, int on);
    void *watch_arg;
} topics;

int topics_init(topics *ts);
/* Frees every topic and subscription still present. */
void topics_destroy(topics *ts);

topic *topics_find(topics *ts, const char *name, size_t len);
/* Finds or creates (unloaded, unpinned) topic. NULL on allocation failure.
 * A new topic with no subscriber and no pin is freed by the next
 * topics_release(); callers pin it before giving control back. */
topic *topics_get(topics *ts, const char *name, size_t len);

void topics_pin(topic *t);
void topics_unpin(topics *ts, topic *t);
/* Frees t if nothing holds it any more. */
void topics_release(topics *ts, topic *t);

sub *topics_find_sub(topics *ts, topic *t, void *owner);

/* Adds owner to t's subscribers (the caller has checked it is not already
 * there) and links the sub into *owner_list. NULL on allocation failure. */
sub *topics_subscribe(topics *ts, topic *t, void *owner, sub **owner_list);

/* Removes s from both indexes, frees it, and frees its topic if unused. */
void topics_unsubscribe(topics *ts, sub *s, sub **owner_list);
void topics_unsubscribe_all(topics *ts, sub **owner_list);

/* Sizes; callable from another loop's thread (GET /metrics). */
size_t topics_count(const topics *ts);
size_t topics_sub_count(const topics *ts);

#endif
