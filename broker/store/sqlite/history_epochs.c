/* New epochs for a database restored from a copy (history.h,
 * history_new_epochs). Part of the history module. */
#include <string.h>

#include <sqlite3.h>

#include "history.h"
#include "history_internal.h"

/* The topics take the database's new epoch, as the rows a new database
 * creates do; chorus_new_epoch() is registered on every connection
 * (history_schema.c). */
static const char new_epochs_sql[] =
    "UPDATE meta SET epoch = chorus_new_epoch();"
    "UPDATE topics SET epoch = (SELECT epoch FROM meta);";

int history_new_epochs(history *h, uint64_t *topics)
{
    char epoch[HISTORY_EPOCH_LEN + 1] = "";
    sqlite3_stmt *s = NULL;

    if (sqlite3_exec(h->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        history__db_err(h, "begin");
        return -1;
    }
    if (sqlite3_exec(h->db, new_epochs_sql, NULL, NULL, NULL) != SQLITE_OK) {
        history__db_err(h, "new epochs");
        goto fail;
    }
    *topics = (uint64_t)sqlite3_changes64(h->db);
    if (sqlite3_prepare_v2(h->db, "SELECT epoch FROM meta", -1, &s, NULL) !=
            SQLITE_OK ||
        sqlite3_step(s) != SQLITE_ROW ||
        sqlite3_column_bytes(s, 0) != HISTORY_EPOCH_LEN) {
        history__db_err(h, "reading the new epoch");
        goto fail;
    }
    memcpy(epoch, sqlite3_column_text(s, 0), HISTORY_EPOCH_LEN);
    sqlite3_finalize(s);
    s = NULL;
    if (sqlite3_exec(h->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        history__db_err(h, "commit");
        goto fail;
    }
    memcpy(h->db_epoch, epoch, sizeof epoch);
    return 0;

fail:
    sqlite3_finalize(s);
    sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}
