/* Group commit into record batches (see history.h, history_batch.h).
 *
 * history_append_run collects the messages of one topic in the handle's
 * encoder (its buffer is reused from batch to batch) and, at the end of
 * the run, writes them as ONE row of `batches`: a commit of n topics costs
 * n row inserts, appended at the right edge of the table, instead of one
 * per message. */
#include "history.h"
#include "history_internal.h"

#include <inttypes.h>

/* A run longer than this is split into several rows, so that a single row
 * (read whole by every replay page that touches it) stays small. */
#define RUN_MAX_BYTES (256 * 1024)

int history_begin(history *h)
{
    if (h->in_txn) {
        history__set_err(h, "begin: a batch is already open");
        return -1;
    }
    if (history__run(h, history__stmt(h, ST_BEGIN), "begin") != 0)
        return -1;
    h->in_txn = 1;
    history__drop_run(h);
    return 0;
}

void history__drop_run(history *h)
{
    history_batch_reset(&h->run);
    h->run_first = 0;
}

/* Advances the topic's last offset to the run's last one; refuses a run
 * that does not start after it (a duplicate) or an unknown topic. */
static int bump_topic(history *h, uint64_t first, uint64_t last)
{
    sqlite3_stmt *s = history__stmt(h, ST_TOPIC_BUMP);

    if (history__bind_i64(h, s, 1, h->run_topic) != 0 ||
        history__bind_i64(h, s, 2, (int64_t)first) != 0 ||
        history__bind_i64(h, s, 3, (int64_t)last) != 0 ||
        history__run(h, s, "append: update topic") != 0)
        return -1;
    if (sqlite3_changes(h->db) != 1) {
        history__set_err(h,
                         "append: unknown topic id %" PRId64 " or offset "
                         "%" PRIu64 " not after its last one",
                         h->run_topic, first);
        return -1;
    }
    return 0;
}

/* Writes the open run as one row. */
static int write_run(history *h)
{
    uint64_t first = h->run_first, last = h->run_next - 1;
    const unsigned char *blob;
    sqlite3_stmt *s;
    size_t len;

    h->run_first = 0;
    if (bump_topic(h, first, last) != 0)
        return -1;
    blob = history_batch_finish(&h->run, &len);
    s = history__stmt(h, ST_BATCH_ADD);
    if (history__bind_i64(h, s, 1, h->run_topic) != 0 ||
        history__bind_i64(h, s, 2, (int64_t)first) != 0 ||
        history__bind_i64(h, s, 3, (int64_t)last) != 0 ||
        history__bind_i64(h, s, 4, h->run.max_ts) != 0 ||
        history__bind_blob(h, s, 5, blob, len) != 0 ||
        history__run(h, s, "append") != 0)
        return -1;
    history_batch_reset(&h->run);
    return 0;
}

/* Checks a message against the open run; writes the run first when the
 * message cannot continue it (a gap in offsets, or the run is full). */
static int continue_run(history *h, int64_t topic_id, uint64_t offset,
                        size_t data_len)
{
    if (!h->run_first)
        return 0;
    if (topic_id != h->run_topic) {
        history__set_err(h,
                         "append: the run of topic %" PRId64 " is not "
                         "finished",
                         h->run_topic);
        return -1;
    }
    if (offset != h->run_next || h->run.len + data_len > RUN_MAX_BYTES)
        return write_run(h);
    return 0;
}

int history_append_run(history *h, int64_t topic_id, uint64_t offset,
                       int64_t ts_ms, const char *data, size_t data_len,
                       int last)
{
    if (!h->in_txn) {
        history__set_err(h, "append: no batch open");
        return -1;
    }
    if (offset == 0 || offset > (uint64_t)INT64_MAX) {
        history__set_err(h, "append: offset %" PRIu64 " out of range", offset);
        return -1;
    }
    if (continue_run(h, topic_id, offset, data_len) != 0)
        return -1;
    if (!h->run_first) {
        history_batch_reset(&h->run);
        h->run_topic = topic_id;
        h->run_first = offset;
    }
    if (history_batch_add(&h->run, ts_ms, data, data_len) != 0) {
        history__set_err(h, "append: out of memory");
        return -1;
    }
    h->run_next = offset + 1;
    return last ? write_run(h) : 0;
}

int history_append(history *h, int64_t topic_id, uint64_t offset, int64_t ts_ms,
                   const char *data, size_t data_len)
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
    history__drop_run(h);
}

int history_commit(history *h)
{
    if (!h->in_txn) {
        history__set_err(h, "commit: no batch open");
        return -1;
    }
    if (h->run_first) {
        history__set_err(h,
                         "commit: the run of topic %" PRId64 " is not "
                         "finished",
                         h->run_topic);
        history__rollback_open(h);
        return -1;
    }
    if (history__run(h, history__stmt(h, ST_COMMIT), "commit") != 0) {
        /* SQLITE_FULL is raised before the commit frame is whole; any
         * other I/O error may come after it reached the WAL. */
        int rc = sqlite3_extended_errcode(h->db);
        history__rollback_open(h);
        return (rc & 0xff) == SQLITE_IOERR ? HISTORY_COMMIT_UNKNOWN : -1;
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
    history__drop_run(h);
}
