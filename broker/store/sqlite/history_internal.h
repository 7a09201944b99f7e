/* What the files of the history module share (history*.c): the handle,
 * its statements and their helpers (history_stmt.c), the schema
 * (history_schema.c), the message of a failed open (history_path.c) and
 * the VFS (history_vfs*.c). Not for the rest of the broker: only these
 * files talk to SQLite. */
#ifndef CHORUS_HISTORY_INTERNAL_H
#define CHORUS_HISTORY_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "history.h"
#include "history_batch.h"

enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_TOPIC_GET,
    ST_TOPIC_ADD,
    ST_BATCH_ADD,
    ST_TOPIC_BUMP,
    ST_RANGE,
    ST_FIRST,
    ST_TOPIC_NEXT,
    ST_OLDEST,
    ST_TRIM,
    ST_TRIM_MARK,
    ST_COUNT
};

/* The schema version this broker writes and reads (PRAGMA user_version):
 * the number of migrations (history_schema.c). */
#define HISTORY_SCHEMA_VERSION 3

struct history {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    history_opts opts;
    int in_txn;    /* a batch (history_begin) is open */
    int page_size; /* of the file, read once at open */
    int wal_pages; /* in the WAL after the last commit (sqlite3_wal_hook) */
    char db_epoch[HISTORY_EPOCH_LEN + 1]; /* meta.epoch */
    /* The run being appended (history_append_run): messages of one topic
     * with consecutive offsets, written as one row when it ends. */
    history_batch run;
    int64_t run_topic;
    uint64_t run_first;  /* first offset of the run; 0 = no run open */
    uint64_t run_next;   /* the offset that continues it */
    int64_t trim_cursor; /* id of the last topic a trim step visited */
    char err[512];
};

/* The name of the WAL-write-gathering VFS (history_vfs.c), registered on
 * first use; NULL (use the default VFS) if that failed. */
const char *history__vfs(void);

/* How history_vfs.c writes and syncs the underlying file real
 * (history_vfs_watch.c): a write with EFBIG or EDQUOT fails as a full
 * disk (SQLITE_FULL), and a write to a WAL (wal = 1) as the test fault
 * asks; a sync is counted for the calling thread's kind. */
int history__vfs_write(sqlite3_file *real, const void *data, int amt,
                       sqlite3_int64 off, int wal);
int history__vfs_sync(sqlite3_file *real, int flags);

/* When the file at path, its -wal, its -shm or their directory cannot be
 * used, a sentence that says which and why ("directory X is not writable
 * (Read-only file system)") into out and 1; else 0. */
int history__explain_path(const char *path, char *out, size_t len);
/* The message of a failed open or migration on db (NULL: out of memory),
 * "<path>: <sqlite message>" and why, into err. */
void history__open_err(sqlite3 *db, const char *path, char *err, size_t errlen);

/* Registers the SQL functions the migrations and history_new_epochs call
 * (chorus_batch1, chorus_new_epoch) on a new connection. 0 or -1. */
int history__register_functions(sqlite3 *db);
/* Brings the schema to HISTORY_SCHEMA_VERSION in one write transaction,
 * so two processes opening a new file cannot both create it. 0, or -1
 * with a message that names path in err. */
int history__migrate(sqlite3 *db, const char *path, char *err, size_t errlen);

/* Prepares every statement of the enum above into h->st. 0 or -1 (the
 * caller reads the connection's error). */
int history__prepare_statements(history *h);
/* Runs a one-row query (a PRAGMA) and copies its first column as text ("" when
 * no row) or as a number. SQLITE_OK or SQLite's error code. */
int history__pragma_text(sqlite3 *db, const char *sql, char *out, size_t len);
int history__pragma_int(sqlite3 *db, const char *sql, long long *v);

void history__set_err(history *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Records "<what>: <sqlite message>" for the last failed call. */
void history__db_err(history *h, const char *what);
/* The prepared statement id, reset. */
sqlite3_stmt *history__stmt(history *h, int id);
int history__bind_i64(history *h, sqlite3_stmt *s, int col, int64_t v);
int history__bind_text(history *h, sqlite3_stmt *s, int col, const char *p,
                       size_t len);
int history__bind_blob(history *h, sqlite3_stmt *s, int col, const void *p,
                       size_t len);
/* Steps a statement that returns no rows, then resets it. 0 or -1. */
int history__run(history *h, sqlite3_stmt *s, const char *what);
/* At most one row: 1 (positioned on it; the caller resets), 0, -1. */
int history__step_row(history *h, sqlite3_stmt *s, const char *what);
int64_t history__clamp_limit(size_t n);
/* Rolls back what is still open (SQLite may have rolled back already). */
void history__rollback_open(history *h);
/* Forgets the run being appended (after a rollback). */
void history__drop_run(history *h);
#endif
