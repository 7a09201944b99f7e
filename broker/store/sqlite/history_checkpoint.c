/* WAL checkpoints, run by the writer thread between its transactions
 * (writer.c). Part of the history module: only its files talk to SQLite.
 *
 * A checkpoint copies committed pages from the WAL into the database file
 * and syncs it. SQLite would run one inside a commit every 1000 pages;
 * the writer handle replaces that hook (history.c, on_wal_commit) and the
 * writer calls this when the WAL has grown or time has passed, so that
 * the sync delays the next commit by at most one checkpoint and never
 * touches an event loop. With a single writer that is also the only
 * checkpointer, a PASSIVE checkpoint copies the whole WAL unless a
 * reader still uses an older snapshot; the next commit then starts the
 * WAL over, so it stays small without a blocking RESTART. */
#include <sqlite3.h>

#include "history.h"
#include "history_internal.h"

int history_checkpoint(history *h)
{
    int rc = sqlite3_wal_checkpoint_v2(h->db, NULL, SQLITE_CHECKPOINT_PASSIVE,
                                       NULL, NULL);

    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
        history__db_err(h, "checkpoint");
        return -1;
    }
    h->wal_pages = 0; /* until the next commit reports the WAL again */
    return 0;
}

int history_wal_pages(history *h)
{
    return h->wal_pages;
}
