/* Reading record batches back (see history.h, history_batch.h): the rows
 * of a topic whose last offset is past the reader's position, in offset
 * order, decoded message by message. Offsets that retention has dropped
 * (topics.trim_offset) are skipped even where their batch is still
 * stored, so a reader sees exactly the retained messages. */
#include "history.h"
#include "history_internal.h"

#include <inttypes.h>
#include <limits.h>

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

typedef struct read_state {
    uint64_t after; /* the caller's position */
    size_t limit, rows;
    history_row_fn fn;
    void *arg;
    int stopped; /* fn asked to stop */
} read_state;

/* Opens the batch of the current row: 0, or -1 (error recorded) when the
 * row is malformed. */
static int open_row(history *h, sqlite3_stmt *s, history_batch_reader *r,
                    uint64_t *first)
{
    int64_t f = sqlite3_column_int64(s, 0), l = sqlite3_column_int64(s, 1);
    const void *blob = sqlite3_column_blob(s, 2);
    int len = sqlite3_column_bytes(s, 2);

    if (!blob && sqlite3_errcode(h->db) == SQLITE_NOMEM) {
        history__set_err(h, "read: out of memory");
        return -1;
    }
    if (f <= 0 || l < f ||
        history_batch_open(r, blob, (size_t)len, (uint64_t)(l - f) + 1)) {
        history__set_err(
            h, "read: malformed batch of offsets %" PRId64 "..%" PRId64, f, l);
        return -1;
    }
    *first = (uint64_t)f;
    return 0;
}

/* Hands the messages of the current row past the position to fn. 0, or
 * -1 when the row is malformed. */
static int emit_row(history *h, sqlite3_stmt *s, read_state *st)
{
    history_batch_reader r;
    uint64_t off, skip = st->after;
    int64_t trim = sqlite3_column_int64(s, 3), ts;
    const char *data;
    size_t len;
    int rc;

    if (trim > 0 && (uint64_t)trim > skip)
        skip = (uint64_t)trim;
    if (open_row(h, s, &r, &off) != 0)
        return -1;
    for (;; off++) {
        rc = history_batch_next(&r, &ts, &data, &len);
        if (rc <= 0)
            break;
        if (off <= skip)
            continue;
        st->rows++;
        if (st->fn(off, ts, len ? data : "", len, st->arg) != 0) {
            st->stopped = 1;
            return 0;
        }
        if (st->rows == st->limit)
            return 0;
    }
    if (rc < 0) {
        history__set_err(h, "read: malformed batch at offset %" PRIu64, off);
        return -1;
    }
    return 0;
}

/* fn must not call into the same handle: the range statement stays in use
 * until history_read returns. */
int history_read(history *h, int64_t topic_id, uint64_t after, size_t limit,
                 history_row_fn fn, void *arg)
{
    sqlite3_stmt *s = history__stmt(h, ST_RANGE);
    read_state st = {after, limit, 0, fn, arg, 0};
    int rc = SQLITE_DONE;

    if (limit == 0 || after >= (uint64_t)INT64_MAX)
        return 0;
    if (limit > (size_t)INT_MAX)
        st.limit = INT_MAX; /* the count is returned as an int */
    if (history__bind_i64(h, s, 1, topic_id) != 0 ||
        history__bind_i64(h, s, 2, (int64_t)after) != 0)
        return -1;
    while (!st.stopped && st.rows < st.limit &&
           (rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (emit_row(h, s, &st) != 0) {
            sqlite3_reset(s);
            return -1;
        }
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        history__db_err(h, "read");
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? (int)st.rows : -1;
}
