/* Server-Sent Events encoding of messages (docs/PROTOCOL.md, "Server-Sent
 * Events"): one event per message,
 *
 *     id: <epoch>:<offset>
 *     event: message
 *     data: {"topic":..,"offset":..,"ts":..,"data":..}
 *
 * the /ws message event without its op. A line break in the JSON (only
 * possible between tokens) continues on another `data:` line, so that
 * the event still arrives whole. Events are built as shared blocks
 * (frame_ref.h, raw bytes, no WebSocket header), like frames. */
#ifndef CHORUS_SSE_EVENT_H
#define CHORUS_SSE_EVENT_H

#include <stddef.h>
#include <stdint.h>

typedef struct frame_ref frame_ref;
typedef struct topic topic;

/* The twin of a block of /ws message frames (fanout.h: offsets first ..
 * first+count-1 of t, frame i at pos[i]..pos[i+1]): the same messages as
 * consecutive SSE events. *spos gets count + 1 byte offsets, the
 * caller's to free. NULL on allocation failure. */
frame_ref *sse_event_block(const topic *t, frame_ref *ws, uint64_t first,
                           size_t count, const size_t *pos, size_t **spos);

/* One stored message of t as an SSE event (a replay). NULL on allocation
 * failure. */
frame_ref *sse_event_message(const topic *t, uint64_t offset, int64_t ts_ms,
                             const char *data, size_t data_len);

#endif
