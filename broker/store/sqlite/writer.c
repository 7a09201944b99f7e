#include "writer.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <event2/event.h>

#include "publish.h"

/* Retention runs at most this often, in steps of at most this many
 * messages; inside a batch's transaction while batches follow each other,
 * else between them. */
#define TRIM_EVERY_MS 1000
#define TRIM_BUDGET 4000

struct writer {
    history *hist;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct event *done_ev; /* on the loop: a batch is done */
    void (*done)(void *arg);
    void *done_arg;
    const publish_item *items;
    size_t n;
    int busy;  /* a batch is in flight */
    int ready; /* its result is waiting to be taken */
    int failed;
    double seconds;
    char why[256];
    int stop;
    int retention_changed; /* under mu, with the two below */
    uint64_t retention_size, retention_ttl_ms;
    double next_trim; /* the writer thread's own */
};

static double now_s(int clock)
{
    struct timespec ts;

    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void trim_due(writer *w, int in_batch);

/* One batch row per topic: each topic's items are walked along their
 * next_same chain (group_first marks where a chain starts), so the
 * history appends them as one run. Retention, when due, joins the
 * transaction. */
static int write_batch(writer *w, const publish_item *items, size_t n)
{
    history *h = w->hist;
    size_t written = 0;

    if (history_begin(h))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!items[i].group_first)
            continue;
        for (size_t j = i + 1; j; j = items[j - 1].next_same, written++) {
            const publish_item *it = &items[j - 1];
            if (history_append_run(h, it->store_id, it->offset, it->ts_ms,
                                   it->data, it->data_len,
                                   it->next_same == 0)) {
                history_rollback(h);
                return -1;
            }
        }
    }
    if (written != n) { /* a chain broken: never commit part of a batch */
        history_rollback(h);
        return -1;
    }
    trim_due(w, 1);
    return history_commit(h);
}

/* Retention, when due: a step inside the open batch (in_batch) or one of
 * its own. A failed step is retried at the next due time. */
static void trim_due(writer *w, int in_batch)
{
    double now = now_s(CLOCK_MONOTONIC);
    int64_t wall;
    int n;

    if (now < w->next_trim)
        return;
    pthread_mutex_lock(&w->mu);
    if (w->retention_changed) {
        history_set_retention(w->hist, w->retention_size, w->retention_ttl_ms);
        w->retention_changed = 0;
    }
    pthread_mutex_unlock(&w->mu);
    wall = (int64_t)(now_s(CLOCK_REALTIME) * 1000);
    n = in_batch ? history_trim_in_batch(w->hist, wall, TRIM_BUDGET)
                 : history_trim_step(w->hist, wall, TRIM_BUDGET);
    /* A full step means a backlog: come back soon. */
    w->next_trim = now + (n >= TRIM_BUDGET ? 0.01 : TRIM_EVERY_MS / 1000.0);
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

static void *writer_main(void *arg)
{
    writer *w = arg;

    pthread_setname_np(pthread_self(), "chorus-writer");
    writer_yield_to_loops();
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        if (!w->busy || w->ready) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 100 * 1000000L;
            until.tv_sec += until.tv_nsec / 1000000000L;
            until.tv_nsec %= 1000000000L;
            pthread_cond_timedwait(&w->cond, &w->mu, &until);
            if (!w->busy || w->ready) {
                pthread_mutex_unlock(&w->mu);
                trim_due(w, 0);
                pthread_mutex_lock(&w->mu);
            }
            continue;
        }
        pthread_mutex_unlock(&w->mu);
        double t0 = now_s(CLOCK_MONOTONIC);
        int failed = write_batch(w, w->items, w->n) != 0;
        double t1 = now_s(CLOCK_MONOTONIC);
        pthread_mutex_lock(&w->mu);
        w->failed = failed;
        w->seconds = t1 - t0;
        snprintf(w->why, sizeof w->why, "%s",
                 failed ? history_errmsg(w->hist) : "");
        w->ready = 1;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->mu);
        event_active(w->done_ev, EV_READ, 0); /* takes the base's lock */
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void done_trampoline(evutil_socket_t fd, short what, void *arg)
{
    writer *w = arg;

    (void)fd;
    (void)what;
    w->done(w->done_arg);
}

writer *writer_start(const char *path, const history_opts *opts,
                     struct event_base *base, void (*done)(void *arg),
                     void *arg, char *err, size_t errlen)
{
    writer *w = calloc(1, sizeof *w);

    if (!w) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (history_open(&w->hist, path, opts, err, errlen)) {
        free(w);
        return NULL;
    }
    history_checkpoint_rarely(w->hist);
    w->done = done;
    w->done_arg = arg;
    w->done_ev = event_new(base, -1, 0, done_trampoline, w);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cond, NULL);
    if (!w->done_ev || pthread_create(&w->thread, NULL, writer_main, w)) {
        snprintf(err, errlen, "cannot start the history writer thread");
        if (w->done_ev)
            event_free(w->done_ev);
        history_close(w->hist);
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cond);
        free(w);
        return NULL;
    }
    return w;
}

void writer_submit(writer *w, const publish_item *items, size_t n)
{
    pthread_mutex_lock(&w->mu);
    w->items = items;
    w->n = n;
    w->busy = 1;
    w->ready = 0;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

int writer_take(writer *w, int wait, int *failed, double *seconds,
                const char **why)
{
    int taken = 0;

    pthread_mutex_lock(&w->mu);
    while (wait && w->busy && !w->ready)
        pthread_cond_wait(&w->cond, &w->mu);
    if (w->busy && w->ready) {
        *failed = w->failed;
        *seconds = w->seconds;
        *why = w->why;
        w->busy = w->ready = 0;
        taken = 1;
    }
    pthread_mutex_unlock(&w->mu);
    return taken;
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
    int failed;
    double seconds;
    const char *why;

    if (!w)
        return;
    writer_take(w, 1, &failed, &seconds, &why);
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    event_free(w->done_ev);
    history_close(w->hist);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cond);
    free(w);
}
