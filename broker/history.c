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
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))


static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_TOPIC_GET] = "SELECT id, epoch, last_offset FROM topics WHERE name = ?1",
    /* OR IGNORE: another connection (another event loop) may create the
     * same topic at the same moment; then its row wins. */
    [ST_TOPIC_ADD] = "INSERT OR IGNORE INTO topics(name, epoch, last_offset) "
                     "VALUES(?1, ?2, 0)",
    [ST_MSG_ADD] = "INSERT INTO messages(topic_id, \"offset\", ts, data) "
                   "VALUES(?1, ?2, ?3, ?4)",
    [ST_TOPIC_BUMP] = "UPDATE topics SET last_offset = MAX(last_offset, ?2) "
                      "WHERE id = ?1",
    [ST_RANGE] = "SELECT \"offset\", ts, data FROM messages "
                 "WHERE topic_id = ?1 AND \"offset\" > ?2 "
                 "ORDER BY \"offset\" LIMIT ?3",
    [ST_FIRST] = "SELECT \"offset\" FROM messages WHERE topic_id = ?1 "
                 "ORDER BY \"offset\" LIMIT 1",
    [ST_TOPIC_NEXT] = "SELECT id, last_offset FROM topics WHERE id > ?1 "
                      "ORDER BY id LIMIT 1",
    [ST_OLDEST] = "SELECT \"offset\", ts FROM messages WHERE topic_id = ?1 "
                  "ORDER BY \"offset\" LIMIT ?2",
    [ST_TRIM] = "DELETE FROM messages WHERE topic_id = ?1 AND \"offset\" <= ?2",
};


/* ---- errors ---------------------------------------------------------- */

void  history__set_err(history *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->err, sizeof h->err, fmt, ap);
    va_end(ap);
}

/* Records "<what>: <sqlite message>" for the last failed call. */
void  history__db_err(history *h, const char *what)
{
    history__set_err(h, "%s: %s", what, sqlite3_errmsg(h->db));
}

const char *history_errmsg(history *h)
{
    return h ? h->err : "no history";
}

/* ---- statement helpers ----------------------------------------------- */

sqlite3_stmt * history__stmt(history *h, int id)
{
    sqlite3_reset(h->st[id]); /* previous errors were reported already */
    return h->st[id];
}

int  history__bind_i64(history *h, sqlite3_stmt *s, int col, int64_t v)
{
    if (sqlite3_bind_int64(s, col, v) != SQLITE_OK) {
        history__db_err(h, "bind");
        return -1;
    }
    return 0;
}

int  history__bind_text(history *h, sqlite3_stmt *s, int col, const char *p,
                     size_t len)
{
    if (sqlite3_bind_text64(s, col, p, len, SQLITE_STATIC, SQLITE_UTF8) !=
        SQLITE_OK) {
        history__db_err(h, "bind");
        return -1;
    }
    return 0;
}

/* Steps a statement that returns no rows, then resets it (which also
 * releases text bound with SQLITE_STATIC). */
int  history__run(history *h, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE)
        history__db_err(h, what);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* Steps a statement expected to return at most one row: 1 row (left
 * positioned on it; the caller resets), 0 none, -1 error. */
int  history__step_row(history *h, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc != SQLITE_DONE)
        history__db_err(h, what);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

int64_t  history__clamp_limit(size_t n)
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

/* Formats "<path>: <sqlite message> (<errno text>)" into err. */
static void open_err(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    int sys = db ? sqlite3_system_errno(db) : 0;
    const char *msg = db ? sqlite3_errmsg(db) : "out of memory";
    if (!err || !errlen)
        return;
    if (sys)
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
        snprintf(err, errlen, "%s: not a Chorus history database "
                 "(user_version 0 but tables present)", path);
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

/* Opens the connection and checks that it is a writable database in WAL
 * mode. Touching the header (journal_mode) is what detects a file that is
 * not a database. */
static int open_db(sqlite3 **out, const char *path, int full, char *err,
                   size_t errlen)
{
    sqlite3 *db = NULL;
    char mode[16];
    long long n;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                SQLITE_OPEN_NOMUTEX;

    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK)
        goto db_fail;
    if (sqlite3_extended_result_codes(db, 1) != SQLITE_OK ||
        sqlite3_busy_timeout(db, HISTORY_BUSY_TIMEOUT_MS) != SQLITE_OK)
        goto db_fail;
    if (sqlite3_db_readonly(db, "main") != 0) {
        snprintf(err, errlen, "%s: database is read-only", path);
        goto fail;
    }
    if (pragma_text(db, "PRAGMA journal_mode=WAL", mode, sizeof mode) !=
        SQLITE_OK)
        goto db_fail;
    if (strcmp(mode, "wal") != 0) {
        snprintf(err, errlen, "%s: cannot use WAL journal (mode is \"%s\")",
                 path, mode);
        goto fail;
    }
    if (sqlite3_exec(db, full ? "PRAGMA synchronous=FULL"
                              : "PRAGMA synchronous=NORMAL",
                     NULL, NULL, NULL) != SQLITE_OK)
        goto db_fail;
    /* Reads the schema page: a damaged or foreign file fails here. */
    if (pragma_int(db, "SELECT count(*) FROM sqlite_master", &n) !=
        SQLITE_OK)
        goto db_fail;
    *out = db;
    return 0;

db_fail:
    open_err(db, path, err, errlen);
fail:
    sqlite3_close(db);
    return -1;
}

int history_open(history **out, const char *path, const history_opts *opts,
                 char *err, size_t errlen)
{
    history *h;
    int i;

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
    if (open_db(&h->db, path, opts->durability_full, err, errlen) != 0 ||
        migrate(h->db, path, err, errlen) != 0)
        goto fail;
    for (i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(h->db, stmt_sql[i], -1,
                               SQLITE_PREPARE_PERSISTENT, &h->st[i],
                               NULL) != SQLITE_OK) {
            open_err(h->db, path, err, errlen);
            goto fail;
        }
    }
    *out = h;
    return 0;

fail:
    history_close(h);
    return -1;
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
    free(h);
}

/* ---- topics ---------------------------------------------------------- */

static int new_epoch(history *h, char out[HISTORY_EPOCH_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[HISTORY_EPOCH_LEN / 2];
    size_t i;

    if (RAND_bytes(raw, sizeof raw) != 1) {
        history__set_err(h, "RAND_bytes failed");
        return -1;
    }
    for (i = 0; i < sizeof raw; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[HISTORY_EPOCH_LEN] = '\0';
    return 0;
}

static int read_topic(history *h, sqlite3_stmt *s, history_topic *out)
{
    const unsigned char *epoch = sqlite3_column_text(s, 1);
    int64_t last = sqlite3_column_int64(s, 2);

    if (!epoch || sqlite3_column_bytes(s, 1) != HISTORY_EPOCH_LEN ||
        last < 0) {
        history__set_err(h, "topic %" PRId64 ": corrupt epoch or offset",
                (int64_t)sqlite3_column_int64(s, 0));
        return -1;
    }
    out->id = sqlite3_column_int64(s, 0);
    memcpy(out->epoch, epoch, HISTORY_EPOCH_LEN + 1);
    out->last_offset = (uint64_t)last;
    return 0;
}

int history_topic_load(history *h, const char *name, int create,
                       history_topic *out)
{
    sqlite3_stmt *s = history__stmt(h, ST_TOPIC_GET);
    history_topic t;
    int rc;

    if (!name) {
        history__set_err(h, "load topic: no name");
        return -1;
    }
    if (history__bind_text(h, s, 1, name, strlen(name)) != 0)
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

    if (new_epoch(h, t.epoch) != 0)
        return -1;
    s = history__stmt(h, ST_TOPIC_ADD);
    if (history__bind_text(h, s, 1, name, strlen(name)) != 0 ||
        history__bind_text(h, s, 2, t.epoch, HISTORY_EPOCH_LEN) != 0 ||
        history__run(h, s, "create topic") != 0)
        return -1;
    if (sqlite3_changes(h->db) == 0) /* created elsewhere meanwhile */
        return history_topic_load(h, name, 0, out) == 0 ? 0 : -1;
    t.id = sqlite3_last_insert_rowid(h->db);
    t.last_offset = 0;
    *out = t;
    return 0;
}

/* ---- batches --------------------------------------------------------- */

int history_begin(history *h)
{
    if (h->in_txn) {
        history__set_err(h, "begin: a batch is already open");
        return -1;
    }
    if (history__run(h, history__stmt(h, ST_BEGIN), "begin") != 0)
        return -1;
    h->in_txn = 1;
    return 0;
}

int history_append_run(history *h, int64_t topic_id, uint64_t offset,
                       int64_t ts_ms, const char *data, size_t data_len,
                       int last)
{
    sqlite3_stmt *s;

    if (!h->in_txn) {
        history__set_err(h, "append: no batch open");
        return -1;
    }
    if (offset == 0 || offset > (uint64_t)INT64_MAX) {
        history__set_err(h, "append: offset %" PRIu64 " out of range", offset);
        return -1;
    }
    s = history__stmt(h, ST_MSG_ADD);
    if (history__bind_i64(h, s, 1, topic_id) != 0 ||
        history__bind_i64(h, s, 2, (int64_t)offset) != 0 ||
        history__bind_i64(h, s, 3, ts_ms) != 0 ||
        history__bind_text(h, s, 4, data, data_len) != 0 ||
        history__run(h, s, "append") != 0)
        return -1;
    if (!last)
        return 0;
    s = history__stmt(h, ST_TOPIC_BUMP);
    if (history__bind_i64(h, s, 1, topic_id) != 0 ||
        history__bind_i64(h, s, 2, (int64_t)offset) != 0 ||
        history__run(h, s, "append: update topic") != 0)
        return -1;
    if (sqlite3_changes(h->db) != 1) {
        history__set_err(h, "append: unknown topic id %" PRId64, topic_id);
        return -1;
    }
    return 0;
}

int history_append(history *h, int64_t topic_id, uint64_t offset,
                   int64_t ts_ms, const char *data, size_t data_len)
{
    return history_append_run(h, topic_id, offset, ts_ms, data, data_len, 1);
}

/* SQLite may already have rolled back after SQLITE_FULL or an I/O error;
 * only roll back what is still open. */
void history__rollback_open(history *h)
{
    if (!sqlite3_get_autocommit(h->db))
        sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
    h->in_txn = 0;
}

int history_commit(history *h)
{
    if (!h->in_txn) {
        history__set_err(h, "commit: no batch open");
        return -1;
    }
    if (history__run(h, history__stmt(h, ST_COMMIT), "commit") != 0) {
        history__rollback_open(h);
        return -1;
    }
    h->in_txn = 0;
    return 0;
}

void history_rollback(history *h)
{
    /* Resetting the statements first lets ROLLBACK run even when one was
     * left mid-step by a failed call. */
    int i;
    for (i = 0; i < ST_COUNT; i++)
        sqlite3_reset(h->st[i]);
    if (!sqlite3_get_autocommit(h->db) &&
        history__run(h, history__stmt(h, ST_ROLLBACK), "rollback") != 0)
        history__rollback_open(h);
    h->in_txn = 0;
}

/* ---- reading --------------------------------------------------------- */

int history_first_offset(history *h, int64_t topic_id, uint64_t *first)
{
    sqlite3_stmt *s = history__stmt(h, ST_FIRST);
    int rc;

    if (history__bind_i64(h, s, 1, topic_id) != 0)
        return -1;
    rc = history__step_row(h, s, "first offset");
    if (rc < 0)
        return -1;
    *first = rc ? (uint64_t)sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return 0;
}

/* fn must not call into the same handle: the range statement stays in use
 * until history_read returns. */
int history_read(history *h, int64_t topic_id, uint64_t after, size_t limit,
                 history_row_fn fn, void *arg)
{
    sqlite3_stmt *s = history__stmt(h, ST_RANGE);
    int rows = 0, rc;

    if (limit == 0)
        return 0;
    if (after >= (uint64_t)INT64_MAX)
        return 0;
    if (history__bind_i64(h, s, 1, topic_id) != 0 ||
        history__bind_i64(h, s, 2, (int64_t)after) != 0 ||
        history__bind_i64(h, s, 3, history__clamp_limit(limit)) != 0)
        return -1;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const unsigned char *data = sqlite3_column_text(s, 2);
        int len = sqlite3_column_bytes(s, 2);
        if (!data && sqlite3_errcode(h->db) == SQLITE_NOMEM) {
            rc = SQLITE_NOMEM;
            break;
        }
        rows++;
        if (fn((uint64_t)sqlite3_column_int64(s, 0),
               sqlite3_column_int64(s, 1),
               data ? (const char *)data : "", (size_t)len, arg) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        history__db_err(h, "read");
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? rows : -1;
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
