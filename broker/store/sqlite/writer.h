/* The history writer: the one thread that writes the SQLite store, fed
 * by a queue of jobs in the manner of Redis's bio.c. Event loops only
 * read (history_open_reader); every write is a job here: appending a
 * batch (which creates the rows of topics published to for the first
 * time), and, on the thread's own timers, retention steps and WAL
 * checkpoints. So only this thread ever waits for the disk, and a loop
 * never waits for a lock the writer holds.
 *
 * Append jobs that are queued together are committed in one transaction
 * (group commit): while one commits, the next ones collect, so
 * transactions grow with the load. The writer assigns the offsets. */
#ifndef CHORUS_WRITER_H
#define CHORUS_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "history.h"
#include "store.h"

typedef struct writer writer;

typedef enum {
    WRITER_APPEND,     /* store msgs[0..n) in one transaction */
    WRITER_TRIM,       /* one retention step */
    WRITER_CHECKPOINT, /* a PASSIVE WAL checkpoint */
    WRITER_NEW_EPOCHS, /* history_new_epochs (offline maintenance) */
} writer_job_type;

typedef struct writer_job {
    struct writer_job *next; /* the queue's */
    writer_job_type type;
    store_msg *msgs; /* APPEND: offsets and epochs are filled in */
    size_t n;        /* APPEND: messages; NEW_EPOCHS: topics changed */
    /* Filled in when done: STORE_OK or STORE_FAIL (then why). */
    int status;
    char why[256];
    /* Called on the writer thread once the job is done: hands it back to
     * whoever pushed it (the job is theirs again). */
    void (*done)(struct writer_job *j);
    void *owner;
} writer_job;

/* Starts the thread, which opens the store's one read-write connection
 * to path (creating or migrating the database: even that sync is the
 * writer's), and waits until it has. NULL with a message in err. */
writer *writer_start(const char *path, const history_opts *opts, char *err,
                     size_t errlen);

/* Queues j (any thread). Jobs run in the order pushed; TRIM and
 * CHECKPOINT jobs also run on the thread's own timers (done may then be
 * NULL). A COMMIT that
 * fails with an I/O error, when the commit record may have reached the
 * WAL, ends the process after logging the cause (fail-stop): reusing
 * those offsets could let a restart bring back a batch whose publishers
 * were told `internal`. */
void writer_push(writer *w, writer_job *j);

/* New retention bounds (a reload): the thread takes them before its next
 * trim step. Any thread. */
void writer_set_retention(writer *w, uint64_t size, uint64_t ttl_ms);

/* Runs every queued job, then stops the thread and closes the
 * connection. */
void writer_stop(writer *w);

#endif
