/* Why the database file cannot be opened, in words an operator can act
 * on: the message of a failed open. Part of the history module. SQLite
 * reports a failed open as "unable to open database file" with the errno
 * of its last system call, which is often not the cause (ENOENT from
 * probing for a journal when the directory is read-only). What SQLite
 * needs is checked again here with stat() and access(), in the order it
 * needs them: the directory (to create the file, its -wal and its -shm),
 * then the file. access() answers for the real user, which is the
 * broker's, and reports a read-only file system (EROFS) even to root. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "history_internal.h"

/* The directory part of path ("." when there is none). */
static void dir_of(const char *path, char *dir, size_t len)
{
    const char *slash = strrchr(path, '/');
    size_t n;

    if (!slash) {
        snprintf(dir, len, ".");
        return;
    }
    n = slash == path ? 1 : (size_t)(slash - path);
    snprintf(dir, len, "%.*s", (int)n, path);
}

/* A file SQLite writes beside the database, if it exists and cannot be
 * written: its name into out, 1. */
static int unwritable_file(const char *path, const char *suffix, char *out,
                           size_t len)
{
    char name[PATH_MAX];
    struct stat st;

    snprintf(name, sizeof name, "%s%s", path, suffix);
    if (stat(name, &st) != 0)
        return 0;
    if (S_ISDIR(st.st_mode)) {
        snprintf(out, len, "%s is a directory", name);
        return 1;
    }
    if (access(name, R_OK | W_OK) == 0)
        return 0;
    snprintf(out, len, "file %s is not writable (%s)", name, strerror(errno));
    return 1;
}

int history__explain_path(const char *path, char *out, size_t len)
{
    char dir[PATH_MAX];
    struct stat st;
    int exists = stat(path, &st) == 0;

    dir_of(path, dir, sizeof dir);
    if (stat(dir, &st) != 0) {
        snprintf(out, len, "directory %s cannot be used (%s)", dir,
                 strerror(errno));
        return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(out, len, "%s is not a directory", dir);
        return 1;
    }
    for (const char *const *suffix =
             (const char *const[]){"", "-wal", "-shm", NULL};
         *suffix; suffix++)
        if (unwritable_file(path, *suffix, out, len))
            return 1;
    /* The file, its -wal and its -shm are created when missing. */
    if (access(dir, W_OK | X_OK) != 0) {
        snprintf(out, len, "directory %s is not writable (%s)%s", dir,
                 strerror(errno),
                 exists ? ": SQLite creates the -wal and -shm files there"
                        : "");
        return 1;
    }
    return 0;
}

/* Formats "<path>: <sqlite message> (<errno text>)" into err; when the
 * open failed for want of access, the real cause instead of the errno
 * (history__explain_path, above). */
void history__open_err(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    int sys = db ? sqlite3_system_errno(db) : 0;
    int code = db ? sqlite3_errcode(db) & 0xff : SQLITE_NOMEM;
    const char *msg = db ? sqlite3_errmsg(db) : "out of memory";
    char why[PATH_MAX + 128];

    if (!err || !errlen)
        return;
    if ((code == SQLITE_CANTOPEN || code == SQLITE_READONLY ||
         code == SQLITE_PERM || code == SQLITE_IOERR) &&
        history__explain_path(path, why, sizeof why))
        snprintf(err, errlen, "%s: %s: %s", path, msg, why);
    else if (code == SQLITE_BUSY)
        snprintf(err, errlen, "%s: %s (another process has it open)", path,
                 msg);
    else if (sys)
        snprintf(err, errlen, "%s: %s (%s)", path, msg, strerror(sys));
    else
        snprintf(err, errlen, "%s: %s", path, msg);
}
