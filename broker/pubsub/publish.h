/* Publishing with group commit. Loop 0 assigns offsets and collects
 * publishes into a batch; at the end of a loop turn the batch goes to the
 * history writer thread (writer.h), which commits it in one transaction
 * while the next batch collects. Only after the commit are offsets made
 * visible, acks sent and messages fanned out: no client ever sees an
 * offset that a crash could take back. A failed commit answers each
 * publish with `internal` and hands none of its offsets out. Other loops
 * forward their publishes to loop 0 (loops.h). */
#ifndef CHORUS_PUBLISH_H
#define CHORUS_PUBLISH_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

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

typedef struct publish_item {
    topic *t;           /* pinned until the batch is done */
    conn *c;            /* referenced; acked unless closed meanwhile; NULL
                           when another loop holds the publisher */
    struct lmsg *reply; /* when c is NULL: that loop's message, owned; it
                           goes back as the ack, so acking allocates nothing */
    ack_kind ack;
    json_t *id;       /* request id to echo (a reference), or NULL */
    int64_t store_id; /* the topic's row, for the writer thread */
    uint64_t offset;
    int64_t ts_ms;
    char *data; /* serialized JSON of the data, owned */
    size_t data_len;
    size_t next_same; /* index + 1 of the topic's next item; 0 = last */
    int group_first;  /* the first of its topic in its batch */
} publish_item;

typedef struct publish_batch {
    publish_item *items; /* collecting */
    size_t n, cap;
    publish_item *inflight; /* being committed by the writer thread */
    size_t inflight_n, inflight_cap;
    struct event *commit_ev;
    struct writer *writer; /* loop 0 with history; else commits inline */
} publish_batch;

/* Sets up the batch; loop 0 with history also starts the writer thread
 * (-1 with a message in err when it cannot). */
int publish_init(server *s, char *err, size_t errlen);
void publish_destroy(server *s);

/* Returns the topic with its stored state loaded (creating its row and
 * epoch on first use). NULL with an error logged when the store fails.
 * The topic is not pinned: callers subscribe or pin before returning to
 * the loop. */
topic *publish_load_topic(server *s, const char *name, size_t len);

/* The newest offset of t that any client may have seen acknowledged:
 * what `subscribed` reports and where live delivery starts. Returns 0, or
 * -1 when the store failed. */
int publish_newest(server *s, topic *t, uint64_t *newest);

/* Publishes data (serialized JSON, owned) to the topic for c, whose reply
 * (`published` or HTTP 200) follows the commit. Loop 0 assigns the offset
 * and joins the batch; other loops forward to loop 0. Returns 0, or -1
 * (data freed) when that failed; the caller replies `internal`. */
int publish_submit(server *s, conn *c, ack_kind ack, json_t *id,
                   const char *name, size_t len, char *data, size_t data_len);

/* Loop 0: a publish forwarded by another loop. Takes m: it is sent back
 * as the ack. */
void publish_receive_forwarded(server *s, struct lmsg *m);

/* The origin loop: the outcome of a forwarded publish. */
void publish_forwarded_ack(server *s, struct lmsg *m);

/* Commits everything pending and completes it, waiting for the writer
 * thread: for shutdown. */
void publish_flush(server *s);

#endif
