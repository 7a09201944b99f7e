/* Replay of stored history to one subscription, streamed from the store
 * (store.h) in pages as the client's socket drains, so that a client replaying
 * a million messages never makes the broker hold them in memory. While a
 * subscription replays, live fan-out skips it; it turns live the moment
 * its cursor reaches the topic's newest committed offset. Commits and
 * fan-out happen in one callback, so that switch has no gap and no
 * duplicate. */
#ifndef CHORUS_REPLAY_H
#define CHORUS_REPLAY_H

#include <stdint.h>

#include "store.h"

typedef struct conn conn;
typedef struct server server;
typedef struct sub sub;
typedef struct topic topic;

/* The output level pages fill a replaying connection to (capped by
 * max_outbound_bytes / 2); replay_pump reads on when the output falls
 * to CONN_LOW_WATER (conn.h). */
#define REPLAY_HIGH_WATER (512 * 1024)
#define REPLAY_PAGE_ROWS 256

/* Decides what a subscribe with since (epoch, offset) gets, info being
 * the topic's state in the store: *recovered per PROTOCOL.md, and
 * *cursor, the offset after which to replay. */
void replay_plan(server *srv, topic *t, const char *epoch, uint64_t since,
                 const store_topic_info *info, int *recovered,
                 uint64_t *cursor);

/* Starts (or restarts) streaming stored messages after cursor to s. */
void replay_start(conn *c, sub *s, uint64_t cursor);

/* Sends pages while the output is below the high-water mark; one page
 * is read at a time, and an engine that answers later pumps again from
 * its callback. */
void replay_pump(conn *c);

/* Stops replaying s (before it is unsubscribed). */
void replay_cancel(conn *c, sub *s);
void replay_cancel_all(conn *c);

#endif
