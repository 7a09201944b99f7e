/* Durable per-topic message history in SQLite (see history.h): opening
 * and closing a handle, and its settings.
 *
 * One connection per handle, WAL journal, the schema brought up to date by
 * the writer's handle (history_schema.c), every statement prepared once at
 * open (history_stmt.c). */
#include "history.h"
#include "history_internal.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

/* The page size of a new database (an existing one keeps its own). A
 * commit rewrites every page it touches (the end of the batches table,
 * each topic's index leaf, the topics row, page 1), most of them for a few
 * bytes: 4 KiB pages write half the bytes per message of 16 KiB ones and
 * publish 20% faster (docs/BENCHMARKS.md). */
#ifndef HISTORY_PAGE_SIZE
#define HISTORY_PAGE_SIZE 4096
#endif

/* ---- open / close ---------------------------------------------------- */

/* Per-connection setup before anything reads the file. The page size only
 * takes effect on a new, empty file (before WAL mode writes its header). */
static int setup_db(sqlite3 *db)
{
    char sql[48];

    snprintf(sql, sizeof sql, "PRAGMA page_size = %d", HISTORY_PAGE_SIZE);
    if (sqlite3_extended_result_codes(db, 1) != SQLITE_OK ||
        sqlite3_busy_timeout(db, HISTORY_BUSY_TIMEOUT_MS) != SQLITE_OK ||
        history__register_functions(db) != 0 ||
        sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    return 0;
}

/* A reader never checkpoints, also not as the last connection to close
 * (that checkpoint would sync on the loop's thread): query only. */
static int setup_reader(sqlite3 *db)
{
    if (sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL) !=
            SQLITE_OK ||
        sqlite3_wal_autocheckpoint(db, 0) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA query_only = 1", NULL, NULL, NULL) !=
            SQLITE_OK)
        return -1;
    return 0;
}

/* Opens the connection and checks that it is a writable database in WAL
 * mode (a reader: one that a writer has set up). Touching the header
 * (journal_mode) is what detects a file that is not a database. */
static int open_db(sqlite3 **out, const char *path, int reader,
                   const history_opts *opts, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    char mode[16];
    long long n;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
                (reader ? 0 : SQLITE_OPEN_CREATE);

    if (sqlite3_open_v2(path, &db, flags, history__vfs()) != SQLITE_OK)
        goto db_fail;
    if (setup_db(db) != 0 || (reader && setup_reader(db) != 0) ||
        (opts->exclusive && sqlite3_exec(db, "PRAGMA locking_mode=EXCLUSIVE",
                                         NULL, NULL, NULL) != SQLITE_OK))
        goto db_fail;
    if (sqlite3_db_readonly(db, "main") != 0) {
        char why[PATH_MAX + 128];
        if (history__explain_path(path, why, sizeof why))
            snprintf(err, errlen, "%s: database is read-only: %s", path, why);
        else
            snprintf(err, errlen, "%s: database is read-only", path);
        goto fail;
    }
    if (history__pragma_text(
            db, reader ? "PRAGMA journal_mode" : "PRAGMA journal_mode=WAL",
            mode, sizeof mode) != SQLITE_OK)
        goto db_fail;
    if (strcmp(mode, "wal") != 0) {
        snprintf(err, errlen, "%s: cannot use WAL journal (mode is \"%s\")",
                 path, mode);
        goto fail;
    }
    if (!reader &&
        sqlite3_exec(db,
                     opts->durability_full ? "PRAGMA synchronous=FULL"
                                           : "PRAGMA synchronous=NORMAL",
                     NULL, NULL, NULL) != SQLITE_OK)
        goto db_fail;
    /* Reads the schema page: a damaged or foreign file fails here. */
    if (history__pragma_int(db, "SELECT count(*) FROM sqlite_master", &n) !=
        SQLITE_OK)
        goto db_fail;
    *out = db;
    return 0;

db_fail:
    history__open_err(db, path, err, errlen);
fail:
    sqlite3_close(db);
    return -1;
}

/* Counts the WAL's pages after each commit: the writer checkpoints by
 * itself (history_checkpoint), so this replaces SQLite's automatic
 * checkpoint, which would run inside a commit. */
static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int pages)
{
    (void)db;
    (void)name;
    ((history *)arg)->wal_pages = pages;
    return SQLITE_OK;
}

/* What both kinds of handle need once the schema is current: the page
 * size, the prepared statements and the database's epoch. */
static int finish_open(history *h, const char *path, char *err, size_t errlen)
{
    long long page, version;

    if (history__pragma_int(h->db, "PRAGMA user_version", &version) !=
            SQLITE_OK ||
        history__pragma_int(h->db, "PRAGMA page_size", &page) != SQLITE_OK ||
        history__pragma_text(h->db, "SELECT epoch FROM meta", h->db_epoch,
                             sizeof h->db_epoch) != SQLITE_OK) {
        history__open_err(h->db, path, err, errlen);
        return -1;
    }
    if (version != HISTORY_SCHEMA_VERSION ||
        strlen(h->db_epoch) != HISTORY_EPOCH_LEN) {
        snprintf(err, errlen, "%s: schema version %lld or epoch not as set up",
                 path, version);
        return -1;
    }
    h->page_size = page > 0 ? (int)page : 4096;
    if (history__prepare_statements(h) != 0) {
        history__open_err(h->db, path, err, errlen);
        return -1;
    }
    return 0;
}

static int open_handle(history **out, const char *path,
                       const history_opts *opts, int reader, char *err,
                       size_t errlen)
{
    history *h;

    *out = NULL;
    if (err && errlen)
        err[0] = '\0';
    if (!path || !opts) {
        snprintf(err, errlen, "history_open: no path or options");
        return -1;
    }
    h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    h->opts = *opts;
    if (open_db(&h->db, path, reader, opts, err, errlen) != 0 ||
        (!reader && history__migrate(h->db, path, err, errlen) != 0) ||
        finish_open(h, path, err, errlen) != 0) {
        history_close(h);
        return -1;
    }
    if (!reader)
        sqlite3_wal_hook(h->db, on_wal_commit, h);
    *out = h;
    return 0;
}

int history_open(history **out, const char *path, const history_opts *opts,
                 char *err, size_t errlen)
{
    return open_handle(out, path, opts, 0, err, errlen);
}

int history_open_reader(history **out, const char *path, char *err,
                        size_t errlen)
{
    history_opts none = {0};

    return open_handle(out, path, &none, 1, err, errlen);
}

void history_close(history *h)
{
    int i;
    if (!h)
        return;
    if (h->db && !sqlite3_get_autocommit(h->db))
        sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
    for (i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(h->st[i]);
    /* Every statement is finalized, so close cannot be busy. */
    sqlite3_close(h->db);
    history_batch_free(&h->run);
    free(h);
}

/* ---- settings -------------------------------------------------------- */

void history_set_retention(history *h, uint64_t size, uint64_t ttl_ms)
{
    h->opts.history_size = size;
    h->opts.history_ttl_ms = ttl_ms;
}

void history_set_cache_kib(history *h, int kib)
{
    char sql[48];

    snprintf(sql, sizeof sql, "PRAGMA cache_size = %d", -kib);
    sqlite3_exec(h->db, sql, NULL, NULL, NULL);
}

const char *history_db_epoch(history *h)
{
    return h->db_epoch;
}

/* ---- tests ----------------------------------------------------------- */

int history_test_set_max_pages(history *h, int pages)
{
    char sql[64];
    long long v;

    snprintf(sql, sizeof sql, "PRAGMA max_page_count = %d", pages);
    if (history__pragma_int(h->db, sql, &v) != SQLITE_OK) {
        history__db_err(h, "max_page_count");
        return -1;
    }
    return (int)v;
}
