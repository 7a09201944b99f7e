#include "writer.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

/* Retention runs at most this often, in steps of at most this many
 * messages; inside an append's transaction while appends follow each
 * other, else as a step of its own. */
#define TRIM_EVERY_MS 1000
#define TRIM_BUDGET 4000

/* A checkpoint syncs the database file, and the next commit waits for it:
 * under load the writer checkpoints only when a commit leaves the WAL
 * past CHECKPOINT_PAGES (16 MiB of 4 KiB pages: rarely, and each time
 * for the price of one sync), and once appends pause for
 * CHECKPOINT_IDLE_MS, copies the rest so that the database file is
 * current and the WAL starts over. */
#define CHECKPOINT_IDLE_MS 500
#define CHECKPOINT_PAGES 4096

struct writer {
    history *hist; /* the thread's own */
    const char *path;
    history_opts opts;
    int opened;         /* under mu: 1 open, -1 failed, 0 not yet */
    char open_err[512]; /* when opened is -1 */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    writer_job *head, *tail; /* under mu */
    int stop;                /* under mu */
    /* Under mu: retention bounds a reload set, not taken yet. */
    int retention_changed;
    uint64_t retention_size, retention_ttl_ms;
    /* The thread's own. */
    double next_trim, next_checkpoint;
    const char *fault; /* CHORUS_FAULT_COMMIT, see fault_arm */
    int fault_fired;
};

static double now_s(int clock)
{
    struct timespec ts;

    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One retention step: inside the open transaction (in_batch) or one of
 * its own. A failed step is retried at the next due time. */
static void trim_step(writer *w, int in_batch)
{
    double now = now_s(CLOCK_MONOTONIC);
    int64_t wall = (int64_t)(now_s(CLOCK_REALTIME) * 1000);
    int n;

    pthread_mutex_lock(&w->mu);
    if (w->retention_changed) {
        history_set_retention(w->hist, w->retention_size, w->retention_ttl_ms);
        w->retention_changed = 0;
    }
    pthread_mutex_unlock(&w->mu);
    n = in_batch ? history_trim_in_batch(w->hist, wall, TRIM_BUDGET)
                 : history_trim_step(w->hist, wall, TRIM_BUDGET);

    /* A full step means a backlog: come back soon. */
    w->next_trim = now + (n >= TRIM_BUDGET ? 0.01 : TRIM_EVERY_MS / 1000.0);
}

static void checkpoint(writer *w)
{
    if (history_checkpoint(w->hist) != 0)
        log_error("history: %s", history_errmsg(w->hist));
    w->next_checkpoint = now_s(CLOCK_MONOTONIC) + CHECKPOINT_IDLE_MS / 1000.0;
}

/* Fault injection for tests (tests/integration/test_fail_stop.py): with
 * CHORUS_FAULT_COMMIT=<ioerr|full>:<topic> in the environment, the first
 * commit that stores a message of that topic has its WAL write fail with
 * an I/O error or a full disk. */
static void fault_arm(writer *w, const store_msg *m)
{
    const char *colon = w->fault ? strchr(w->fault, ':') : NULL;

    if (!colon || w->fault_fired || strcmp(colon + 1, m->topic) != 0)
        return;
    w->fault_fired = 1;
    history_test_fail_wal_writes(strncmp(w->fault, "full:", 5) == 0
                                     ? HISTORY_FAULT_FULL
                                     : HISTORY_FAULT_IOERR,
                                 1);
}

/* Appends one job's messages, topic by topic (each topic's messages are
 * linked by next_same), after each topic's last offset; a topic stored
 * for the first time gets its row here. */
static int append_job(writer *w, writer_job *j)
{
    history *h = w->hist;
    size_t written = 0;

    for (size_t i = 0; i < j->n; i++) {
        history_topic t;
        uint64_t off;

        if (!j->msgs[i].group_first)
            continue;
        fault_arm(w, &j->msgs[i]);
        if (history_topic_load(h, j->msgs[i].topic, 1, &t) != 0)
            return -1;
        off = t.last_offset;
        for (size_t k = i + 1; k; k = j->msgs[k - 1].next_same, written++) {
            store_msg *m = &j->msgs[k - 1];
            m->offset = ++off;
            memcpy(m->epoch, t.epoch, sizeof m->epoch);
            if (history_append_run(h, t.id, m->offset, m->ts_ms, m->data,
                                   m->data_len, m->next_same == 0))
                return -1;
        }
    }
    if (written != j->n) { /* a chain broken: never commit part of it */
        history_rollback(h);
        snprintf(j->why, sizeof j->why, "batch not linked by topic");
        return -1;
    }
    return 0;
}

/* The end of a transaction whose COMMIT failed with an I/O error: its
 * commit record may be in the WAL, so the batch may come back at the
 * next recovery. Telling its publishers `internal` and handing its
 * offsets out again could then store two messages under one offset.
 * Like PostgreSQL since "fsyncgate", stop instead; a restart recovers
 * whatever the WAL holds, and publishers that got no ack resume. */
static void fail_stop(writer *w)
{
    log_error("history: COMMIT failed with an I/O error (%s): whether the "
              "batch was stored is unknown until recovery; stopping the "
              "broker (fail-stop)",
              history_errmsg(w->hist));
    abort();
}

/* Commits a run of append jobs in one transaction: all or none. */
static void run_appends(writer *w, writer_job *run)
{
    history *h = w->hist;
    int rc = history_begin(h);

    for (writer_job *j = run; j && rc == 0; j = j->next)
        rc = append_job(w, j);
    if (rc == 0) {
        if (now_s(CLOCK_MONOTONIC) >= w->next_trim)
            trim_step(w, 1);
        rc = history_commit(h);
        if (rc == HISTORY_COMMIT_UNKNOWN)
            fail_stop(w);
    } else {
        history_rollback(h);
    }
    history_test_fail_wal_writes(0, 0);
    w->next_checkpoint = now_s(CLOCK_MONOTONIC) + CHECKPOINT_IDLE_MS / 1000.0;
    for (writer_job *j = run, *next; j; j = next) {
        next = j->next;
        j->status = rc == 0 ? STORE_OK : STORE_FAIL;
        if (rc != 0 && !j->why[0])
            snprintf(j->why, sizeof j->why, "%s", history_errmsg(h));
        j->done(j);
    }
    if (rc == 0 && history_wal_pages(h) >= CHECKPOINT_PAGES)
        checkpoint(w);
}

static void run_other(writer *w, writer_job *j)
{
    uint64_t topics = 0;

    j->status = STORE_OK;
    if (j->type == WRITER_TRIM) {
        trim_step(w, 0);
    } else if (j->type == WRITER_CHECKPOINT) {
        checkpoint(w);
    } else if (history_new_epochs(w->hist, &topics) == 0) {
        j->n = (size_t)topics;
    } else {
        j->status = STORE_FAIL;
        snprintf(j->why, sizeof j->why, "%s", history_errmsg(w->hist));
    }
    if (j->done)
        j->done(j);
}

/* Housekeeping on the thread's own timers, when no job waits: the same
 * jobs anyone may push. */
static void run_due(writer *w)
{
    double now = now_s(CLOCK_MONOTONIC);
    writer_job j = {0};

    if (now >= w->next_trim) {
        j.type = WRITER_TRIM;
        run_other(w, &j);
    }
    if (now >= w->next_checkpoint && history_wal_pages(w->hist) > 0) {
        j.type = WRITER_CHECKPOINT;
        run_other(w, &j);
    }
}

/* Takes the head job, or the run of append jobs at the head (they share
 * a transaction). Called with mu held; NULL when the queue is empty. */
static writer_job *take(writer *w)
{
    writer_job *first = w->head, *last = first;

    if (!first)
        return NULL;
    if (first->type == WRITER_APPEND)
        while (last->next && last->next->type == WRITER_APPEND)
            last = last->next;
    w->head = last->next;
    if (!w->head)
        w->tail = NULL;
    last->next = NULL;
    return first;
}

/* Waking the writer must not preempt the event loop that wakes it when
 * both share a core: the loop would stop reading in the middle of its
 * turn and each commit would carry only what it had read so far, and a
 * commit costs about as much for 80 messages as for 500. SCHED_BATCH
 * (no privilege needed) lets the loop finish its turn, so that batches
 * grow with the load. Where the writer has a core of its own it changes
 * nothing. */
static void writer_yield_to_loops(void)
{
#ifdef SCHED_BATCH
    struct sched_param sp = {0};

    pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
#endif
}

static void wait_for_work(writer *w)
{
    struct timespec until;
    double next =
        w->next_trim < w->next_checkpoint ? w->next_trim : w->next_checkpoint;
    double ms = (next - now_s(CLOCK_MONOTONIC)) * 1000;

    if (ms < 1)
        ms = 1;
    if (ms > CHECKPOINT_IDLE_MS)
        ms = CHECKPOINT_IDLE_MS;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += (long)(ms * 1e6);
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&w->cond, &w->mu, &until);
}

/* Opens the database on this thread, so that even creating or migrating
 * it (which syncs) happens here, and tells writer_start how it went. */
static int open_store(writer *w)
{
    char err[sizeof w->open_err];
    int rc = history_open(&w->hist, w->path, &w->opts, err, sizeof err);

    if (rc == 0) {
        /* The writer revisits the same pages (the right edge of the
         * batches table, every topic's index entries and row): keep them
         * in its cache rather than reading them back from the WAL. */
        history_set_cache_kib(w->hist, 65536);
    }
    pthread_mutex_lock(&w->mu);
    w->opened = rc == 0 ? 1 : -1;
    if (rc)
        snprintf(w->open_err, sizeof w->open_err, "%s", err);
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
    return rc;
}

static void *writer_main(void *arg)
{
    writer *w = arg;
    writer_job *j;

    pthread_setname_np(pthread_self(), "chorus-writer");
    history_mark_writer_thread();
    writer_yield_to_loops();
    if (open_store(w) != 0)
        return NULL;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        j = take(w);
        if (!j && w->stop)
            break;
        if (!j) {
            wait_for_work(w);
            if (w->head)
                continue;
        }
        pthread_mutex_unlock(&w->mu);
        if (!j)
            run_due(w);
        else if (j->type == WRITER_APPEND)
            run_appends(w, j);
        else
            run_other(w, j);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    /* The last connection to close checkpoints and syncs: here too, on
     * this thread. */
    history_close(w->hist);
    w->hist = NULL;
    return NULL;
}

writer *writer_start(const char *path, const history_opts *opts, char *err,
                     size_t errlen)
{
    writer *w = calloc(1, sizeof *w);
    int opened;

    if (!w) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->path = path;
    w->opts = *opts;
    w->fault = getenv("CHORUS_FAULT_COMMIT");
    w->next_trim = w->next_checkpoint = now_s(CLOCK_MONOTONIC);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cond, NULL);
    if (pthread_create(&w->thread, NULL, writer_main, w)) {
        snprintf(err, errlen, "cannot start the history writer thread");
        opened = 0;
    } else {
        pthread_mutex_lock(&w->mu);
        while (!w->opened)
            pthread_cond_wait(&w->cond, &w->mu);
        opened = w->opened;
        pthread_mutex_unlock(&w->mu);
        if (opened < 0) {
            snprintf(err, errlen, "%s", w->open_err);
            pthread_join(w->thread, NULL);
        }
    }
    if (opened > 0)
        return w;
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cond);
    free(w);
    return NULL;
}

void writer_push(writer *w, writer_job *j)
{
    j->next = NULL;
    j->why[0] = '\0';
    pthread_mutex_lock(&w->mu);
    if (w->tail)
        w->tail->next = j;
    else
        w->head = j;
    w->tail = j;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

void writer_set_retention(writer *w, uint64_t size, uint64_t ttl_ms)
{
    pthread_mutex_lock(&w->mu);
    w->retention_size = size;
    w->retention_ttl_ms = ttl_ms;
    w->retention_changed = 1;
    pthread_mutex_unlock(&w->mu);
}

void writer_stop(writer *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cond);
    free(w);
}
