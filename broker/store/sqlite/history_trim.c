/* Retention: trims history by count and by age in bounded steps.
 *
 * History is stored in record batches (several consecutive offsets of a
 * topic in one row), so retention works in two parts: topics.trim_offset
 * marks every offset up to it as dropped, message by message exactly as
 * the rules say (readers skip them), and whole batches at or below the
 * mark are deleted. A batch that straddles the mark stays until its last
 * message goes. */
#include <inttypes.h>

#include "history.h"
#include "history_internal.h"

/* A trim step looks at no more topics than this, so a broker with very
 * many idle topics still gets short steps; the cursor carries on. */
#define TRIM_MAX_TOPICS 1024

typedef struct trim_topic_state {
    uint64_t count_upto; /* offsets up to here are past the count bound */
    int64_t cutoff;      /* ts below this is past the age bound */
    int by_age;
    uint64_t mark;  /* trim_offset: dropped up to here */
    int64_t budget; /* messages this topic may still drop */
    int64_t dropped;
    int done; /* reached a message that must stay */
} trim_topic_state;

static int expired(const trim_topic_state *t, uint64_t off, int64_t ts)
{
    return off <= t->count_upto || (t->by_age && ts < t->cutoff);
}

/* Advances the mark over the expired messages of the batch in the current
 * row (first..last, the part after the mark), at most the budget. 0, or
 * -1 when the batch is malformed. */
static int trim_row(history *h, sqlite3_stmt *s, trim_topic_state *t)
{
    uint64_t first = (uint64_t)sqlite3_column_int64(s, 0);
    uint64_t last = (uint64_t)sqlite3_column_int64(s, 1), off;
    uint64_t lo = first > t->mark ? first : t->mark + 1, upto = lo - 1;
    history_batch_reader r;
    const char *data;
    size_t len;
    int64_t ts;
    int rc;

    if (last <= t->count_upto ||
        (t->by_age && sqlite3_column_int64(s, 2) < t->cutoff)) {
        upto = last; /* all of it: no need to look inside */
    } else {
        if (first == 0 || last < first ||
            history_batch_open(&r, sqlite3_column_blob(s, 3),
                               (size_t)sqlite3_column_bytes(s, 3),
                               last - first + 1) != 0)
            goto malformed;
        for (off = first; (rc = history_batch_next(&r, &ts, &data, &len)) > 0;
             off++) {
            if (off < lo)
                continue;
            if (!expired(t, off, ts)) {
                t->done = 1; /* this one must stay, so all after it */
                break;
            }
            upto = off;
        }
        if (rc < 0)
            goto malformed;
    }
    if (upto >= lo && upto - lo + 1 > (uint64_t)t->budget) {
        upto = lo - 1 + (uint64_t)t->budget;
        t->done = 1;
    }
    t->budget -= (int64_t)(upto + 1 - lo);
    t->dropped += (int64_t)(upto + 1 - lo);
    t->mark = upto > t->mark ? upto : t->mark;
    return 0;

malformed:
    history__set_err(h,
                     "trim: malformed batch of offsets %" PRIu64 "..%" PRIu64,
                     first, last);
    return -1;
}

/* Moves the topic's mark to upto and deletes the batches wholly below
 * it. 0 or -1. */
static int drop_upto(history *h, int64_t id, uint64_t upto)
{
    sqlite3_stmt *s = history__stmt(h, ST_TRIM);

    if (history__bind_i64(h, s, 1, id) != 0 ||
        history__bind_i64(h, s, 2, (int64_t)upto) != 0 ||
        history__run(h, s, "trim: delete") != 0)
        return -1;
    s = history__stmt(h, ST_TRIM_MARK);
    if (history__bind_i64(h, s, 1, id) != 0 ||
        history__bind_i64(h, s, 2, (int64_t)upto) != 0 ||
        history__run(h, s, "trim: mark") != 0)
        return -1;
    return 0;
}

/* Drops the oldest messages of one topic that are past the count bound
 * (offset <= last - history_size) or the age bound (ts < cutoff), at most
 * budget of them. The walk is in offset order and stops at the first
 * message that must stay: a message is expired by age only once every
 * older one is, so a clock stepping back never leaves a hole in the
 * retained range. Returns the number dropped or -1. */
static int trim_topic(history *h, int64_t id, uint64_t last, uint64_t mark,
                      int64_t cutoff, int64_t budget)
{
    uint64_t size = h->opts.history_size;
    trim_topic_state t = {size && last > size ? last - size : 0,
                          cutoff,
                          h->opts.history_ttl_ms != 0,
                          mark,
                          budget,
                          0,
                          0};
    sqlite3_stmt *s = history__stmt(h, ST_OLDEST);
    int rc = SQLITE_DONE;

    /* Each row visited drops at least one message or ends the walk, so
     * budget rows are enough. */
    if (history__bind_i64(h, s, 1, id) != 0 ||
        history__bind_i64(h, s, 2, (int64_t)mark) != 0 ||
        history__bind_i64(h, s, 3, budget) != 0)
        return -1;
    while (!t.done && t.budget > 0 && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (trim_row(h, s, &t) != 0) {
            sqlite3_reset(s);
            return -1;
        }
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        history__db_err(h, "trim: scan");
        sqlite3_reset(s);
        return -1;
    }
    sqlite3_reset(s);
    if (t.dropped == 0)
        return 0;
    return drop_upto(h, id, t.mark) == 0 ? (int)t.dropped : -1;
}

typedef struct topic_pos {
    int64_t id;
    uint64_t last, mark;
} topic_pos;

/* Next topic after the cursor: 1 found, 0 none, -1 error. */
static int next_topic(history *h, int64_t after, topic_pos *p)
{
    sqlite3_stmt *s = history__stmt(h, ST_TOPIC_NEXT);
    int rc;

    if (history__bind_i64(h, s, 1, after) != 0)
        return -1;
    rc = history__step_row(h, s, "trim: next topic");
    if (rc == 1) {
        p->id = sqlite3_column_int64(s, 0);
        p->last = (uint64_t)sqlite3_column_int64(s, 1);
        p->mark = (uint64_t)sqlite3_column_int64(s, 2);
        sqlite3_reset(s);
    }
    return rc;
}

/* Visits topics round-robin from the cursor left by the previous call, so
 * a topic with a large backlog cannot starve the others. */
static int trim_topics(history *h, int64_t cutoff, int64_t budget)
{
    int64_t start = h->trim_cursor, cur = start;
    topic_pos p = {0, 0, 0};
    int deleted = 0, visited = 0, wrapped = 0, rc, n;

    while (deleted < budget && visited < TRIM_MAX_TOPICS) {
        rc = next_topic(h, cur, &p);
        if (rc < 0)
            return -1;
        if (rc == 0 || (wrapped && p.id > start)) {
            if (wrapped || cur == 0)
                break;
            wrapped = 1;
            cur = 0;
            continue;
        }
        n = trim_topic(h, p.id, p.last, p.mark, cutoff, budget - deleted);
        if (n < 0)
            return -1;
        deleted += n;
        visited++;
        cur = p.id;
    }
    h->trim_cursor = cur;
    return deleted;
}

/* The age bound for now_ms: INT64_MIN when there is none. */
static int64_t age_cutoff(const history *h, int64_t now_ms)
{
    uint64_t ttl = h->opts.history_ttl_ms;

    if (ttl && ttl <= (uint64_t)INT64_MAX && now_ms >= INT64_MIN + (int64_t)ttl)
        return now_ms - (int64_t)ttl;
    return INT64_MIN;
}

int history_trim_step(history *h, int64_t now_ms, size_t budget)
{
    int deleted;

    if (!h->opts.history_size && !h->opts.history_ttl_ms)
        return 0;
    if (budget == 0 || h->in_txn) /* never interleave with a batch */
        return 0;
    if (history__run(h, history__stmt(h, ST_BEGIN), "trim: begin") != 0)
        return -1;
    deleted =
        trim_topics(h, age_cutoff(h, now_ms), history__clamp_limit(budget));
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

int history_trim_in_batch(history *h, int64_t now_ms, size_t budget)
{
    int deleted;

    if (!h->opts.history_size && !h->opts.history_ttl_ms)
        return 0;
    if (budget == 0 || !h->in_txn || h->run_first)
        return 0;
    if (sqlite3_exec(h->db, "SAVEPOINT trim", NULL, NULL, NULL) != SQLITE_OK) {
        history__db_err(h, "trim: savepoint");
        return -1;
    }
    deleted =
        trim_topics(h, age_cutoff(h, now_ms), history__clamp_limit(budget));
    if (deleted < 0) {
        /* Undo the step only; SQLite may have ended the whole
         * transaction (an I/O error), then the commit reports it. */
        sqlite3_exec(h->db, "ROLLBACK TO trim", NULL, NULL, NULL);
    }
    sqlite3_exec(h->db, "RELEASE trim", NULL, NULL, NULL);
    return deleted;
}
