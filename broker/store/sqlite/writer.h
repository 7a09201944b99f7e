/* The history writer: a thread of its own that commits loop 0's publish
 * batches to SQLite (and runs retention), so that the loop never waits
 * for the database. While one batch commits, the loop goes on serving
 * clients and collecting the next one, so batches grow with the load.
 * One batch is in flight at a time; offsets are assigned by the loop. */
#ifndef CHORUS_WRITER_H
#define CHORUS_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "history.h"

struct event_base;
typedef struct publish_item publish_item;
typedef struct writer writer;

/* Opens a connection of its own to path and starts the thread. done(arg)
 * runs on base's loop after each batch. NULL with a message in err. */
writer *writer_start(const char *path, const history_opts *opts,
                     struct event_base *base, void (*done)(void *arg),
                     void *arg, char *err, size_t errlen);

/* Hands over a batch (read only by the thread until the result is
 * taken). The writer must be idle. */
void writer_submit(writer *w, const publish_item *items, size_t n);

/* Takes the result of the batch in flight if it is done: returns 1 and
 * sets *failed, *seconds (commit time) and *why (error text, valid until
 * the next submit); 0 when nothing is done yet. With wait, blocks until
 * it is done. */
int writer_take(writer *w, int wait, int *failed, double *seconds,
                const char **why);

/* New retention bounds (a reload): the writer thread takes them before
 * its next trim step. Any thread. */
void writer_set_retention(writer *w, uint64_t size, uint64_t ttl_ms);

/* Finishes the batch in flight (its result is dropped unless taken) and
 * stops the thread. */
void writer_stop(writer *w);

#endif
