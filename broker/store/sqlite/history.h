/* Durable per-topic message history in SQLite: the storage under the
 * SQLite engine (store_sqlite.c, behind store.h). With history_vfs*.c the
 * only module that includes sqlite3.h. Not thread-safe: a handle is used
 * by one thread at a time. Two kinds of handle:
 *   - the writer's (history_open): creates and migrates the schema, and
 *     makes every write (appends, topic rows, retention, checkpoints);
 *   - a reader's (history_open_reader): one per event loop, query only,
 *     never checkpoints, so that it never waits for the disk.
 *
 * On disk (schema version 3 in PRAGMA user_version):
 *   meta(epoch TEXT): one row, the database's epoch, drawn when the
 *          database is created
 *   topics(id INTEGER PRIMARY KEY, name TEXT UNIQUE, epoch TEXT,
 *          last_offset INTEGER, trim_offset INTEGER)
 *   batches(id INTEGER PRIMARY KEY, topic_id, first_offset, last_offset,
 *           max_ts, data BLOB), UNIQUE INDEX (topic_id, last_offset)
 * Each batches row is a record batch (history_batch.h): the messages of
 * one topic, consecutive offsets first_offset..last_offset, committed
 * together. Retention drops offsets up to topics.trim_offset (readers skip
 * them) and deletes the batches that lie wholly below it.
 * A topic gets its row when its first message is stored, with the
 * database's epoch (older databases keep the random epochs their topics
 * were given), so a topic never published to reports (database epoch, 0)
 * and that position stays valid. A topic row is never deleted, so its
 * epoch and offset survive even when every message has been trimmed. */
#ifndef CHORUS_HISTORY_H
#define CHORUS_HISTORY_H

#include <stddef.h>
#include <stdint.h>

typedef struct history history;

typedef struct history_opts {
    int durability_full;     /* synchronous=FULL instead of NORMAL */
    uint64_t history_size;   /* keep at most this many per topic; 0 = off */
    uint64_t history_ttl_ms; /* drop messages older than this; 0 = off */
    /* The writer's handle alone may open the file (SQLite's EXCLUSIVE
     * locking mode): the open fails while another process has it open,
     * and no other can open it until this handle closes. For offline
     * maintenance (history_new_epochs). */
    int exclusive;
} history_opts;

/* How long a connection waits for another's lock (ms). */
#define HISTORY_BUSY_TIMEOUT_MS 2000

#define HISTORY_EPOCH_LEN 32 /* lowercase hex of 128 random bits */

typedef struct history_topic {
    int64_t id;
    char epoch[HISTORY_EPOCH_LEN + 1];
    uint64_t last_offset; /* newest offset ever committed; 0 if none */
} history_topic;

/* Opens (creating or migrating) the database for writing. On failure
 * returns -1 and writes a message that names the file to err. */
int history_open(history **out, const char *path, const history_opts *opts,
                 char *err, size_t errlen);

/* Opens a read-only handle on a database history_open has set up: query
 * only, automatic checkpoints off and no checkpoint at close, so that it
 * never writes or syncs the files. Close readers before the writer. */
int history_open_reader(history **out, const char *path, char *err,
                        size_t errlen);
void history_close(history *h);

/* Sets the handle's page cache to kib KiB. */
void history_set_cache_kib(history *h, int kib);

/* Changes the retention bounds (history_size, history_ttl_ms) the next
 * trim step applies. Only by the thread that uses h. */
void history_set_retention(history *h, uint64_t size, uint64_t ttl_ms);

/* Last SQLite error text, for logs. */
const char *history_errmsg(history *h);

/* The database's epoch (meta), given to every new topic row. */
const char *history_db_epoch(history *h);

/* Gives the database and every topic a new epoch (one fresh epoch for
 * all, as a new database gives its topics its own), in one transaction;
 * offsets and messages stay. *topics: how many topics changed. For a
 * database restored from a copy: the offsets after the copy would be
 * handed out again, and a position taken before the restore must not be
 * recovered under them. 0 or -1 (history_errmsg). */
int history_new_epochs(history *h, uint64_t *topics);

/* Looks a topic up; when absent and create is set, inserts it with the
 * database's epoch and offset 0. Returns 0 found/created, 1 absent
 * (create 0), -1 on error. */
int history_topic_load(history *h, const char *name, int create,
                       history_topic *out);
/* The same for a name of len bytes (not NUL-terminated). */
int history_topic_load_n(history *h, const char *name, size_t len, int create,
                         history_topic *out);

/* Group commit: begin, append any number of messages, then commit (or
 * rollback on any failure). append stores one message as a batch of its
 * own and advances the topic's last_offset; an offset not after the
 * topic's last one is refused. Each returns 0 or -1. */
int history_begin(history *h);
int history_append(history *h, int64_t topic_id, uint64_t offset, int64_t ts_ms,
                   const char *data, size_t data_len);
int history_commit(history *h);

/* history_commit's result when COMMIT itself failed with an I/O error:
 * the commit record may have reached the WAL, so whether the batch is
 * stored is unknown until the next recovery. The caller must not reuse
 * its offsets; the broker ends the process (fail-stop). A full disk
 * (SQLITE_FULL: the commit record was not written) returns -1. */
#define HISTORY_COMMIT_UNKNOWN (-2)

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

/* A PASSIVE checkpoint on the writer's handle: copies what it can of the
 * WAL into the database and syncs it, without waiting for readers. Where
 * the WAL ends up wholly copied, the next commit starts it over. 0 or -1. */
int history_checkpoint(history *h);

/* Pages in the WAL at the last commit, 0 since a checkpoint (until the
 * next commit): the writer checkpoints early when it grows. */
int history_wal_pages(history *h);

/* Syncs (fsync or fdatasync of any history file) since the start, by
 * the thread that made them: the one marked with
 * history_mark_writer_thread(), and all others. Only the writer ever
 * should; the rest is a bug that stalls an event loop. */
void history_mark_writer_thread(void);
void history_sync_counts(uint64_t *writer, uint64_t *other);

/* Test-only fault injection: the next count writes to a WAL file fail,
 * with an I/O error (HISTORY_FAULT_IOERR) or a full disk
 * (HISTORY_FAULT_FULL). count 0 disarms. Not for production use. */
enum { HISTORY_FAULT_IOERR = 1, HISTORY_FAULT_FULL = 2 };
void history_test_fail_wal_writes(int fault, int count);

#endif
