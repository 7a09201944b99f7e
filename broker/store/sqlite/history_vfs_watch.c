/* What history_vfs.c watches as it passes writes and syncs of the history
 * files to the underlying VFS: the two things the store's threading and
 * failure rules depend on. Part of the history module.
 *
 * - Syncs, counted per kind of thread: only the writer thread may ever
 *   wait for the disk. An event loop that called fsync would stall every
 *   client it serves for as long as the disk takes; the counts are
 *   exported (/metrics) and tests assert that the loops' stays at zero.
 * - Write errors: "no room" (a size limit or quota) is reported as a
 *   full disk, as ENOSPC is (see history__vfs_write), so that only real
 *   I/O errors stop the broker. And, for tests only, the next writes to a
 *   WAL file can be made to fail with a chosen error (an I/O error, or a
 *   full disk), to reach the commit failure paths without a failing disk.
 *   They fail where the WAL gathering writes to the file, below it, as a
 *   disk would. */
#include <errno.h>
#include <stdatomic.h>

#include <sqlite3.h>

#include "history.h"
#include "history_internal.h"

static _Thread_local int thread_is_writer;
static atomic_ullong syncs_writer, syncs_other;
static atomic_int fail_wal_rc;       /* SQLite code the writes fail with */
static atomic_int fail_wal_writes_n; /* writes left to fail */

/* SQLite reports a write refused for want of space as SQLITE_FULL only
 * for ENOSPC; a file-size limit (EFBIG) or a quota (EDQUOT) are the same
 * condition (the kernel allocated nothing past the limit, so no byte of
 * the refused part is anywhere) and are reported so too. Any other error
 * (EIO) stays an I/O error: the data may have reached the page cache,
 * and a commit that fails so ends the broker (writer.c). */
int history__vfs_write(sqlite3_file *real, const void *data, int amt,
                       sqlite3_int64 off, int wal)
{
    int rc;

    if (wal && atomic_load(&fail_wal_writes_n) > 0 &&
        atomic_fetch_sub(&fail_wal_writes_n, 1) > 0)
        return atomic_load(&fail_wal_rc);
    rc = real->pMethods->xWrite(real, data, amt, off);
    if (rc == SQLITE_IOERR_WRITE && (errno == EFBIG || errno == EDQUOT))
        rc = SQLITE_FULL;
    return rc;
}

int history__vfs_sync(sqlite3_file *real, int flags)
{
    atomic_fetch_add(thread_is_writer ? &syncs_writer : &syncs_other, 1);
    return real->pMethods->xSync(real, flags);
}

void history_mark_writer_thread(void)
{
    thread_is_writer = 1;
}

void history_sync_counts(uint64_t *writer, uint64_t *other)
{
    *writer = atomic_load(&syncs_writer);
    *other = atomic_load(&syncs_other);
}

void history_test_fail_wal_writes(int fault, int count)
{
    atomic_store(&fail_wal_rc, fault == HISTORY_FAULT_FULL
                                   ? SQLITE_FULL
                                   : SQLITE_IOERR_WRITE);
    atomic_store(&fail_wal_writes_n, count);
}
