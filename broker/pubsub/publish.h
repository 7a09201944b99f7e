/* Publishing with group commit, through the history engine (store.h).
 * The publishing loop collects publishes into a batch; at the end of a
 * loop turn the batch goes to the engine, which stores it (SQLite: in one
 * transaction on its writer thread) and assigns the offsets, while the
 * next batch collects. Only once the engine has answered are offsets made
 * visible, acks sent and messages fanned out: no client ever sees an
 * offset that a crash could take back. A failed append answers each
 * publish with `internal`; the engine consumed none of its offsets.
 *
 * With an engine that publishes centrally (SQLite), other loops forward
 * their publishes to loop 0 (loops.h), which fans each committed block
 * out to every loop. With history off there is no engine: loop 0 numbers
 * the messages itself, in memory. */
#ifndef CHORUS_PUBLISH_H
#define CHORUS_PUBLISH_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "store.h"

typedef struct server server;
typedef struct conn conn;
typedef struct topic topic;
struct lmsg;
struct event;

typedef enum { ACK_WS, ACK_HTTP } ack_kind;

/* How a publisher hears the outcome of its publish (error NULL: stored
 * at offset), one per ack_kind: set by server_init (session.c for
 * WebSocket, the HTTP API for HTTP), so that this layer calls neither by
 * name. */
typedef void (*publish_answer_fn)(conn *c, json_t *id, size_t data_len,
                                  const char *topic_name, const char *epoch,
                                  uint64_t offset, const char *error);

/* Who waits for the outcome of msgs[i] of a batch (same index). */
typedef struct publish_ack {
    topic *t;           /* pinned until the batch is done */
    conn *c;            /* referenced; acked unless closed meanwhile; NULL
                           when another loop holds the publisher */
    struct lmsg *reply; /* when c is NULL: that loop's message, owned; it
                           goes back as the ack, so acking allocates nothing */
    ack_kind ack;
    json_t *id; /* request id to echo (a reference), or NULL */
    char *data; /* serialized JSON, owned (msgs[i].data points here) */
} publish_ack;

typedef struct publish_slot {
    store_msg *msgs;
    publish_ack *acks;
    size_t n, cap;
} publish_slot;

typedef struct publish_batch {
    publish_slot collecting;
    publish_slot inflight; /* with the engine */
    double started;        /* when inflight went (monotonic seconds) */
    struct event *commit_ev;
} publish_batch;

/* 1 when this loop appends to the engine itself, 0 when it forwards its
 * publishes to loop 0. */
int publish_here(const server *s);

int publish_init(server *s, char *err, size_t errlen);
void publish_destroy(server *s);

/* The state of topic name for a subscriber: from the engine or, with
 * history off, from memory (a topic unknown here starts at offset 0 in a
 * new epoch). cb runs as store.h's topic callbacks do: exactly once, on
 * this loop, possibly before this returns. */
void publish_topic_info(server *s, const char *name, size_t len,
                        store_topic_cb cb, void *arg);

/* Takes the state publish_topic_info gave for t into this loop's topic:
 * its epoch, and its newest offset unless a fan-out here is ahead. */
void publish_topic_adopt(topic *t, const store_topic_info *info);

/* Publishes data (serialized JSON, owned) to the topic for c, whose reply
 * (`published` or HTTP 200) follows the commit. Returns 0, or -1 (data
 * freed) when that failed; the caller replies `internal`. */
int publish_submit(server *s, conn *c, ack_kind ack, json_t *id,
                   const char *name, size_t len, char *data, size_t data_len);

/* Loop 0: a publish forwarded by another loop. Takes m: it is sent back
 * as the ack. */
void publish_receive_forwarded(server *s, struct lmsg *m);

/* The origin loop: the outcome of a forwarded publish. */
void publish_forwarded_ack(server *s, struct lmsg *m);

/* Commits everything pending and completes it, waiting for the engine:
 * for shutdown. */
void publish_flush(server *s);

#endif
