/* Several event loops side by side (threads = N), each with its own
 * connections, topic table and SQLite connection.
 *
 * Loop 0 accepts every connection and hands it to a loop round-robin. It
 * also owns the write side of history: a publish received by any loop is
 * forwarded to loop 0, which assigns the offset, commits the batch, fans
 * the block of frames out to its own subscribers and hands the same block
 * (one encoding, shared by reference) to every other loop for theirs; the
 * ack goes back to the loop that received the publish. Loops talk through
 * inboxes: a mutex-protected list plus an event that wakes the receiver.
 * Offsets stay gapless and ordered per topic because one loop assigns
 * them and every inbox is FIFO. */
#ifndef CHORUS_LOOPS_H
#define CHORUS_LOOPS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "ip_table.h"

typedef struct server server;
typedef struct frame_ref frame_ref;
struct ssl_st;

typedef enum {
    LMSG_CONN,      /* loop 0 -> k: adopt an accepted socket */
    LMSG_PUBLISH,   /* k -> 0: a publish to commit */
    LMSG_COMMITTED, /* 0 -> k: a committed block of one topic's frames */
    LMSG_ACK,       /* 0 -> k: the outcome of a forwarded publish */
    LMSG_STOP,      /* 0 -> k: shut down */
} lmsg_type;

typedef struct lmsg {
    struct lmsg *next;
    lmsg_type type;
    int origin;  /* PUBLISH: loop that holds the publisher */
    void *token; /* PUBLISH, ACK: the origin's pending record */
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
    struct event *ev;
} inbox;

/* What the loops share; only the fields under mu are written by more than
 * one thread. */
typedef struct broker {
    const config *cfg;
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
} broker;

lmsg *lmsg_new(lmsg_type type, const char *name, size_t name_len);
void lmsg_free(lmsg *m);

/* Queues m for loop `to` and wakes it; takes ownership of m. */
void loops_post(broker *b, int to, lmsg *m);

/* Tells loop `to`, without allocating, that a committed block meant for
 * it was lost: before anything queued after, it closes its subscribers
 * (fanout_lost_all) so that they resume without a gap. */
void loops_post_lost(broker *b, int to);

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
