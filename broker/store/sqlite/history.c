/* Durable per-topic message history in SQLite (see history.h).
 *
 * One connection per handle, WAL journal, every statement prepared once at
 * open. Offsets and timestamps are stored as SQLite INTEGERs (signed 64
 * bit), so offsets above INT64_MAX are refused rather than wrapped. */
#include "history.h"
#include "history_internal.h"

#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>
#include <sqlite3.h>

/* migrations[i] moves the schema from version i to i + 1. To change the
 * schema, append an entry; never edit one that has shipped. */
static const char *const migrations[] = {
    /* v1 */
    "CREATE TABLE topics("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  epoch TEXT NOT NULL,"
    "  last_offset INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE messages("
    "  topic_id INTEGER NOT NULL,"
    "  \"offset\" INTEGER NOT NULL,"
    "  ts INTEGER NOT NULL,"
    "  data TEXT NOT NULL,"
    "  PRIMARY KEY(topic_id, \"offset\")) WITHOUT ROWID;",
    /* v2: one row per topic per commit (a record batch, history_batch.h)
     * instead of one per message; each v1 message becomes a batch of one
     * (chorus_batch1() is registered on every connection, open_db).
     * topics.trim_offset: retention has dropped every offset up to it,
     * also those still inside a batch that straddles it. */
    "CREATE TABLE batches("
    "  id INTEGER PRIMARY KEY,"
    "  topic_id INTEGER NOT NULL,"
    "  first_offset INTEGER NOT NULL,"
    "  last_offset INTEGER NOT NULL,"
    "  max_ts INTEGER NOT NULL,"
    "  data BLOB NOT NULL);"
    "INSERT INTO batches(topic_id, first_offset, last_offset, max_ts, data)"
    "  SELECT topic_id, \"offset\", \"offset\", ts, chorus_batch1(ts, data)"
    "  FROM messages ORDER BY topic_id, \"offset\";"
    "DROP TABLE messages;"
    "CREATE UNIQUE INDEX batches_topic ON batches(topic_id, last_offset);"
    "ALTER TABLE topics ADD COLUMN trim_offset INTEGER NOT NULL DEFAULT 0;",
    /* v3: the database's epoch, drawn once (chorus_new_epoch(), open_db)
     * and given to each topic's row when its first message is stored, so
     * that reading a topic creates nothing yet reports an epoch that
     * stays valid. Topics created before keep their own epochs. */
    "CREATE TABLE meta(epoch TEXT NOT NULL);"
    "INSERT INTO meta(epoch) VALUES(chorus_new_epoch());",
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

/* The page size of a new database (an existing one keeps its own). A
 * commit rewrites every page it touches (the end of the batches table,
 * each topic's index leaf, the topics row, page 1), most of them for a few
 * bytes: 4 KiB pages write half the bytes per message of 16 KiB ones and
 * publish 20% faster (docs/BENCHMARKS.md). */
#ifndef HISTORY_PAGE_SIZE
#define HISTORY_PAGE_SIZE 4096
#endif

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_TOPIC_GET] =
        "SELECT id, epoch, last_offset FROM topics WHERE name = ?1",
    /* OR IGNORE: another connection (another event loop) may create the
     * same topic at the same moment; then its row wins. */
    [ST_TOPIC_ADD] = "INSERT OR IGNORE INTO topics(name, epoch, last_offset) "
                     "VALUES(?1, ?2, 0)",
    [ST_BATCH_ADD] = "INSERT INTO batches(topic_id, first_offset, "
                     "last_offset, max_ts, data) VALUES(?1, ?2, ?3, ?4, ?5)",
    /* Offsets only grow: a batch that does not start after the topic's
     * last offset (a duplicate) changes nothing and is refused. */
    [ST_TOPIC_BUMP] = "UPDATE topics SET last_offset = ?3 "
                      "WHERE id = ?1 AND last_offset < ?2",
    [ST_RANGE] = "SELECT b.first_offset, b.last_offset, b.data, "
                 "t.trim_offset FROM topics t JOIN batches b "
                 "ON b.topic_id = t.id WHERE t.id = ?1 "
                 "AND b.last_offset > max(?2, t.trim_offset) "
                 "ORDER BY b.last_offset",
    [ST_FIRST] = "SELECT max(b.first_offset, t.trim_offset + 1) "
                 "FROM topics t JOIN batches b ON b.topic_id = t.id "
                 "WHERE t.id = ?1 AND b.last_offset > t.trim_offset "
                 "ORDER BY b.last_offset LIMIT 1",
    [ST_TOPIC_NEXT] = "SELECT id, last_offset, trim_offset FROM topics "
                      "WHERE id > ?1 ORDER BY id LIMIT 1",
    [ST_OLDEST] = "SELECT first_offset, last_offset, max_ts, data "
                  "FROM batches WHERE topic_id = ?1 AND last_offset > ?2 "
                  "ORDER BY last_offset LIMIT ?3",
    [ST_TRIM] = "DELETE FROM batches WHERE topic_id = ?1 "
                "AND last_offset <= ?2",
    [ST_TRIM_MARK] = "UPDATE topics SET trim_offset = ?2 WHERE id = ?1",
};

/* ---- errors ---------------------------------------------------------- */

void history__set_err(history *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->err, sizeof h->err, fmt, ap);
    va_end(ap);
}

/* Records "<what>: <sqlite message>" for the last failed call. */
void history__db_err(history *h, const char *what)
{
    history__set_err(h, "%s: %s", what, sqlite3_errmsg(h->db));
}

const char *history_errmsg(history *h)
{
    return h ? h->err : "no history";
}

/* ---- statement helpers ----------------------------------------------- */

sqlite3_stmt *history__stmt(history *h, int id)
{
    sqlite3_reset(h->st[id]); /* previous errors were reported already */
    return h->st[id];
}

int history__bind_i64(history *h, sqlite3_stmt *s, int col, int64_t v)
{
    if (sqlite3_bind_int64(s, col, v) != SQLITE_OK) {
        history__db_err(h, "bind");
        return -1;
    }
    return 0;
}

int history__bind_text(history *h, sqlite3_stmt *s, int col, const char *p,
                       size_t len)
{
    if (sqlite3_bind_text64(s, col, p, len, SQLITE_STATIC, SQLITE_UTF8) !=
        SQLITE_OK) {
        history__db_err(h, "bind");
        return -1;
    }
    return 0;
}

int history__bind_blob(history *h, sqlite3_stmt *s, int col, const void *p,
                       size_t len)
{
    if (sqlite3_bind_blob64(s, col, p, len, SQLITE_STATIC) != SQLITE_OK) {
        history__db_err(h, "bind");
        return -1;
    }
    return 0;
}

/* Steps a statement that returns no rows, then resets it (which also
 * releases text bound with SQLITE_STATIC). */
int history__run(history *h, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE)
        history__db_err(h, what);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* Steps a statement expected to return at most one row: 1 row (left
 * positioned on it; the caller resets), 0 none, -1 error. */
int history__step_row(history *h, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc != SQLITE_DONE)
        history__db_err(h, what);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

int64_t history__clamp_limit(size_t n)
{
    return n > (size_t)INT_MAX ? INT_MAX : (int64_t)n;
}

/* ---- open / close ---------------------------------------------------- */

/* Runs a one-row PRAGMA and copies its first column as text. */
static int pragma_text(sqlite3 *db, const char *sql, char *out, size_t len)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            const unsigned char *t = sqlite3_column_text(s, 0);
            snprintf(out, len, "%s", t ? (const char *)t : "");
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            snprintf(out, len, "%s", "");
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(s);
    return rc;
}

static int pragma_int(sqlite3 *db, const char *sql, long long *v)
{
    char buf[32];
    int rc = pragma_text(db, sql, buf, sizeof buf);
    if (rc == SQLITE_OK)
        *v = strtoll(buf, NULL, 10);
    return rc;
}

/* Formats "<path>: <sqlite message> (<errno text>)" into err; when the
 * open failed for want of access, the real cause instead of the errno
 * (history_path.c). */
static void open_err(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    int sys = db ? sqlite3_system_errno(db) : 0;
    int code = db ? sqlite3_errcode(db) & 0xff : SQLITE_NOMEM;
    const char *msg = db ? sqlite3_errmsg(db) : "out of memory";
    char why[PATH_MAX + 128];

    if (!err || !errlen)
        return;
    if ((code == SQLITE_CANTOPEN || code == SQLITE_READONLY ||
         code == SQLITE_PERM || code == SQLITE_IOERR) &&
        history__explain_path(path, why, sizeof why))
        snprintf(err, errlen, "%s: %s: %s", path, msg, why);
    else if (code == SQLITE_BUSY)
        snprintf(err, errlen, "%s: %s (another process has it open)", path,
                 msg);
    else if (sys)
        snprintf(err, errlen, "%s: %s (%s)", path, msg, strerror(sys));
    else
        snprintf(err, errlen, "%s: %s", path, msg);
}

/* Brings the schema to SCHEMA_VERSION inside one write transaction, so two
 * processes opening a new file cannot both create it. */
static int migrate(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    long long version = 0, objects = 0;
    char sql[64];

    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        goto db_fail;
    if (pragma_int(db, "PRAGMA user_version", &version) != SQLITE_OK ||
        pragma_int(db, "SELECT count(*) FROM sqlite_master", &objects) !=
            SQLITE_OK)
        goto db_fail;
    if (version > SCHEMA_VERSION || version < 0) {
        snprintf(err, errlen,
                 "%s: schema version %lld is %s this broker supports (%d)",
                 path, version, version < 0 ? "not one" : "newer than",
                 SCHEMA_VERSION);
        goto fail;
    }
    if (version == 0 && objects != 0) {
        snprintf(err, errlen,
                 "%s: not a Chorus history database "
                 "(user_version 0 but tables present)",
                 path);
        goto fail;
    }
    for (; version < SCHEMA_VERSION; version++) {
        if (sqlite3_exec(db, migrations[version], NULL, NULL, NULL) !=
            SQLITE_OK)
            goto db_fail;
    }
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", SCHEMA_VERSION);
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        goto db_fail;
    return 0;

db_fail:
    open_err(db, path, err, errlen);
fail:
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

/* chorus_batch1(ts, data): the record batch of one message, for the v2
 * migration (which turns each v1 message row into a batch of one). */
static void sql_batch1(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    history_batch b = {0};
    const unsigned char *blob;
    size_t len;

    (void)argc;
    history_batch_reset(&b);
    if (history_batch_add(&b, sqlite3_value_int64(argv[0]),
                          (const char *)sqlite3_value_text(argv[1]),
                          (size_t)sqlite3_value_bytes(argv[1])) != 0) {
        sqlite3_result_error_nomem(ctx);
        history_batch_free(&b);
        return;
    }
    blob = history_batch_finish(&b, &len);
    sqlite3_result_blob64(ctx, blob, len, SQLITE_TRANSIENT);
    history_batch_free(&b);
}

/* chorus_new_epoch(): a fresh epoch, 32 lowercase hex characters of 128
 * random bits (the v3 migration draws the database's epoch with it). */
static void sql_new_epoch(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[HISTORY_EPOCH_LEN / 2];
    char out[HISTORY_EPOCH_LEN];

    (void)argc;
    (void)argv;
    if (RAND_bytes(raw, sizeof raw) != 1) {
        sqlite3_result_error(ctx, "RAND_bytes failed", -1);
        return;
    }
    for (size_t i = 0; i < sizeof raw; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    sqlite3_result_text(ctx, out, HISTORY_EPOCH_LEN, SQLITE_TRANSIENT);
}

/* Per-connection setup before anything reads the file. The page size only
 * takes effect on a new, empty file (before WAL mode writes its header). */
static int setup_db(sqlite3 *db)
{
    char sql[48];

    snprintf(sql, sizeof sql, "PRAGMA page_size = %d", HISTORY_PAGE_SIZE);
    if (sqlite3_extended_result_codes(db, 1) != SQLITE_OK ||
        sqlite3_busy_timeout(db, HISTORY_BUSY_TIMEOUT_MS) != SQLITE_OK ||
        sqlite3_create_function_v2(db, "chorus_batch1", 2,
                                   SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
                                   sql_batch1, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_create_function_v2(db, "chorus_new_epoch", 0, SQLITE_UTF8, NULL,
                                   sql_new_epoch, NULL, NULL,
                                   NULL) != SQLITE_OK ||
        sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    return 0;
}

/* A reader never checkpoints, also not as the last connection to close
 * (that checkpoint would sync on the loop's thread): query only. */
static int setup_reader(sqlite3 *db)
{
    if (sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL) !=
            SQLITE_OK ||
        sqlite3_wal_autocheckpoint(db, 0) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA query_only = 1", NULL, NULL, NULL) !=
            SQLITE_OK)
        return -1;
    return 0;
}

/* Opens the connection and checks that it is a writable database in WAL
 * mode (a reader: one that a writer has set up). Touching the header
 * (journal_mode) is what detects a file that is not a database. */
static int open_db(sqlite3 **out, const char *path, int reader,
                   const history_opts *opts, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    char mode[16];
    long long n;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
                (reader ? 0 : SQLITE_OPEN_CREATE);

    if (sqlite3_open_v2(path, &db, flags, history__vfs()) != SQLITE_OK)
        goto db_fail;
    if (setup_db(db) != 0 || (reader && setup_reader(db) != 0) ||
        (opts->exclusive && sqlite3_exec(db, "PRAGMA locking_mode=EXCLUSIVE",
                                         NULL, NULL, NULL) != SQLITE_OK))
        goto db_fail;
    if (sqlite3_db_readonly(db, "main") != 0) {
        char why[PATH_MAX + 128];
        if (history__explain_path(path, why, sizeof why))
            snprintf(err, errlen, "%s: database is read-only: %s", path, why);
        else
            snprintf(err, errlen, "%s: database is read-only", path);
        goto fail;
    }
    if (pragma_text(db,
                    reader ? "PRAGMA journal_mode" : "PRAGMA journal_mode=WAL",
                    mode, sizeof mode) != SQLITE_OK)
        goto db_fail;
    if (strcmp(mode, "wal") != 0) {
        snprintf(err, errlen, "%s: cannot use WAL journal (mode is \"%s\")",
                 path, mode);
        goto fail;
    }
    if (!reader &&
        sqlite3_exec(db,
                     opts->durability_full ? "PRAGMA synchronous=FULL"
                                           : "PRAGMA synchronous=NORMAL",
                     NULL, NULL, NULL) != SQLITE_OK)
        goto db_fail;
    /* Reads the schema page: a damaged or foreign file fails here. */
    if (pragma_int(db, "SELECT count(*) FROM sqlite_master", &n) != SQLITE_OK)
        goto db_fail;
    *out = db;
    return 0;

db_fail:
    open_err(db, path, err, errlen);
fail:
    sqlite3_close(db);
    return -1;
}

/* Counts the WAL's pages after each commit: the writer checkpoints by
 * itself (history_checkpoint), so this replaces SQLite's automatic
 * checkpoint, which would run inside a commit. */
static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int pages)
{
    (void)db;
    (void)name;
    ((history *)arg)->wal_pages = pages;
    return SQLITE_OK;
}

/* What both kinds of handle need once the schema is current: the page
 * size, the prepared statements and the database's epoch. */
static int finish_open(history *h, const char *path, char *err, size_t errlen)
{
    long long page, version;

    if (pragma_int(h->db, "PRAGMA user_version", &version) != SQLITE_OK ||
        pragma_int(h->db, "PRAGMA page_size", &page) != SQLITE_OK ||
        pragma_text(h->db, "SELECT epoch FROM meta", h->db_epoch,
                    sizeof h->db_epoch) != SQLITE_OK) {
        open_err(h->db, path, err, errlen);
        return -1;
    }
    if (version != SCHEMA_VERSION || strlen(h->db_epoch) != HISTORY_EPOCH_LEN) {
        snprintf(err, errlen, "%s: schema version %lld or epoch not as set up",
                 path, version);
        return -1;
    }
    h->page_size = page > 0 ? (int)page : 4096;
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(h->db, stmt_sql[i], -1,
                               SQLITE_PREPARE_PERSISTENT, &h->st[i],
                               NULL) != SQLITE_OK) {
            open_err(h->db, path, err, errlen);
            return -1;
        }
    }
    return 0;
}

static int open_handle(history **out, const char *path,
                       const history_opts *opts, int reader, char *err,
                       size_t errlen)
{
    history *h;

    *out = NULL;
    if (err && errlen)
        err[0] = '\0';
    if (!path || !opts) {
        snprintf(err, errlen, "history_open: no path or options");
        return -1;
    }
    h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    h->opts = *opts;
    if (open_db(&h->db, path, reader, opts, err, errlen) != 0 ||
        (!reader && migrate(h->db, path, err, errlen) != 0) ||
        finish_open(h, path, err, errlen) != 0) {
        history_close(h);
        return -1;
    }
    if (!reader)
        sqlite3_wal_hook(h->db, on_wal_commit, h);
    *out = h;
    return 0;
}

int history_open(history **out, const char *path, const history_opts *opts,
                 char *err, size_t errlen)
{
    return open_handle(out, path, opts, 0, err, errlen);
}

int history_open_reader(history **out, const char *path, char *err,
                        size_t errlen)
{
    history_opts none = {0};

    return open_handle(out, path, &none, 1, err, errlen);
}

void history_close(history *h)
{
    int i;
    if (!h)
        return;
    if (h->db && !sqlite3_get_autocommit(h->db))
        sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
    for (i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(h->st[i]);
    /* Every statement is finalized, so close cannot be busy. */
    sqlite3_close(h->db);
    history_batch_free(&h->run);
    free(h);
}

/* ---- topics ---------------------------------------------------------- */

static int read_topic(history *h, sqlite3_stmt *s, history_topic *out)
{
    const unsigned char *epoch = sqlite3_column_text(s, 1);
    int64_t last = sqlite3_column_int64(s, 2);

    if (!epoch || sqlite3_column_bytes(s, 1) != HISTORY_EPOCH_LEN || last < 0) {
        history__set_err(h, "topic %" PRId64 ": corrupt epoch or offset",
                         (int64_t)sqlite3_column_int64(s, 0));
        return -1;
    }
    out->id = sqlite3_column_int64(s, 0);
    memcpy(out->epoch, epoch, HISTORY_EPOCH_LEN + 1);
    out->last_offset = (uint64_t)last;
    return 0;
}

void history_set_retention(history *h, uint64_t size, uint64_t ttl_ms)
{
    h->opts.history_size = size;
    h->opts.history_ttl_ms = ttl_ms;
}

void history_set_cache_kib(history *h, int kib)
{
    char sql[48];

    snprintf(sql, sizeof sql, "PRAGMA cache_size = %d", -kib);
    sqlite3_exec(h->db, sql, NULL, NULL, NULL);
}

const char *history_db_epoch(history *h)
{
    return h->db_epoch;
}

int history_topic_load_n(history *h, const char *name, size_t len, int create,
                         history_topic *out)
{
    sqlite3_stmt *s = history__stmt(h, ST_TOPIC_GET);
    int rc;

    if (!name) {
        history__set_err(h, "load topic: no name");
        return -1;
    }
    if (history__bind_text(h, s, 1, name, len) != 0)
        return -1;
    rc = history__step_row(h, s, "load topic");
    if (rc == 1) {
        rc = read_topic(h, s, out);
        sqlite3_reset(s);
        return rc;
    }
    if (rc < 0)
        return -1;
    if (!create)
        return 1;

    s = history__stmt(h, ST_TOPIC_ADD);
    if (history__bind_text(h, s, 1, name, len) != 0 ||
        history__bind_text(h, s, 2, h->db_epoch, HISTORY_EPOCH_LEN) != 0 ||
        history__run(h, s, "create topic") != 0)
        return -1;
    if (sqlite3_changes(h->db) == 0) /* created elsewhere meanwhile */
        return history_topic_load_n(h, name, len, 0, out) == 0 ? 0 : -1;
    out->id = sqlite3_last_insert_rowid(h->db);
    memcpy(out->epoch, h->db_epoch, sizeof out->epoch);
    out->last_offset = 0;
    return 0;
}

int history_topic_load(history *h, const char *name, int create,
                       history_topic *out)
{
    return history_topic_load_n(h, name, name ? strlen(name) : 0, create, out);
}

/* ---- tests ----------------------------------------------------------- */

int history_test_set_max_pages(history *h, int pages)
{
    char sql[64];
    long long v;

    snprintf(sql, sizeof sql, "PRAGMA max_page_count = %d", pages);
    if (pragma_int(h->db, sql, &v) != SQLITE_OK) {
        history__db_err(h, "max_page_count");
        return -1;
    }
    return (int)v;
}
