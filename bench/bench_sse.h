/* Client-side decoders of a Server-Sent Events response body (pure: no
 * I/O, no allocation, no knowledge of the bench), used by chorus-bench's
 * SSE subscribers (bench_sse_sub.c) and tests/unit/test_bench_sse.c.
 *
 *   chunk_dec  HTTP/1.1 chunked transfer coding -> body bytes
 *   sse_dec    body bytes -> field lines and event ends (the "event
 *              stream interpretation" of the HTML standard, 9.2.6)
 *
 * Both are streaming: bytes may be cut anywhere between calls, and the
 * decoders keep a few bytes of state instead of the bytes themselves. A
 * field's value is handed out in chunks pointing into the caller's
 * buffer, so a line that arrived whole comes out as one chunk. */
#ifndef CHORUS_BENCH_SSE_H
#define CHORUS_BENCH_SSE_H

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------ chunked */

typedef struct chunk_dec {
    uint64_t left; /* data bytes of the open chunk to come */
    uint8_t state;
    uint8_t digits; /* hex digits of the size line so far */
} chunk_dec;

enum { CHUNK_OK, CHUNK_END, CHUNK_ERROR };

void chunk_dec_init(chunk_dec *d);
/* Decodes from buf[0..len): *data / *data_len the body bytes found (may
 * be 0 bytes), *consumed what was used. Returns CHUNK_END once the last
 * (zero-size) chunk's line is read, CHUNK_ERROR on a malformed size or
 * framing (and ever after), else CHUNK_OK. Call again while
 * *consumed < len. Trailers after the last chunk are not read. */
int chunk_dec_next(chunk_dec *d, const uint8_t *buf, size_t len,
                   const uint8_t **data, size_t *data_len, size_t *consumed);

/* ------------------------------------------------------------ events */

enum {
    SSE_F_DATA,
    SSE_F_ID,
    SSE_F_EVENT,
    SSE_F_RETRY,
    SSE_F_COMMENT, /* a line starting with ':'; value: the rest */
    SSE_F_OTHER    /* a field the standard says to ignore */
};

enum {
    SSE_NEED_MORE, /* everything given was consumed */
    SSE_FIELD,     /* a chunk of a field's value */
    SSE_DISPATCH   /* a blank line: the event is complete */
};

typedef struct sse_dec {
    uint8_t state;    /* where in a line the next byte falls */
    uint8_t field;    /* SSE_F_* of the line being read */
    uint8_t name_len; /* bytes of the field name seen (capped) */
    uint8_t cr;       /* a CR ended the last line: skip one LF */
    uint8_t first;    /* the next value chunk is the line's first */
    char name[6];     /* the field name while it is split */
} sse_dec;

typedef struct sse_item {
    int type;           /* SSE_NEED_MORE / SSE_FIELD / SSE_DISPATCH */
    int field;          /* SSE_FIELD: SSE_F_* */
    const uint8_t *val; /* SSE_FIELD: this chunk of the value */
    size_t len;
    int first, fin; /* first chunk of the value / the line ends here */
} sse_item;

void sse_dec_init(sse_dec *d);
/* Decodes from buf[0..len) up to the next item; returns the bytes used.
 * As the standard says: lines end with CRLF, LF or CR; "name: value"
 * loses one space after the colon; a line without colon is a field with
 * an empty value. The leading UTF-8 BOM is not stripped (no server of
 * the bench sends one). */
size_t sse_dec_next(sse_dec *d, const uint8_t *buf, size_t len, sse_item *it);

#endif
