/* Unit tests for the record batch layout of broker/history*.c (schema v2):
 * runs stored as one row per topic, reads that start inside a batch,
 * retention that drops part of a batch, a damaged row reported as a
 * storage error, and the migration of a v1 database. test_history.c
 * covers the API with one message per batch. */
#include "history_fixture.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

/* Appends offsets [from, to] of a topic as one run, ts = offset * 10,
 * inside an open batch. */
static int append_run(history *h, int64_t topic, uint64_t from, uint64_t to)
{
    char data[64];
    for (uint64_t o = from; o <= to; o++) {
        int n =
            snprintf(data, sizeof data, "{\"n\":%llu}", (unsigned long long)o);
        if (history_append_run(h, topic, o, (int64_t)o * 10, data, (size_t)n,
                               o == to) != 0)
            return -1;
    }
    return 0;
}

/* One run per commit. */
static int commit_run(history *h, int64_t topic, uint64_t from, uint64_t to)
{
    if (history_begin(h) != 0)
        return -1;
    if (append_run(h, topic, from, to) != 0) {
        history_rollback(h);
        return -1;
    }
    return history_commit(h);
}

/* Runs SQL on the file behind the history's back: the first column of
 * the first row (0 without rows), or -1 on error. */
static long long raw_sql(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    long long v = -1;
    int rc;

    if (sqlite3_open(path, &db) == SQLITE_OK &&
        sqlite3_busy_timeout(db, 2000) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK) {
        rc = sqlite3_step(s);
        v = rc == SQLITE_ROW    ? sqlite3_column_int64(s, 0)
            : rc == SQLITE_DONE ? 0
                                : -1;
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

/* Consecutive offsets from..from+n-1, no duplicates, good data. */
static int is_range(const struct rows *r, uint64_t from, int n)
{
    if (r->n != n || r->bad)
        return 0;
    for (int i = 0; i < n && i < ROWS_KEPT; i++)
        if (r->off[i] != from + (uint64_t)i)
            return 0;
    return 1;
}

static void test_runs_and_reads(void)
{
    history_opts o = {0};
    history_topic a, b, c;
    char path[128];
    history *h;
    struct rows r;
    uint64_t off;

    path_in_dir(path, sizeof path, "runs.db");
    h = open_ok(path, &o);
    if (!h)
        return;
    CHECK_EQ_INT(history_topic_load(h, "a", 1, &a), 0);
    CHECK_EQ_INT(history_topic_load(h, "b", 1, &b), 0);
    CHECK_EQ_INT(history_topic_load(h, "c", 1, &c), 0);
    CHECK_EQ_INT(history_begin(h), 0);
    CHECK_EQ_INT(append_run(h, a.id, 1, 10), 0);
    CHECK_EQ_INT(append_run(h, b.id, 1, 5), 0);
    CHECK_EQ_INT(history_commit(h), 0);
    CHECK_EQ_INT(commit_run(h, a.id, 11, 20), 0);
    CHECK_EQ_INT(raw_sql(path, "SELECT count(*) FROM batches"), 3);

    /* reads that start, end and stop inside batches */
    CHECK_EQ_INT(read_all(h, a.id, 0, 100, &r), 20);
    CHECK(is_range(&r, 1, 20));
    CHECK_EQ_INT(read_all(h, a.id, 7, 5, &r), 5);
    CHECK(is_range(&r, 8, 5));
    CHECK_EQ_INT(read_all(h, a.id, 10, 100, &r), 10);
    CHECK(is_range(&r, 11, 10));
    CHECK_EQ_INT(read_all(h, a.id, 19, 1, &r), 1);
    CHECK(is_range(&r, 20, 1));
    CHECK_EQ_INT(read_all(h, a.id, 20, 100, &r), 0);
    CHECK_EQ_INT(read_all(h, b.id, 2, 100, &r), 3);
    CHECK(is_range(&r, 3, 3));
    for (off = 0; read_all(h, a.id, off, 3, &r) > 0; off += (uint64_t)r.n)
        CHECK(is_range(&r, off + 1, r.n));
    CHECK_EQ_INT(off, 20);

    /* misuse: another topic inside a run, an unfinished run, overlap */
    CHECK_EQ_INT(history_begin(h), 0);
    CHECK_EQ_INT(history_append_run(h, a.id, 21, 210, "{}", 2, 0), 0);
    CHECK_EQ_INT(history_append_run(h, b.id, 6, 60, "{}", 2, 1), -1);
    history_rollback(h);
    CHECK_EQ_INT(history_begin(h), 0);
    CHECK_EQ_INT(history_append_run(h, a.id, 21, 210, "{}", 2, 0), 0);
    CHECK_EQ_INT(history_commit(h), -1);
    CHECK(strstr(history_errmsg(h), "not finished") != NULL);
    CHECK_EQ_INT(commit_run(h, a.id, 15, 25), -1);
    CHECK_EQ_INT(history_topic_load(h, "a", 0, &a), 0);
    CHECK_EQ_INT(a.last_offset, 20);
    CHECK_EQ_INT(read_all(h, a.id, 0, 100, &r), 20);

    /* a gap inside a run splits it into two rows */
    CHECK_EQ_INT(history_begin(h), 0);
    CHECK_EQ_INT(history_append_run(h, c.id, 1, 10, "{\"n\":1}", 7, 0), 0);
    CHECK_EQ_INT(history_append_run(h, c.id, 2, 20, "{\"n\":2}", 7, 0), 0);
    CHECK_EQ_INT(history_append_run(h, c.id, 4, 40, "{\"n\":4}", 7, 1), 0);
    CHECK_EQ_INT(history_commit(h), 0);
    CHECK_EQ_INT(read_all(h, c.id, 0, 100, &r), 3);
    CHECK(r.bad == 0 && r.off[0] == 1 && r.off[1] == 2 && r.off[2] == 4);
    CHECK_EQ_INT(history_topic_load(h, "c", 0, &c), 0);
    CHECK_EQ_INT(c.last_offset, 4);
    history_close(h);

    h = open_ok(path, &o);
    if (!h)
        return;
    CHECK_EQ_INT(read_all(h, a.id, 0, 100, &r), 20);
    CHECK(is_range(&r, 1, 20));
    history_close(h);
}

/* Retention by count inside batches: the part of a batch past the bound
 * is dropped (readers and first_offset skip it), the batch row stays
 * until its last message goes; steps stay within their budget. */
static void test_trim_straddle_count(void)
{
    history_opts o = {.history_size = 15};
    history_topic t;
    char path[128];
    history *h;
    struct rows r;
    uint64_t first;
    int n, steps[8], k = 0;

    path_in_dir(path, sizeof path, "straddle_count.db");
    h = open_ok(path, &o);
    if (!h)
        return;
    CHECK_EQ_INT(history_topic_load(h, "t", 1, &t), 0);
    CHECK_EQ_INT(commit_run(h, t.id, 1, 10), 0);
    CHECK_EQ_INT(commit_run(h, t.id, 11, 20), 0);
    CHECK_EQ_INT(commit_run(h, t.id, 21, 30), 0);
    while ((n = history_trim_step(h, 0, 4)) > 0 && k < 8)
        steps[k++] = n;
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(k, 4);
    CHECK(steps[0] == 4 && steps[1] == 4 && steps[2] == 4 && steps[3] == 3);
    CHECK_EQ_INT(history_first_offset(h, t.id, &first), 0);
    CHECK_EQ_INT(first, 16);
    CHECK_EQ_INT(read_all(h, t.id, 0, 100, &r), 15);
    CHECK(is_range(&r, 16, 15));
    CHECK_EQ_INT(read_all(h, t.id, 12, 2, &r), 2);
    CHECK(is_range(&r, 16, 2));
    CHECK_EQ_INT(raw_sql(path, "SELECT count(*) FROM batches"), 2);

    CHECK_EQ_INT(commit_run(h, t.id, 31, 40), 0);
    CHECK_EQ_INT(history_trim_step(h, 0, 1000), 10);
    CHECK_EQ_INT(history_first_offset(h, t.id, &first), 0);
    CHECK_EQ_INT(first, 26);
    CHECK_EQ_INT(raw_sql(path, "SELECT min(first_offset) FROM batches"), 21);
    history_close(h);

    h = open_ok(path, &o);
    if (!h)
        return;
    CHECK_EQ_INT(history_first_offset(h, t.id, &first), 0);
    CHECK_EQ_INT(first, 26);
    CHECK_EQ_INT(read_all(h, t.id, 0, 100, &r), 15);
    CHECK(is_range(&r, 26, 15));
    CHECK_EQ_INT(history_trim_step(h, 0, 1000), 0);
    history_close(h);
}

/* Retention by age inside a batch, with the clock stepping back: only
 * the oldest messages up to the first one that must stay are dropped. */
static void test_trim_straddle_age(void)
{
    history_opts o = {.history_ttl_ms = 100};
    history_topic t, u;
    char path[128];
    history *h;
    struct rows r;
    uint64_t first;

    path_in_dir(path, sizeof path, "straddle_age.db");
    h = open_ok(path, &o);
    if (!h)
        return;
    CHECK_EQ_INT(history_topic_load(h, "t", 1, &t), 0);
    CHECK_EQ_INT(history_topic_load(h, "u", 1, &u), 0);
    CHECK_EQ_INT(commit_run(h, t.id, 1, 30), 0); /* ts 10..300 */
    /* now 205: ts < 105 goes, offsets 1..10 */
    CHECK_EQ_INT(history_trim_step(h, 205, 1000), 10);
    CHECK_EQ_INT(history_first_offset(h, t.id, &first), 0);
    CHECK_EQ_INT(first, 11);
    CHECK_EQ_INT(read_all(h, t.id, 0, 100, &r), 20);
    CHECK(is_range(&r, 11, 20));

    CHECK_EQ_INT(history_begin(h), 0);
    CHECK_EQ_INT(history_append_run(h, u.id, 1, 50, "1", 1, 0), 0);
    CHECK_EQ_INT(history_append_run(h, u.id, 2, 300, "2", 1, 0), 0);
    CHECK_EQ_INT(history_append_run(h, u.id, 3, 60, "3", 1, 1), 0);
    CHECK_EQ_INT(history_commit(h), 0);
    /* now 250 (cutoff 150): offset 1 of u goes; 2 must stay, so 3 stays
     * too; t loses 11..14 (ts 110..140) */
    CHECK_EQ_INT(history_trim_step(h, 250, 1000), 1 + 4);
    CHECK_EQ_INT(history_first_offset(h, u.id, &first), 0);
    CHECK_EQ_INT(first, 2);
    CHECK_EQ_INT(history_first_offset(h, t.id, &first), 0);
    CHECK_EQ_INT(first, 15);
    CHECK_EQ_INT(history_trim_step(h, 250, 1000), 0);
    /* much later everything goes, the rows too; the offsets stay */
    CHECK_EQ_INT(history_trim_step(h, 100000, 1000), 16 + 2);
    CHECK_EQ_INT(history_first_offset(h, u.id, &first), 0);
    CHECK_EQ_INT(first, 0);
    CHECK_EQ_INT(history_first_offset(h, t.id, &first), 0);
    CHECK_EQ_INT(first, 0);
    CHECK_EQ_INT(read_all(h, u.id, 0, 100, &r), 0);
    CHECK_EQ_INT(raw_sql(path, "SELECT count(*) FROM batches"), 0);
    CHECK_EQ_INT(history_topic_load(h, "u", 0, &u), 0);
    CHECK_EQ_INT(u.last_offset, 3);
    CHECK_EQ_INT(commit_run(h, u.id, 4, 5), 0);
    CHECK_EQ_INT(history_first_offset(h, u.id, &first), 0);
    CHECK_EQ_INT(first, 4);
    history_close(h);
}

/* Retention inside a batch's transaction: committed with it, undone with
 * it, refused while a run is unfinished or outside a batch. */
static void test_trim_in_batch(void)
{
    history_opts o = {.history_size = 5};
    history_topic t;
    char path[128];
    history *h;
    uint64_t first;

    path_in_dir(path, sizeof path, "trim_in_batch.db");
    h = open_ok(path, &o);
    if (!h)
        return;
    CHECK_EQ_INT(history_topic_load(h, "t", 1, &t), 0);
    CHECK_EQ_INT(commit_run(h, t.id, 1, 10), 0);
    CHECK_EQ_INT(history_trim_in_batch(h, 0, 100), 0); /* no batch */
    CHECK_EQ_INT(history_begin(h), 0);
    CHECK_EQ_INT(append_run(h, t.id, 11, 12), 0);
    CHECK_EQ_INT(history_trim_in_batch(h, 0, 100), 7);
    history_rollback(h);
    CHECK_EQ_INT(history_first_offset(h, t.id, &first), 0);
    CHECK_EQ_INT(first, 1);

    CHECK_EQ_INT(history_begin(h), 0);
    CHECK_EQ_INT(history_append_run(h, t.id, 11, 110, "{\"n\":11}", 8, 0), 0);
    CHECK_EQ_INT(history_trim_in_batch(h, 0, 100), 0); /* run open */
    CHECK_EQ_INT(history_append_run(h, t.id, 12, 120, "{\"n\":12}", 8, 1), 0);
    CHECK_EQ_INT(history_trim_in_batch(h, 0, 3), 3);
    CHECK_EQ_INT(history_trim_in_batch(h, 0, 100), 4);
    CHECK_EQ_INT(history_commit(h), 0);
    CHECK_EQ_INT(history_first_offset(h, t.id, &first), 0);
    CHECK_EQ_INT(first, 8);
    CHECK_EQ_INT(history_trim_step(h, 0, 100), 0);
    history_close(h);
}

/* A damaged row is a storage error for reads and trims, never a crash;
 * the other topics and later writes are unaffected. */
static void test_damaged_row(void)
{
    static const char *const damage[] = {
        "UPDATE batches SET data = substr(data, 1, 5) WHERE topic_id = %lld",
        "UPDATE batches SET last_offset = last_offset + 1 "
        "WHERE topic_id = %lld",
        "UPDATE batches SET data = X'01050aff' WHERE topic_id = %lld",
        "UPDATE batches SET data = X'' WHERE topic_id = %lld",
    };
    history_opts o = {.history_size = 2};
    history_topic t, ok;
    char path[128], sql[160], name[8];
    history *h;
    struct rows r;

    for (size_t i = 0; i < sizeof damage / sizeof damage[0]; i++) {
        snprintf(name, sizeof name, "bad%zu.db", i);
        path_in_dir(path, sizeof path, name);
        h = open_ok(path, &o);
        if (!h)
            return;
        CHECK_EQ_INT(history_topic_load(h, "t", 1, &t), 0);
        CHECK_EQ_INT(history_topic_load(h, "ok", 1, &ok), 0);
        CHECK_EQ_INT(commit_run(h, t.id, 1, 5), 0);
        CHECK_EQ_INT(commit_run(h, ok.id, 1, 2), 0);
        snprintf(sql, sizeof sql, damage[i], (long long)t.id);
        CHECK_EQ_INT(raw_sql(path, sql), 0);
        CHECK_EQ_INT(read_all(h, t.id, 0, 100, &r), -1);
        CHECK(strstr(history_errmsg(h), "malformed") != NULL);
        CHECK_EQ_INT(history_trim_step(h, 0, 100), -1);
        CHECK_EQ_INT(read_all(h, ok.id, 0, 100, &r), 2);
        CHECK(is_range(&r, 1, 2));
        CHECK_EQ_INT(commit_run(h, ok.id, 3, 3), 0);
        history_close(h);
    }
}

/* A v1 database (one row per message) opens, migrates to batches of one
 * and reads back the same offsets, timestamps, data and epochs. */
static void test_migrate_v1(void)
{
    static const char *const v1 =
        "CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL "
        "UNIQUE, epoch TEXT NOT NULL, last_offset INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE messages(topic_id INTEGER NOT NULL, \"offset\" INTEGER "
        "NOT NULL, ts INTEGER NOT NULL, data TEXT NOT NULL, "
        "PRIMARY KEY(topic_id, \"offset\")) WITHOUT ROWID;"
        "INSERT INTO topics VALUES(1, 'a', "
        "'0123456789abcdef0123456789abcdef', 12);"
        "INSERT INTO topics VALUES(2, 'b', "
        "'fedcba9876543210fedcba9876543210', 0);"
        "WITH RECURSIVE n(o) AS (SELECT 8 UNION ALL SELECT o + 1 FROM n "
        "WHERE o < 12) INSERT INTO messages SELECT 1, o, o * 10, "
        "'{\"n\":' || o || '}' FROM n;"
        "PRAGMA user_version = 1;";
    history_opts o = {.history_size = 5};
    history_topic a, b;
    char path[128];
    history *h;
    struct rows r;
    uint64_t first;
    sqlite3 *db = NULL;

    path_in_dir(path, sizeof path, "v1.db");
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(db, v1, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    h = open_ok(path, &o);
    if (!h)
        return;
    CHECK_EQ_INT(raw_sql(path, "PRAGMA user_version"), 3);
    /* v3: the database's epoch, new for the migrated file; old topics
     * keep their own */
    CHECK_EQ_INT(raw_sql(path, "SELECT count(*) FROM meta "
                               "WHERE length(epoch) = 32"),
                 1);
    CHECK(strcmp(history_db_epoch(h), "0123456789abcdef0123456789abcdef"));
    CHECK_EQ_INT(raw_sql(path, "SELECT count(*) FROM sqlite_master "
                               "WHERE name = 'messages'"),
                 0);
    CHECK_EQ_INT(history_topic_load(h, "a", 0, &a), 0);
    CHECK_EQ_STR(a.epoch, "0123456789abcdef0123456789abcdef");
    CHECK_EQ_INT(a.last_offset, 12);
    CHECK_EQ_INT(history_topic_load(h, "b", 0, &b), 0);
    CHECK_EQ_INT(b.last_offset, 0);
    CHECK_EQ_INT(history_first_offset(h, a.id, &first), 0);
    CHECK_EQ_INT(first, 8);
    CHECK_EQ_INT(read_all(h, a.id, 0, 100, &r), 5);
    CHECK(is_range(&r, 8, 5));
    CHECK_EQ_INT(read_all(h, a.id, 9, 2, &r), 2);
    CHECK(is_range(&r, 10, 2));
    /* new batches continue the offsets; retention spans both kinds */
    CHECK_EQ_INT(commit_run(h, a.id, 13, 14), 0);
    CHECK_EQ_INT(history_trim_step(h, 0, 100), 2);
    CHECK_EQ_INT(read_all(h, a.id, 0, 100, &r), 5);
    CHECK(is_range(&r, 10, 5));
    history_close(h);
    h = open_ok(path, &o); /* a second open does not migrate again */
    if (h) {
        CHECK_EQ_INT(read_all(h, a.id, 0, 100, &r), 5);
        history_close(h);
    }
}

/* The writer's pattern: each commit holds a run of 10 messages for each
 * of 10 topics; retention keeps 1000 per topic. Prints the rates. */
static void test_perf(void)
{
    history_opts o = {.history_size = 1000};
    int64_t ids[10];
    uint64_t next[10] = {0};
    history_topic t;
    char path[128], name[8], data[128];
    history *h;
    double t0, t1;
    int ok = 1, trimmed = 0;

    path_in_dir(path, sizeof path, "perf_runs.db");
    h = open_ok(path, &o);
    if (!h)
        return;
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof name, "t%d", i);
        CHECK_EQ_INT(history_topic_load(h, name, 1, &t), 0);
        ids[i] = t.id;
    }
    memset(data, 'x', sizeof data);
    t0 = now_s();
    for (int b = 0; b < 1000 && ok; b++) {
        ok = history_begin(h) == 0;
        for (int i = 0; i < 100 && ok; i++) {
            int k = i / 10;
            ok = history_append_run(h, ids[k], ++next[k], b, data, 100,
                                    i % 10 == 9) == 0;
        }
        ok = ok && history_commit(h) == 0;
        if (ok && b % 10 == 9)
            trimmed += history_trim_step(h, 0, 10000);
    }
    t1 = now_s();
    CHECK(ok);
    CHECK_EQ_INT(trimmed, 100000 - 10 * 1000);
    printf("perf: 100k msgs in runs of 10 for 10 topics per commit, with "
           "retention: %.3f s (%.0f msg/s, %.0f us/commit)\n",
           t1 - t0, 100000 / (t1 - t0), (t1 - t0) * 1e6 / 1000);
    history_close(h);
}

int main(void)
{
    char cmd[128];

    snprintf(dir, sizeof dir, "/tmp/chorus_hruns_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_runs_and_reads();
    test_trim_straddle_count();
    test_trim_straddle_age();
    test_trim_in_batch();
    test_damaged_row();
    test_migrate_v1();
    test_perf();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "note: could not remove %s\n", dir);
    return check_report("test_history_runs");
}
