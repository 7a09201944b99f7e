/* Decoders of an SSE response body: chunked transfer coding and the event
 * stream (bench_sse.h). Pure: no I/O, no allocation.
 *
 * The bench reads millions of events a second, so a value is found with
 * memchr and handed out in place; only a field name cut by a read is
 * copied (at most 6 bytes). */
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "bench_sse.h"

/* ------------------------------------------------------------ chunked */

enum { CH_SIZE, CH_EXT, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_DONE, CH_FAILED };

void chunk_dec_init(chunk_dec *d)
{
    memset(d, 0, sizeof *d);
}

static int hex_digit(uint8_t b)
{
    if (b >= '0' && b <= '9')
        return b - '0';
    b |= 0x20;
    if (b >= 'a' && b <= 'f')
        return b - 'a' + 10;
    return -1;
}

/* One byte of the size line or the CRLF after a chunk's data; 0 if
 * acceptable. */
static int framing_byte(chunk_dec *d, uint8_t b)
{
    int v;

    switch (d->state) {
    case CH_SIZE:
        v = hex_digit(b);
        if (v >= 0) {
            if (d->digits >= 15) /* more than 2^60 bytes: not a size */
                return -1;
            d->left = d->left << 4 | (uint64_t)v;
            d->digits++;
            return 0;
        }
        if (!d->digits)
            return -1;
        d->state = CH_EXT; /* extensions, spaces, CR: skipped up to LF */
        return framing_byte(d, b);
    case CH_EXT:
        if (b == '\n')
            d->state = d->left ? CH_DATA : CH_DONE;
        return 0;
    case CH_DATA_CR:
        if (b == '\r') {
            d->state = CH_DATA_LF;
            return 0;
        }
        if (b != '\n') /* a bare LF is tolerated, as by most clients */
            return -1;
        d->state = CH_SIZE;
        d->digits = 0;
        return 0;
    case CH_DATA_LF:
        if (b != '\n')
            return -1;
        d->state = CH_SIZE;
        d->digits = 0;
        return 0;
    default: return -1;
    }
}

int chunk_dec_next(chunk_dec *d, const uint8_t *buf, size_t len,
                   const uint8_t **data, size_t *data_len, size_t *consumed)
{
    size_t i = 0;

    *data = buf;
    *data_len = 0;
    while (i < len && d->state != CH_DONE && d->state != CH_FAILED) {
        if (d->state == CH_DATA) {
            size_t n = len - i;
            if ((uint64_t)n > d->left)
                n = (size_t)d->left;
            *data = buf + i;
            *data_len = n;
            d->left -= n;
            if (!d->left)
                d->state = CH_DATA_CR;
            *consumed = i + n;
            return CHUNK_OK;
        }
        if (framing_byte(d, buf[i]) != 0) {
            d->state = CH_FAILED;
            break;
        }
        i++;
    }
    *consumed = i;
    if (d->state == CH_FAILED)
        return CHUNK_ERROR;
    if (d->state == CH_DONE) {
        *consumed = len; /* trailers: not read */
        return CHUNK_END;
    }
    return CHUNK_OK;
}

/* ------------------------------------------------------------ events */

enum { L_START, L_NAME, L_VALUE_START, L_VALUE };

void sse_dec_init(sse_dec *d)
{
    memset(d, 0, sizeof *d);
}

static int classify(const sse_dec *d)
{
    static const struct {
        const char *name;
        uint8_t len, field;
    } known[] = {{"data", 4, SSE_F_DATA},
                 {"id", 2, SSE_F_ID},
                 {"event", 5, SSE_F_EVENT},
                 {"retry", 5, SSE_F_RETRY}};

    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
        if (d->name_len == known[k].len &&
            memcmp(d->name, known[k].name, known[k].len) == 0)
            return known[k].field;
    return SSE_F_OTHER;
}

/* Offset of the first CR or LF in p[0..n), n if none: 16 bytes a step
 * (two memchr per line, one for LF and one for CR, cost the bench a fifth
 * of its time on the 4 short lines of an event). */
#ifdef __SSE2__
static size_t eol(const uint8_t *p, size_t n)
{
    const __m128i lf = _mm_set1_epi8('\n'), cr = _mm_set1_epi8('\r');
    size_t i = 0;

    for (; i + 16 <= n; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
        int m = _mm_movemask_epi8(
            _mm_or_si128(_mm_cmpeq_epi8(x, lf), _mm_cmpeq_epi8(x, cr)));
        if (m)
            return i + (size_t)__builtin_ctz((unsigned)m);
    }
    for (; i < n; i++)
        if (p[i] == '\n' || p[i] == '\r')
            break;
    return i;
}
#else
static size_t eol(const uint8_t *p, size_t n)
{
    const uint8_t *lf = memchr(p, '\n', n);
    size_t m = lf ? (size_t)(lf - p) : n;
    const uint8_t *cr = memchr(p, '\r', m);

    return cr ? (size_t)(cr - p) : m;
}
#endif

/* Consumes the line end (CR, LF or CRLF) at buf[i]; the index after it.
 * A CR last in the buffer leaves d->cr set: its LF may come next. */
static size_t end_line(sse_dec *d, const uint8_t *buf, size_t len, size_t i)
{
    d->state = L_START;
    if (buf[i] == '\r') {
        if (i + 1 == len)
            d->cr = 1;
        else if (buf[i + 1] == '\n')
            return i + 2;
    }
    return i + 1;
}

static void field_item(sse_dec *d, sse_item *it, const uint8_t *val, size_t n,
                       int fin)
{
    it->type = SSE_FIELD;
    it->field = d->field;
    it->val = val;
    it->len = n;
    it->first = d->first;
    it->fin = fin;
    d->first = 0;
}

/* Field name bytes from buf[i]; the index of the ':' or line end that
 * ends the name, len if none yet. */
static size_t read_name(sse_dec *d, const uint8_t *buf, size_t len, size_t i)
{
    for (; i < len; i++) {
        uint8_t b = buf[i];
        if (b == ':' || b == '\n' || b == '\r')
            break;
        if (d->name_len < sizeof d->name)
            d->name[d->name_len] = (char)b;
        if (d->name_len <= sizeof d->name)
            d->name_len++; /* saturates past the longest known name */
    }
    return i;
}

/* The names a stream is mostly made of, with their colon: the length of
 * "name:" and the field, or 0 if p[0..n) starts otherwise. */
static size_t common_name(const uint8_t *p, size_t n, int *field)
{
    if (n >= 5 && memcmp(p, "data:", 5) == 0) {
        *field = SSE_F_DATA;
        return 5;
    }
    if (n >= 3 && memcmp(p, "id:", 3) == 0) {
        *field = SSE_F_ID;
        return 3;
    }
    if (n >= 6 && memcmp(p, "event:", 6) == 0) {
        *field = SSE_F_EVENT;
        return 6;
    }
    return 0;
}

/* A line starting at buf[0], whole in the buffer, of a common field: its
 * item and the bytes used; 0 (nothing done) otherwise. */
static size_t whole_line(sse_dec *d, const uint8_t *buf, size_t len,
                         sse_item *it)
{
    int field;
    size_t e = eol(buf, len), v = common_name(buf, e, &field);

    if (!v || e == len)
        return 0;
    if (v < e && buf[v] == ' ')
        v++;
    d->field = (uint8_t)field;
    d->first = 1;
    field_item(d, it, buf + v, e - v, 1);
    return end_line(d, buf, len, e);
}

size_t sse_dec_next(sse_dec *d, const uint8_t *buf, size_t len, sse_item *it)
{
    size_t i = 0, e;

    it->type = SSE_NEED_MORE;
    if (d->cr && len) {
        d->cr = 0;
        if (buf[0] == '\n')
            i = 1;
    }
    while (i < len) {
        switch (d->state) {
        case L_START:
            if (buf[i] == '\n' || buf[i] == '\r') {
                it->type = SSE_DISPATCH;
                return end_line(d, buf, len, i);
            }
            if ((e = whole_line(d, buf + i, len - i, it)) != 0)
                return i + e;
            d->first = 1;
            d->name_len = 0;
            if (buf[i] == ':') {
                d->field = SSE_F_COMMENT;
                d->state = L_VALUE_START;
                i++;
            } else {
                d->state = L_NAME;
            }
            break;
        case L_NAME:
            e = read_name(d, buf, len, i);
            if (e == len)
                return len;
            d->field = (uint8_t)classify(d);
            if (buf[e] == ':') {
                d->state = L_VALUE_START;
                i = e + 1;
                break;
            }
            field_item(d, it, buf + e, 0, 1); /* no colon: empty value */
            return end_line(d, buf, len, e);
        case L_VALUE_START:
            d->state = L_VALUE;
            if (buf[i] == ' ')
                i++;
            break;
        default: /* L_VALUE */
            e = i + eol(buf + i, len - i);
            field_item(d, it, buf + i, e - i, e < len);
            return e < len ? end_line(d, buf, len, e) : len;
        }
    }
    return i;
}
