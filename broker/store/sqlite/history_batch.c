/* Record batch codec (see history_batch.h). */
#include "history_batch.h"

#include <stdlib.h>
#include <string.h>

#define VARINT_MAX 10

static size_t put_varint(unsigned char *p, uint64_t v)
{
    size_t n = 0;

    while (v >= 0x80) {
        p[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n;
}

/* 1 with *v set, or -1 when the varint runs past end or past 64 bits. */
static int get_varint(const unsigned char **pp, const unsigned char *end,
                      uint64_t *v)
{
    const unsigned char *p = *pp;
    uint64_t x = 0;
    unsigned shift = 0;

    while (p < end) {
        unsigned char c = *p++;
        if (shift == 63 && (c & 0x7e))
            return -1; /* more than 64 bits */
        x |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *pp = p;
            *v = x;
            return 1;
        }
        shift += 7;
        if (shift > 63)
            return -1;
    }
    return -1;
}

/* Signed deltas as unsigned: 0, -1, 1, -2, ... -> 0, 1, 2, 3, ...
 * Computed in unsigned arithmetic, so no delta overflows. */
static uint64_t zigzag(int64_t from, int64_t to)
{
    uint64_t d = (uint64_t)to - (uint64_t)from;
    return (d << 1) ^ (0 - (d >> 63));
}

static int64_t unzigzag(int64_t from, uint64_t z)
{
    uint64_t d = (z >> 1) ^ (0 - (z & 1));
    return (int64_t)((uint64_t)from + d);
}

void history_batch_reset(history_batch *b)
{
    b->len = HISTORY_BATCH_HEAD;
    b->count = 0;
    b->prev_ts = 0;
    b->max_ts = INT64_MIN;
}

static int reserve(history_batch *b, size_t more)
{
    size_t need, cap;
    unsigned char *p;

    if (b->len < HISTORY_BATCH_HEAD)
        b->len = HISTORY_BATCH_HEAD;
    if (more > SIZE_MAX - b->len)
        return -1;
    need = b->len + more;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 4096;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    p = realloc(b->buf, cap);
    if (!p)
        return -1;
    b->buf = p;
    b->cap = cap;
    return 0;
}

int history_batch_add(history_batch *b, int64_t ts_ms, const char *data,
                      size_t len)
{
    if (len > SIZE_MAX - 2 * VARINT_MAX || reserve(b, len + 2 * VARINT_MAX))
        return -1;
    b->len += put_varint(b->buf + b->len, zigzag(b->prev_ts, ts_ms));
    b->len += put_varint(b->buf + b->len, (uint64_t)len);
    if (len)
        memcpy(b->buf + b->len, data, len);
    b->len += len;
    b->prev_ts = ts_ms;
    if (b->count == 0 || ts_ms > b->max_ts)
        b->max_ts = ts_ms;
    b->count++;
    return 0;
}

const unsigned char *history_batch_finish(history_batch *b, size_t *len)
{
    unsigned char head[HISTORY_BATCH_HEAD];
    size_t n = 0;

    head[n++] = HISTORY_BATCH_VERSION;
    n += put_varint(head + n, b->count);
    memcpy(b->buf + HISTORY_BATCH_HEAD - n, head, n);
    *len = b->len - (HISTORY_BATCH_HEAD - n);
    return b->buf + HISTORY_BATCH_HEAD - n;
}

void history_batch_free(history_batch *b)
{
    free(b->buf);
    memset(b, 0, sizeof *b);
}

int history_batch_open(history_batch_reader *r, const void *blob, size_t len,
                       uint64_t count)
{
    const unsigned char *p = blob;
    uint64_t n;

    if (!p || len < 2 || p[0] != HISTORY_BATCH_VERSION)
        return -1;
    r->p = p + 1;
    r->end = p + len;
    if (get_varint(&r->p, r->end, &n) < 0 || n != count || n == 0)
        return -1;
    r->left = n;
    r->ts = 0;
    return 0;
}

int history_batch_next(history_batch_reader *r, int64_t *ts, const char **data,
                       size_t *len)
{
    uint64_t z, n;

    if (r->left == 0)
        return r->p == r->end ? 0 : -1;
    if (get_varint(&r->p, r->end, &z) < 0 ||
        get_varint(&r->p, r->end, &n) < 0 || n > (uint64_t)(r->end - r->p))
        return -1;
    r->ts = unzigzag(r->ts, z);
    *ts = r->ts;
    *data = (const char *)r->p;
    *len = (size_t)n;
    r->p += n;
    r->left--;
    return 1;
}
