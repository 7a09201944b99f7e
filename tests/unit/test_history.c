/* Unit tests for broker/store/sqlite/history.c (and history_epochs.c) on
 * real files in a temporary directory. */
#include "history_fixture.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Appends offsets [from, to] of a topic in one batch, ts = offset * 10. */
static int append_range(history *h, int64_t topic, uint64_t from, uint64_t to)
{
    char data[64];
    uint64_t o;
    if (history_begin(h) != 0)
        return -1;
    for (o = from; o <= to; o++) {
        int n =
            snprintf(data, sizeof data, "{\"n\":%llu}", (unsigned long long)o);
        if (history_append(h, topic, o, (int64_t)o * 10, data, (size_t)n) !=
            0) {
            history_rollback(h);
            return -1;
        }
    }
    return history_commit(h);
}

static void test_create_reopen(void)
{
    history_opts o = {0};
    history_topic a, b, a2;
    char path[128];
    history *h;
    struct rows r;
    uint64_t first = 99;
    size_t i;

    path_in_dir(path, sizeof path, "basic.db");
    h = open_ok(path, &o);
    if (!h)
        return;
    CHECK_EQ_INT(history_topic_load(h, "chat", 0, &a), 1);
    CHECK_EQ_INT(history_topic_load(h, "chat", 1, &a), 0);
    CHECK_EQ_INT(strlen(a.epoch), HISTORY_EPOCH_LEN);
    for (i = 0; i < HISTORY_EPOCH_LEN; i++)
        CHECK((a.epoch[i] >= '0' && a.epoch[i] <= '9') ||
              (a.epoch[i] >= 'a' && a.epoch[i] <= 'f'));
    CHECK_EQ_INT(a.last_offset, 0);
    CHECK_EQ_INT(history_topic_load(h, "news", 1, &b), 0);
    /* new topics get the database's epoch, drawn once with the file */
    CHECK_EQ_STR(a.epoch, history_db_epoch(h));
    CHECK_EQ_STR(b.epoch, a.epoch);
    CHECK(a.id != b.id);

    CHECK_EQ_INT(history_first_offset(h, a.id, &first), 0);
    CHECK_EQ_INT(first, 0);
    CHECK_EQ_INT(append_range(h, a.id, 1, 10), 0);
    CHECK_EQ_INT(append_range(h, b.id, 1, 3), 0);
    CHECK_EQ_INT(history_first_offset(h, a.id, &first), 0);
    CHECK_EQ_INT(first, 1);

    /* order, limit, after, early stop */
    CHECK_EQ_INT(read_all(h, a.id, 0, 100, &r), 10);
    CHECK_EQ_INT(r.n, 10);
    CHECK_EQ_INT(r.bad, 0);
    for (i = 0; i < 10; i++)
        CHECK_EQ_INT(r.off[i], i + 1);
    CHECK_EQ_INT(read_all(h, a.id, 4, 3, &r), 3);
    CHECK_EQ_INT(r.off[0], 5);
    CHECK_EQ_INT(r.off[2], 7);
    CHECK_EQ_INT(read_all(h, a.id, 10, 100, &r), 0);
    CHECK_EQ_INT(read_all(h, a.id, 0, 0, &r), 0);
    memset(&r, 0, sizeof r);
    r.stop_at = 2;
    CHECK_EQ_INT(history_read(h, a.id, 0, 100, collect, &r), 2);
    CHECK_EQ_INT(read_all(h, b.id, 0, 100, &r), 3);
    CHECK_EQ_INT(r.bad, 0);

    /* a duplicate offset fails and the batch can be rolled back */
    CHECK_EQ_INT(history_begin(h), 0);
    CHECK_EQ_INT(history_append(h, a.id, 5, 0, "{}", 2), -1);
    CHECK(strlen(history_errmsg(h)) > 0);
    history_rollback(h);
    /* misuse is refused, not silently done */
    CHECK_EQ_INT(history_append(h, a.id, 11, 0, "{}", 2), -1);
    CHECK_EQ_INT(history_commit(h), -1);
    CHECK_EQ_INT(history_begin(h), 0);
    CHECK_EQ_INT(history_begin(h), -1);
    CHECK_EQ_INT(history_append(h, 987654, 1, 0, "{}", 2), -1);
    history_rollback(h);
    history_close(h);

    h = open_ok(path, &o);
    if (!h)
        return;
    CHECK_EQ_INT(history_topic_load(h, "chat", 0, &a2), 0);
    CHECK_EQ_STR(a2.epoch, a.epoch);
    CHECK_EQ_INT(a2.id, a.id);
    CHECK_EQ_INT(a2.last_offset, 10);
    CHECK_EQ_INT(read_all(h, a.id, 0, 100, &r), 10);
    history_close(h);
}

static void test_rollback(void)
{
    history_opts o = {0};
    history_topic t;
    char path[128];
    history *h;
    struct rows r;

    path_in_dir(path, sizeof path, "rollback.db");
    h = open_ok(path, &o);
    if (!h)
        return;
    CHECK_EQ_INT(history_topic_load(h, "t", 1, &t), 0);
    CHECK_EQ_INT(history_begin(h), 0);
    CHECK_EQ_INT(history_append(h, t.id, 1, 10, "{\"n\":1}", 7), 0);
    CHECK_EQ_INT(history_append(h, t.id, 2, 20, "{\"n\":2}", 7), 0);
    history_rollback(h);
    CHECK_EQ_INT(read_all(h, t.id, 0, 100, &r), 0);
    CHECK_EQ_INT(history_topic_load(h, "t", 0, &t), 0);
    CHECK_EQ_INT(t.last_offset, 0);
    /* the connection is usable afterwards */
    CHECK_EQ_INT(append_range(h, t.id, 1, 2), 0);
    CHECK_EQ_INT(read_all(h, t.id, 0, 100, &r), 2);
    history_close(h);
}

static void test_trim_count(void)
{
    history_opts o = {.history_size = 10};
    history_topic a, b;
    char path[128];
    history *h;
    struct rows r;
    uint64_t first;
    int n, steps = 0, total = 0;

    path_in_dir(path, sizeof path, "trim_count.db");
    h = open_ok(path, &o);
    if (!h)
        return;
    CHECK_EQ_INT(history_topic_load(h, "a", 1, &a), 0);
    CHECK_EQ_INT(history_topic_load(h, "b", 1, &b), 0);
    CHECK_EQ_INT(append_range(h, a.id, 1, 50), 0);
    CHECK_EQ_INT(append_range(h, b.id, 1, 25), 0);
    /* 40 + 15 rows to delete, 7 at a time */
    while ((n = history_trim_step(h, 0, 7)) > 0 && steps < 100) {
        CHECK(n <= 7);
        total += n;
        steps++;
    }
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(total, 55);
    CHECK(steps >= 8);
    CHECK_EQ_INT(history_first_offset(h, a.id, &first), 0);
    CHECK_EQ_INT(first, 41);
    CHECK_EQ_INT(history_first_offset(h, b.id, &first), 0);
    CHECK_EQ_INT(first, 16);
    CHECK_EQ_INT(read_all(h, a.id, 0, 100, &r), 10);
    CHECK_EQ_INT(r.off[0], 41);
    CHECK_EQ_INT(r.off[9], 50);
    history_close(h);
}

/* Round-robin: a large backlog on one topic does not delay the others. */
static void test_trim_fair(void)
{
    history_opts o = {.history_size = 1};
    history_topic big, small;
    char path[128];
    history *h;
    uint64_t first;
    int i;

    path_in_dir(path, sizeof path, "trim_fair.db");
    h = open_ok(path, &o);
    if (!h)
        return;
    CHECK_EQ_INT(history_topic_load(h, "big", 1, &big), 0);
    CHECK_EQ_INT(history_topic_load(h, "small", 1, &small), 0);
    CHECK_EQ_INT(append_range(h, big.id, 1, 1000), 0);
    CHECK_EQ_INT(append_range(h, small.id, 1, 5), 0);
    for (i = 0; i < 3; i++)
        CHECK_EQ_INT(history_trim_step(h, 0, 10), 10);
    CHECK_EQ_INT(history_first_offset(h, small.id, &first), 0);
    CHECK_EQ_INT(first, 5);
    history_close(h);
}

static void test_trim_age(void)
{
    /* ts = offset * 10; ttl 100 at now 600 drops ts < 500, offsets 1..49 */
    history_opts o = {.history_ttl_ms = 100};
    history_topic a, b;
    char path[128];
    history *h;
    uint64_t first;
    int n, steps = 0, total = 0;

    path_in_dir(path, sizeof path, "trim_age.db");
    h = open_ok(path, &o);
    if (!h)
        return;
    CHECK_EQ_INT(history_topic_load(h, "a", 1, &a), 0);
    CHECK_EQ_INT(history_topic_load(h, "b", 1, &b), 0);
    CHECK_EQ_INT(append_range(h, a.id, 1, 60), 0);
    CHECK_EQ_INT(append_range(h, b.id, 1, 45), 0);
    while ((n = history_trim_step(h, 600, 5)) > 0 && steps < 100) {
        CHECK(n <= 5);
        total += n;
        steps++;
    }
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(total, 49 + 45);
    CHECK(steps >= 19);
    CHECK_EQ_INT(history_first_offset(h, a.id, &first), 0);
    CHECK_EQ_INT(first, 50);
    CHECK_EQ_INT(history_first_offset(h, b.id, &first), 0);
    CHECK_EQ_INT(first, 0);

    /* the topic row and its offset survive losing every message */
    CHECK_EQ_INT(history_topic_load(h, "b", 0, &b), 0);
    CHECK_EQ_INT(b.last_offset, 45);
    history_close(h);
    h = open_ok(path, &o);
    if (!h)
        return;
    CHECK_EQ_INT(history_topic_load(h, "b", 0, &b), 0);
    CHECK_EQ_INT(b.last_offset, 45);
    CHECK_EQ_INT(append_range(h, b.id, 46, 46), 0);
    CHECK_EQ_INT(history_first_offset(h, b.id, &first), 0);
    CHECK_EQ_INT(first, 46);
    history_close(h);
}

static void test_trim_off(void)
{
    history_opts o = {0};
    history_topic t;
    char path[128];
    history *h;

    path_in_dir(path, sizeof path, "trim_off.db");
    h = open_ok(path, &o);
    if (!h)
        return;
    CHECK_EQ_INT(history_topic_load(h, "t", 1, &t), 0);
    CHECK_EQ_INT(append_range(h, t.id, 1, 20), 0);
    CHECK_EQ_INT(history_trim_step(h, INT64_MAX, 100), 0);
    history_close(h);
}

static void expect_open_fail(const char *path, const char *needle)
{
    history_opts o = {0};
    history *h = (history *)1;
    char err[256] = "";

    CHECK_EQ_INT(history_open(&h, path, &o, err, sizeof err), -1);
    CHECK(h == NULL);
    CHECK(strstr(err, path) != NULL);
    if (needle && !strstr(err, needle)) {
        CHECK(0);
        fprintf(stderr, "  error was: %s (wanted %s)\n", err, needle);
    }
    if (h)
        history_close(h);
}

static void test_refusals(void)
{
    char path[128];
    FILE *f;
    history *h;
    history_opts o = {0};
    int i;

    path_in_dir(path, sizeof path, "garbage.db");
    f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        for (i = 0; i < 4096; i++)
            fputc((i * 7 + 13) & 0xff, f);
        fclose(f);
    }
    expect_open_fail(path, "file is not a database");

    expect_open_fail(dir, "unable to open");
    path_in_dir(path, sizeof path, "no/such/dir/x.db");
    expect_open_fail(path, "unable to open");

    /* a newer schema than the code knows */
    path_in_dir(path, sizeof path, "newer.db");
    h = open_ok(path, &o);
    if (h)
        history_close(h);
    /* user_version is the big-endian word at byte 60 of the header */
    f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (f) {
        static const unsigned char v99[4] = {0, 0, 0, 99};
        CHECK_EQ_INT(fseek(f, 60, SEEK_SET), 0);
        CHECK_EQ_INT(fwrite(v99, 1, 4, f), 4);
        fclose(f);
        expect_open_fail(path, "schema version 99");
    }

    /* someone else's database (needs the sqlite3 CLI; skipped without) */
    path_in_dir(path, sizeof path, "foreign.db");
    {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "sqlite3 '%s' 'CREATE TABLE x(y)' >/dev/null",
                 path);
        if (system(cmd) == 0)
            expect_open_fail(path, "not a Chorus history database");
    }
}

/* A full disk simulated with max_page_count: the batch fails, the broker
 * rolls back, and once there is room again commits succeed. */
static void test_full_disk(void)
{
    history_opts o = {0};
    history_topic t;
    char path[128], big[2048];
    history *h;
    struct rows r;
    uint64_t o_;
    int failed = 0, lim;

    path_in_dir(path, sizeof path, "full.db");
    h = open_ok(path, &o);
    if (!h)
        return;
    CHECK_EQ_INT(history_topic_load(h, "t", 1, &t), 0);
    CHECK_EQ_INT(append_range(h, t.id, 1, 3), 0);
    lim = history_test_set_max_pages(h, 1);
    CHECK(lim > 0);
    memset(big, 'x', sizeof big);
    big[0] = '"';
    big[sizeof big - 1] = '"';

    CHECK_EQ_INT(history_begin(h), 0);
    for (o_ = 4; o_ < 200 && !failed; o_++)
        failed = history_append(h, t.id, o_, 0, big, sizeof big) != 0;
    if (!failed)
        failed = history_commit(h) != 0;
    else
        history_rollback(h);
    CHECK(failed);
    CHECK(strstr(history_errmsg(h), "full") != NULL);
    CHECK_EQ_INT(read_all(h, t.id, 0, 100, &r), 3);
    CHECK_EQ_INT(history_topic_load(h, "t", 0, &t), 0);
    CHECK_EQ_INT(t.last_offset, 3);
    CHECK(history_test_set_max_pages(h, 1000000) >= 1000000);
    CHECK_EQ_INT(append_range(h, t.id, 4, 100), 0);
    CHECK_EQ_INT(read_all(h, t.id, 0, 200, &r), 100);
    history_close(h);
}

/* A write error at COMMIT itself (the WAL cannot grow: RLIMIT_FSIZE makes
 * write() fail with EFBIG, as close to ENOSPC as a test can get without
 * a tiny filesystem). The commit must fail and roll back, and later
 * commits must succeed once writes fit again. */
static void test_commit_write_error(void)
{
    history_opts o = {0};
    history_topic t;
    char path[128], wal[140], big[2048];
    struct rlimit old, lim;
    struct stat st;
    history *h;
    struct rows r;
    uint64_t off;
    int ok = 1, rc;

    path_in_dir(path, sizeof path, "commit_err.db");
    snprintf(wal, sizeof wal, "%s-wal", path);
    h = open_ok(path, &o);
    if (!h)
        return;
    CHECK_EQ_INT(history_topic_load(h, "t", 1, &t), 0);
    CHECK_EQ_INT(append_range(h, t.id, 1, 3), 0);
    CHECK_EQ_INT(stat(wal, &st), 0);
    CHECK_EQ_INT(getrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_IGN);
    memset(big, 'x', sizeof big);
    big[0] = '"';
    big[sizeof big - 1] = '"';

    CHECK_EQ_INT(history_begin(h), 0);
    for (off = 4; off < 200 && ok; off++)
        ok = history_append(h, t.id, off, 0, big, sizeof big) == 0;
    CHECK(ok); /* pages stay in the cache until commit */
    lim = old;
    lim.rlim_cur = (rlim_t)st.st_size + 8192;
    CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &lim), 0);
    rc = history_commit(h);
    CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &old), 0);
    /* A file-size limit (EFBIG) is a full disk, not an I/O error: the
     * commit frame was not written, the batch fails alone. */
    CHECK_EQ_INT(rc, -1);
    CHECK(strstr(history_errmsg(h), "commit") != NULL);
    CHECK_EQ_INT(read_all(h, t.id, 0, 100, &r), 3);
    CHECK_EQ_INT(history_topic_load(h, "t", 0, &t), 0);
    CHECK_EQ_INT(t.last_offset, 3);
    CHECK_EQ_INT(append_range(h, t.id, 4, 50), 0);
    CHECK_EQ_INT(read_all(h, t.id, 0, 100, &r), 50);
    history_close(h);
    h = open_ok(path, &o);
    if (!h)
        return;
    CHECK_EQ_INT(read_all(h, t.id, 0, 100, &r), 50);
    CHECK_EQ_INT(r.bad, 0);
    history_close(h);
}

/* history_new_epochs: the database and every topic get one new epoch,
 * offsets and messages stay, and new topics take the new epoch. An
 * exclusive handle keeps every other connection out while it is open. */
static void test_new_epochs(void)
{
    history_opts o = {0}, excl = {.exclusive = 1};
    history_topic a, b, a2, c;
    char path[128], old_db[HISTORY_EPOCH_LEN + 1], err[256];
    history *h, *other = NULL;
    struct rows r;
    uint64_t n = 0;

    path_in_dir(path, sizeof path, "epochs.db");
    h = open_ok(path, &o);
    if (!h)
        return;
    CHECK_EQ_INT(history_topic_load(h, "a", 1, &a), 0);
    CHECK_EQ_INT(history_topic_load(h, "b", 1, &b), 0);
    CHECK_EQ_INT(append_range(h, a.id, 1, 3), 0);
    snprintf(old_db, sizeof old_db, "%s", history_db_epoch(h));
    history_close(h);

    h = open_ok(path, &excl);
    if (!h)
        return;
    CHECK_EQ_INT(history_open(&other, path, &o, err, sizeof err), -1);
    CHECK(strstr(err, "another process has it open") != NULL);
    CHECK_EQ_INT(history_new_epochs(h, &n), 0);
    CHECK_EQ_INT(n, 2);
    CHECK(strcmp(history_db_epoch(h), old_db) != 0);
    CHECK_EQ_INT(strlen(history_db_epoch(h)), HISTORY_EPOCH_LEN);
    history_close(h);

    h = open_ok(path, &o);
    if (!h)
        return;
    CHECK_EQ_INT(history_topic_load(h, "a", 0, &a2), 0);
    CHECK(strcmp(a2.epoch, a.epoch) != 0);
    CHECK_EQ_STR(a2.epoch, history_db_epoch(h));
    CHECK_EQ_INT(a2.last_offset, 3);
    CHECK_EQ_INT(history_topic_load(h, "b", 0, &b), 0);
    CHECK_EQ_STR(b.epoch, a2.epoch);
    CHECK_EQ_INT(history_topic_load(h, "c", 1, &c), 0);
    CHECK_EQ_STR(c.epoch, a2.epoch);
    memset(&r, 0, sizeof r);
    CHECK_EQ_INT(history_read(h, a2.id, 0, 10, collect, &r), 3);
    CHECK_EQ_INT(r.bad, 0);
    history_close(h);
}

static void test_perf(void)
{
    history_opts o = {0};
    history_topic t;
    char path[128];
    history *h;
    double t0, t1, t2;
    uint64_t off = 0;
    int b, i, ok = 1, rows = 0, n;
    struct rows r;

    path_in_dir(path, sizeof path, "perf.db");
    h = open_ok(path, &o);
    if (!h)
        return;
    CHECK_EQ_INT(history_topic_load(h, "perf", 1, &t), 0);
    t0 = now_s();
    for (b = 0; b < 1000 && ok; b++) {
        ok = history_begin(h) == 0;
        for (i = 0; i < 100 && ok; i++) {
            char data[96];
            off++;
            n = snprintf(data, sizeof data,
                         "{\"n\":%llu,\"text\":\"hello world, some payload\"}",
                         (unsigned long long)off);
            ok = history_append(h, t.id, off, (int64_t)off, data, (size_t)n) ==
                 0;
        }
        ok = ok && history_commit(h) == 0;
    }
    CHECK(ok);
    t1 = now_s();
    for (off = 0;;) {
        memset(&r, 0, sizeof r);
        n = history_read(h, t.id, off, 1000, collect, &r);
        if (n <= 0)
            break;
        rows += n;
        off += (uint64_t)n;
    }
    t2 = now_s();
    CHECK_EQ_INT(rows, 100000);
    printf("perf: append+commit 100k msgs (batches of 100): %.3f s "
           "(%.0f msg/s); read back: %.3f s (%.0f msg/s)\n",
           t1 - t0, 100000 / (t1 - t0), t2 - t1, rows / (t2 - t1));
    history_close(h);

    /* trim the same table down to 1000 rows, 1000 rows per step */
    o.history_size = 1000;
    h = open_ok(path, &o);
    if (!h)
        return;
    t0 = now_s();
    for (rows = 0, i = 0; (n = history_trim_step(h, 0, 1000)) > 0; i++)
        rows += n;
    t1 = now_s();
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(rows, 99000);
    printf("perf: trim 99k msgs in %d steps of <= 1000: %.3f s "
           "(%.2f ms/step)\n",
           i, t1 - t0, (t1 - t0) * 1000 / (i ? i : 1));
    history_close(h);
}

int main(void)
{
    char cmd[128];

    snprintf(dir, sizeof dir, "/tmp/chorus_hist_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_create_reopen();
    test_rollback();
    test_trim_count();
    test_trim_fair();
    test_trim_age();
    test_trim_off();
    test_refusals();
    test_full_disk();
    test_commit_write_error();
    test_new_epochs();
    test_perf();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "note: could not remove %s\n", dir);
    return check_report("test_history");
}
