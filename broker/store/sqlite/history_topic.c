/* Topic rows (history.h, history_topic_load): looked up by name, and
 * created on demand with the database's epoch. */
#include "history.h"
#include "history_internal.h"

#include <inttypes.h>
#include <string.h>

#include <sqlite3.h>

/* Fills out from the topics row s is on (ST_TOPIC_GET): 0, or -1 when
 * the row is corrupt. */
static int read_topic(history *h, sqlite3_stmt *s, history_topic *out)
{
    const unsigned char *epoch = sqlite3_column_text(s, 1);
    int64_t last = sqlite3_column_int64(s, 2);

    if (!epoch || sqlite3_column_bytes(s, 1) != HISTORY_EPOCH_LEN || last < 0) {
        history__set_err(h, "topic %" PRId64 ": corrupt epoch or offset",
                         (int64_t)sqlite3_column_int64(s, 0));
        return -1;
    }
    out->id = sqlite3_column_int64(s, 0);
    memcpy(out->epoch, epoch, HISTORY_EPOCH_LEN + 1);
    out->last_offset = (uint64_t)last;
    return 0;
}

int history_topic_load_n(history *h, const char *name, size_t len, int create,
                         history_topic *out)
{
    sqlite3_stmt *s = history__stmt(h, ST_TOPIC_GET);
    int rc;

    if (!name) {
        history__set_err(h, "load topic: no name");
        return -1;
    }
    if (history__bind_text(h, s, 1, name, len) != 0)
        return -1;
    rc = history__step_row(h, s, "load topic");
    if (rc == 1) {
        rc = read_topic(h, s, out);
        sqlite3_reset(s);
        return rc;
    }
    if (rc < 0)
        return -1;
    if (!create)
        return 1;

    s = history__stmt(h, ST_TOPIC_ADD);
    if (history__bind_text(h, s, 1, name, len) != 0 ||
        history__bind_text(h, s, 2, h->db_epoch, HISTORY_EPOCH_LEN) != 0 ||
        history__run(h, s, "create topic") != 0)
        return -1;
    if (sqlite3_changes(h->db) == 0) /* created elsewhere meanwhile */
        return history_topic_load_n(h, name, len, 0, out) == 0 ? 0 : -1;
    out->id = sqlite3_last_insert_rowid(h->db);
    memcpy(out->epoch, h->db_epoch, sizeof out->epoch);
    out->last_offset = 0;
    return 0;
}

int history_topic_load(history *h, const char *name, int create,
                       history_topic *out)
{
    return history_topic_load_n(h, name, name ? strlen(name) : 0, create, out);
}
