/* The SQLite engine behind store.h.
 *
 * One writer thread (writer.h) owns the only read-write connection and
 * makes every write; each event loop reads through a query-only
 * connection of its own (history_open_reader), so reads never wait for
 * the writer and no loop ever syncs a file. Reads answer before the
 * request returns; appends answer later, from the loop's event base, once
 * the writer has committed them. Only loop 0 appends (central_publish):
 * one loop orders every topic's fan-out across loops. There is no live
 * feed: every message reaches other loops as loop 0's encoded blocks. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "history.h"
#include "log.h"
#include "store.h"
#include "writer.h"

typedef struct sqlite_store {
    store base;
    writer *w;
    char *path;
} sqlite_store;

typedef struct sqlite_loop {
    store_loop base;
    history *reader;
    struct event *done_ev; /* on the loop: writer jobs came back */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    writer_job *done_head, *done_tail; /* under mu */
    size_t pending;                    /* pushed, not yet back; under mu */
} sqlite_loop;

/* An append in flight: the writer's job and the caller's callback. */
typedef struct append_req {
    writer_job job;
    store_append_cb cb;
    void *arg;
} append_req;

static int sqlite_open(store **out, const config *cfg, char *err, size_t errlen)
{
    history_opts opts = {cfg->durability == DURABILITY_FULL, cfg->history_size,
                         cfg->history_ttl_ms, 0};
    sqlite_store *st = calloc(1, sizeof *st);

    *out = NULL;
    if (!st || !(st->path = strdup(cfg->db_path))) {
        free(st);
        snprintf(err, errlen, "out of memory");
        return STORE_FAIL;
    }
    st->base.engine = &store_engine_sqlite;
    st->w = writer_start(cfg->db_path, &opts, err, errlen);
    if (!st->w) {
        free(st->path);
        free(st);
        return STORE_FAIL;
    }
    *out = &st->base;
    return STORE_OK;
}

static void sqlite_close(store *base)
{
    sqlite_store *st = (sqlite_store *)base;

    writer_stop(st->w);
    free(st->path);
    free(st);
}

/* Takes the jobs that came back and runs their callbacks. */
static void complete_done(sqlite_loop *l)
{
    writer_job *j, *next;

    pthread_mutex_lock(&l->mu);
    j = l->done_head;
    l->done_head = l->done_tail = NULL;
    pthread_mutex_unlock(&l->mu);
    for (; j; j = next) {
        append_req *r = (append_req *)j;
        next = j->next;
        r->cb(r->arg, j->status, j->status == STORE_OK ? NULL : j->why);
        free(r);
    }
}

static void done_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    complete_done(arg);
}

/* On the writer thread: hands a finished job back to its loop. pending
 * drops only after the wake-up, so that a flush waiting for it never
 * frees the event under it. */
static void job_back(writer_job *j)
{
    sqlite_loop *l = j->owner;

    j->next = NULL;
    pthread_mutex_lock(&l->mu);
    if (l->done_tail)
        l->done_tail->next = j;
    else
        l->done_head = j;
    l->done_tail = j;
    pthread_mutex_unlock(&l->mu);
    event_active(l->done_ev, EV_READ, 0);
    pthread_mutex_lock(&l->mu);
    l->pending--;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->mu);
}

static void sqlite_detach(store_loop *base);

static int sqlite_attach(store *st_base, int index, struct event_base *base,
                         const store_feed *feed, store_loop **out, char *err,
                         size_t errlen)
{
    sqlite_store *st = (sqlite_store *)st_base;
    sqlite_loop *l = calloc(1, sizeof *l);

    (void)index;
    (void)feed; /* no feed: loop 0's blocks reach the others */
    *out = NULL;
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return STORE_FAIL;
    }
    l->base.engine = &store_engine_sqlite;
    l->base.st = st_base;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cond, NULL);
    l->done_ev = event_new(base, -1, 0, done_cb, l);
    if (!l->done_ev) {
        snprintf(err, errlen, "out of memory");
        sqlite_detach(&l->base);
        return STORE_FAIL;
    }
    if (history_open_reader(&l->reader, st->path, err, errlen)) {
        sqlite_detach(&l->base);
        return STORE_FAIL;
    }
    *out = &l->base;
    return STORE_OK;
}

static void sqlite_flush(store_loop *base)
{
    sqlite_loop *l = (sqlite_loop *)base;

    for (;;) {
        pthread_mutex_lock(&l->mu);
        while (l->pending && !l->done_head)
            pthread_cond_wait(&l->cond, &l->mu);
        if (!l->pending && !l->done_head) {
            pthread_mutex_unlock(&l->mu);
            return;
        }
        pthread_mutex_unlock(&l->mu);
        complete_done(l); /* a callback may append again */
    }
}

static void sqlite_detach(store_loop *base)
{
    sqlite_loop *l = (sqlite_loop *)base;

    if (l->done_ev) {
        sqlite_flush(base);
        event_free(l->done_ev);
    }
    history_close(l->reader);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cond);
    free(l);
}

static void sqlite_append(store_loop *base, store_msg *msgs, size_t n,
                          store_append_cb cb, void *arg)
{
    sqlite_loop *l = (sqlite_loop *)base;
    append_req *r = calloc(1, sizeof *r);

    if (!r) {
        cb(arg, STORE_FAIL, "out of memory");
        return;
    }
    r->cb = cb;
    r->arg = arg;
    r->job.type = WRITER_APPEND;
    r->job.msgs = msgs;
    r->job.n = n;
    r->job.done = job_back;
    r->job.owner = l;
    pthread_mutex_lock(&l->mu);
    l->pending++;
    pthread_mutex_unlock(&l->mu);
    writer_push(((sqlite_store *)base->st)->w, &r->job);
}

/* The topic's stored state, or the database's epoch and offset 0 for a
 * topic that has no row (never published to): creates nothing. */
static int load_info(history *h, const char *name, size_t len,
                     store_topic_info *info, int64_t *id)
{
    history_topic t;
    int rc = history_topic_load_n(h, name, len, 0, &t);

    if (rc < 0)
        return -1;
    if (rc == 1) {
        memcpy(info->epoch, history_db_epoch(h), sizeof info->epoch);
        info->newest = info->oldest = 0;
        *id = 0;
        return 0;
    }
    memcpy(info->epoch, t.epoch, sizeof info->epoch);
    info->newest = t.last_offset;
    *id = t.id;
    return history_first_offset(h, t.id, &info->oldest);
}

/* A failing database fails every read: one line a second for all loops. */
static void log_read_error(const char *name, size_t len, const char *what,
                           const char *why)
{
    static log_limit limit;
    uint64_t due = log_due(&limit, log_now_ms());

    if (due)
        log_with(LOG_ERROR,
                 &(log_fields){
                     .topic = name, .topic_len = len, .suppressed = due - 1},
                 "history: %s %.*s: %s", what, (int)len, name, why);
}

static void sqlite_topic(store_loop *base, const char *name, size_t len,
                         store_topic_cb cb, void *arg)
{
    sqlite_loop *l = (sqlite_loop *)base;
    store_topic_info info;
    int64_t id;

    if (load_info(l->reader, name, len, &info, &id) != 0) {
        log_read_error(name, len, "cannot read topic",
                       history_errmsg(l->reader));
        cb(arg, STORE_FAIL, NULL);
    } else
        cb(arg, STORE_OK, &info);
}

typedef struct row_adapter {
    store_row_fn row;
    void *arg;
} row_adapter;

static int adapt_row(uint64_t offset, int64_t ts_ms, const char *data,
                     size_t data_len, void *arg)
{
    row_adapter *a = arg;

    return a->row(a->arg, offset, ts_ms, data, data_len);
}

static void sqlite_read(store_loop *base, const char *name, size_t len,
                        uint64_t after, size_t limit, store_row_fn row,
                        store_read_cb done, void *arg)
{
    sqlite_loop *l = (sqlite_loop *)base;
    history_topic t;
    row_adapter a = {row, arg};
    int rc = history_topic_load_n(l->reader, name, len, 0, &t);

    if (rc == 0)
        rc = history_read(l->reader, t.id, after, limit, adapt_row, &a);
    else if (rc == 1)
        rc = 0; /* never published to: empty */
    if (rc < 0) {
        log_read_error(name, len, "read failed for topic",
                       history_errmsg(l->reader));
        done(arg, STORE_FAIL, 0);
    } else
        done(arg, STORE_OK, (size_t)rc);
}

static void sqlite_metrics(store *st, struct evbuffer *out)
{
    uint64_t by_writer, other;

    (void)st;
    history_sync_counts(&by_writer, &other);
    evbuffer_add_printf(
        out,
        "# HELP chorus_history_syncs_total Syncs of the history files, by "
        "the thread that waited for them (only the writer should).\n"
        "# TYPE chorus_history_syncs_total counter\n"
        "chorus_history_syncs_total{thread=\"writer\"} %llu\n"
        "chorus_history_syncs_total{thread=\"other\"} %llu\n",
        (unsigned long long)by_writer, (unsigned long long)other);
}

static void sqlite_set_retention(store *base, uint64_t size, uint64_t ttl_ms)
{
    writer_set_retention(((sqlite_store *)base)->w, size, ttl_ms);
}

/* Through the writer, as every write: its handle alone has the file
 * (history_opts.exclusive), so a running broker makes the open fail
 * rather than share the database; the job runs before writer_stop
 * returns. A missing file is an error, not a new database: a mistyped
 * db_path must not look like success. */
static int sqlite_new_epochs(const config *cfg, char *msg, size_t msglen)
{
    history_opts opts = {cfg->durability == DURABILITY_FULL, cfg->history_size,
                         cfg->history_ttl_ms, 1};
    writer_job job = {.type = WRITER_NEW_EPOCHS};
    writer *w;

    if (access(cfg->db_path, F_OK) != 0) {
        snprintf(msg, msglen, "%s: %s", cfg->db_path, strerror(errno));
        return STORE_FAIL;
    }
    w = writer_start(cfg->db_path, &opts, msg, msglen);
    if (!w)
        return STORE_FAIL;
    writer_push(w, &job);
    writer_stop(w);
    if (job.status != STORE_OK) {
        snprintf(msg, msglen, "%s: %s", cfg->db_path, job.why);
        return STORE_FAIL;
    }
    snprintf(msg, msglen,
             "%s: the database and its %zu topic%s have a new epoch",
             cfg->db_path, job.n, job.n == 1 ? "" : "s");
    return STORE_OK;
}

const store_engine store_engine_sqlite = {
    .name = "sqlite",
    .central_publish = 1,
    .open = sqlite_open,
    .close = sqlite_close,
    .attach = sqlite_attach,
    .flush = sqlite_flush,
    .detach = sqlite_detach,
    .append = sqlite_append,
    .topic = sqlite_topic,
    .read = sqlite_read,
    .watch = NULL,
    .unavailable = NULL,
    .set_retention = sqlite_set_retention,
    .metrics = sqlite_metrics,
    .new_epochs = sqlite_new_epochs,
};
