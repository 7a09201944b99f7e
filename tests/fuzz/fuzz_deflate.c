/* libFuzzer target for permessage-deflate (lib/deflate.c): the inflater
 * that reads clients' compressed messages, the compressor, and the
 * Sec-WebSocket-Extensions offer parser.
 *
 * Input: byte 0 holds the options (bit 0 no_context_takeover, bits 1-2
 * the inflated-size limit, bits 3-5 the compressor's window bits, bit 6
 * also parse the rest as an offer, bit 7 the compression level); the rest
 * is a series of messages, each a 2-byte big-endian length and its bytes
 * (the last one takes what remains). The target checks:
 *   - inflate answers OK, TOO_BIG, CORRUPT (or NOMEM), never more than the
 *     limit, and nothing on error;
 *   - without context takeover, a shared inflater (as one loop's) gives
 *     exactly what a fresh one gives for each message;
 *   - what was inflated, compressed again and inflated, is unchanged; so
 *     is each raw message compressed and inflated;
 *   - an accepted offer yields a response that is itself an acceptable
 *     offer with the same parameters and response. */
#include <string.h>

#include "chorus/deflate.h"
#include "fuzz.h"

static const size_t limits[4] = {125, 4096, 65536, 1u << 20};

static int known_rc(int rc)
{
    return rc == CHORUS_PMD_OK || rc == CHORUS_PMD_ERR_TOO_BIG ||
           rc == CHORUS_PMD_ERR_CORRUPT || rc == CHORUS_PMD_ERR_NOMEM;
}

/* Inflates with a fresh no-context inflater. */
static int inflate_fresh(const uint8_t *in, size_t len, size_t max,
                         uint8_t **out, size_t *out_len)
{
    chorus_pmd_inflater z;
    int rc;

    FUZZ_ASSERT(chorus_pmd_inflater_init(&z, 1) == CHORUS_PMD_OK);
    rc = chorus_pmd_inflate(&z, in, len, max, out, out_len);
    chorus_pmd_inflater_free(&z);
    return rc;
}

/* Compresses data and checks that it inflates back to the same bytes. */
static void check_round_trip(chorus_pmd_compressor *zc, const uint8_t *data,
                             size_t len)
{
    uint8_t *packed, *back;
    size_t packed_len, back_len;

    FUZZ_ASSERT(chorus_pmd_compress(zc, data, len, &packed, &packed_len) ==
                CHORUS_PMD_OK);
    FUZZ_ASSERT(packed && packed_len > 0);
    FUZZ_ASSERT(inflate_fresh(packed, packed_len, len, &back, &back_len) ==
                CHORUS_PMD_OK);
    FUZZ_ASSERT(back_len == len && (len == 0 || memcmp(back, data, len) == 0));
    free(back);
    free(packed);
}

static void check_message(chorus_pmd_inflater *shared, int no_ctx,
                          chorus_pmd_compressor *zc, const uint8_t *msg,
                          size_t len, size_t max)
{
    uint8_t *out, *out2;
    size_t out_len, out2_len;
    int rc = chorus_pmd_inflate(shared, msg, len, max, &out, &out_len);

    FUZZ_ASSERT(known_rc(rc));
    if (rc != CHORUS_PMD_OK)
        FUZZ_ASSERT(out == NULL && out_len == 0);
    else
        FUZZ_ASSERT(out_len <= max && (out != NULL || out_len == 0));
    if (no_ctx) {
        int rc2 = inflate_fresh(msg, len, max, &out2, &out2_len);
        FUZZ_ASSERT(rc2 == rc && out2_len == out_len);
        FUZZ_ASSERT(out_len == 0 || memcmp(out, out2, out_len) == 0);
        free(out2);
    }
    if (rc == CHORUS_PMD_OK)
        check_round_trip(zc, out, out_len);
    free(out);
    check_round_trip(zc, msg, len);
}

static void check_offer(const char *hdr, size_t len)
{
    chorus_pmd_params p, p2;
    char resp[CHORUS_PMD_RESPONSE_MAX], resp2[CHORUS_PMD_RESPONSE_MAX];
    int rc = chorus_pmd_negotiate(hdr, len, &p, resp, sizeof resp);

    FUZZ_ASSERT(rc >= -1 && rc <= 1);
    if (rc != 1) {
        FUZZ_ASSERT(resp[0] == '\0');
        return;
    }
    FUZZ_ASSERT(strncmp(resp, "permessage-deflate", 18) == 0);
    FUZZ_ASSERT(p.server_no_context_takeover && p.client_no_context_takeover);
    FUZZ_ASSERT(p.server_max_window_bits >= 9 &&
                p.server_max_window_bits <= 15);
    FUZZ_ASSERT(p.client_max_window_bits >= 8 &&
                p.client_max_window_bits <= 15);
    FUZZ_ASSERT(chorus_pmd_negotiate(resp, strlen(resp), &p2, resp2,
                                     sizeof resp2) == 1);
    FUZZ_ASSERT(memcmp(&p, &p2, sizeof p) == 0 && strcmp(resp, resp2) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    chorus_pmd_inflater shared;
    chorus_pmd_compressor zc;
    int no_ctx, bits, level;
    size_t max;

    if (size < 1)
        return 0;
    no_ctx = data[0] & 1;
    max = limits[(data[0] >> 1) & 3];
    bits = 9 + ((data[0] >> 3) & 7);
    if (bits > 15)
        bits = 15;
    level = (data[0] & 0x80) ? 1 : Z_DEFAULT_COMPRESSION;
    if (data[0] & 0x40)
        check_offer((const char *)data + 1, size - 1);
    FUZZ_ASSERT(chorus_pmd_inflater_init(&shared, no_ctx) == CHORUS_PMD_OK);
    FUZZ_ASSERT(chorus_pmd_compressor_init(&zc, level, bits) == CHORUS_PMD_OK);
    for (size_t off = 1; off < size;) {
        size_t len = size - off;
        if (len >= 2) {
            size_t want = (size_t)data[off] << 8 | data[off + 1];
            off += 2;
            len = want < size - off ? want : size - off;
        }
        check_message(&shared, no_ctx, &zc, data + off, len, max);
        off += len;
    }
    chorus_pmd_compressor_free(&zc);
    chorus_pmd_inflater_free(&shared);
    return 0;
}
