/* The on-disk schema (history.h describes it), its migrations and the SQL
 * functions they call, which every connection registers (history.c,
 * setup_db; history_epochs.c calls chorus_new_epoch() too). Offsets and
 * timestamps are stored as SQLite INTEGERs (signed 64 bit), so offsets
 * above INT64_MAX are refused rather than wrapped. */
#include "history.h"
#include "history_internal.h"

#include <stdio.h>

#include <openssl/rand.h>
#include <sqlite3.h>

/* migrations[i] moves the schema from version i to i + 1. To change the
 * schema, append an entry and raise HISTORY_SCHEMA_VERSION
 * (history_internal.h); never edit an entry that has shipped. */
static const char *const migrations[] = {
    /* v1 */
    "CREATE TABLE topics("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  epoch TEXT NOT NULL,"
    "  last_offset INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE messages("
    "  topic_id INTEGER NOT NULL,"
    "  \"offset\" INTEGER NOT NULL,"
    "  ts INTEGER NOT NULL,"
    "  data TEXT NOT NULL,"
    "  PRIMARY KEY(topic_id, \"offset\")) WITHOUT ROWID;",
    /* v2: one row per topic per commit (a record batch, history_batch.h)
     * instead of one per message; each v1 message becomes a batch of one
     * (chorus_batch1(), below).
     * topics.trim_offset: retention has dropped every offset up to it,
     * also those still inside a batch that straddles it. */
    "CREATE TABLE batches("
    "  id INTEGER PRIMARY KEY,"
    "  topic_id INTEGER NOT NULL,"
    "  first_offset INTEGER NOT NULL,"
    "  last_offset INTEGER NOT NULL,"
    "  max_ts INTEGER NOT NULL,"
    "  data BLOB NOT NULL);"
    "INSERT INTO batches(topic_id, first_offset, last_offset, max_ts, data)"
    "  SELECT topic_id, \"offset\", \"offset\", ts, chorus_batch1(ts, data)"
    "  FROM messages ORDER BY topic_id, \"offset\";"
    "DROP TABLE messages;"
    "CREATE UNIQUE INDEX batches_topic ON batches(topic_id, last_offset);"
    "ALTER TABLE topics ADD COLUMN trim_offset INTEGER NOT NULL DEFAULT 0;",
    /* v3: the database's epoch, drawn once (chorus_new_epoch(), below)
     * and given to each topic's row when its first message is stored, so
     * that reading a topic creates nothing yet reports an epoch that
     * stays valid. Topics created before keep their own epochs. */
    "CREATE TABLE meta(epoch TEXT NOT NULL);"
    "INSERT INTO meta(epoch) VALUES(chorus_new_epoch());",
};
_Static_assert(sizeof migrations / sizeof migrations[0] ==
                   HISTORY_SCHEMA_VERSION,
               "one migration per schema version");

/* chorus_batch1(ts, data): the record batch of one message, for the v2
 * migration (which turns each v1 message row into a batch of one). */
static void sql_batch1(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    history_batch b = {0};
    const unsigned char *blob;
    size_t len;

    (void)argc;
    history_batch_reset(&b);
    if (history_batch_add(&b, sqlite3_value_int64(argv[0]),
                          (const char *)sqlite3_value_text(argv[1]),
                          (size_t)sqlite3_value_bytes(argv[1])) != 0) {
        sqlite3_result_error_nomem(ctx);
        history_batch_free(&b);
        return;
    }
    blob = history_batch_finish(&b, &len);
    sqlite3_result_blob64(ctx, blob, len, SQLITE_TRANSIENT);
    history_batch_free(&b);
}

/* chorus_new_epoch(): a fresh epoch, 32 lowercase hex characters of 128
 * random bits (the v3 migration draws the database's epoch with it). */
static void sql_new_epoch(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[HISTORY_EPOCH_LEN / 2];
    char out[HISTORY_EPOCH_LEN];

    (void)argc;
    (void)argv;
    if (RAND_bytes(raw, sizeof raw) != 1) {
        sqlite3_result_error(ctx, "RAND_bytes failed", -1);
        return;
    }
    for (size_t i = 0; i < sizeof raw; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    sqlite3_result_text(ctx, out, HISTORY_EPOCH_LEN, SQLITE_TRANSIENT);
}

int history__register_functions(sqlite3 *db)
{
    if (sqlite3_create_function_v2(db, "chorus_batch1", 2,
                                   SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
                                   sql_batch1, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_create_function_v2(db, "chorus_new_epoch", 0, SQLITE_UTF8, NULL,
                                   sql_new_epoch, NULL, NULL,
                                   NULL) != SQLITE_OK)
        return -1;
    return 0;
}

/* Brings the schema to HISTORY_SCHEMA_VERSION inside one write transaction, so
 * two processes opening a new file cannot both create it. */
int history__migrate(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    long long version = 0, objects = 0;
    char sql[64];

    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        goto db_fail;
    if (history__pragma_int(db, "PRAGMA user_version", &version) != SQLITE_OK ||
        history__pragma_int(db, "SELECT count(*) FROM sqlite_master",
                            &objects) != SQLITE_OK)
        goto db_fail;
    if (version > HISTORY_SCHEMA_VERSION || version < 0) {
        snprintf(err, errlen,
                 "%s: schema version %lld is %s this broker supports (%d)",
                 path, version, version < 0 ? "not one" : "newer than",
                 HISTORY_SCHEMA_VERSION);
        goto fail;
    }
    if (version == 0 && objects != 0) {
        snprintf(err, errlen,
                 "%s: not a Chorus history database "
                 "(user_version 0 but tables present)",
                 path);
        goto fail;
    }
    for (; version < HISTORY_SCHEMA_VERSION; version++) {
        if (sqlite3_exec(db, migrations[version], NULL, NULL, NULL) !=
            SQLITE_OK)
            goto db_fail;
    }
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d",
             HISTORY_SCHEMA_VERSION);
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        goto db_fail;
    return 0;

db_fail:
    history__open_err(db, path, err, errlen);
fail:
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}
