/* The SQLite engine through store.h: engine-assigned offsets and epochs,
 * group commit in order, reads that create nothing, no sync outside the
 * writer thread, and the two commit failures: a full disk (the batch
 * fails, its offsets are reused) and an I/O error on COMMIT (the process
 * ends, fail-stop). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "check.h"
#include "config.h"
#include "history.h"
#include "store.h"

static char dir[64];
static struct event_base *base;

typedef struct outcome {
    int calls, status;
    char why[256];
} outcome;

static void on_append(void *arg, int status, const char *why)
{
    outcome *o = arg;

    o->calls++;
    o->status = status;
    snprintf(o->why, sizeof o->why, "%s", why ? why : "");
}

static store_topic_info last_info;

static void on_topic(void *arg, int status, const store_topic_info *info)
{
    outcome *o = arg;

    o->calls++;
    o->status = status;
    if (info)
        last_info = *info;
}

typedef struct reading {
    int calls, status;
    size_t rows, seen;
    uint64_t last; /* offset of the last row */
} reading;

static int on_row(void *arg, uint64_t offset, int64_t ts_ms, const char *data,
                  size_t len)
{
    reading *r = arg;

    (void)ts_ms;
    (void)data;
    (void)len;
    r->seen++;
    r->last = offset;
    return 0;
}

static void on_read(void *arg, int status, size_t rows)
{
    reading *r = arg;

    r->calls++;
    r->status = status;
    r->rows = rows;
}

static reading read_topic(store_loop *l, const char *name, uint64_t after,
                          size_t limit)
{
    reading r = {0};

    store_read(l, name, strlen(name), after, limit, on_row, on_read, &r);
    CHECK_EQ_INT(r.calls, 1); /* SQLite answers reads at once */
    CHECK_EQ_INT(r.status, STORE_OK);
    CHECK_EQ_INT(r.rows, r.seen);
    return r;
}

/* Runs the loop until the callback of o ran (bounded: 10 s). */
static void wait_for(outcome *o, int calls)
{
    for (int i = 0; i < 10000 && o->calls < calls; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        if (o->calls < calls)
            usleep(1000);
    }
}

static store *open_store(const char *name, config *cfg)
{
    char err[256], path[200];
    store *st = NULL;

    config_init(cfg);
    cfg->durability = DURABILITY_FULL; /* a sync at each commit */
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK_EQ_INT(config_set(cfg, "db_path", path, err, sizeof err), 0);
    if (store_open(&st, cfg, err, sizeof err) != STORE_OK)
        fprintf(stderr, "store_open: %s\n", err);
    CHECK(st != NULL);
    return st;
}

static store_loop *attach(store *st, int index)
{
    char err[256];
    store_loop *l = NULL;

    CHECK_EQ_INT(store_attach(st, index, base, NULL, &l, err, sizeof err),
                 STORE_OK);
    return l;
}

/* Links msgs as the pub/sub layer does: by topic, in array order. */
static void link_by_topic(store_msg *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        m[i].group_first = 1;
        m[i].next_same = 0;
        for (size_t j = 0; j < i; j++)
            if (strcmp(m[j].topic, m[i].topic) == 0) {
                size_t k = j;
                m[i].group_first = 0;
                while (m[k].next_same)
                    k = m[k].next_same - 1;
                m[k].next_same = i + 1;
                break;
            }
    }
}

static void fill(store_msg *m, const char *topic, const char *data)
{
    memset(m, 0, sizeof *m);
    m->topic = topic;
    m->topic_len = strlen(topic);
    m->data = data;
    m->data_len = strlen(data);
    m->ts_ms = (int64_t)time(NULL) * 1000; /* within history_ttl */
}

static void topic_info(store_loop *l, const char *name)
{
    outcome o = {0};

    store_topic(l, name, strlen(name), on_topic, &o);
    CHECK_EQ_INT(o.calls, 1); /* SQLite answers reads at once */
    CHECK_EQ_INT(o.status, STORE_OK);
}

static void test_offsets_and_epochs(void)
{
    config cfg;
    store *st = open_store("offsets.db", &cfg);
    store_loop *l0 = st ? attach(st, 0) : NULL, *l1 = st ? attach(st, 1) : 0;
    store_msg a[4], b[2];
    outcome oa = {0}, ob = {0};
    char db_epoch[STORE_EPOCH_LEN + 1];

    if (!l0 || !l1)
        return;
    /* never published to: the database's epoch, nothing stored */
    topic_info(l1, "news");
    CHECK_EQ_INT(last_info.newest, 0);
    CHECK_EQ_INT(last_info.oldest, 0);
    CHECK_EQ_INT(strlen(last_info.epoch), STORE_EPOCH_LEN);
    memcpy(db_epoch, last_info.epoch, sizeof db_epoch);
    topic_info(l1, "other");
    CHECK_EQ_STR(last_info.epoch, db_epoch);

    fill(&a[0], "news", "1");
    fill(&a[1], "chat", "\"x\"");
    fill(&a[2], "news", "2");
    fill(&a[3], "news", "3");
    link_by_topic(a, 4);
    fill(&b[0], "news", "4");
    fill(&b[1], "chat", "5");
    link_by_topic(b, 2);
    /* two batches queued back to back: answered in order */
    store_append(l0, a, 4, on_append, &oa);
    store_append(l0, b, 2, on_append, &ob);
    CHECK_EQ_INT(oa.calls, 0); /* appends answer later, from the loop */
    wait_for(&ob, 1);
    CHECK_EQ_INT(oa.calls, 1);
    CHECK_EQ_INT(oa.status, STORE_OK);
    CHECK_EQ_INT(ob.status, STORE_OK);
    CHECK_EQ_INT(a[0].offset, 1);
    CHECK_EQ_INT(a[2].offset, 2);
    CHECK_EQ_INT(a[3].offset, 3);
    CHECK_EQ_INT(a[1].offset, 1);
    CHECK_EQ_INT(b[0].offset, 4);
    CHECK_EQ_INT(b[1].offset, 2);
    /* the position (epoch, 0) seen before the first publish is valid */
    CHECK_EQ_STR(a[0].epoch, db_epoch);
    CHECK_EQ_STR(b[1].epoch, db_epoch);

    topic_info(l1, "news"); /* another loop sees the commit at once */
    CHECK_EQ_INT(last_info.newest, 4);
    CHECK_EQ_INT(last_info.oldest, 1);
    CHECK_EQ_STR(last_info.epoch, db_epoch);
    CHECK_EQ_INT(read_topic(l1, "news", 1, 10).rows, 3);
    CHECK_EQ_INT(read_topic(l1, "news", 1, 2).last, 3);
    CHECK_EQ_INT(read_topic(l1, "never", 0, 10).rows, 0);
    store_detach(l0);
    store_detach(l1);
    store_close(st);
    config_free(&cfg);
}

/* flush completes every pending append inside the call, in order, without
 * the loop running: what shutdown relies on to ack what it accepted. */
static void test_flush_completes_pending(void)
{
    config cfg;
    store *st = open_store("flush.db", &cfg);
    store_loop *l = st ? attach(st, 0) : NULL;
    store_msg m[3];
    outcome o[3] = {{0}};

    if (!l)
        return;
    for (int i = 0; i < 3; i++) {
        fill(&m[i], "fl", "{}");
        link_by_topic(&m[i], 1);
        store_append(l, &m[i], 1, on_append, &o[i]);
    }
    store_flush(l);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(o[i].calls, 1);
        CHECK_EQ_INT(o[i].status, STORE_OK);
        CHECK_EQ_INT(m[i].offset, (uint64_t)i + 1);
    }
    store_detach(l);
    store_close(st);
    config_free(&cfg);
}

/* A loop's handle cannot write: creating a topic row through it fails. */
static void test_reader_is_query_only(void)
{
    config cfg;
    store *st = open_store("ro.db", &cfg);
    history *r = NULL;
    history_topic t;
    char err[256];

    if (!st)
        return;
    CHECK_EQ_INT(history_open_reader(&r, cfg.db_path, err, sizeof err), 0);
    if (r) {
        CHECK_EQ_INT(history_topic_load(r, "x", 1, &t), -1);
        CHECK(strstr(history_errmsg(r), "readonly") != NULL);
        CHECK_EQ_INT(history_topic_load(r, "x", 0, &t), 1);
        history_close(r);
    }
    store_close(st);
    config_free(&cfg);
}

static long long file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (long long)st.st_size : 0;
}

/* Lookups and reads of topics never published to store nothing: the
 * files keep their size byte for byte. */
static void test_reads_create_nothing(void)
{
    config cfg;
    store *st = open_store("reads.db", &cfg);
    store_loop *l = st ? attach(st, 1) : NULL;
    char name[32], wal[300];
    long long db0, wal0;

    if (!l)
        return;
    snprintf(wal, sizeof wal, "%s-wal", cfg.db_path);
    db0 = file_size(cfg.db_path);
    wal0 = file_size(wal);
    for (int i = 0; i < 10000; i++) {
        snprintf(name, sizeof name, "unused-%d", i);
        topic_info(l, name);
        CHECK(last_info.newest == 0 && last_info.oldest == 0);
        read_topic(l, name, 0, 100);
    }
    CHECK_EQ_INT(file_size(cfg.db_path), db0);
    CHECK_EQ_INT(file_size(wal), wal0);
    store_detach(l);
    store_close(st);
    config_free(&cfg);
}

static void append_one(store_loop *l, store_msg *m, const char *topic,
                       outcome *o)
{
    fill(m, topic, "{}");
    link_by_topic(m, 1);
    memset(o, 0, sizeof *o);
    store_append(l, m, 1, on_append, o);
    wait_for(o, 1);
    CHECK_EQ_INT(o->calls, 1);
}

/* Only the writer thread syncs: commits (durability full syncs the WAL
 * at each), checkpoints and closing; never the thread that reads and
 * appends, which stands for an event loop. */
static void test_only_the_writer_syncs(void)
{
    config cfg;
    store *st = open_store("syncs.db", &cfg);
    store_loop *l;
    uint64_t w0, o0, w1, o1;
    store_msg m;
    outcome o;

    if (!st)
        return;
    history_sync_counts(&w0, &o0);
    l = attach(st, 0);
    if (!l)
        return;
    for (int i = 0; i < 20; i++) {
        char name[16];
        snprintf(name, sizeof name, "s%d", i);
        topic_info(l, name);
        append_one(l, &m, name, &o);
        CHECK_EQ_INT(o.status, STORE_OK);
        read_topic(l, name, 0, 10);
    }
    store_detach(l);
    store_close(st);
    history_sync_counts(&w1, &o1);
    CHECK(w1 > w0); /* the checkpoint at close, at least */
    CHECK_EQ_INT(o1, o0);
    config_free(&cfg);
}

/* A full disk at COMMIT (SQLITE_FULL: the commit frame was not written)
 * fails that batch alone: nothing of it is stored and its offsets are
 * handed out again; the store goes on. */
static void test_full_disk_at_commit(void)
{
    config cfg;
    store *st = open_store("full.db", &cfg);
    store_loop *l = st ? attach(st, 0) : NULL;
    store_msg m;
    outcome o;

    if (!l)
        return;
    append_one(l, &m, "f", &o);
    CHECK_EQ_INT(m.offset, 1);
    history_test_fail_wal_writes(HISTORY_FAULT_FULL, 1);
    append_one(l, &m, "f", &o);
    CHECK_EQ_INT(o.status, STORE_FAIL);
    CHECK(strlen(o.why) > 0);
    append_one(l, &m, "f", &o);
    CHECK_EQ_INT(o.status, STORE_OK);
    CHECK_EQ_INT(m.offset, 2);
    CHECK_EQ_INT(read_topic(l, "f", 0, 10).rows, 2);

    store_detach(l);
    store_close(st);
    config_free(&cfg);
}

/* An I/O error on COMMIT ends the process (SIGABRT, after logging why):
 * whether the batch reached the WAL is unknown, so its offsets must not
 * be handed out again. Run in a child; the parent then finds the store
 * intact. */
static void test_io_error_at_commit_stops(void)
{
    config cfg;
    pid_t pid = fork();
    int status = 0;

    if (pid == 0) {
        store *st;
        store_loop *l;
        store_msg m;
        outcome o;

        struct rlimit no_core = {0, 0};

        setrlimit(RLIMIT_CORE, &no_core); /* the abort is expected */
        base = event_base_new();
        st = open_store("ioerr.db", &cfg);
        l = st ? attach(st, 0) : NULL;
        if (!l)
            _exit(3);
        append_one(l, &m, "e", &o);
        if (o.status != STORE_OK)
            _exit(4);
        history_test_fail_wal_writes(HISTORY_FAULT_IOERR, 1);
        append_one(l, &m, "e", &o);
        _exit(5); /* not reached: the writer aborts */
    }
    CHECK(pid > 0);
    if (pid <= 0)
        return;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    if (!WIFSIGNALED(status))
        fprintf(stderr, "child exit status %d\n", WEXITSTATUS(status));
    {
        store *st = open_store("ioerr.db", &cfg);
        store_loop *l = st ? attach(st, 0) : NULL;
        store_msg m;
        outcome o;

        if (!l)
            return;
        topic_info(l, "e"); /* the failed write never reached the file */
        CHECK_EQ_INT(last_info.newest, 1);
        append_one(l, &m, "e", &o);
        CHECK_EQ_INT(o.status, STORE_OK);
        CHECK_EQ_INT(m.offset, 2);
        store_detach(l);
        store_close(st);
        config_free(&cfg);
    }
}

int main(void)
{
    char cmd[128];

    evthread_use_pthreads();
    base = event_base_new();
    snprintf(dir, sizeof dir, "/tmp/chorus_store_XXXXXX");
    if (!base || !mkdtemp(dir)) {
        perror("setup");
        return 1;
    }
    test_offsets_and_epochs();
    test_reads_create_nothing();
    test_flush_completes_pending();
    test_reader_is_query_only();
    test_only_the_writer_syncs();
    test_full_disk_at_commit();
    test_io_error_at_commit_stops();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "note: could not remove %s\n", dir);
    event_base_free(base);
    return check_report("test_store_sqlite");
}
