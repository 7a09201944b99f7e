/* Durable per-topic message history in SQLite. The only module that
 * includes sqlite3.h. Not thread-safe: one history per event loop.
 *
 * On disk (schema version 2 in PRAGMA user_version):
 *   topics(id INTEGER PRIMARY KEY, name TEXT UNIQUE, epoch TEXT,
 *          last_offset INTEGER, trim_offset INTEGER)
 *   batches(id INTEGER PRIMARY KEY, topic_id, first_offset, last_offset,
 *           max_ts, data BLOB), UNIQUE INDEX (topic_id, last_offset)
 * Each batches row is a record batch (history_batch.h): the messages of
 * one topic, consecutive offsets first_offset..last_offset, committed
 * together. Retention drops offsets up to topics.trim_offset (readers skip
 * them) and deletes the batches that lie wholly below it.
 * A topic row is never deleted, so its epoch and offset survive even when
 * every message has been trimmed. */
#ifndef CHORUS_HISTORY_H
#define CHORUS_HISTORY_H

#include <stddef.h>
#include <stdint.h>

typedef struct history history;

typedef struct history_opts {
    int durability_full;     /* synchronous=FULL instead of NORMAL */
    uint64_t history_size;   /* keep at most this many per topic; 0 = off */
    uint64_t history_ttl_ms; /* drop messages older than this; 0 = off */
} history_opts;

/* How long a connection waits for another's lock (ms). */
#define HISTORY_BUSY_TIMEOUT_MS 2000

#define HISTORY_EPOCH_LEN 32 /* lowercase hex of 128 random bits */

typedef struct history_topic {
    int64_t id;
    char epoch[HISTORY_EPOCH_LEN + 1];
    uint64_t last_offset; /* newest offset ever committed; 0 if none */
} history_topic;

/* Opens (creating or migrating) the database. On failure returns -1 and
 * writes a message that names the file to err. */
int history_open(history **out, const char *path, const history_opts *opts,
                 char *err, size_t errlen);
void history_close(history *h);

/* Changes the retention bounds (history_size, history_ttl_ms) the next
 * trim step applies. Only by the thread that uses h. */
void history_set_retention(history *h, uint64_t size, uint64_t ttl_ms);

/* Last SQLite error text, for logs. */
const char *history_errmsg(history *h);

/* Looks a topic up; when absent and create is set, inserts it with a new
 * random epoch and offset 0. Returns 0 found/created, 1 absent (create
 * 0), -1 on error. */
int history_topic_load(history *h, const char *name, int create,
                       history_topic *out);

/* Group commit: begin, append any number of messages, then commit (or
 * rollback on any failure). append stores one message as a batch of its
 * own and advances the topic's last_offset; an offset not after the
 * topic's last one is refused. Each returns 0 or -1. */
int history_begin(history *h);
int history_append(history *h, int64_t topic_id, uint64_t offset, int64_t ts_ms,
                   const char *data, size_t data_len);
int history_commit(history *h);

/* Appends the messages of a run of one topic, in offset order, the last
 * one with last = 1: the run is stored as one batch row (split where its
 * offsets are not consecutive or it grows large) and the topic's
 * last_offset is updated once. Messages of another topic may only follow
 * once the run has ended; commit refuses an unfinished run. data is
 * copied, so it need not outlive the call. */
int history_append_run(history *h, int64_t topic_id, uint64_t offset,
                       int64_t ts_ms, const char *data, size_t data_len,
                       int last);
void history_rollback(history *h);

/* Oldest retained offset of a topic (0 when it has no messages). */
int history_first_offset(history *h, int64_t topic_id, uint64_t *first);

typedef int (*history_row_fn)(uint64_t offset, int64_t ts_ms, const char *data,
                              size_t data_len, void *arg);

/* Calls fn for up to limit messages with offset > after, in offset order;
 * stops early when fn returns non-zero. Returns rows visited or -1. */
int history_read(history *h, int64_t topic_id, uint64_t after, size_t limit,
                 history_row_fn fn, void *arg);

/* Enforces retention (count and age) on at most budget messages in all
 * and returns the number dropped (or -1); it deletes at most that many
 * rows. Call repeatedly from a timer: each call is a short transaction,
 * so it never blocks the loop for long. */
int history_trim_step(history *h, int64_t now_ms, size_t budget);

/* The same inside the open batch, after its appends (none unfinished)
 * and before history_commit: so that retention keeps up while batches
 * follow each other without a pause, and shares their pages. A failed
 * step is undone (a savepoint), leaving the batch as it was, and returns
 * -1. */
int history_trim_in_batch(history *h, int64_t now_ms, size_t budget);

/* Test-only hook: sets PRAGMA max_page_count on the connection (SQLite
 * clamps it to the current size), so unit tests can simulate a full disk.
 * Returns the resulting limit or -1. Not for production use. */
int history_test_set_max_pages(history *h, int pages);

/* Runs WAL checkpoints on a thread of their own (with a connection of
 * their own to path) and turns h's automatic checkpoints off, so that the
 * fsync a checkpoint needs never stalls h's event loop. */
typedef struct history_checkpointer history_checkpointer;
int history_checkpointer_start(history *h, const char *path,
                               history_checkpointer **out, char *err,
                               size_t errlen);
/* Stops the thread (after h's last commit; before history_close). */
void history_checkpointer_stop(history_checkpointer *cp);

/* For the connection that commits while a checkpointer runs: it
 * checkpoints only when the WAL reaches HISTORY_WAL_RESTART_BYTES. The
 * checkpointer copies the WAL into the database as it grows, but under
 * constant writes never catches up with its end, and the WAL can only
 * start over once all of it is copied: this rare checkpoint copies the
 * little that is left (and pays the fsync) so that it does. */
void history_checkpoint_rarely(history *h);

#endif
