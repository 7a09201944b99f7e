/* WAL checkpoints off the event loop. Part of the history module: with
 * history.c, the only code that talks to SQLite. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <sqlite3.h>

#include "history.h"
#include "history_internal.h"

/* A WAL checkpoint copies committed pages into the database file and
 * fsyncs it; SQLite runs one inside a commit every 1000 pages, which would
 * stall the event loop for that fsync. Instead the writer turns automatic
 * checkpoints off and this thread, on a connection of its own, runs a
 * PASSIVE checkpoint (which never blocks the writer) twice a second. */
#define CHECKPOINT_EVERY_MS 500

/* See history_checkpoint_rarely. */
#define HISTORY_WAL_RESTART_BYTES (64 * 1024 * 1024)

struct history_checkpointer {
    sqlite3 *db;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int stop;
};

static void *checkpoint_main(void *arg)
{
    history_checkpointer *cp = arg;
    struct timespec until;

    pthread_setname_np(pthread_self(), "chorus-ckpt");
    pthread_mutex_lock(&cp->mu);
    while (!cp->stop) {
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += CHECKPOINT_EVERY_MS * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&cp->cond, &cp->mu, &until);
        if (cp->stop)
            break;
        pthread_mutex_unlock(&cp->mu);
        sqlite3_wal_checkpoint_v2(cp->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL,
                                  NULL);
        pthread_mutex_lock(&cp->mu);
    }
    pthread_mutex_unlock(&cp->mu);
    return NULL;
}

int history_checkpointer_start(history *h, const char *path,
                               history_checkpointer **out, char *err,
                               size_t errlen)
{
    history_checkpointer *cp = calloc(1, sizeof *cp);

    *out = NULL;
    if (!cp || sqlite3_open_v2(path, &cp->db,
                               SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                               history__vfs()) != SQLITE_OK) {
        snprintf(err, errlen, "%s: cannot open for checkpoints: %s", path,
                 cp && cp->db ? sqlite3_errmsg(cp->db) : "out of memory");
        if (cp)
            sqlite3_close(cp->db);
        free(cp);
        return -1;
    }
    sqlite3_busy_timeout(cp->db, HISTORY_BUSY_TIMEOUT_MS);
    /* Until a connection has read the database it does not know it is in
     * WAL mode, and sqlite3_wal_checkpoint on it does nothing at all. */
    sqlite3_exec(cp->db, "SELECT count(*) FROM sqlite_master", NULL, NULL,
                 NULL);
    pthread_mutex_init(&cp->mu, NULL);
    pthread_cond_init(&cp->cond, NULL);
    if (pthread_create(&cp->thread, NULL, checkpoint_main, cp)) {
        snprintf(err, errlen, "cannot start the checkpoint thread");
        sqlite3_close(cp->db);
        free(cp);
        return -1;
    }
    sqlite3_wal_autocheckpoint(h->db, 0);
    *out = cp;
    return 0;
}

void history_checkpointer_stop(history_checkpointer *cp)
{
    if (!cp)
        return;
    pthread_mutex_lock(&cp->mu);
    cp->stop = 1;
    pthread_cond_signal(&cp->cond);
    pthread_mutex_unlock(&cp->mu);
    pthread_join(cp->thread, NULL);
    sqlite3_close(cp->db);
    pthread_mutex_destroy(&cp->mu);
    pthread_cond_destroy(&cp->cond);
    free(cp);
}

void history_checkpoint_rarely(history *h)
{
    history__checkpoint_at(h, HISTORY_WAL_RESTART_BYTES);
    /* The committing connection revisits the same pages (the right edge of
     * the batches table, every topic's index entries and row): keep them
     * in its cache rather than reading them back from the WAL. */
    sqlite3_exec(h->db, "PRAGMA cache_size = -65536", NULL, NULL, NULL);
}
