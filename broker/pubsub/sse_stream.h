/* The pub/sub side of a Server-Sent Events stream (GET /sse/{topic},
 * docs/PROTOCOL.md): one subscription per connection, made with the same
 * machinery as a /ws subscribe (publish_topic_info, replay_plan,
 * replay.h), so that resuming gives the same guarantee: no gap and no
 * duplicate between replay and live. The HTTP side (http/sse.c) admits
 * the request and queues the response head first. */
#ifndef CHORUS_SSE_STREAM_H
#define CHORUS_SSE_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct conn conn;
typedef struct sub sub;

/* Where a client resumes from (Last-Event-ID or ?since=), if anywhere. */
typedef struct sse_since {
    int has;
    char epoch[STORE_EPOCH_LEN + 1];
    uint64_t offset;
} sse_since;

/* The stream handler (conn.h, stream set): replay as the socket drains,
 * `: ping` every ping_interval, the subscription dropped at the end. */
extern const struct conn_handler sse_stream_handler;

/* c streams (conn_start_stream with sse_stream_handler; this call comes
 * right after it, since it counts the stream that the handler's on_gone
 * uncounts, in chorus_sse_streams): sends `retry:`
 * and subscribes it to the topic (name, len: valid, decoded), then
 * `subscribed`, `gap` when since cannot be recovered, the replay and
 * live messages. */
void sse_stream_start(conn *c, const char *name, size_t len,
                      const sse_since *since);

/* The topic of s changed epoch under it (a store's live feed): as a
 * resume that could not recover, `subscribed` and `gap` for the new
 * epoch, then its retained messages, then live ones. */
void sse_stream_epoch_changed(conn *c, sub *s, const store_topic_info *info);

#endif
