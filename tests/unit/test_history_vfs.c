/* Unit tests for broker/store/sqlite/history_vfs.c, the VFS that gathers a
 * transaction's WAL writes, against the SQLite it is built with:
 * - a commit is one write to the WAL, and the WAL keeps growing from
 *   commit to commit (no restart, no sync) as it does without the shim;
 * - a second connection sees each commit at once, frame for frame;
 * - a transaction too big for the page cache (frames written early, some
 *   rewritten) reads back whole;
 * - a crash right after a commit (the WAL copied as it is on disk, no
 *   close) recovers every committed row;
 * - a failed write fails the commit, and the next one succeeds;
 * - with synchronous=FULL (durability = full) a commit's frames are
 *   written, then synced, then published, all before the commit returns;
 * - a process killed between the 64 KiB pieces of a flush leaves a WAL
 *   that plain SQLite recovers to the last whole commit;
 * - another connection restarting the WAL (after a checkpoint) leaves this
 *   one's bookkeeping right, also with frames of a rolled-back transaction
 *   still buffered;
 * - a flush that fails at the barrier aborts the process, with the cause
 *   in the log. */
#include "history_internal.h"

#include "check.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- a counting VFS under the shim: writes and syncs per file -------- */

static sqlite3_vfs counting, *base_vfs;
static sqlite3_io_methods counting_methods;
static int wal_writes, wal_syncs, fail_wal_writes;
/* The process kills itself (SIGKILL) at this WAL write, counted by
 * wal_writes; 0 = never. Used in forked children only. */
static int kill_at_wal_write;

/* What happened, in order, while `recording`: W a WAL write, S a WAL
 * sync, B a barrier of the database file (SQLite publishing a wal-index
 * header). */
static char events[4096];
static size_t nevents;
static int recording;

static void record(char what)
{
    if (recording && nevents < sizeof events - 1)
        events[nevents++] = what;
}

typedef struct {
    sqlite3_file base;
    int is_wal;
    sqlite3_file real[]; /* the base VFS's file */
} counted_file;

/* Each file's own methods: the base VFS gives the WAL other ones. */
#define M(f) (((counted_file *)(f))->real->pMethods)

static int c_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
    counted_file *c = (counted_file *)f;

    if (c->is_wal) {
        wal_writes++;
        if (kill_at_wal_write && wal_writes == kill_at_wal_write)
            raise(SIGKILL);
        record('W');
        if (fail_wal_writes)
            return SQLITE_FULL;
    }
    return M(f)->xWrite(c->real, p, n, off);
}

static int c_sync(sqlite3_file *f, int flags)
{
    counted_file *c = (counted_file *)f;

    wal_syncs += c->is_wal;
    if (c->is_wal)
        record('S');
    return M(f)->xSync(c->real, flags);
}

#define PASS(name, args, call) \
    static int c_##name args   \
    {                          \
        return M(f)->call;     \
    }
PASS(close, (sqlite3_file * f), xClose(((counted_file *)f)->real))
PASS(read, (sqlite3_file * f, void *p, int n, sqlite3_int64 o),
     xRead(((counted_file *)f)->real, p, n, o))
PASS(truncate, (sqlite3_file * f, sqlite3_int64 s),
     xTruncate(((counted_file *)f)->real, s))
PASS(size, (sqlite3_file * f, sqlite3_int64 *s),
     xFileSize(((counted_file *)f)->real, s))
PASS(lock, (sqlite3_file * f, int l), xLock(((counted_file *)f)->real, l))
PASS(unlock, (sqlite3_file * f, int l), xUnlock(((counted_file *)f)->real, l))
PASS(reserved, (sqlite3_file * f, int *o),
     xCheckReservedLock(((counted_file *)f)->real, o))
PASS(fcntl, (sqlite3_file * f, int op, void *a),
     xFileControl(((counted_file *)f)->real, op, a))
PASS(sector, (sqlite3_file * f), xSectorSize(((counted_file *)f)->real))
PASS(devchar, (sqlite3_file * f),
     xDeviceCharacteristics(((counted_file *)f)->real))
PASS(shm_map, (sqlite3_file * f, int a, int b, int c, void volatile **p),
     xShmMap(((counted_file *)f)->real, a, b, c, p))
PASS(shm_lock, (sqlite3_file * f, int a, int b, int c),
     xShmLock(((counted_file *)f)->real, a, b, c))
PASS(shm_unmap, (sqlite3_file * f, int d),
     xShmUnmap(((counted_file *)f)->real, d))
PASS(fetch, (sqlite3_file * f, sqlite3_int64 o, int n, void **p),
     xFetch(((counted_file *)f)->real, o, n, p))
PASS(unfetch, (sqlite3_file * f, sqlite3_int64 o, void *p),
     xUnfetch(((counted_file *)f)->real, o, p))
#undef PASS

static void c_shm_barrier(sqlite3_file *f)
{
    record('B');
    M(f)->xShmBarrier(((counted_file *)f)->real);
}

static int c_open(sqlite3_vfs *v, const char *name, sqlite3_file *f, int flags,
                  int *out)
{
    counted_file *c = (counted_file *)f;
    int rc;

    (void)v;
    memset(c, 0, sizeof *c);
    rc = base_vfs->xOpen(base_vfs, name, c->real, flags, out);
    if (rc != SQLITE_OK || !c->real->pMethods)
        return rc;
    c->is_wal = (flags & SQLITE_OPEN_WAL) != 0;
    c->base.pMethods = &counting_methods;
    return rc;
}

/* Registers "counting" as the default VFS, so that the shim wraps it. */
static void counting_install(void)
{
    base_vfs = sqlite3_vfs_find(NULL);
    counting = *base_vfs;
    counting.zName = "counting";
    counting.szOsFile = (int)sizeof(counted_file) + base_vfs->szOsFile;
    counting.xOpen = c_open;
    counting.iVersion = 2;
    counting_methods = (sqlite3_io_methods){
        3,         c_close,   c_read,     c_write,       c_truncate,  c_sync,
        c_size,    c_lock,    c_unlock,   c_reserved,    c_fcntl,     c_sector,
        c_devchar, c_shm_map, c_shm_lock, c_shm_barrier, c_shm_unmap, c_fetch,
        c_unfetch};
    sqlite3_vfs_register(&counting, 1);
}

/* ---- helpers ---------------------------------------------------------- */

static char dir[] = "/tmp/chorus-vfs-XXXXXX";
static char path[64];

static sqlite3 *open_shim(void)
{
    sqlite3 *db = NULL;

    CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                          history__vfs()) == SQLITE_OK);
    sqlite3_exec(db,
                 "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                 "PRAGMA wal_autocheckpoint=0",
                 NULL, NULL, NULL);
    return db;
}

static long long count_rows(sqlite3 *db)
{
    sqlite3_stmt *st;
    long long n = -1;

    if (sqlite3_prepare_v2(db, "SELECT count(*), sum(length(v)) FROM t", -1,
                           &st, NULL) != SQLITE_OK)
        return -2;
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* One transaction of n rows of len bytes each. */
static int insert(sqlite3 *db, int n, int len)
{
    char sql[256];

    snprintf(sql, sizeof sql,
             "INSERT INTO t(v) SELECT randomblob(%d) FROM "
             "(WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
             "FROM c WHERE i < %d) SELECT i FROM c)",
             len, n);
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

/* The size of a WAL frame header. */
#define WAL_FRAME_HEADER_BYTES 24

static int last_frames;

static int on_commit(void *arg, sqlite3 *db, const char *name, int frames)
{
    (void)arg;
    (void)db;
    (void)name;
    last_frames = frames;
    return SQLITE_OK;
}

static void test_one_write_per_commit_and_no_restart(void)
{
    sqlite3 *w = open_shim(), *r = open_shim();
    int frames = 0;

    sqlite3_wal_hook(w, on_commit, NULL);
    CHECK(sqlite3_exec(w, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)",
                       NULL, NULL, NULL) == SQLITE_OK);
    CHECK_EQ_INT(count_rows(r), 0); /* r holds the WAL open too */
    for (int i = 1; i <= 5; i++) {
        int writes0 = wal_writes, syncs0 = wal_syncs;
        CHECK_EQ_INT(insert(w, 100, 300), SQLITE_OK);
        CHECK_EQ_INT(wal_writes - writes0, 1);
        CHECK_EQ_INT(wal_syncs - syncs0, 0);
        CHECK(last_frames > frames); /* the WAL grows: no restart */
        frames = last_frames;
        CHECK_EQ_INT(count_rows(r), 100 * i); /* seen at once */
    }
    sqlite3_close(r);
    sqlite3_close(w);
}

static long long digest(sqlite3 *db)
{
    sqlite3_stmt *st;
    long long d = -1;

    if (sqlite3_prepare_v2(db,
                           "SELECT total(id * length(v) + unicode(v)) "
                           "FROM t",
                           -1, &st, NULL) != SQLITE_OK)
        return -2;
    if (sqlite3_step(st) == SQLITE_ROW)
        d = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return d;
}

static int integrity_ok(sqlite3 *db)
{
    sqlite3_stmt *st;
    int ok = 0;

    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) !=
        SQLITE_OK)
        return 0;
    ok = sqlite3_step(st) == SQLITE_ROW &&
         strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
    sqlite3_finalize(st);
    return ok;
}

/* Past the unix VFS's 128 KiB write limit: written in 64 KiB pieces. */
static void test_large_commit(void)
{
    sqlite3 *w = open_shim(), *r = open_shim();
    long long before = count_rows(r);
    int writes0 = wal_writes;

    CHECK_EQ_INT(insert(w, 1000, 400), SQLITE_OK); /* ~450 KB of frames */
    CHECK(wal_writes - writes0 >= 7 && wal_writes - writes0 <= 9);
    CHECK_EQ_INT(count_rows(r), before + 1000);
    CHECK_EQ_INT(digest(r), digest(w));
    sqlite3_close(r);
    sqlite3_close(w);
}

/* A transaction bigger than the page cache spills frames before its
 * commit and then rewrites some of them (SQLite recomputes the checksums
 * after): what a reader and a reopened database see is what was meant. */
static void test_spilled_transaction(void)
{
    sqlite3 *w = open_shim(), *r = open_shim();

    sqlite3_exec(w, "PRAGMA cache_size = 8", NULL, NULL, NULL);
    CHECK_EQ_INT(sqlite3_exec(w, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    CHECK_EQ_INT(insert(w, 600, 500), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(w,
                              "UPDATE t SET v = randomblob(480) "
                              "WHERE id % 3 = 0",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    CHECK_EQ_INT(insert(w, 200, 500), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(w, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    CHECK_EQ_INT(count_rows(r), count_rows(w));
    CHECK_EQ_INT(digest(r), digest(w));
    CHECK(integrity_ok(r));
    sqlite3_close(r);
    sqlite3_close(w);
}

static int copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    char buf[65536];
    size_t n;
    int ok = in && out;

    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0)
        ok = fwrite(buf, 1, n, out) == n;
    if (in)
        fclose(in);
    if (out && fclose(out) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

/* kill -9 right after a commit: the files as they are on disk at that
 * moment (copied while the connection stays open) hold every committed
 * row, and plain SQLite recovers them from the WAL. */
static void test_crash_after_commit_keeps_it(void)
{
    sqlite3 *w = open_shim(), *copy = NULL;
    char to[96], wal_from[80], wal_to[104];
    long long rows, sum;

    CHECK_EQ_INT(insert(w, 300, 200), SQLITE_OK);
    rows = count_rows(w);
    sum = digest(w);
    snprintf(to, sizeof to, "%s/crash.db", dir);
    snprintf(wal_from, sizeof wal_from, "%s-wal", path);
    snprintf(wal_to, sizeof wal_to, "%s-wal", to);
    CHECK_EQ_INT(copy_file(path, to), 0);
    CHECK_EQ_INT(copy_file(wal_from, wal_to), 0);
    CHECK(sqlite3_open(to, &copy) == SQLITE_OK);
    CHECK_EQ_INT(count_rows(copy), rows);
    CHECK_EQ_INT(digest(copy), sum);
    CHECK(integrity_ok(copy));
    sqlite3_close(copy);
    sqlite3_close(w);
}

/* A failed write (a full disk) fails the commit; the next one works and
 * nothing of the failed one shows. */
static void test_failed_write_fails_the_commit(void)
{
    sqlite3 *w = open_shim(), *r = open_shim();
    long long rows = count_rows(r), sum = digest(r);

    fail_wal_writes = 1;
    CHECK(insert(w, 50, 100) != SQLITE_OK);
    fail_wal_writes = 0;
    CHECK_EQ_INT(count_rows(r), rows);
    CHECK_EQ_INT(digest(r), sum);
    CHECK_EQ_INT(insert(w, 50, 100), SQLITE_OK);
    CHECK_EQ_INT(count_rows(r), rows + 50);
    CHECK(integrity_ok(r));
    sqlite3_close(r);
    sqlite3_close(w);
}

/* durability = full is synchronous=FULL (history.c): a commit's frames
 * are in the file before the sync that makes them durable, the sync comes
 * before the wal-index header that publishes the commit, and all of it
 * happens before the commit returns. Once with the WAL starting over (the
 * first commit after the last connection closed) and once continuing it
 * with a commit of several pieces. */
static void test_full_durability_order(void)
{
    sqlite3 *w = open_shim(), *r = open_shim();
    long long rows = count_rows(r);
    const char *last_sync, *last_write;

    sqlite3_exec(w, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
    for (int round = 0; round < 2; round++) {
        int syncs0 = wal_syncs;
        nevents = 0;
        recording = 1;
        CHECK_EQ_INT(insert(w, round ? 1000 : 50, 400), SQLITE_OK);
        recording = 0;
        events[nevents] = '\0';
        /* e.g. BBWWWWSB, or BBWSWSB when the WAL starts over (its new
         * header is synced first) */
        last_sync = strrchr(events, 'S');
        last_write = strrchr(events, 'W');
        CHECK(wal_syncs - syncs0 >= 1); /* synced before it returned */
        CHECK(last_sync && last_write && last_write < last_sync);
        CHECK(last_sync && strchr(last_sync, 'B') != NULL);
        rows += round ? 1000 : 50;
        CHECK_EQ_INT(count_rows(r), rows);
    }
    sqlite3_close(r);
    sqlite3_close(w);
}

/* Plain SQLite (the unix VFS, no shim) on the files as they are. */
static sqlite3 *open_plain(void)
{
    sqlite3 *db = NULL;

    CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, "unix") ==
          SQLITE_OK);
    return db;
}

/* Rows of the table that are not 400 bytes long (all the crash test
 * writes are). */
static long long odd_rows(sqlite3 *db)
{
    sqlite3_stmt *st;
    long long n = -1;

    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM t WHERE length(v) != 400",
                           -1, &st, NULL) != SQLITE_OK)
        return -2;
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* A child commits 1,000 rows of 400 bytes (~450 KB of frames, flushed in
 * 64 KiB pieces) and then 10 more; it is killed at its kill_at-th WAL
 * write from then on. Returns the rows plain SQLite then finds, after
 * checking that the child died by the signal and that the recovered
 * database is sound. */
static long long crash_child_at(int kill_at)
{
    sqlite3 *db;
    long long rows;
    int status = 0;
    pid_t pid;

    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        sqlite3 *w = open_shim();
        kill_at_wal_write = wal_writes + kill_at;
        insert(w, 1000, 400);
        insert(w, 10, 400);
        _exit(0); /* not reached: killed above */
    }
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    db = open_plain();
    rows = count_rows(db);
    CHECK(integrity_ok(db));
    CHECK_EQ_INT(odd_rows(db), 0);
    sqlite3_close(db);
    return rows;
}

/* kill -9 between the pieces of a flush: the transaction whose commit
 * frame had not reached the file is absent, whole earlier ones stay, and
 * the database passes integrity_check. Killed at the first write of the
 * next transaction, the big one is there, whole. */
static void test_crash_in_the_middle_of_a_flush(void)
{
    sqlite3 *db, *w = open_shim();
    long long before;

    CHECK_EQ_INT(sqlite3_exec(w, "DELETE FROM t", NULL, NULL, NULL), SQLITE_OK);
    CHECK_EQ_INT(insert(w, 20, 400), SQLITE_OK);
    sqlite3_close(w);
    db = open_plain();
    before = count_rows(db);
    sqlite3_close(db);
    CHECK_EQ_INT(before, 20);
    for (int piece = 2; piece <= 6; piece += 2)
        CHECK_EQ_INT(crash_child_at(piece), before); /* absent */
    /* The commit needs 7 to 9 pieces (test_large_commit): the first
     * write after them is the 10-row transaction's. */
    for (int at = 8; at <= 10; at++) {
        long long rows = crash_child_at(at);
        CHECK(rows == before || rows == before + 1000);
        before = rows;
    }
    CHECK_EQ_INT(before, 20 + 1000);
}

/* Another connection checkpoints and restarts the WAL between two
 * commits of this one: this one's next commit is still one write (it does
 * not mistake its frames for rewrites of the old ones), and every row
 * of both is there, also after a crash. */
static void test_restart_by_another_connection(void)
{
    sqlite3 *a = open_shim(), *b = open_shim(), *plain;
    long long rows;
    int writes0, frames_before;

    sqlite3_wal_hook(a, on_commit, NULL);
    CHECK_EQ_INT(insert(a, 400, 300), SQLITE_OK);
    frames_before = last_frames;
    CHECK_EQ_INT(
        sqlite3_exec(b, "PRAGMA wal_checkpoint(RESTART)", NULL, NULL, NULL),
        SQLITE_OK);
    CHECK_EQ_INT(insert(b, 5, 300), SQLITE_OK); /* restarts the WAL */
    writes0 = wal_writes;
    CHECK_EQ_INT(insert(a, 50, 300), SQLITE_OK);
    CHECK_EQ_INT(wal_writes - writes0, 1);
    CHECK(last_frames < frames_before); /* the WAL did start over */
    rows = count_rows(b);
    CHECK_EQ_INT(count_rows(a), rows);
    sqlite3_close(b);
    plain = open_plain();
    CHECK_EQ_INT(count_rows(plain), rows);
    CHECK(integrity_ok(plain));
    sqlite3_close(plain);
    sqlite3_close(a);
}

/* A transaction too big for the cache spills frames into the buffer and
 * then rolls back; another connection truncates the WAL and commits over
 * that range. Those void frames must never reach the file, where they
 * would overwrite the other connection's commit. */
static void test_rolled_back_frames_stay_out(void)
{
    sqlite3 *a = open_shim(), *b = open_shim(), *plain;
    long long rows;

    sqlite3_exec(a, "PRAGMA cache_size = 8", NULL, NULL, NULL);
    CHECK_EQ_INT(sqlite3_exec(a, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    CHECK_EQ_INT(insert(a, 300, 500), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(a, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    CHECK_EQ_INT(
        sqlite3_exec(b, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL),
        SQLITE_OK);
    CHECK_EQ_INT(insert(b, 300, 450), SQLITE_OK);
    rows = count_rows(b);
    CHECK_EQ_INT(count_rows(a), rows); /* a reads b's frames */
    CHECK_EQ_INT(insert(a, 10, 100), SQLITE_OK);
    rows += 10;
    CHECK_EQ_INT(count_rows(b), rows);
    CHECK(integrity_ok(b));
    sqlite3_close(b);
    plain = open_plain(); /* recovers from the WAL on disk */
    CHECK_EQ_INT(count_rows(plain), rows);
    CHECK(integrity_ok(plain));
    sqlite3_close(plain);
    sqlite3_close(a);
}

/* Frames still buffered when SQLite publishes a wal-index header and a
 * flush that then fails: the process aborts, and says why, instead of
 * publishing frames that are not in the file. Forced in a child by
 * buffering a (non-commit) frame header by hand and failing the write. */
static void test_failed_barrier_flush_aborts(void)
{
    int out[2], status = 0;
    char log[1024] = "";
    ssize_t n, got = 0;
    pid_t pid;

    CHECK(pipe(out) == 0);
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        sqlite3 *w = open_shim();
        sqlite3_file *dbf = NULL, *walf = NULL;
        unsigned char header[WAL_FRAME_HEADER_BYTES] = {0};
        sqlite3_int64 size = 0;

        dup2(out[1], 2);
        insert(w, 1, 10); /* opens the WAL */
        sqlite3_file_control(w, "main", SQLITE_FCNTL_FILE_POINTER, &dbf);
        sqlite3_file_control(w, "main", SQLITE_FCNTL_JOURNAL_POINTER, &walf);
        if (!dbf || !walf || walf->pMethods->xFileSize(walf, &size))
            _exit(3);
        if (walf->pMethods->xWrite(walf, header, sizeof header, size))
            _exit(4); /* buffered, not written */
        fail_wal_writes = 1;
        dbf->pMethods->xShmBarrier(dbf);
        _exit(0); /* not reached: aborted above */
    }
    close(out[1]);
    while (got < (ssize_t)sizeof log - 1 &&
           (n = read(out[0], log + got, sizeof log - 1 - (size_t)got)) > 0)
        got += n;
    log[got] = '\0';
    close(out[0]);
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    CHECK(strstr(log, "aborting") != NULL);
    CHECK(strstr(log, "database or disk is full") != NULL);
}

int main(void)
{
    counting_install();
    if (!mkdtemp(dir))
        return 1;
    snprintf(path, sizeof path, "%s/t.db", dir);
    CHECK(history__vfs() != NULL);
    test_one_write_per_commit_and_no_restart();
    test_large_commit();
    test_spilled_transaction();
    test_crash_after_commit_keeps_it();
    test_failed_write_fails_the_commit();
    test_full_durability_order();
    test_restart_by_another_connection();
    test_rolled_back_frames_stay_out();
    test_crash_in_the_middle_of_a_flush();
    test_failed_barrier_flush_aborts();
    for (const char *const *f =
             (const char *const[]){"t.db", "t.db-wal", "t.db-shm", "crash.db",
                                   "crash.db-wal", "crash.db-shm", NULL};
         *f; f++) {
        char p[128];
        snprintf(p, sizeof p, "%s/%s", dir, *f);
        unlink(p);
    }
    rmdir(dir);
    return check_report("test_history_vfs");
}
