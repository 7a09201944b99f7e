/* Unit tests for broker/store/sqlite/history_batch.c: the record batch codec.
 * Round trips (timestamps going back, empty and large data), and every way a
 * blob can be damaged: truncated anywhere, wrong version, wrong count,
 * trailing bytes, a length past the end, an over-long varint. A damaged
 * blob must be reported, never read past (ASan checks the latter). */
#include "history_batch.h"

#include "check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Decodes the whole blob: the number of messages, or -1 when malformed. */
static int decode_all(const void *blob, size_t len, uint64_t count)
{
    history_batch_reader r;
    const char *data;
    size_t dlen;
    int64_t ts;
    int n = 0, rc;

    if (history_batch_open(&r, blob, len, count) != 0)
        return -1;
    while ((rc = history_batch_next(&r, &ts, &data, &dlen)) > 0)
        n++;
    return rc < 0 ? -1 : n;
}

/* Decodes into a heap copy of exactly len bytes, so that ASan sees any
 * read past the end. */
static int decode_copy(const unsigned char *blob, size_t len, uint64_t count)
{
    unsigned char *p = malloc(len ? len : 1);
    int n;

    memcpy(p, blob, len);
    n = decode_all(p, len, count);
    free(p);
    return n;
}

static void test_round_trip(void)
{
    static const int64_t ts[] = {1764000000123, 1764000000100, 0, -5, INT64_MAX,
                                 INT64_MIN,     1764000000200};
    history_batch b = {0};
    history_batch_reader r;
    const unsigned char *blob;
    const char *data;
    char big[5000];
    size_t len, dlen, i;
    int64_t t;

    memset(big, 'x', sizeof big);
    for (int round = 0; round < 2; round++) { /* the buffer is reused */
        history_batch_reset(&b);
        for (i = 0; i < sizeof ts / sizeof ts[0]; i++)
            CHECK_EQ_INT(history_batch_add(&b, ts[i], big, i * 700), 0);
        CHECK_EQ_INT(b.max_ts, INT64_MAX);
        blob = history_batch_finish(&b, &len);
        CHECK_EQ_INT(blob[0], HISTORY_BATCH_VERSION);
        CHECK_EQ_INT(history_batch_open(&r, blob, len, 7), 0);
        for (i = 0; i < 7; i++) {
            CHECK_EQ_INT(history_batch_next(&r, &t, &data, &dlen), 1);
            CHECK_EQ_INT(t, ts[i]);
            CHECK_EQ_INT(dlen, i * 700);
            CHECK(dlen == 0 || memcmp(data, big, dlen) == 0);
        }
        CHECK_EQ_INT(history_batch_next(&r, &t, &data, &dlen), 0);
        CHECK_EQ_INT(history_batch_next(&r, &t, &data, &dlen), 0);
    }
    /* one small message: version, count, ts, len, data */
    history_batch_reset(&b);
    CHECK_EQ_INT(history_batch_add(&b, 1, "{}", 2), 0);
    blob = history_batch_finish(&b, &len);
    CHECK_EQ_INT(len, 6);
    CHECK(memcmp(blob, "\x01\x01\x02\x02{}", 6) == 0);
    history_batch_free(&b);
}

static void test_damaged(void)
{
    history_batch b = {0};
    const unsigned char *blob;
    unsigned char buf[256];
    size_t len, cut;

    history_batch_reset(&b);
    CHECK_EQ_INT(history_batch_add(&b, 1764000000123, "{\"a\":1}", 7), 0);
    CHECK_EQ_INT(history_batch_add(&b, 1764000000124, "[1,2,3]", 7), 0);
    CHECK_EQ_INT(history_batch_add(&b, 1764000000120, "\"s\"", 3), 0);
    blob = history_batch_finish(&b, &len);
    CHECK(len < sizeof buf);
    memcpy(buf, blob, len);
    CHECK_EQ_INT(decode_copy(buf, len, 3), 3);

    for (cut = 0; cut < len; cut++) /* truncated anywhere */
        CHECK_EQ_INT(decode_copy(buf, cut, 3), -1);
    CHECK_EQ_INT(decode_all(NULL, 0, 3), -1);
    CHECK_EQ_INT(decode_copy(buf, len, 2), -1); /* count differs from row */
    CHECK_EQ_INT(decode_copy(buf, len, 4), -1);
    buf[len] = 0; /* a trailing byte */
    CHECK_EQ_INT(decode_copy(buf, len + 1, 3), -1);
    buf[0] = 2; /* unknown version */
    CHECK_EQ_INT(decode_copy(buf, len, 3), -1);
    buf[0] = HISTORY_BATCH_VERSION;
    buf[1] = 0; /* zero messages */
    CHECK_EQ_INT(decode_copy(buf, len, 0), -1);
    buf[1] = 3;
    /* the first length (byte 2 + 6 ts bytes) claims more than is left */
    CHECK_EQ_INT(buf[8], 7);
    buf[8] = 0x7f;
    CHECK_EQ_INT(decode_copy(buf, len, 3), -1);
    /* a varint of 11 bytes, and one of 10 whose last byte overflows */
    memcpy(buf, "\x01\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x00", 14);
    CHECK_EQ_INT(decode_copy(buf, 14, 1), -1);
    memcpy(buf, "\x01\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02\x00", 13);
    CHECK_EQ_INT(decode_copy(buf, 13, 1), -1);
    /* the largest 10-byte varint is fine (ts delta -2^63 from 0) */
    memcpy(buf, "\x01\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x00", 13);
    CHECK_EQ_INT(decode_copy(buf, 13, 1), 1);
    /* a length near 2^64 must not wrap the bounds check */
    memcpy(buf, "\x01\x01\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01x", 14);
    CHECK_EQ_INT(decode_copy(buf, 14, 1), -1);
    history_batch_free(&b);
}

/* Random bytes never crash the decoder (and ASan sees no stray read). */
static void test_noise(void)
{
    unsigned char buf[64];
    unsigned seed = 12345;

    for (int i = 0; i < 20000; i++) {
        size_t len = (size_t)(i % (int)sizeof buf);
        for (size_t j = 0; j < len; j++) {
            seed = seed * 1103515245u + 12345u;
            buf[j] = (unsigned char)(seed >> 16);
        }
        if (len)
            buf[0] = HISTORY_BATCH_VERSION;
        (void)decode_copy(buf, len, (uint64_t)(i % 4) + 1);
    }
    CHECK(1);
}

int main(void)
{
    test_round_trip();
    test_damaged();
    test_noise();
    return check_report("test_history_batch");
}
