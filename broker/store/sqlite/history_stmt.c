/* The SQL that every file of the history module runs through the handle
 * (history_internal.h): the statements, prepared once per handle at open,
 * the helpers that bind and step them and record their errors, and the
 * one-row PRAGMA queries. */
#include "history.h"
#include "history_internal.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <sqlite3.h>

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

int history__prepare_statements(history *h)
{
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(h->db, stmt_sql[i], -1,
                               SQLITE_PREPARE_PERSISTENT, &h->st[i],
                               NULL) != SQLITE_OK)
            return -1;
    }
    return 0;
}

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

/* ---- PRAGMA queries -------------------------------------------------- */

/* Runs a one-row PRAGMA and copies its first column as text. */
int history__pragma_text(sqlite3 *db, const char *sql, char *out, size_t len)
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

int history__pragma_int(sqlite3 *db, const char *sql, long long *v)
{
    char buf[32];
    int rc = history__pragma_text(db, sql, buf, sizeof buf);
    if (rc == SQLITE_OK)
        *v = strtoll(buf, NULL, 10);
    return rc;
}
