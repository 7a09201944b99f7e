/* A SQLite VFS shim that turns a transaction's WAL writes into one write.
 * Part of the history module (only its files talk to SQLite).
 *
 * SQLite appends a commit to the WAL as two pwrite()s per page (a 24-byte
 * frame header, then the page): a commit of 1,000 small messages is ~80
 * system calls, and on a VM where a system call costs over a microsecond
 * those were half of the writer thread's time. This shim gathers
 * contiguous WAL writes in a buffer and writes them out at once:
 *
 * - right after the page of the frame that commits a transaction (its
 *   header carries the database size after the commit, zero in any other
 *   frame), so that a failed write (a full disk) fails the commit itself;
 * - before any other access to the WAL file (read, sync, truncate, size,
 *   file control, close), so that SQLite always sees its own writes;
 * - when a write does not continue or overwrite the buffered range, or
 *   the buffer would pass WALBUF_MAX;
 * - and, should the above ever miss, at the barrier SQLite places between
 *   the two copies of the wal-index header when it publishes a commit
 *   (xShmBarrier of the database file): readers accept a header only once
 *   both copies match, so none is pointed at a frame still held here. The
 *   barrier cannot return an error and SQLite publishes the header right
 *   after it: if that flush fails, the process aborts (fail-stop) rather
 *   than let a reader or a checkpoint trust frames that are not on disk.
 *
 * Whatever is buffered is therefore never committed data: a kill -9 loses
 * only a transaction in progress. What is still buffered when the
 * connection gives up the WAL write lock belongs to a transaction that
 * rolled back, and is dropped there: another connection may restart the
 * WAL and write over that range before this one writes again. The
 * database file is the underlying VFS's, seen through a wrapper that adds
 * the barrier's flush and watches the write lock; every other file is
 * seen through the same wrapper, which then only forwards. All writes and
 * syncs reach the underlying files through history_vfs_watch.c, which
 * counts the syncs per thread and maps "no room" errors to a full disk.
 * tests/unit/test_history_vfs.c checks all this against the SQLite the
 * broker is built with. */
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "history_internal.h"
#include "log.h"

#define WALBUF_MAX (4 * 1024 * 1024)
#define WRITE_CHUNK (64 * 1024)
#define WAL_FRAME_HEADER 24
/* The wal-index lock a writer holds for its whole transaction (slot 0 of
 * the shared-memory locks; fixed by the WAL file format). */
#define WAL_WRITE_LOCK 0

typedef struct db_file db_file;

typedef struct walbuf_file {
    sqlite3_file base;  /* pMethods = &walbuf_methods */
    sqlite3_file *real; /* the underlying file, right after this */
    db_file *db;        /* its database file, while both are open */
    unsigned char *buf;
    size_t len, cap;
    sqlite3_int64 start;      /* file offset of buf[0] */
    sqlite3_int64 commit_at;  /* offset of a commit frame's page, or -1 */
    sqlite3_int64 written_to; /* end of the furthest write of this
                                 transaction (0 before its first) */
} walbuf_file;

struct db_file {
    sqlite3_file base; /* pMethods = &db_methods */
    sqlite3_file *real;
    walbuf_file *wal; /* its WAL, while both are open */
};

static sqlite3_vfs walbuf_vfs;

static sqlite3_vfs *underlying(void)
{
    return (sqlite3_vfs *)walbuf_vfs.pAppData;
}

/* Both wrappers reserve this much before the underlying file. */
#define FILE_HEAD_MAX                                            \
    (sizeof(walbuf_file) > sizeof(db_file) ? sizeof(walbuf_file) \
                                           : sizeof(db_file))
#define FILE_HEAD ((FILE_HEAD_MAX + 15) & ~(size_t)15)

static int flush(walbuf_file *f)
{
    int rc = SQLITE_OK;

    /* The unix VFS masks a write's length to 17 bits (it never writes
     * more than a page): hand it at most WRITE_CHUNK at a time. */
    for (size_t done = 0; done < f->len && rc == SQLITE_OK;) {
        size_t n = f->len - done < WRITE_CHUNK ? f->len - done : WRITE_CHUNK;
        rc = history__vfs_write(f->real, f->buf + done, (int)n,
                                f->start + (sqlite3_int64)done, 1);
        done += n;
    }
    f->len = 0; /* on failure SQLite rolls back: those frames are void */
    return rc;
}

static int buffer(walbuf_file *f, const void *data, size_t n, sqlite3_int64 off)
{
    if (f->len + n > f->cap) {
        size_t cap = f->cap ? f->cap : 256 * 1024;
        unsigned char *p;
        while (cap < f->len + n)
            cap *= 2;
        if (!(p = realloc(f->buf, cap)))
            return SQLITE_NOMEM;
        f->buf = p;
        f->cap = cap;
    }
    if (f->len == 0)
        f->start = off;
    memcpy(f->buf + f->len, data, n);
    f->len += n;
    return SQLITE_OK;
}

static uint32_t get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

/* A frame header (24 bytes) says in bytes 4-7 whether its frame commits
 * the transaction: once that frame's page is written, the buffer goes out,
 * so that a failure (a full disk) fails the commit itself. A commit header
 * rewritten in place (SQLite recomputing the checksums of a transaction
 * that overwrote one of its own frames, after its last frame) goes out at
 * once, as no page follows it. */
static int after_write(walbuf_file *f, const void *data, int amt,
                       sqlite3_int64 off, int rewrite)
{
    if (amt == WAL_FRAME_HEADER &&
        get_be32((const unsigned char *)data + 4) != 0) {
        f->commit_at = off + WAL_FRAME_HEADER;
        return rewrite ? flush(f) : SQLITE_OK;
    }
    if (off == f->commit_at) {
        f->commit_at = -1;
        return flush(f);
    }
    return SQLITE_OK;
}

static int wal_write(sqlite3_file *pf, const void *data, int amt,
                     sqlite3_int64 off)
{
    walbuf_file *f = (walbuf_file *)pf;
    size_t n = (size_t)amt;
    sqlite3_int64 end = f->start + (sqlite3_int64)f->len;
    /* A transaction's frames go forward (from the WAL header at offset
     * 0, at a restart); a write that ends before the furthest one of the
     * same transaction is a rewrite. */
    int rewrite = off != 0 && off + amt <= f->written_to;
    int rc = SQLITE_OK;

    if (!rewrite)
        f->written_to = off + amt;
    if (f->len && off >= f->start && off + amt <= end) {
        memcpy(f->buf + (off - f->start), data, n);
    } else if (f->len && off == end && f->len + n <= WALBUF_MAX) {
        rc = buffer(f, data, n, off);
    } else {
        rc = flush(f);
        if (rc == SQLITE_OK)
            rc = n > WRITE_CHUNK
                     ? history__vfs_write(f->real, data, amt, off, 1)
                     : buffer(f, data, n, off);
    }
    return rc != SQLITE_OK ? rc : after_write(f, data, amt, off, rewrite);
}

/* ---- the other methods: flush, then the underlying file's ------------ */

static int wal_close(sqlite3_file *pf)
{
    walbuf_file *f = (walbuf_file *)pf;
    int rc = flush(f);
    int rc2 = f->real->pMethods->xClose(f->real);

    if (f->db)
        f->db->wal = NULL;
    free(f->buf);
    f->buf = NULL;
    return rc != SQLITE_OK ? rc : rc2;
}

static int wal_read(sqlite3_file *pf, void *out, int amt, sqlite3_int64 off)
{
    walbuf_file *f = (walbuf_file *)pf;
    int rc = flush(f);

    return rc != SQLITE_OK ? rc
                           : f->real->pMethods->xRead(f->real, out, amt, off);
}

static int wal_truncate(sqlite3_file *pf, sqlite3_int64 size)
{
    walbuf_file *f = (walbuf_file *)pf;
    int rc = flush(f);

    return rc != SQLITE_OK ? rc : f->real->pMethods->xTruncate(f->real, size);
}

static int wal_sync(sqlite3_file *pf, int flags)
{
    walbuf_file *f = (walbuf_file *)pf;
    int rc = flush(f);

    return rc != SQLITE_OK ? rc : history__vfs_sync(f->real, flags);
}

static int wal_file_size(sqlite3_file *pf, sqlite3_int64 *size)
{
    walbuf_file *f = (walbuf_file *)pf;
    int rc = flush(f);

    return rc != SQLITE_OK ? rc : f->real->pMethods->xFileSize(f->real, size);
}

static int wal_lock(sqlite3_file *pf, int lock)
{
    walbuf_file *f = (walbuf_file *)pf;
    return f->real->pMethods->xLock(f->real, lock);
}

static int wal_unlock(sqlite3_file *pf, int lock)
{
    walbuf_file *f = (walbuf_file *)pf;
    return f->real->pMethods->xUnlock(f->real, lock);
}

static int wal_check_reserved(sqlite3_file *pf, int *out)
{
    walbuf_file *f = (walbuf_file *)pf;
    return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int wal_file_control(sqlite3_file *pf, int op, void *arg)
{
    walbuf_file *f = (walbuf_file *)pf;
    int rc = flush(f);

    return rc != SQLITE_OK ? rc
                           : f->real->pMethods->xFileControl(f->real, op, arg);
}

static int wal_sector_size(sqlite3_file *pf)
{
    walbuf_file *f = (walbuf_file *)pf;
    return f->real->pMethods->xSectorSize(f->real);
}

static int wal_device_characteristics(sqlite3_file *pf)
{
    walbuf_file *f = (walbuf_file *)pf;
    return f->real->pMethods->xDeviceCharacteristics(f->real);
}

/* Version 1: a WAL file has no shared memory and is never mapped. */
static const sqlite3_io_methods walbuf_methods = {
    1,
    wal_close,
    wal_read,
    wal_write,
    wal_truncate,
    wal_sync,
    wal_file_size,
    wal_lock,
    wal_unlock,
    wal_check_reserved,
    wal_file_control,
    wal_sector_size,
    wal_device_characteristics,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
};

/* ---- the database file (and any other but the WAL): the underlying
 * one, plus the flush ------------------------------------------------- */

#define DB(pf) (((db_file *)(pf))->real)
#define DB_CALL(pf, m, ...) (DB(pf)->pMethods->m(DB(pf), __VA_ARGS__))

static int db_close(sqlite3_file *pf)
{
    db_file *d = (db_file *)pf;

    if (d->wal)
        d->wal->db = NULL;
    return d->real->pMethods->xClose(d->real);
}

static int db_read(sqlite3_file *pf, void *out, int amt, sqlite3_int64 off)
{
    return DB_CALL(pf, xRead, out, amt, off);
}

static int db_write(sqlite3_file *pf, const void *in, int amt,
                    sqlite3_int64 off)
{
    return history__vfs_write(DB(pf), in, amt, off, 0);
}

static int db_truncate(sqlite3_file *pf, sqlite3_int64 size)
{
    return DB_CALL(pf, xTruncate, size);
}

static int db_sync(sqlite3_file *pf, int flags)
{
    return history__vfs_sync(DB(pf), flags);
}

static int db_file_size(sqlite3_file *pf, sqlite3_int64 *size)
{
    return DB_CALL(pf, xFileSize, size);
}

static int db_lock(sqlite3_file *pf, int lock)
{
    return DB_CALL(pf, xLock, lock);
}

static int db_unlock(sqlite3_file *pf, int lock)
{
    return DB_CALL(pf, xUnlock, lock);
}

static int db_check_reserved(sqlite3_file *pf, int *out)
{
    return DB_CALL(pf, xCheckReservedLock, out);
}

static int db_file_control(sqlite3_file *pf, int op, void *arg)
{
    return DB_CALL(pf, xFileControl, op, arg);
}

static int db_sector_size(sqlite3_file *pf)
{
    return DB(pf)->pMethods->xSectorSize(DB(pf));
}

static int db_device_characteristics(sqlite3_file *pf)
{
    return DB(pf)->pMethods->xDeviceCharacteristics(DB(pf));
}

static int db_shm_map(sqlite3_file *pf, int page, int size, int extend,
                      void volatile **out)
{
    return DB_CALL(pf, xShmMap, page, size, extend, out);
}

/* A write transaction starts and ends with the WAL write lock. Between
 * two of ours another connection may have written, restarted or
 * truncated the WAL: what this one knew of it (the furthest write, frames
 * of a transaction that rolled back) is void then. A commit always
 * leaves the buffer empty, so whatever is left at the unlock is void. */
static int db_shm_lock(sqlite3_file *pf, int offset, int n, int flags)
{
    db_file *d = (db_file *)pf;
    walbuf_file *f = d->wal;
    int rc = DB_CALL(pf, xShmLock, offset, n, flags);

    if (f && offset == WAL_WRITE_LOCK && rc == SQLITE_OK &&
        (flags & SQLITE_SHM_EXCLUSIVE)) {
        f->len = 0;
        f->commit_at = -1;
        f->written_to = 0;
    }
    return rc;
}

/* The point of the wrapper: a commit's frames reach the file before the
 * wal-index header that makes them visible is complete. A flush error
 * cannot be returned from here, and SQLite writes the header's second
 * copy as soon as this returns: carrying on would publish frames that are
 * not in the file, so the process stops here, with the cause in the log
 * (the WAL on disk still ends at the last commit that reached it). */
static void db_shm_barrier(sqlite3_file *pf)
{
    db_file *d = (db_file *)pf;

    if (d->wal && d->wal->len) {
        int rc = flush(d->wal);
        if (rc != SQLITE_OK) {
            log_error("history: writing WAL frames before publishing them "
                      "failed (%s); aborting so that no reader trusts "
                      "frames that are not on disk",
                      sqlite3_errstr(rc));
            abort();
        }
    }
    d->real->pMethods->xShmBarrier(d->real);
}

static int db_shm_unmap(sqlite3_file *pf, int delete_flag)
{
    return DB_CALL(pf, xShmUnmap, delete_flag);
}

static int db_fetch(sqlite3_file *pf, sqlite3_int64 off, int amt, void **out)
{
    return DB_CALL(pf, xFetch, off, amt, out);
}

static int db_unfetch(sqlite3_file *pf, sqlite3_int64 off, void *p)
{
    return DB_CALL(pf, xUnfetch, off, p);
}

static const sqlite3_io_methods db_methods = {
    3,
    db_close,
    db_read,
    db_write,
    db_truncate,
    db_sync,
    db_file_size,
    db_lock,
    db_unlock,
    db_check_reserved,
    db_file_control,
    db_sector_size,
    db_device_characteristics,
    db_shm_map,
    db_shm_lock,
    db_shm_barrier,
    db_shm_unmap,
    db_fetch,
    db_unfetch,
};

/* Any file but a WAL: the wrapper of the database file, with no WAL to
 * flush unless it is the main database. */
static int open_file(sqlite3_vfs *real, const char *name, sqlite3_file *pf,
                     int flags, int *out_flags)
{
    db_file *d = (db_file *)pf;
    int rc;

    memset(d, 0, sizeof *d);
    d->real = (sqlite3_file *)((char *)pf + FILE_HEAD);
    rc = real->xOpen(real, name, d->real, flags, out_flags);
    if (rc == SQLITE_OK && d->real->pMethods &&
        d->real->pMethods->iVersion < 3) {
        /* No mmap methods to forward (never the unix VFS's): used as it
         * is, unwatched, and a database's WAL goes without the barrier's
         * flush. */
        d->real->pMethods->xClose(d->real);
        return real->xOpen(real, name, pf, flags, out_flags);
    }
    if (rc == SQLITE_OK && d->real->pMethods)
        d->base.pMethods = &db_methods;
    return rc; /* pMethods NULL on failure: SQLite will not close it */
}

/* Every file is wrapped, into the space SQLite allocated (szOsFile covers
 * both): a WAL with the gathering, linked to its main database so that
 * the database's barrier flushes it; any other file with the database
 * file's wrapper. */
static int walbuf_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *pf,
                       int flags, int *out_flags)
{
    sqlite3_vfs *real = underlying();
    int rc;

    (void)vfs;
    if (!(flags & SQLITE_OPEN_WAL))
        return open_file(real, name, pf, flags, out_flags);
    walbuf_file *f = (walbuf_file *)pf;
    memset(f, 0, sizeof *f);
    f->commit_at = -1;
    f->real = (sqlite3_file *)((char *)pf + FILE_HEAD);
    rc = real->xOpen(real, name, f->real, flags, out_flags);
    if (rc != SQLITE_OK || !f->real->pMethods)
        return rc;
    f->base.pMethods = &walbuf_methods;
    sqlite3_file *db = sqlite3_database_file_object(name);
    if (db && db->pMethods == &db_methods) {
        f->db = (db_file *)db;
        f->db->wal = f;
    }
    return rc;
}

#define FORWARD(name, args, call)         \
    static int walbuf_##name args         \
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
FORWARD(current_time_int64, (sqlite3_vfs * vfs, sqlite3_int64 *out),
        CurrentTimeInt64(real, out))
FORWARD(get_last_error, (sqlite3_vfs * vfs, int len, char *out),
        GetLastError(real, len, out))
#undef FORWARD

static int walbuf_current_time(sqlite3_vfs *vfs, double *out)
{
    sqlite3_vfs *real = underlying();

    (void)vfs;
    return real->xCurrentTime(real, out);
}

const char *history__vfs(void)
{
    static int registered; /* under SQLite's static VFS mutex */
    sqlite3_mutex *mu;
    sqlite3_vfs *real;

    if (sqlite3_initialize() != SQLITE_OK)
        return NULL;
    mu = sqlite3_mutex_alloc(SQLITE_MUTEX_STATIC_VFS1);
    sqlite3_mutex_enter(mu);
    if (!registered && (real = sqlite3_vfs_find(NULL)) != NULL) {
        walbuf_vfs = (sqlite3_vfs){
            .iVersion = 2,
            .szOsFile = (int)FILE_HEAD + real->szOsFile,
            .mxPathname = real->mxPathname,
            .zName = "chorus-walbuf",
            .pAppData = real,
            .xOpen = walbuf_open,
            .xDelete = walbuf_delete,
            .xAccess = walbuf_access,
            .xFullPathname = walbuf_full_pathname,
            .xRandomness = walbuf_randomness,
            .xSleep = walbuf_sleep,
            .xCurrentTime = walbuf_current_time,
            .xGetLastError = walbuf_get_last_error,
            .xCurrentTimeInt64 = walbuf_current_time_int64,
            /* Extensions are never loaded; these take no VFS state. */
            .xDlOpen = real->xDlOpen,
            .xDlError = real->xDlError,
            .xDlSym = real->xDlSym,
            .xDlClose = real->xDlClose,
        };
        registered = sqlite3_vfs_register(&walbuf_vfs, 0) == SQLITE_OK;
    }
    sqlite3_mutex_leave(mu);
    return registered ? walbuf_vfs.zName : NULL;
}
