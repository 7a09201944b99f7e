/* RFC 7692 permessage-deflate (see chorus/deflate.h): the offer parser,
 * and raw DEFLATE with the sync-flush tail removed on the way out and
 * put back on the way in. */
#include "chorus/deflate.h"

#include <assert.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "chorus/ws_frame.h"

/* ---- negotiation --------------------------------------------------------- */

typedef struct cursor {
    const char *p, *end;
} cursor;

/* A parameter value, unescaped. Ours are at most "15", so a longer one is
 * only remembered as too long. */
typedef struct value {
    int present;
    int invalid; /* too long, empty, or not a token once unescaped */
    size_t len;
    char buf[4];
} value;

/* One permessage-deflate offer as read so far. */
typedef struct offer {
    int bad; /* decline it: RFC 7692 section 7 */
    int seen_snct, seen_cnct, seen_smwb, seen_cmwb;
    int smwb; /* server_max_window_bits, 0 if absent */
} offer;

/* RFC 7230 tchar. */
static int is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void skip_ows(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
        c->p++;
}

static int take_token(cursor *c, const char **s, size_t *n)
{
    *s = c->p;
    while (c->p < c->end && is_tchar((unsigned char)*c->p))
        c->p++;
    *n = (size_t)(c->p - *s);
    return *n ? 0 : -1;
}

static void value_add(value *v, unsigned char ch)
{
    if (!is_tchar(ch) || v->len == sizeof v->buf)
        v->invalid = 1;
    else
        v->buf[v->len++] = (char)ch;
}

/* token / quoted-string (RFC 7230 3.2.6). RFC 6455 section 9.1 wants a
 * quoted value to be a token once unescaped; one that is not is a bad
 * value (the offer is declined), not a syntax error. Returns -1 on a
 * syntax error. */
static int take_value(cursor *c, value *v)
{
    const char *s;
    size_t n;

    v->present = 1;
    if (c->p < c->end && *c->p == '"') {
        for (c->p++;; c->p++) {
            unsigned char ch;
            if (c->p == c->end)
                return -1;
            ch = (unsigned char)*c->p;
            if (ch == '"')
                break;
            if (ch == '\\') {
                if (++c->p == c->end)
                    return -1;
                ch = (unsigned char)*c->p;
            }
            if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
                return -1;
            value_add(v, ch);
        }
        c->p++;
        if (v->len == 0)
            v->invalid = 1;
        return 0;
    }
    if (take_token(c, &s, &n))
        return -1;
    for (size_t i = 0; i < n; i++)
        value_add(v, (unsigned char)s[i]);
    return 0;
}

static int name_is(const char *s, size_t n, const char *name)
{
    return strlen(name) == n && strncasecmp(s, name, n) == 0;
}

/* 8..15 written without leading zeros (RFC 7692 7.1.2.1), else -1. */
static int window_bits(const value *v)
{
    if (!v->present || v->invalid)
        return -1;
    if (v->len == 1 && (v->buf[0] == '8' || v->buf[0] == '9'))
        return v->buf[0] - '0';
    if (v->len == 2 && v->buf[0] == '1' && v->buf[1] >= '0' && v->buf[1] <= '5')
        return 10 + v->buf[1] - '0';
    return -1;
}

/* RFC 7692 section 7.1: each parameter at most once; the context
 * takeover ones without a value, server_max_window_bits with one,
 * client_max_window_bits with or without; nothing else. */
static void offer_param(offer *o, const char *name, size_t n, const value *v)
{
    if (name_is(name, n, "server_no_context_takeover")) {
        if (o->seen_snct++ || v->present)
            o->bad = 1;
    } else if (name_is(name, n, "client_no_context_takeover")) {
        if (o->seen_cnct++ || v->present)
            o->bad = 1;
    } else if (name_is(name, n, "server_max_window_bits")) {
        if (o->seen_smwb++ || (o->smwb = window_bits(v)) < 0)
            o->bad = 1;
    } else if (name_is(name, n, "client_max_window_bits")) {
        if (o->seen_cmwb++ || (v->present && window_bits(v) < 0))
            o->bad = 1;
    } else {
        o->bad = 1;
    }
}

/* Reads "; name[=value]" parameters up to the next ',' or the end. */
static int take_params(cursor *c, offer *o)
{
    for (;;) {
        const char *name;
        size_t n;
        value v;

        skip_ows(c);
        if (c->p == c->end || *c->p == ',')
            return 0;
        if (*c->p != ';')
            return -1;
        c->p++;
        skip_ows(c);
        if (take_token(c, &name, &n))
            return -1;
        skip_ows(c);
        memset(&v, 0, sizeof v);
        if (c->p < c->end && *c->p == '=') {
            c->p++;
            skip_ows(c);
            if (take_value(c, &v))
                return -1;
        }
        offer_param(o, name, n, &v);
    }
}

int chorus_pmd_negotiate(const char *ext_header, size_t len,
                         chorus_pmd_params *out, char *response,
                         size_t response_size)
{
    cursor c = {ext_header, ext_header + len};
    offer chosen;
    int found = 0, n;

    assert(response_size >= CHORUS_PMD_RESPONSE_MAX);
    response[0] = '\0';
    memset(out, 0, sizeof(*out));
    memset(&chosen, 0, sizeof chosen);
    for (;;) {
        const char *name;
        size_t name_len;
        offer o;

        skip_ows(&c);
        if (c.p == c.end)
            break;
        if (*c.p == ',') { /* empty list elements are allowed */
            c.p++;
            continue;
        }
        if (take_token(&c, &name, &name_len))
            return -1;
        memset(&o, 0, sizeof o);
        o.bad = !name_is(name, name_len, "permessage-deflate");
        if (take_params(&c, &o))
            return -1;
        /* server_max_window_bits=8: see the header. */
        if (!found && !o.bad && o.smwb != 8) {
            chosen = o;
            found = 1;
        }
    }
    if (!found)
        return 0;
    out->server_no_context_takeover = 1;
    out->client_no_context_takeover = 1;
    out->server_max_window_bits = chosen.smwb ? chosen.smwb : 15;
    out->client_max_window_bits = 15;
    n = snprintf(response, response_size,
                 "permessage-deflate; server_no_context_takeover; "
                 "client_no_context_takeover");
    if (chosen.smwb)
        n += snprintf(response + n, response_size - (size_t)n,
                      "; server_max_window_bits=%d", chosen.smwb);
    assert(n > 0 && (size_t)n < response_size);
    return 1;
}

/* ---- compression --------------------------------------------------------- */

static const uint8_t sync_tail[4] = {0x00, 0x00, 0xff, 0xff};

static uInt clamp_uint(size_t n)
{
    return n > UINT_MAX ? UINT_MAX : (uInt)n;
}

int chorus_pmd_compressor_init(chorus_pmd_compressor *z, int level,
                               int window_bits)
{
    assert(window_bits >= 9 && window_bits <= 15);
    assert(level == Z_DEFAULT_COMPRESSION || (level >= 0 && level <= 9));
    memset(z, 0, sizeof(*z));
    z->window_bits = window_bits;
    /* Negative windowBits: raw DEFLATE, no zlib header or checksum. */
    if (deflateInit2(&z->zs, level, Z_DEFLATED, -window_bits, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        return CHORUS_PMD_ERR_NOMEM;
    return CHORUS_PMD_OK;
}

void chorus_pmd_compressor_free(chorus_pmd_compressor *z)
{
    deflateEnd(&z->zs);
}

/* Makes room for at least `need` more bytes; returns 0 or -1. */
static int reserve(uint8_t **buf, size_t *cap, size_t used, size_t need)
{
    size_t ncap = *cap;
    uint8_t *nb;

    while (ncap - used < need) {
        if (ncap > SIZE_MAX / 2)
            return -1;
        ncap = ncap ? ncap * 2 : 1024;
    }
    if (ncap == *cap)
        return 0;
    nb = realloc(*buf, ncap);
    if (!nb)
        return -1;
    *buf = nb;
    *cap = ncap;
    return 0;
}

int chorus_pmd_compress(chorus_pmd_compressor *z, const uint8_t *in, size_t len,
                        uint8_t **out, size_t *out_len)
{
    z_stream *zs = &z->zs;
    size_t cap = 0, used = 0, left = len;
    uint8_t *buf = NULL;

    *out = NULL;
    *out_len = 0;
    if (deflateReset(zs) != Z_OK)
        return CHORUS_PMD_ERR_NOMEM; /* not initialised: a caller bug */
    /* Enough for one pass nearly always: bound + the sync-flush block. */
    if (reserve(&buf, &cap, 0, (size_t)deflateBound(zs, len) + 16))
        goto nomem;
    zs->next_in = (Bytef *)(uintptr_t)in; /* zlib does not write it */
    for (;;) {
        /* Input beyond 4 GiB goes in uInt-sized pieces; flush with the
         * last one. */
        int flush = left <= UINT_MAX ? Z_SYNC_FLUSH : Z_NO_FLUSH;
        uInt in_n = clamp_uint(left), room;
        int rc;

        if (reserve(&buf, &cap, used, 64))
            goto nomem;
        room = clamp_uint(cap - used);
        zs->avail_in = in_n;
        zs->next_out = buf + used;
        zs->avail_out = room;
        rc = deflate(zs, flush);
        if (rc != Z_OK && rc != Z_BUF_ERROR) /* cannot happen */
            goto nomem;
        left -= in_n - zs->avail_in;
        used += room - zs->avail_out;
        /* A sync flush is complete once deflate leaves output room. */
        if (flush == Z_SYNC_FLUSH && left == 0 && zs->avail_out != 0)
            break;
    }
    /* A sync flush always ends with an empty stored block. */
    assert(used >= 4 && memcmp(buf + used - 4, sync_tail, 4) == 0);
    *out = buf;
    *out_len = used - 4;
    return CHORUS_PMD_OK;
nomem:
    free(buf);
    return CHORUS_PMD_ERR_NOMEM;
}

/* ---- decompression ------------------------------------------------------- */

#define INFLATE_WINDOW_BITS 15
#define WINDOW_SIZE (1u << INFLATE_WINDOW_BITS)

/* Output of one message: len bytes so far, never more than limit + 1. */
typedef struct outbuf {
    uint8_t *p;
    size_t len, cap, limit;
} outbuf;

/* Grows a full buffer, up to limit + 1 bytes so that going past the
 * limit can be seen. */
static int outbuf_grow(outbuf *o, size_t hint)
{
    size_t ncap = o->cap ? (o->cap > SIZE_MAX / 2 ? SIZE_MAX : o->cap * 2)
                         : (hint > SIZE_MAX / 4 ? SIZE_MAX : hint * 4);
    uint8_t *nb;

    if (o->len > o->limit)
        return CHORUS_PMD_ERR_TOO_BIG;
    if (ncap < 1024)
        ncap = 1024;
    if (ncap > o->limit + 1)
        ncap = o->limit + 1;
    nb = realloc(o->p, ncap);
    if (!nb)
        return CHORUS_PMD_ERR_NOMEM;
    o->p = nb;
    o->cap = ncap;
    return CHORUS_PMD_OK;
}

/* Inflates seg[0..n). Returns 1 at the end of a final block (the rest of
 * the input is ignored), 0 when all input is used, or an error. */
static int inflate_seg(z_stream *zs, const uint8_t *seg, size_t n, outbuf *o)
{
    zs->next_in = (Bytef *)(uintptr_t)seg;
    for (;;) {
        uInt in_n = clamp_uint(n), room;
        int rc;

        if (o->len == o->cap) {
            rc = outbuf_grow(o, n);
            if (rc)
                return rc;
        }
        room = clamp_uint(o->cap - o->len);
        zs->avail_in = in_n;
        zs->next_out = o->p + o->len;
        zs->avail_out = room;
        rc = inflate(zs, Z_SYNC_FLUSH);
        n -= in_n - zs->avail_in;
        o->len += room - zs->avail_out;
        if (o->len > o->limit)
            return CHORUS_PMD_ERR_TOO_BIG;
        if (rc == Z_STREAM_END)
            return 1;
        if (rc == Z_MEM_ERROR)
            return CHORUS_PMD_ERR_NOMEM;
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            return CHORUS_PMD_ERR_CORRUPT; /* Z_DATA_ERROR, Z_NEED_DICT */
        if (n == 0 && zs->avail_out != 0)
            return 0;
        if (rc == Z_BUF_ERROR && zs->avail_out != 0)
            return CHORUS_PMD_ERR_CORRUPT; /* no progress: cannot happen */
    }
}

int chorus_pmd_inflater_init(chorus_pmd_inflater *z, int no_context_takeover)
{
    memset(z, 0, sizeof(*z));
    z->no_context_takeover = no_context_takeover;
    /* Always the largest window: it decodes any smaller one. */
    if (inflateInit2(&z->zs, -INFLATE_WINDOW_BITS) != Z_OK)
        return CHORUS_PMD_ERR_NOMEM;
    return CHORUS_PMD_OK;
}

void chorus_pmd_inflater_free(chorus_pmd_inflater *z)
{
    inflateEnd(&z->zs);
    free(z->dict);
    z->dict = NULL;
}

/* A message ended with a BFINAL block (RFC 7692 section 7.2.3.4). zlib's
 * stream is over; with context takeover the next message may still refer
 * to this one's window, so it is carried into the new stream. */
static int restart_after_final(chorus_pmd_inflater *z)
{
    uInt n = WINDOW_SIZE;

    if (z->no_context_takeover)
        return CHORUS_PMD_OK; /* reset below anyway */
    if (!z->dict && !(z->dict = malloc(WINDOW_SIZE)))
        return CHORUS_PMD_ERR_NOMEM;
    if (inflateGetDictionary(&z->zs, z->dict, &n) != Z_OK)
        return CHORUS_PMD_ERR_CORRUPT;
    inflateReset(&z->zs);
    if (n && inflateSetDictionary(&z->zs, z->dict, n) != Z_OK)
        return CHORUS_PMD_ERR_CORRUPT;
    return CHORUS_PMD_OK;
}

int chorus_pmd_inflate(chorus_pmd_inflater *z, const uint8_t *in, size_t len,
                       size_t max_out, uint8_t **out, size_t *out_len)
{
    outbuf o = {NULL, 0, 0, 0};
    int rc;

    *out = NULL;
    *out_len = 0;
    /* limit + 1 must not overflow. */
    o.limit = (max_out == 0 || max_out >= SIZE_MAX) ? SIZE_MAX - 1 : max_out;
    /* An empty payload carries no block at all: an empty message. */
    if (len == 0)
        return CHORUS_PMD_OK;
    rc = inflate_seg(&z->zs, in, len, &o);
    if (rc == 0)
        rc = inflate_seg(&z->zs, sync_tail, sizeof sync_tail, &o);
    /* After the tail's empty stored block inflate must be between blocks
     * (data_type bit 128); otherwise the payload stopped inside one. */
    if (rc == 0 && !(z->zs.data_type & 128))
        rc = CHORUS_PMD_ERR_CORRUPT;
    if (rc == 1)
        rc = restart_after_final(z);
    if (rc < 0) {
        free(o.p);
        inflateReset(&z->zs);
        return rc;
    }
    if (z->no_context_takeover)
        inflateReset(&z->zs);
    *out = o.p;
    *out_len = o.len;
    return CHORUS_PMD_OK;
}

uint16_t chorus_pmd_close_code(int err)
{
    switch (err) {
    case CHORUS_PMD_ERR_TOO_BIG: return CHORUS_WS_CLOSE_TOO_BIG;
    case CHORUS_PMD_ERR_CORRUPT: return CHORUS_WS_CLOSE_BAD_DATA;
    default: return CHORUS_WS_CLOSE_INTERNAL;
    }
}
