/* A thin VFS beneath every history connection (and beneath the WAL
 * gathering of history_vfs.c) that watches the two things the store's
 * threading and failure rules depend on. Part of the history module.
 *
 * - Syncs, counted per kind of thread: only the writer thread may ever
 *   wait for the disk. An event loop that called fsync would stall every
 *   client it serves for as long as the disk takes; the counts are
 *   exported (/metrics) and tests assert that the loops' stays at zero.
 * - Write errors: "no room" (a size limit or quota) is reported as a
 *   full disk, as ENOSPC is (see watch_write), so that only real I/O
 *   errors stop the broker. And, for tests only, the next writes to a WAL
 *   file can be made to fail with a chosen error (an I/O error, or a full
 *   disk), to reach the commit failure paths without a failing disk.
 *
 * It is installed as the process's default VFS once, before the first
 * history connection: history_vfs.c wraps the default VFS it finds, so
 * the WAL gathering sits on top of this one and this one on the platform
 * VFS. Every method forwards to the underlying file. */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include <sqlite3.h>

#include "history.h"
#include "history_internal.h"

typedef struct watch_file {
    sqlite3_file base; /* pMethods = &watch_methods */
    sqlite3_file *real;
    int wal;
} watch_file;

#define HEAD ((sizeof(watch_file) + 15) & ~(size_t)15)
#define REAL(pf) (((watch_file *)(pf))->real)
#define CALL(pf, m, ...) (REAL(pf)->pMethods->m(REAL(pf), __VA_ARGS__))

static sqlite3_vfs watch_vfs;
static _Thread_local int thread_is_writer;
static atomic_ullong syncs_writer, syncs_other;
static atomic_int fail_wal_rc;       /* SQLite code the writes fail with */
static atomic_int fail_wal_writes_n; /* writes left to fail */

static sqlite3_vfs *underlying(void)
{
    return (sqlite3_vfs *)watch_vfs.pAppData;
}

static int watch_close(sqlite3_file *pf)
{
    int rc = REAL(pf)->pMethods->xClose(REAL(pf));

    pf->pMethods = NULL;
    return rc;
}

static int watch_read(sqlite3_file *pf, void *out, int amt, sqlite3_int64 off)
{
    return CALL(pf, xRead, out, amt, off);
}

/* SQLite reports a write refused for want of space as SQLITE_FULL only
 * for ENOSPC; a file-size limit (EFBIG) or a quota (EDQUOT) are the same
 * condition (the kernel allocated nothing past the limit, so no byte of
 * the refused part is anywhere) and are reported so too. Any other error
 * (EIO) stays an I/O error: the data may have reached the page cache,
 * and a commit that fails so ends the broker (writer.c). */
static int watch_write(sqlite3_file *pf, const void *in, int amt,
                       sqlite3_int64 off)
{
    int rc;

    if (((watch_file *)pf)->wal && atomic_load(&fail_wal_writes_n) > 0 &&
        atomic_fetch_sub(&fail_wal_writes_n, 1) > 0)
        return atomic_load(&fail_wal_rc);
    rc = CALL(pf, xWrite, in, amt, off);
    if (rc == SQLITE_IOERR_WRITE && (errno == EFBIG || errno == EDQUOT))
        rc = SQLITE_FULL;
    return rc;
}

static int watch_truncate(sqlite3_file *pf, sqlite3_int64 size)
{
    return CALL(pf, xTruncate, size);
}

static int watch_sync(sqlite3_file *pf, int flags)
{
    atomic_fetch_add(thread_is_writer ? &syncs_writer : &syncs_other, 1);
    return CALL(pf, xSync, flags);
}

static int watch_file_size(sqlite3_file *pf, sqlite3_int64 *size)
{
    return CALL(pf, xFileSize, size);
}

static int watch_lock(sqlite3_file *pf, int lock)
{
    return CALL(pf, xLock, lock);
}

static int watch_unlock(sqlite3_file *pf, int lock)
{
    return CALL(pf, xUnlock, lock);
}

static int watch_check_reserved(sqlite3_file *pf, int *out)
{
    return CALL(pf, xCheckReservedLock, out);
}

static int watch_file_control(sqlite3_file *pf, int op, void *arg)
{
    return CALL(pf, xFileControl, op, arg);
}

static int watch_sector_size(sqlite3_file *pf)
{
    return REAL(pf)->pMethods->xSectorSize(REAL(pf));
}

static int watch_device_characteristics(sqlite3_file *pf)
{
    return REAL(pf)->pMethods->xDeviceCharacteristics(REAL(pf));
}

static int watch_shm_map(sqlite3_file *pf, int page, int size, int extend,
                         void volatile **out)
{
    return CALL(pf, xShmMap, page, size, extend, out);
}

static int watch_shm_lock(sqlite3_file *pf, int offset, int n, int flags)
{
    return CALL(pf, xShmLock, offset, n, flags);
}

static void watch_shm_barrier(sqlite3_file *pf)
{
    REAL(pf)->pMethods->xShmBarrier(REAL(pf));
}

static int watch_shm_unmap(sqlite3_file *pf, int delete_flag)
{
    return CALL(pf, xShmUnmap, delete_flag);
}

static int watch_fetch(sqlite3_file *pf, sqlite3_int64 off, int amt, void **out)
{
    return CALL(pf, xFetch, off, amt, out);
}

static int watch_unfetch(sqlite3_file *pf, sqlite3_int64 off, void *p)
{
    return CALL(pf, xUnfetch, off, p);
}

static const sqlite3_io_methods watch_methods = {
    3,
    watch_close,
    watch_read,
    watch_write,
    watch_truncate,
    watch_sync,
    watch_file_size,
    watch_lock,
    watch_unlock,
    watch_check_reserved,
    watch_file_control,
    watch_sector_size,
    watch_device_characteristics,
    watch_shm_map,
    watch_shm_lock,
    watch_shm_barrier,
    watch_shm_unmap,
    watch_fetch,
    watch_unfetch,
};

/* Files whose underlying methods lack the shared-memory and mmap entries
 * (never the unix VFS's) are left unwrapped: forwarding would call
 * through NULL. */
static int watch_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *pf,
                      int flags, int *out_flags)
{
    sqlite3_vfs *real = underlying();
    watch_file *f = (watch_file *)pf;
    int rc;

    (void)vfs;
    memset(f, 0, sizeof *f);
    f->real = (sqlite3_file *)((char *)pf + HEAD);
    f->wal = (flags & SQLITE_OPEN_WAL) != 0;
    rc = real->xOpen(real, name, f->real, flags, out_flags);
    if (rc != SQLITE_OK || !f->real->pMethods)
        return rc; /* pMethods NULL: SQLite will not close it */
    if (f->real->pMethods->iVersion < 3) {
        f->real->pMethods->xClose(f->real);
        return real->xOpen(real, name, pf, flags, out_flags);
    }
    f->base.pMethods = &watch_methods;
    return rc;
}

#define FORWARD(name, args, call)         \
    static int watch_##name args          \
    {                                     \
        sqlite3_vfs *real = underlying(); \
        (void)vfs;                        \
        return real->x##call;             \
    }
FORWARD(delete, (sqlite3_vfs * vfs, const char *n, int sync),
        Delete(real, n, sync))
FORWARD(access, (sqlite3_vfs * vfs, const char *n, int flags, int *out),
        Access(real, n, flags, out))
FORWARD(full_pathname, (sqlite3_vfs * vfs, const char *n, int len, char *out),
        FullPathname(real, n, len, out))
FORWARD(randomness, (sqlite3_vfs * vfs, int len, char *out),
        Randomness(real, len, out))
FORWARD(sleep, (sqlite3_vfs * vfs, int us), Sleep(real, us))
FORWARD(current_time, (sqlite3_vfs * vfs, double *out), CurrentTime(real, out))
FORWARD(current_time_int64, (sqlite3_vfs * vfs, sqlite3_int64 *out),
        CurrentTimeInt64(real, out))
FORWARD(get_last_error, (sqlite3_vfs * vfs, int len, char *out),
        GetLastError(real, len, out))
#undef FORWARD

void history__watch_install(void)
{
    static int installed; /* under SQLite's static VFS mutex */
    sqlite3_mutex *mu;
    sqlite3_vfs *real;

    if (sqlite3_initialize() != SQLITE_OK)
        return;
    mu = sqlite3_mutex_alloc(SQLITE_MUTEX_STATIC_VFS1);
    sqlite3_mutex_enter(mu);
    if (!installed && (real = sqlite3_vfs_find(NULL)) != NULL) {
        watch_vfs = (sqlite3_vfs){
            .iVersion = 2,
            .szOsFile = (int)HEAD + real->szOsFile,
            .mxPathname = real->mxPathname,
            .zName = "chorus-watch",
            .pAppData = real,
            .xOpen = watch_open,
            .xDelete = watch_delete,
            .xAccess = watch_access,
            .xFullPathname = watch_full_pathname,
            .xRandomness = watch_randomness,
            .xSleep = watch_sleep,
            .xCurrentTime = watch_current_time,
            .xGetLastError = watch_get_last_error,
            .xCurrentTimeInt64 = watch_current_time_int64,
            .xDlOpen = real->xDlOpen,
            .xDlError = real->xDlError,
            .xDlSym = real->xDlSym,
            .xDlClose = real->xDlClose,
        };
        installed = sqlite3_vfs_register(&watch_vfs, 1) == SQLITE_OK;
    }
    sqlite3_mutex_leave(mu);
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
