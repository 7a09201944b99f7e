/* The history engine seam: everything the pub/sub layer (broker/pubsub,
 * broker/http, server.c) asks of the store that keeps topics' messages,
 * and the only store header that layer includes. An engine is a table of
 * functions (store_engine), in the manner of SQLite's VFS or Redis's
 * connection.h. SQLite (broker/store/sqlite/) is the first engine, Redis
 * (broker/store/redis/) the second; only an engine's own files include
 * its library's headers.
 *
 * Objects. With `history = on` (the default) the broker opens one store
 * (store_open) before its loops start and closes it after they stop;
 * with history off it opens none and topics live in memory only. Each
 * event loop attaches and gets a store_loop of its own, used only on
 * that loop's thread: a store is shared, a store_loop never is.
 *
 * Requests and callbacks. Every request (append, topic, read) takes a
 * completion callback and an arg, and returns nothing: its outcome is
 * always the callback, which runs EXACTLY ONCE per request, also on
 * failure. The callback runs on the thread of the loop that made the
 * request, and:
 *   - it MAY run before the request returns (SQLite answers reads at once,
 *     and any engine may fail a request at once, out of memory say);
 *   - or later, from that loop's event base (SQLite's appends, and every
 *     Redis request).
 * Callers are written for both: they set up whatever the callback uses
 * before the call, and touch nothing the callback may free after it.
 * A callback may make new requests on the same store_loop.
 *
 * Failures. status is STORE_OK or STORE_FAIL. STORE_FAIL means this
 * request did nothing durable: a failed append stored none of its
 * messages and consumed none of their offsets (a full disk, Redis
 * unreachable). Where an engine can no longer tell whether a write took
 * effect (an I/O error after the commit record may have reached the
 * disk), it does not return: it logs the cause and ends the process
 * (fail-stop), so that no publisher is told `internal` for a message a
 * restart could bring back.
 *
 * Offsets and epochs (PROTOCOL.md "Topics", "Replay"). The engine assigns
 * offsets. Per topic they are 1, 2, 3, ... with no gap, in the order
 * batches complete and, within a batch, in array order. An epoch is
 * STORE_EPOCH_LEN lowercase hex characters and changes only when the
 * topic's history may have lost acknowledged messages. Reading never
 * creates anything: a topic that was never published to has no stored
 * state, yet the engine reports an epoch for it (newest 0) under which
 * its first messages will be stored, so that a subscriber that saw
 * (epoch, 0) resumes with `recovered: true`. */
#ifndef CHORUS_STORE_H
#define CHORUS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct event_base;
struct evbuffer;

typedef struct store store;
typedef struct store_loop store_loop;
typedef struct store_engine store_engine;

enum { STORE_OK = 0, STORE_FAIL = -1 };

#define STORE_EPOCH_LEN 32

/* One message of an append batch. The caller fills the inputs and keeps
 * the array, the topic names and the data valid and unchanged until the
 * append's callback; the engine fills the outputs before it. */
typedef struct store_msg {
    /* in */
    const char *topic; /* a valid topic name, NUL-terminated */
    size_t topic_len;
    const char *data; /* serialized JSON */
    size_t data_len;
    int64_t ts_ms; /* the broker's clock at publish time */
    /* in: the batch's messages of one topic are linked in array order:
     * group_first marks the first, next_same is the index + 1 of the next
     * one (0 after the last). Engines use it to write each topic's
     * messages together without searching the batch. */
    int group_first;
    size_t next_same;
    /* out, on success */
    uint64_t offset;
    char epoch[STORE_EPOCH_LEN + 1];
} store_msg;

/* What a topic's state is at the moment of the request. */
typedef struct store_topic_info {
    char epoch[STORE_EPOCH_LEN + 1];
    /* The newest committed offset, 0 when there is none. It counts every
     * append whose callback has run, on any loop (and, for an engine
     * shared by several nodes, on any node): what `subscribed` reports. */
    uint64_t newest;
    /* The oldest offset still retained, 0 when none is (never published
     * to, or everything trimmed). Offsets oldest..newest are readable. */
    uint64_t oldest;
} store_topic_info;

/* status is STORE_OK or STORE_FAIL; why (NULL on success) is a short
 * cause for logs, valid during the call only. */
typedef void (*store_append_cb)(void *arg, int status, const char *why);
/* info is valid during the call only, and NULL on failure. */
typedef void (*store_topic_cb)(void *arg, int status,
                               const store_topic_info *info);
/* One stored message; data is valid during the call only. A non-zero
 * return stops the read (its callback still runs, with STORE_OK). */
typedef int (*store_row_fn)(void *arg, uint64_t offset, int64_t ts_ms,
                            const char *data, size_t data_len);
/* rows: how many messages were handed to the row function. */
typedef void (*store_read_cb)(void *arg, int status, size_t rows);

/* The live feed: how an engine shared with others (other loops, other
 * nodes) hands a loop the messages that reach it through the engine
 * rather than through its own appends. Called on the loop's thread, from
 * its event base, never from inside a request. SQLite has no feed.
 * Only for topics the loop watches (store_engine.watch). */
typedef struct store_feed {
    /* n messages of one topic, consecutive offsets in increasing order,
     * each offset once, following what the feed delivered before for
     * that topic in that epoch (the engine fills any gap from the stored
     * history first). msgs[i].group_first/next_same are unset. */
    void (*messages)(void *arg, const char *topic, size_t topic_len,
                     const store_msg *msgs, size_t n);
    /* The topic's epoch changed (PROTOCOL.md "When the epoch changes
     * under a live subscription"): what the loop's subscribers were
     * following is void; info is the new state. */
    void (*epoch_changed)(void *arg, const char *topic, size_t topic_len,
                          const store_topic_info *info);
    void *arg;
} store_feed;

/* A store, as every engine's own structure begins. */
struct store {
    const store_engine *engine;
};

/* A loop's handle, as every engine's own structure begins. */
struct store_loop {
    const store_engine *engine;
    store *st;
};

struct store_engine {
    const char *name; /* "sqlite", "redis": the `engine` config value */

    /* How publishes flow between loops. 1: only loop 0 appends; the
     * pub/sub layer forwards every publish to loop 0 and, once a batch is
     * committed, hands loop 0's encoded block to the other loops (one
     * encoding for all). 0: every loop appends its own publishes, the
     * append's callback only acknowledges, and every message, this
     * loop's own included, reaches the loop's subscribers through the
     * feed, in offset order per topic. */
    int central_publish;

    /* Opens the store for cfg (on the main thread, before any loop).
     * STORE_OK, or STORE_FAIL with a message that names the cause in err. */
    int (*open)(store **out, const config *cfg, char *err, size_t errlen);
    /* After every loop has detached. */
    void (*close)(store *st);

    /* Attaches loop `index` (0 .. threads-1), on whose thread every later
     * call with the handle is made and every callback runs; base is that
     * loop's event base. feed may be NULL (no live delivery wanted);
     * it is kept, not copied. Called on the loop's thread or, before the
     * loop runs, on the thread that starts it. */
    int (*attach)(store *st, int index, struct event_base *base,
                  const store_feed *feed, store_loop **out, char *err,
                  size_t errlen);
    /* Completes every pending request of the handle now: their callbacks
     * run inside this call, with their real outcome where the engine can
     * still learn it in bounded time (SQLite waits for its writer; Redis
     * at most redis_timeout), else STORE_FAIL. For shutdown, so that
     * what was accepted is acknowledged before clients are closed. */
    void (*flush)(store_loop *l);
    /* Flushes, then frees the handle. */
    void (*detach)(store_loop *l);

    /* Stores msgs[0..n) (n >= 1) as one batch: all of them or, on
     * failure, none. Batches appended on one handle complete in the order
     * they were appended. With central_publish, only loop 0 appends.
     * Redis stores each topic's messages of a batch in one script call,
     * and topics may live on different instances: its batches are all or
     * none per topic only. On STORE_FAIL the messages whose offset is
     * non-zero were stored all the same, so a caller that fails every
     * message of the batch may refuse a stored one, never acknowledge one
     * that was not stored. */
    void (*append)(store_loop *l, store_msg *msgs, size_t n, store_append_cb cb,
                   void *arg);

    /* The state of topic name (len bytes, need not be NUL-terminated).
     * Never creates stored state. */
    void (*topic)(store_loop *l, const char *name, size_t len,
                  store_topic_cb cb, void *arg);

    /* Hands row() up to limit (>= 1) retained messages of the topic with
     * offset > after, in offset order, then calls done. A topic with
     * nothing stored reads as empty (rows 0, STORE_OK). */
    void (*read)(store_loop *l, const char *name, size_t len, uint64_t after,
                 size_t limit, store_row_fn row, store_read_cb done, void *arg);

    /* The loop has (on = 1) or no longer has (on = 0) subscribers of the
     * topic: calls balance per loop and topic, on after off. NULL when the
     * engine has no feed. */
    void (*watch)(store_loop *l, const char *name, size_t len, int on);

    /* NULL while the engine can take appends, else a short cause for
     * /healthz ("redis unavailable"). Any thread. */
    const char *(*unavailable)(store *st);

    /* New retention bounds (history_size, history_ttl; a reload), applied
     * from the engine's next retention pass. Any thread; NULL when the
     * engine has no retention of its own. */
    void (*set_retention)(store *st, uint64_t size, uint64_t ttl_ms);

    /* Appends the engine's own Prometheus lines (with HELP and TYPE) to
     * out. Any thread; may be NULL. */
    void (*metrics)(store *st, struct evbuffer *out);

    /* Offline maintenance (chorusd --new-epochs), with no broker using
     * the store: gives the store and every topic a fresh epoch, keeping
     * offsets and messages, so that no position taken before is
     * recovered after (the remedy for history restored from a copy).
     * STORE_OK with a summary in msg, or STORE_FAIL with the cause (the
     * store is in use, say). NULL when the engine has no such action. */
    int (*new_epochs)(const config *cfg, char *msg, size_t msglen);
};

/* The engines built in. */
extern const store_engine store_engine_sqlite;
extern const store_engine store_engine_redis; /* broker/store/redis/ */

/* Opens the engine cfg names (SQLite unless configured otherwise).
 * STORE_OK, or STORE_FAIL with a message in err. */
int store_open(store **out, const config *cfg, char *err, size_t errlen);

/* The new_epochs action of the engine cfg names; STORE_FAIL with a
 * message when it has none. */
int store_new_epochs(const config *cfg, char *msg, size_t msglen);

/* Shorthands that dispatch through the handle's table. */
static inline void store_close(store *st)
{
    if (st)
        st->engine->close(st);
}

static inline int store_attach(store *st, int index, struct event_base *base,
                               const store_feed *feed, store_loop **out,
                               char *err, size_t errlen)
{
    return st->engine->attach(st, index, base, feed, out, err, errlen);
}

static inline void store_flush(store_loop *l)
{
    if (l)
        l->engine->flush(l);
}

static inline void store_detach(store_loop *l)
{
    if (l)
        l->engine->detach(l);
}

static inline void store_append(store_loop *l, store_msg *msgs, size_t n,
                                store_append_cb cb, void *arg)
{
    l->engine->append(l, msgs, n, cb, arg);
}

static inline void store_topic(store_loop *l, const char *name, size_t len,
                               store_topic_cb cb, void *arg)
{
    l->engine->topic(l, name, len, cb, arg);
}

static inline void store_read(store_loop *l, const char *name, size_t len,
                              uint64_t after, size_t limit, store_row_fn row,
                              store_read_cb done, void *arg)
{
    l->engine->read(l, name, len, after, limit, row, done, arg);
}

static inline void store_watch(store_loop *l, const char *name, size_t len,
                               int on)
{
    if (l->engine->watch)
        l->engine->watch(l, name, len, on);
}

static inline const char *store_unavailable(store *st)
{
    return st->engine->unavailable ? st->engine->unavailable(st) : NULL;
}

static inline void store_set_retention(store *st, uint64_t size,
                                       uint64_t ttl_ms)
{
    if (st->engine->set_retention)
        st->engine->set_retention(st, size, ttl_ms);
}

static inline void store_metrics(store *st, struct evbuffer *out)
{
    if (st->engine->metrics)
        st->engine->metrics(st, out);
}

#endif
