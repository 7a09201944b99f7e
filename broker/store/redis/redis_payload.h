/* The pub/sub payload of one publish call (written by the publish
 * script, redis_scripts.c):
 *   "<epoch> <first offset> <ts ms> <count>\n" then, per message,
 *   "<data length>:<data>"
 * Offsets are first, first + 1, ... The node writes the body (one
 * argument of the script, which also stores it as the stream entry's d
 * field); the script adds the header. No I/O here. */
#ifndef CHORUS_REDIS_PAYLOAD_H
#define CHORUS_REDIS_PAYLOAD_H

#include <stddef.h>
#include <stdint.h>

typedef struct redis_payload {
    char epoch[33];
    uint64_t first;
    int64_t ts_ms;
    size_t count;
    const char *body; /* the messages, in the caller's buffer */
    size_t body_len;
} redis_payload;

/* Parses the header. Returns 0, or -1 when malformed. */
int redis_payload_parse(const char *p, size_t len, redis_payload *out);

/* Takes the next message from the body (*pos starts at 0). Returns 0 with
 * data/len pointing into the body, 1 at the end, -1 when malformed. */
int redis_payload_next(const redis_payload *pl, size_t *pos, const char **data,
                       size_t *len);

/* Bytes of the body entry of one message of len bytes. */
size_t redis_payload_entry_size(size_t len);

/* Writes one message's body entry at p (redis_payload_entry_size(len)
 * bytes); returns the end. */
char *redis_payload_put(char *p, const char *data, size_t len);

/* A payload of count messages from first, for a body read back from the
 * stream. */
void redis_payload_of_body(redis_payload *pl, uint64_t first, int64_t ts_ms,
                           size_t count, const char *body, size_t len);

#endif
