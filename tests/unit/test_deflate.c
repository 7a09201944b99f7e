/* Unit tests for lib/deflate.c (RFC 7692 permessage-deflate) and the
 * decoder's RSV1 handling in lib/ws_frame.c. */
#include "chorus/deflate.h"
#include "chorus/ws_frame.h"

#include "check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BASE                                           \
    "permessage-deflate; server_no_context_takeover; " \
    "client_no_context_takeover"

/* ---- negotiation --------------------------------------------------------- */

static chorus_pmd_params P;
static char R[CHORUS_PMD_RESPONSE_MAX];

static int neg(const char *h)
{
    return chorus_pmd_negotiate(h, strlen(h), &P, R, sizeof R);
}

/* Accepted, with that response and server window. */
static void accepts(const char *h, const char *response, int smwb)
{
    int rc = neg(h);

    CHECK_EQ_INT(rc, 1);
    if (rc != 1) {
        fprintf(stderr, "  header: %s\n", h);
        return;
    }
    CHECK_EQ_STR(R, response);
    CHECK_EQ_INT(P.server_max_window_bits, smwb);
    CHECK_EQ_INT(P.server_no_context_takeover, 1);
    CHECK_EQ_INT(P.client_no_context_takeover, 1);
    CHECK_EQ_INT(P.client_max_window_bits, 15);
}

static void refuses(const char *h, int expect)
{
    int rc = neg(h);

    CHECK_EQ_INT(rc, expect);
    if (rc != expect)
        fprintf(stderr, "  header: %s\n", h);
    CHECK_EQ_STR(R, "");
}

static void test_negotiate_accepts(void)
{
    accepts("permessage-deflate", BASE, 15);
    /* What Chrome and python websockets send. */
    accepts("permessage-deflate; client_max_window_bits", BASE, 15);
    accepts("permessage-deflate; client_max_window_bits=10", BASE, 15);
    accepts("permessage-deflate; server_no_context_takeover", BASE, 15);
    accepts("permessage-deflate; client_no_context_takeover", BASE, 15);
    accepts("permessage-deflate; server_no_context_takeover; "
            "client_no_context_takeover; client_max_window_bits=8",
            BASE, 15);
    accepts("permessage-deflate; server_max_window_bits=10",
            BASE "; server_max_window_bits=10", 10);
    accepts("permessage-deflate; server_max_window_bits=9",
            BASE "; server_max_window_bits=9", 9);
    accepts("permessage-deflate; server_max_window_bits=15",
            BASE "; server_max_window_bits=15", 15);
    /* Names are case-insensitive. */
    accepts("PerMessage-Deflate; Server_Max_Window_Bits=12; "
            "CLIENT_MAX_WINDOW_BITS",
            BASE "; server_max_window_bits=12", 12);
    /* Quoted values, unescaped before they are checked. */
    accepts("permessage-deflate; client_max_window_bits=\"10\"", BASE, 15);
    accepts("permessage-deflate; server_max_window_bits=\"12\"",
            BASE "; server_max_window_bits=12", 12);
    accepts("permessage-deflate; server_max_window_bits=\"1\\2\"",
            BASE "; server_max_window_bits=12", 12);
    /* Blanks around separators; empty list elements. */
    accepts("  permessage-deflate \t;  client_max_window_bits = 10 ,  ", BASE,
            15);
    accepts(", ,permessage-deflate,", BASE, 15);
    /* Other extensions are skipped, their parameters only parsed. */
    accepts("x-webkit-deflate-frame, permessage-deflate", BASE, 15);
    accepts("foo; bar=\"a, b; c\"; baz, permessage-deflate", BASE, 15);
    /* Fallback: the first acceptable offer wins. */
    accepts("permessage-deflate; server_max_window_bits=8, "
            "permessage-deflate; server_max_window_bits=11, "
            "permessage-deflate",
            BASE "; server_max_window_bits=11", 11);
    accepts("permessage-deflate; foo, permessage-deflate; "
            "client_max_window_bits",
            BASE, 15);
    accepts("permessage-deflate; server_no_context_takeover; "
            "server_no_context_takeover, permessage-deflate",
            BASE, 15);

    /* len is honoured: no NUL needed. */
    {
        const char h[] = "permessage-deflate; bogus";
        CHECK_EQ_INT(chorus_pmd_negotiate(h, 18, &P, R, sizeof R), 1);
        CHECK_EQ_STR(R, BASE);
    }
}

static void test_negotiate_declines(void)
{
    refuses("", 0);
    refuses("   ", 0);
    refuses("x-webkit-deflate-frame", 0);
    refuses("permessage-deflatex", 0);
    refuses("deflate-frame; server_max_window_bits=10", 0);
    /* Unknown parameter. */
    refuses("permessage-deflate; foo", 0);
    refuses("permessage-deflate; foo=1", 0);
    /* Duplicated parameters. */
    refuses("permessage-deflate; server_no_context_takeover; "
            "server_no_context_takeover",
            0);
    refuses("permessage-deflate; client_no_context_takeover; "
            "Client_No_Context_Takeover",
            0);
    refuses("permessage-deflate; client_max_window_bits; "
            "client_max_window_bits=10",
            0);
    refuses("permessage-deflate; server_max_window_bits=10; "
            "server_max_window_bits=10",
            0);
    /* Values where none is allowed. */
    refuses("permessage-deflate; server_no_context_takeover=1", 0);
    refuses("permessage-deflate; client_no_context_takeover=\"x\"", 0);
    /* Bad window values: missing, out of range, leading zero, quoted
     * non-token, empty quotes. */
    refuses("permessage-deflate; server_max_window_bits", 0);
    refuses("permessage-deflate; server_max_window_bits=16", 0);
    refuses("permessage-deflate; server_max_window_bits=7", 0);
    refuses("permessage-deflate; server_max_window_bits=010", 0);
    refuses("permessage-deflate; server_max_window_bits=abc", 0);
    refuses("permessage-deflate; client_max_window_bits=16", 0);
    refuses("permessage-deflate; client_max_window_bits=0", 0);
    refuses("permessage-deflate; client_max_window_bits=\"1 2\"", 0);
    refuses("permessage-deflate; client_max_window_bits=\"\"", 0);
    refuses("permessage-deflate; client_max_window_bits=123456789", 0);
    /* 8 cannot be honoured with zlib's raw deflate: declined. */
    refuses("permessage-deflate; server_max_window_bits=8", 0);
}

static void test_negotiate_malformed(void)
{
    refuses("permessage-deflate; x=\"unterminated", -1);
    refuses("permessage-deflate; x=\"esc\\", -1);
    refuses("permessage-deflate;", -1);
    refuses("permessage-deflate; ", -1);
    refuses(";permessage-deflate", -1);
    refuses("permessage-deflate x", -1);
    refuses("permessage-deflate; =1", -1);
    refuses("permessage-deflate; a=", -1);
    refuses("permessage-deflate; a==1", -1);
    refuses("permessage-deflate; a=1 2", -1);
    refuses("\"permessage-deflate\"", -1);
    refuses("permessage-deflate\r\nX: y", -1);
    /* A syntax error anywhere declines everything, even after a good
     * offer: the list cannot be trusted. */
    refuses("permessage-deflate, foo bar", -1);
    {
        const char h[] = "permessage-deflate\0; x";
        CHECK_EQ_INT(chorus_pmd_negotiate(h, sizeof h - 1, &P, R, sizeof R),
                     -1);
    }
}

/* ---- codec --------------------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

/* JSON-ish text of n bytes, like the broker's publish frames. */
static uint8_t *json_payload(size_t n)
{
    static const char *const words[] = {"temperature", "sensor", "north",
                                        "south",       "ok",     "alert",
                                        "building-7",  "floor"};
    uint8_t *p = malloc(n);
    size_t i = 0;

    while (i < n) {
        char rec[160];
        int k = snprintf(rec, sizeof rec,
                         "{\"topic\":\"%s/%s\",\"seq\":%u,\"data\":{"
                         "\"value\":%u.%u,\"state\":\"%s\"}},",
                         words[rng() % 8], words[rng() % 8], rng() % 100000,
                         rng() % 100, rng() % 10, words[rng() % 8]);
        for (int j = 0; j < k && i < n; j++)
            p[i++] = (uint8_t)rec[j];
    }
    return p;
}

/* Compresses with c and inflates with z; checks the bytes come back. */
static void round_trip(chorus_pmd_compressor *c, chorus_pmd_inflater *z,
                       const uint8_t *in, size_t len)
{
    uint8_t *comp = NULL, *back = NULL;
    size_t clen = 0, blen = 0;

    CHECK_EQ_INT(chorus_pmd_compress(c, in, len, &comp, &clen), 0);
    CHECK_EQ_INT(chorus_pmd_inflate(z, comp, clen, len, &back, &blen), 0);
    CHECK_EQ_INT(blen, len);
    CHECK(len == 0 || (back && memcmp(back, in, len) == 0));
    free(comp);
    free(back);
}

static void test_round_trips(void)
{
    chorus_pmd_compressor c, c9;
    chorus_pmd_inflater z, zt;
    const size_t mib = 1 << 20;
    uint8_t *json = json_payload(mib), *rnd = malloc(mib), *comp = NULL;
    size_t clen = 0;

    for (size_t i = 0; i < mib; i++)
        rnd[i] = (uint8_t)rng();
    CHECK_EQ_INT(chorus_pmd_compressor_init(&c, Z_DEFAULT_COMPRESSION, 15), 0);
    CHECK_EQ_INT(chorus_pmd_compressor_init(&c9, 1, 9), 0);
    CHECK_EQ_INT(chorus_pmd_inflater_init(&z, 1), 0);
    CHECK_EQ_INT(chorus_pmd_inflater_init(&zt, 0), 0);

    /* Empty message: the single byte 00 (RFC 7692 section 7.2.3.6). */
    CHECK_EQ_INT(chorus_pmd_compress(&c, (const uint8_t *)"", 0, &comp, &clen),
                 0);
    CHECK(clen == 1 && comp[0] == 0x00);
    free(comp);
    round_trip(&c, &z, (const uint8_t *)"", 0);
    /* "Hello" compresses to the RFC's own bytes (section 7.2.3.1). */
    CHECK_EQ_INT(
        chorus_pmd_compress(&c, (const uint8_t *)"Hello", 5, &comp, &clen), 0);
    CHECK(clen == 7 && memcmp(comp, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7) == 0);
    free(comp);
    round_trip(&c, &z, (const uint8_t *)"Hello", 5);
    round_trip(&c, &z, json, mib);
    round_trip(&c, &z, rnd, mib);
    round_trip(&c9, &z, json, mib);
    round_trip(&c9, &z, rnd, 1000);
    /* The compressor resets per message, so an inflater keeping its
     * context decodes its output too. */
    for (int i = 0; i < 5; i++)
        round_trip(&c, &zt, json + i * 1000, 5000);
    /* Same JSON again after a reset: compressed size is the same (no
     * context leaked from earlier messages). */
    {
        uint8_t *a, *b;
        size_t alen, blen;
        chorus_pmd_compress(&c, json, 4000, &a, &alen);
        chorus_pmd_compress(&c, json, 4000, &b, &blen);
        CHECK(alen == blen && memcmp(a, b, alen) == 0);
        free(a);
        free(b);
    }
    /* Incompressible data grows only a little. */
    CHECK_EQ_INT(chorus_pmd_compress(&c, rnd, mib, &comp, &clen), 0);
    CHECK(clen > mib && clen < mib + mib / 100);
    free(comp);

    chorus_pmd_compressor_free(&c);
    chorus_pmd_compressor_free(&c9);
    chorus_pmd_inflater_free(&z);
    chorus_pmd_inflater_free(&zt);
    free(json);
    free(rnd);
}

/* Inflates one message; returns the code and, on success, compares. */
static int inflate_is(chorus_pmd_inflater *z, const char *in, size_t len,
                      size_t max_out, const char *expect)
{
    uint8_t *out = NULL;
    size_t out_len = 99;
    int rc = chorus_pmd_inflate(z, (const uint8_t *)in, len, max_out, &out,
                                &out_len);

    if (rc == 0 && expect) {
        CHECK_EQ_INT(out_len, strlen(expect));
        CHECK(out_len == strlen(expect) &&
              (out_len == 0 || memcmp(out, expect, out_len) == 0));
    }
    if (rc != 0)
        CHECK(out == NULL && out_len == 0);
    free(out);
    return rc;
}

/* RFC 7692 section 7.2.3 examples. */
static void test_rfc_examples(void)
{
    chorus_pmd_inflater z, zt;

    chorus_pmd_inflater_init(&z, 1);
    chorus_pmd_inflater_init(&zt, 0);
    /* 7.2.3.1: one compressed message. */
    CHECK_EQ_INT(inflate_is(&z, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7, 0, "Hello"),
                 0);
    /* 7.2.3.2: the second "Hello" refers to the first one's window. */
    CHECK_EQ_INT(inflate_is(&zt, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7, 0, "Hello"),
                 0);
    CHECK_EQ_INT(inflate_is(&zt, "\xf2\x00\x11\x00\x00", 5, 0, "Hello"), 0);
    /* Without context takeover the same bytes are a distance too far. */
    CHECK_EQ_INT(inflate_is(&z, "\xf2\x00\x11\x00\x00", 5, 0, NULL),
                 CHORUS_PMD_ERR_CORRUPT);
    /* 7.2.3.3: a stored (uncompressed) block. */
    CHECK_EQ_INT(inflate_is(&z,
                            "\x00\x05\x00\xfa\xff"
                            "Hello"
                            "\x00",
                            11, 0, "Hello"),
                 0);
    /* 7.2.3.4: BFINAL set; bytes after the final block are ignored. */
    CHECK_EQ_INT(inflate_is(&z, "\xf3\x48\xcd\xc9\xc9\x07\x00", 7, 0, "Hello"),
                 0);
    CHECK_EQ_INT(
        inflate_is(&z, "\xf3\x48\xcd\xc9\xc9\x07\x00\x00", 8, 0, "Hello"), 0);
    /* 7.2.3.5: two DEFLATE blocks in one message. */
    CHECK_EQ_INT(inflate_is(&z,
                            "\xf2\x48\x05\x00\x00\x00\xff\xff\xca\xc9\xc9"
                            "\x07\x00",
                            13, 0, "Hello"),
                 0);
    /* An empty payload and the single 00 byte are both empty messages. */
    CHECK_EQ_INT(inflate_is(&z, "", 0, 0, ""), 0);
    CHECK_EQ_INT(inflate_is(&z, "\x00", 1, 0, ""), 0);
    chorus_pmd_inflater_free(&z);
    chorus_pmd_inflater_free(&zt);
}

/* Context takeover across a BFINAL message: the window must survive the
 * end of zlib's stream. The second message is built with "Hello" as a
 * preset dictionary, i.e. as a peer keeping its context would. */
static void test_takeover_after_final(void)
{
    chorus_pmd_inflater zt;
    z_stream d;
    uint8_t buf[64];
    size_t n;

    memset(&d, 0, sizeof d);
    CHECK_EQ_INT(deflateInit2(&d, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY),
                 Z_OK);
    deflateSetDictionary(&d, (const Bytef *)"Hello", 5);
    d.next_in = (Bytef *)(uintptr_t) "HelloHello";
    d.avail_in = 10;
    d.next_out = buf;
    d.avail_out = sizeof buf;
    CHECK_EQ_INT(deflate(&d, Z_SYNC_FLUSH), Z_OK);
    n = sizeof buf - d.avail_out - 4;
    deflateEnd(&d);

    chorus_pmd_inflater_init(&zt, 0);
    CHECK_EQ_INT(inflate_is(&zt, "\xf3\x48\xcd\xc9\xc9\x07\x00", 7, 0, "Hello"),
                 0);
    CHECK_EQ_INT(inflate_is(&zt, (const char *)buf, n, 0, "HelloHello"), 0);
    chorus_pmd_inflater_free(&zt);
}

static void test_max_out(void)
{
    chorus_pmd_compressor c;
    chorus_pmd_inflater z;
    const size_t big = 16u << 20;
    uint8_t *zeros = calloc(1, big), *comp, *out;
    size_t clen, out_len;
    clock_t t0;

    chorus_pmd_compressor_init(&c, 6, 15);
    chorus_pmd_inflater_init(&z, 1);
    /* Exactly at the limit is fine, one byte over is not. */
    chorus_pmd_compress(&c, zeros, 100000, &comp, &clen);
    CHECK_EQ_INT(chorus_pmd_inflate(&z, comp, clen, 100000, &out, &out_len), 0);
    CHECK_EQ_INT(out_len, 100000);
    free(out);
    CHECK_EQ_INT(chorus_pmd_inflate(&z, comp, clen, 99999, &out, &out_len),
                 CHORUS_PMD_ERR_TOO_BIG);
    CHECK(out == NULL && out_len == 0);
    /* The inflater is usable again after an error. */
    CHECK_EQ_INT(inflate_is(&z, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7, 5, "Hello"),
                 0);
    CHECK_EQ_INT(inflate_is(&z, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7, 4, NULL),
                 CHORUS_PMD_ERR_TOO_BIG);
    free(comp);
    /* A bomb: 16 MiB of zeros in ~16 KiB stops at the 1 MiB limit. */
    chorus_pmd_compress(&c, zeros, big, &comp, &clen);
    CHECK(clen < big / 500);
    t0 = clock();
    CHECK_EQ_INT(chorus_pmd_inflate(&z, comp, clen, 1 << 20, &out, &out_len),
                 CHORUS_PMD_ERR_TOO_BIG);
    CHECK((double)(clock() - t0) / CLOCKS_PER_SEC < 1.0);
    CHECK_EQ_INT(chorus_pmd_inflate(&z, comp, clen, 0, &out, &out_len), 0);
    CHECK_EQ_INT(out_len, big);
    free(out);
    free(comp);
    CHECK_EQ_INT(chorus_pmd_close_code(CHORUS_PMD_ERR_TOO_BIG), 1009);
    chorus_pmd_compressor_free(&c);
    chorus_pmd_inflater_free(&z);
    free(zeros);
}

static void test_corrupt(void)
{
    chorus_pmd_compressor c;
    chorus_pmd_inflater z;
    uint8_t *json = json_payload(20000), *comp, garbage[512];
    size_t clen;

    chorus_pmd_compressor_init(&c, 6, 15);
    chorus_pmd_inflater_init(&z, 1);
    /* BTYPE 11 is reserved. */
    CHECK_EQ_INT(inflate_is(&z, "\x06\x00", 2, 0, NULL),
                 CHORUS_PMD_ERR_CORRUPT);
    /* Stored block whose NLEN is not the complement of LEN. */
    CHECK_EQ_INT(inflate_is(&z,
                            "\x00\x05\x00\x00\x00"
                            "Hello",
                            10, 0, NULL),
                 CHORUS_PMD_ERR_CORRUPT);
    /* A message cut inside a block. */
    chorus_pmd_compress(&c, json, 20000, &comp, &clen);
    CHECK_EQ_INT(inflate_is(&z, (const char *)comp, clen / 2, 0, NULL),
                 CHORUS_PMD_ERR_CORRUPT);
    /* Whole, it still inflates: the failed message left no state. */
    CHECK_EQ_INT(inflate_is(&z, (const char *)comp, clen, 0, NULL), 0);
    free(json);
    free(comp);
    /* Random bytes: every outcome must be clean (mostly CORRUPT). */
    for (int round = 0, corrupt = 0; round < 200; round++) {
        uint8_t *out;
        size_t out_len, n = 1 + rng() % sizeof garbage;
        int rc;
        for (size_t i = 0; i < n; i++)
            garbage[i] = (uint8_t)rng();
        rc = chorus_pmd_inflate(&z, garbage, n, 1 << 16, &out, &out_len);
        CHECK(rc == 0 || rc == CHORUS_PMD_ERR_CORRUPT ||
              rc == CHORUS_PMD_ERR_TOO_BIG);
        corrupt += rc == CHORUS_PMD_ERR_CORRUPT;
        free(out);
        if (round == 199)
            CHECK(corrupt > 150);
    }
    CHECK_EQ_INT(chorus_pmd_close_code(CHORUS_PMD_ERR_CORRUPT), 1007);
    CHECK_EQ_INT(chorus_pmd_close_code(CHORUS_PMD_ERR_NOMEM), 1011);
    chorus_pmd_compressor_free(&c);
    chorus_pmd_inflater_free(&z);
}

/* ---- decoder RSV1 -------------------------------------------------------- */

static const uint8_t KEY[4] = {0x11, 0x22, 0x33, 0x44};

/* Appends a masked client frame; rsv into bits 4-6. */
static size_t put_frame(uint8_t *out, int fin, int rsv, int opcode,
                        const void *payload, size_t n)
{
    size_t h = chorus_ws_write_header(out, fin, opcode, n, KEY);

    out[0] |= (uint8_t)(rsv << 4);
    if (n)
        memcpy(out + h, payload, n);
    chorus_ws_mask(out + h, n, KEY, 0);
    return h + n;
}

/* Decodes buf in steps of `step` bytes; logs "D<compressed><fin>:<len>;"
 * per DATA chunk (lengths summed per frame when step is large),
 * "C<op>;" per control frame and "E<code>:<reason>;" on error. Compressed
 * payload is gathered into msg. */
typedef struct run {
    char log[512];
    uint8_t msg[4096];
    size_t msglen;
    int chunks_compressed, chunks_plain;
} run;

static void decode_all(chorus_ws_decoder *d, uint8_t *buf, size_t len,
                       size_t step, run *r)
{
    uint8_t pend[8192];
    size_t plen = 0, off = 0;

    memset(r, 0, sizeof(*r));
    while (off < len || plen) {
        size_t take = len - off < step ? len - off : step, used;
        chorus_ws_event ev;
        int progressed = 0;

        memcpy(pend + plen, buf + off, take);
        plen += take;
        off += take;
        for (;;) {
            size_t l = strlen(r->log);
            chorus_ws_decode(d, pend, plen, &used, &ev);
            if (ev.type == CHORUS_WS_EV_DATA) {
                memcpy(r->msg + r->msglen, ev.data, ev.len);
                r->msglen += ev.len;
            }
            memmove(pend, pend + used, plen - used);
            plen -= used;
            if (ev.type == CHORUS_WS_EV_NEED_MORE)
                break;
            progressed = 1;
            if (ev.type == CHORUS_WS_EV_ERROR) {
                snprintf(r->log + l, sizeof r->log - l, "E%u:%s;",
                         ev.close_code, ev.reason);
                return;
            }
            if (ev.type == CHORUS_WS_EV_CONTROL) {
                snprintf(r->log + l, sizeof r->log - l, "C%d;", ev.opcode);
                continue;
            }
            if (ev.compressed)
                r->chunks_compressed++;
            else
                r->chunks_plain++;
            if (ev.fin)
                snprintf(r->log + l, sizeof r->log - l, "M%d%d:%zu;", ev.opcode,
                         ev.compressed, r->msglen);
        }
        if (!progressed && off == len)
            break;
    }
}

static void test_decoder_rsv1(void)
{
    chorus_ws_decoder d;
    uint8_t b[4096];
    const char *hello = "\xf2\x48\xcd\xc9\xc9\x07\x00"; /* not UTF-8 */
    size_t n;
    run r;

    /* Off by default. */
    chorus_ws_decoder_init(&d, CHORUS_WS_SERVER, 0);
    CHECK_EQ_INT(d.allow_rsv1, 0);
    n = put_frame(b, 1, 4, CHORUS_WS_OP_TEXT, hello, 7);
    decode_all(&d, b, n, n, &r);
    CHECK_EQ_STR(r.log, "E1002:reserved bits set;");

    /* Allowed: the compressed TEXT message skips the UTF-8 check. */
    for (size_t step = 1; step <= 64; step *= 4) {
        chorus_ws_decoder_init(&d, CHORUS_WS_SERVER, 0);
        d.allow_rsv1 = 1;
        n = put_frame(b, 1, 4, CHORUS_WS_OP_TEXT, hello, 7);
        n += put_frame(b + n, 1, 0, CHORUS_WS_OP_TEXT, "ok", 2);
        decode_all(&d, b, n, step, &r);
        CHECK_EQ_STR(r.log, "M11:7;M10:9;");
        CHECK(memcmp(r.msg, hello, 7) == 0);
    }

    /* Fragmented: RSV1 on the first frame only; every chunk of the
     * message says compressed, also across an interleaved ping. */
    chorus_ws_decoder_init(&d, CHORUS_WS_SERVER, 0);
    d.allow_rsv1 = 1;
    n = put_frame(b, 0, 4, CHORUS_WS_OP_BINARY, hello, 3);
    n += put_frame(b + n, 1, 0, CHORUS_WS_OP_PING, "", 0);
    n += put_frame(b + n, 0, 0, CHORUS_WS_OP_CONT, hello + 3, 2);
    n += put_frame(b + n, 1, 0, CHORUS_WS_OP_CONT, hello + 5, 2);
    decode_all(&d, b, n, 1, &r);
    CHECK_EQ_STR(r.log, "C9;M21:7;");
    CHECK_EQ_INT(r.chunks_plain, 0);
    CHECK(r.chunks_compressed >= 3);

    /* An uncompressed message after a compressed one is checked again. */
    chorus_ws_decoder_init(&d, CHORUS_WS_SERVER, 0);
    d.allow_rsv1 = 1;
    n = put_frame(b, 1, 4, CHORUS_WS_OP_TEXT, hello, 7);
    n += put_frame(b + n, 1, 0, CHORUS_WS_OP_TEXT, hello, 7);
    decode_all(&d, b, n, n, &r);
    CHECK_EQ_STR(r.log, "M11:7;E1007:invalid utf-8;");

    /* RSV1 on a continuation frame. */
    chorus_ws_decoder_init(&d, CHORUS_WS_SERVER, 0);
    d.allow_rsv1 = 1;
    n = put_frame(b, 0, 4, CHORUS_WS_OP_TEXT, hello, 3);
    n += put_frame(b + n, 1, 4, CHORUS_WS_OP_CONT, hello + 3, 4);
    decode_all(&d, b, n, n, &r);
    CHECK_EQ_STR(r.log, "E1002:rsv1 on continuation frame;");
    chorus_ws_decoder_init(&d, CHORUS_WS_SERVER, 0);
    d.allow_rsv1 = 1;
    n = put_frame(b, 0, 0, CHORUS_WS_OP_TEXT, "a", 1);
    n += put_frame(b + n, 1, 4, CHORUS_WS_OP_CONT, "b", 1);
    decode_all(&d, b, n, n, &r);
    CHECK_EQ_STR(r.log, "E1002:rsv1 on continuation frame;");

    /* RSV1 on control frames. */
    for (int op = CHORUS_WS_OP_CLOSE; op <= CHORUS_WS_OP_PONG; op++) {
        chorus_ws_decoder_init(&d, CHORUS_WS_SERVER, 0);
        d.allow_rsv1 = 1;
        n = put_frame(b, 1, 4, op, "", 0);
        decode_all(&d, b, n, n, &r);
        CHECK_EQ_STR(r.log, "E1002:rsv1 on control frame;");
    }

    /* RSV2 and RSV3 stay reserved. */
    for (int rsv = 1; rsv < 8; rsv++) {
        if (rsv == 4)
            continue;
        chorus_ws_decoder_init(&d, CHORUS_WS_SERVER, 0);
        d.allow_rsv1 = 1;
        n = put_frame(b, 1, rsv, CHORUS_WS_OP_TEXT, "x", 1);
        decode_all(&d, b, n, n, &r);
        CHECK_EQ_STR(r.log, "E1002:reserved bits set;");
    }

    /* max_message counts compressed bytes on the wire. */
    chorus_ws_decoder_init(&d, CHORUS_WS_SERVER, 6);
    d.allow_rsv1 = 1;
    n = put_frame(b, 1, 4, CHORUS_WS_OP_TEXT, hello, 7);
    decode_all(&d, b, n, n, &r);
    CHECK_EQ_STR(r.log, "E1009:message too big;");
}

/* Encoder: RSV1 header, then compress -> frame -> decode -> inflate, in
 * the client role too (unmasked server frames). */
static void test_pipeline(void)
{
    chorus_pmd_compressor c;
    chorus_pmd_inflater z;
    chorus_ws_decoder d;
    uint8_t hdr[CHORUS_WS_MAX_HEADER], b[4096], *comp, *out;
    uint8_t *json = json_payload(3000);
    size_t h, clen, out_len;
    run r;

    h = chorus_ws_write_header_rsv1(hdr, 1, CHORUS_WS_OP_TEXT, 5, NULL);
    CHECK(h == 2 && hdr[0] == 0xC1 && hdr[1] == 5);
    h = chorus_ws_write_header_rsv1(hdr, 0, CHORUS_WS_OP_BINARY, 300, KEY);
    CHECK(h == 8 && hdr[0] == 0x42 && hdr[1] == (0x80 | 126));

    chorus_pmd_compressor_init(&c, 6, 15);
    chorus_pmd_inflater_init(&z, 1);
    chorus_pmd_compress(&c, json, 3000, &comp, &clen);
    CHECK(clen < 1500);
    h = chorus_ws_write_header_rsv1(b, 1, CHORUS_WS_OP_TEXT, clen, NULL);
    memcpy(b + h, comp, clen);
    chorus_ws_decoder_init(&d, CHORUS_WS_CLIENT, 0);
    d.allow_rsv1 = 1;
    decode_all(&d, b, h + clen, 100, &r);
    CHECK_EQ_INT(r.chunks_plain, 0);
    CHECK_EQ_INT(r.msglen, clen);
    CHECK_EQ_INT(chorus_pmd_inflate(&z, r.msg, r.msglen, 3000, &out, &out_len),
                 0);
    CHECK(out_len == 3000 && memcmp(out, json, 3000) == 0);
    CHECK(chorus_utf8_valid(out, out_len));
    free(out);
    free(comp);
    free(json);
    chorus_pmd_compressor_free(&c);
    chorus_pmd_inflater_free(&z);
}

/* ---- measurement (printed, not asserted) --------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void measure(void)
{
    const size_t n = 100 * 1000;
    uint8_t *json = json_payload(n);
    static const int levels[] = {1, 6, 9};

    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        chorus_pmd_compressor c;
        chorus_pmd_inflater z;
        uint8_t *comp = NULL, *out = NULL;
        size_t clen = 0, out_len = 0;
        int iters = 50;
        double t0, tc, ti;

        chorus_pmd_compressor_init(&c, levels[i], 15);
        chorus_pmd_inflater_init(&z, 1);
        t0 = now_s();
        for (int k = 0; k < iters; k++) {
            free(comp);
            chorus_pmd_compress(&c, json, n, &comp, &clen);
        }
        tc = (now_s() - t0) / iters;
        t0 = now_s();
        for (int k = 0; k < iters; k++) {
            free(out);
            chorus_pmd_inflate(&z, comp, clen, n, &out, &out_len);
        }
        ti = (now_s() - t0) / iters;
        printf("measure: 100 KB JSON, level %d: %zu -> %zu bytes "
               "(%.1f%%), compress %.3f ms (%.0f MB/s), inflate %.3f ms\n",
               levels[i], n, clen, 100.0 * (double)clen / (double)n, tc * 1e3,
               (double)n / tc / 1e6, ti * 1e3);
        free(comp);
        free(out);
        chorus_pmd_compressor_free(&c);
        chorus_pmd_inflater_free(&z);
    }
    free(json);
}

int main(void)
{
    test_negotiate_accepts();
    test_negotiate_declines();
    test_negotiate_malformed();
    test_round_trips();
    test_rfc_examples();
    test_takeover_after_final();
    test_max_out();
    test_corrupt();
    test_decoder_rsv1();
    test_pipeline();
    measure();
    return check_report("test_deflate");
}
