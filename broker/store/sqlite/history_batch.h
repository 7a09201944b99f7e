/* The record batch: how the messages of one topic committed together are
 * packed into one history row (a BLOB). Pure code: no SQLite, no I/O, so
 * the decoder can be tested byte by byte.
 *
 * Layout (varints are LEB128, 7 bits a byte, least significant first, at
 * most 10 bytes):
 *   u8     version (1)
 *   varint count of messages (>= 1)
 *   count times:
 *     varint zigzag(ts - previous ts), the previous ts of the first being 0
 *     varint length of the data
 *     bytes  data (serialized JSON)
 * Offsets are not stored: a batch holds consecutive offsets, and the row
 * says the first and the last one. A decoder checks every length against
 * the end of the blob and that the count matches the row, so a damaged
 * blob is reported, never read past. */
#ifndef CHORUS_HISTORY_BATCH_H
#define CHORUS_HISTORY_BATCH_H

#include <stddef.h>
#include <stdint.h>

#define HISTORY_BATCH_VERSION 1
/* Room kept in front of the messages for the header (version + count). */
#define HISTORY_BATCH_HEAD 11

/* An encoder that reuses its buffer from one batch to the next. */
typedef struct history_batch {
    unsigned char *buf;
    size_t len, cap; /* len counts from buf, header room included */
    uint64_t count;
    int64_t prev_ts;
    int64_t max_ts;
} history_batch;

/* Empties the batch (keeps the buffer). */
void history_batch_reset(history_batch *b);
/* Appends one message. 0, or -1 when out of memory. */
int history_batch_add(history_batch *b, int64_t ts_ms, const char *data,
                      size_t len);
/* Writes the header and returns the encoded blob (valid until the next
 * add or reset) and its length. The batch must not be empty. */
const unsigned char *history_batch_finish(history_batch *b, size_t *len);
void history_batch_free(history_batch *b);

/* A bounds-checked reader over one blob. */
typedef struct history_batch_reader {
    const unsigned char *p, *end;
    uint64_t left;
    int64_t ts;
} history_batch_reader;

/* Checks the header: the version, and that the blob holds count messages
 * (count comes from the row). 0, or -1 when the blob is malformed. */
int history_batch_open(history_batch_reader *r, const void *blob, size_t len,
                       uint64_t count);
/* The next message: 1 (ts, data and len set; data points into the blob
 * and is not NUL-terminated), 0 at the end (when the blob ended exactly
 * there), -1 when the blob is malformed. */
int history_batch_next(history_batch_reader *r, int64_t *ts, const char **data,
                       size_t *len);

#endif
