/* Retention: trims history by count and by age in bounded steps. */
#include <inttypes.h>

#include "history.h"
#include "history_internal.h"

/* A trim step looks at no more topics than this, so a broker with very
 * many idle topics still gets short steps; the cursor carries on. */
#define TRIM_MAX_TOPICS 1024

/* Deletes the oldest messages of one topic that are past the count bound
 * (offset <= last - history_size) or the age bound (ts < cutoff), at most
 * budget of them. The walk is in offset order and stops at the first
 * message that must stay: a message is expired by age only once every
 * older one is, so a clock stepping back never leaves a hole in the
 * retained range. Returns the number deleted or -1. */
static int trim_topic(history *h, int64_t id, uint64_t last, int64_t cutoff,
                      int64_t budget)
{
    sqlite3_stmt *s = history__stmt(h, ST_OLDEST);
    uint64_t size = h->opts.history_size;
    uint64_t count_upto = size && last > size ? last - size : 0;
    int64_t upto = 0;
    int n = 0, rc;

    if (history__bind_i64(h, s, 1, id) != 0 ||
        history__bind_i64(h, s, 2, budget) != 0)
        return -1;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t off = sqlite3_column_int64(s, 0);
        int64_t ts = sqlite3_column_int64(s, 1);
        if ((uint64_t)off > count_upto &&
            !(h->opts.history_ttl_ms && ts < cutoff))
            break;
        upto = off;
        n++;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        history__db_err(h, "trim: scan");
        sqlite3_reset(s);
        return -1;
    }
    sqlite3_reset(s);
    if (n == 0)
        return 0;
    s = history__stmt(h, ST_TRIM);
    if (history__bind_i64(h, s, 1, id) != 0 ||
        history__bind_i64(h, s, 2, upto) != 0 ||
        history__run(h, s, "trim: delete") != 0)
        return -1;
    return n;
}

/* Next topic after the cursor, wrapping once: 1 found, 0 none, -1 error. */
static int next_topic(history *h, int64_t after, int64_t *id, uint64_t *last)
{
    sqlite3_stmt *s = history__stmt(h, ST_TOPIC_NEXT);
    int rc;

    if (history__bind_i64(h, s, 1, after) != 0)
        return -1;
    rc = history__step_row(h, s, "trim: next topic");
    if (rc == 1) {
        *id = sqlite3_column_int64(s, 0);
        *last = (uint64_t)sqlite3_column_int64(s, 1);
        sqlite3_reset(s);
    }
    return rc;
}

/* Visits topics round-robin from the cursor left by the previous call, so
 * a topic with a large backlog cannot starve the others. */
static int trim_topics(history *h, int64_t cutoff, int64_t budget)
{
    int64_t start = h->trim_cursor, cur = start, id = 0;
    uint64_t last = 0;
    int deleted = 0, visited = 0, wrapped = 0, rc, n;

    while (deleted < budget && visited < TRIM_MAX_TOPICS) {
        rc = next_topic(h, cur, &id, &last);
        if (rc < 0)
            return -1;
        if (rc == 0 || (wrapped && id > start)) {
            if (wrapped || cur == 0)
                break;
            wrapped = 1;
            cur = 0;
            continue;
        }
        n = trim_topic(h, id, last, cutoff, budget - deleted);
        if (n < 0)
            return -1;
        deleted += n;
        visited++;
        cur = id;
    }
    h->trim_cursor = cur;
    return deleted;
}

int history_trim_step(history *h, int64_t now_ms, size_t budget)
{
    int64_t cutoff = INT64_MIN;
    int deleted;

    if (!h->opts.history_size && !h->opts.history_ttl_ms)
        return 0;
    if (budget == 0 || h->in_txn) /* never interleave with a batch */
        return 0;
    if (h->opts.history_ttl_ms) {
        if (h->opts.history_ttl_ms <= (uint64_t)INT64_MAX &&
            now_ms >= INT64_MIN + (int64_t)h->opts.history_ttl_ms)
            cutoff = now_ms - (int64_t)h->opts.history_ttl_ms;
    }
    if (history__run(h, history__stmt(h, ST_BEGIN), "trim: begin") != 0)
        return -1;
    deleted = trim_topics(h, cutoff, history__clamp_limit(budget));
    if (deleted < 0) {
        history__rollback_open(h);
        return -1;
    }
    if (history__run(h, history__stmt(h, ST_COMMIT), "trim: commit") != 0) {
        history__rollback_open(h);
        return -1;
    }
    return deleted;
}
