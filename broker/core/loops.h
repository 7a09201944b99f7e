/* Several event loops side by side (threads = N), each with its own
 * connections, topic table and store handle.
 *
 * Loop 0 accepts every connection and hands it to a loop round-robin.
 * With an engine that publishes centrally (SQLite, store.h), loop 0 also
 * orders every publish: a publish received by any loop is forwarded to
 * loop 0, which has the engine store the batch (the engine assigns the
 * offsets), fans the block of frames out to its own subscribers and hands
 * the same block (one encoding, shared by reference) to every other loop
 * for theirs; the ack goes back to the loop that received the publish.
 * Loops talk through inboxes: a mutex-protected list plus an event that
 * wakes the receiver. Offsets reach every loop in order per topic because
 * one loop completes them and every inbox is FIFO. */
#ifndef CHORUS_LOOPS_H
#define CHORUS_LOOPS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "ip_table.h"
#include "log.h"

typedef struct server server;
typedef struct frame_ref frame_ref;
struct ssl_st;

typedef enum {
    LMSG_CONN,      /* loop 0 -> k: adopt an accepted socket */
    LMSG_PUBLISH,   /* k -> 0: a publish to commit */
    LMSG_COMMITTED, /* 0 -> k: a committed block of one topic's frames */
    LMSG_ACK,       /* 0 -> k: the outcome of a forwarded publish */
    LMSG_CONFIG,    /* 0 -> k: use this config from now on (a reload) */
    LMSG_CUTOFF,    /* 0 -> every loop: the engine is out of reach too long
                       (server_cut_off) */
} lmsg_type;

typedef struct lmsg {
    struct lmsg *next;
    lmsg_type type;
    int origin;  /* PUBLISH: loop that holds the publisher */
    void *token; /* PUBLISH, ACK: the origin's pending record; CONN: its
                    ip_slot; CONFIG: a config_ref reference, owned */
    char *data;  /* PUBLISH: serialized JSON, owned */
    size_t data_len;
    uint64_t offset;    /* ACK: offset; COMMITTED: first offset */
    size_t count;       /* COMMITTED: frames in the block */
    size_t *pos;        /* COMMITTED: count + 1 byte positions, owned */
    frame_ref *block;   /* COMMITTED: a reference, owned */
    int failed;         /* ACK: the commit failed */
    char epoch[33];     /* ACK */
    int fd;             /* CONN */
    struct ssl_st *ssl; /* CONN: TLS state to adopt, or NULL */
    struct sockaddr_storage addr;
    int addrlen;
    size_t name_len; /* topic name (PUBLISH, COMMITTED, ACK) */
    char name[];
} lmsg;

typedef struct inbox {
    pthread_mutex_t mu;
    lmsg *head, *tail;
    int lost; /* a committed block could not be posted */
    int stop; /* shut down once what is queued is handled */
    struct event *ev;
} inbox;

/* Where the config comes from, kept so that a reload reads it again. */
typedef struct config_source {
    const char *path;      /* -c FILE, or NULL for the defaults */
    const char *listen;    /* --listen, or NULL */
    const char *log_level; /* --log-level, or NULL */
} config_source;

/* What the loops share; only the fields under mu, and the log limits
 * (atomics), are written by more than one thread. */
typedef struct broker {
    const config *cfg; /* loop 0's: read by loop 0 only once they run */
    const config_source *src;
    struct store *store;   /* the history engine (store.h); NULL when off */
    log_limit *log_limits; /* one per LOG_CAUSE_ (server.h) */
    _Atomic uint64_t last_conn_id;
    server *loops;
    int n;
    pthread_t *threads;
    pthread_mutex_t mu; /* guards ips and nconns */
    ip_table ips;
    size_t nconns; /* open connections in all loops */
    int next_loop; /* round-robin cursor (loop 0 only) */
    /* What a loop does with a message from another: 1 when it took m
     * (set by loops_run, so that this file calls no layer above). */
    int (*handle)(server *s, lmsg *m);
    void (*lost)(server *s); /* a committed block for s was lost */
    void (*stop)(server *s); /* shut down, after what was queued */
} broker;

lmsg *lmsg_new(lmsg_type type, const char *name, size_t name_len);
void lmsg_free(lmsg *m);

/* Queues m for loop `to` and wakes it; takes ownership of m (freed at
 * once when that loop's inbox is gone). */
void loops_post(broker *b, int to, lmsg *m);

/* The same, but when loop `to`'s inbox is gone returns -1 and leaves m
 * (and whatever its token stands for) to the caller. 0 once queued. */
int loops_try_post(broker *b, int to, lmsg *m);

/* Tells loop `to` to shut down once it has handled what is queued for it.
 * Allocates nothing, so that stopping works when memory is out. */
void loops_post_stop(broker *b, int to);

/* Tells loop `to`, without allocating, that a committed block meant for
 * it was lost: before anything queued after, it closes its subscribers
 * (fanout_lost_all) so that they resume without a gap. */
void loops_post_lost(broker *b, int to);

/* A connection id unique in the broker (every loop), for the logs. */
uint64_t loops_new_conn_id(broker *b);

/* A loop's inbox, created on its base; destroy frees what is left. */
int loops_inbox_init(server *s);
void loops_inbox_destroy(server *s);

/* Handles every message waiting in s's inbox now. */
void loops_drain_inbox(server *s);

/* Connection accounting across loops: 1 and counted when the address may
 * open one more connection, else 0 with *cause set. */
int loops_admit(broker *b, const struct sockaddr *sa, ip_slot **slot,
                int *cause);
void loops_release(broker *b, ip_slot *slot);

#endif
