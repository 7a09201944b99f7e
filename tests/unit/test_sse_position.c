/* broker/http/sse_position.c: "<epoch>:<offset>" from Last-Event-ID or
 * ?since=. What is taken (leading zeros, 0, UINT64_MAX), what is refused
 * (empty, no colon, a bad epoch, signs, spaces, non-digits, a value past
 * UINT64_MAX, a NUL anywhere), that the length and not a NUL ends the
 * input, and that a refusal leaves the outputs untouched. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "sse_position.h"

#define EPOCH "0123456789abcdef0123456789abcdef"

static const char untouched[] = "untouched";
#define UNTOUCHED_OFFSET 77u

static int parse_n(const char *text, size_t len, char *epoch, uint64_t *off)
{
    memset(epoch, 0, CHORUS_EPOCH_LEN + 1);
    memcpy(epoch, untouched, sizeof untouched);
    *off = UNTOUCHED_OFFSET;
    return sse_position_parse(text, len, epoch, off);
}

/* text is taken, with the epoch of its first 32 characters and want. */
static void check_taken(const char *text, uint64_t want)
{
    char epoch[CHORUS_EPOCH_LEN + 1];
    uint64_t off;
    int rc = parse_n(text, strlen(text), epoch, &off);

    CHECK_EQ_INT(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "  refused: \"%s\"\n", text);
        return;
    }
    CHECK(strncmp(epoch, text, CHORUS_EPOCH_LEN) == 0);
    CHECK_EQ_INT(strlen(epoch), CHORUS_EPOCH_LEN);
    CHECK(off == want);
}

/* text[0..len) is refused and the outputs are as they were. */
static void check_refused_n(const char *text, size_t len)
{
    char epoch[CHORUS_EPOCH_LEN + 1];
    uint64_t off;
    int rc = parse_n(text, len, epoch, &off);

    CHECK_EQ_INT(rc, -1);
    if (rc != -1)
        fprintf(stderr, "  taken: \"%.*s\"\n", (int)len, text);
    CHECK_EQ_STR(epoch, untouched);
    CHECK_EQ_INT(off, UNTOUCHED_OFFSET);
}

static void check_refused(const char *text)
{
    check_refused_n(text, strlen(text));
}

static void test_valid(void)
{
    check_taken(EPOCH ":0", 0);
    check_taken(EPOCH ":1", 1);
    check_taken(EPOCH ":42", 42);
    check_taken(EPOCH ":0042", 42); /* leading zeros, as before */
    check_taken(EPOCH ":000000000000000000000000000000000000000000000001", 1);
    check_taken("ffffffffffffffffffffffffffffffff:7", 7);
    check_taken("00000000000000000000000000000000:7", 7);
}

static void test_limits(void)
{
    check_taken(EPOCH ":18446744073709551615", UINT64_MAX);
    check_taken(EPOCH ":018446744073709551615", UINT64_MAX);
    check_taken(EPOCH ":18446744073709551614", UINT64_MAX - 1);
    check_taken(EPOCH ":9999999999999999999", 9999999999999999999ull);
    /* past UINT64_MAX: refused, not wrapped (strtoull would give MAX) */
    check_refused(EPOCH ":18446744073709551616");
    check_refused(EPOCH ":18446744073709551620");
    check_refused(EPOCH ":19000000000000000000");
    check_refused(EPOCH ":99999999999999999999");
    check_refused(EPOCH ":184467440737095516150");
    check_refused(EPOCH ":36893488147419103232"); /* 2^65: wraps to 0 */
    check_refused(EPOCH ":99999999999999999999999999999999999999999");
}

static void test_shape(void)
{
    check_refused("");
    check_refused(":");
    check_refused(":1");
    check_refused(EPOCH);
    check_refused(EPOCH ":");
    check_refused(EPOCH "1"); /* no colon */
    check_refused(EPOCH "::1");
    check_refused(EPOCH ":1:2");
    check_refused("12");
    check_refused("abc:1");
}

static void test_bad_epoch(void)
{
    check_refused("0123456789ABCDEF0123456789abcdef:1"); /* uppercase */
    check_refused("0123456789abcdef0123456789abcdeg:1");
    check_refused("0123456789abcdef0123456789abcde:1");    /* 31 */
    check_refused("0123456789abcdef0123456789abcdef0:1");  /* 33 */
    check_refused("0123456789abcdef:0123456789abcdef0:1"); /* colon in it */
    check_refused(" 123456789abcdef0123456789abcdef:1");
    check_refused("-123456789abcdef0123456789abcdef:1");
}

static void test_bad_offset(void)
{
    check_refused(EPOCH ":+1");
    check_refused(EPOCH ":-1");
    check_refused(EPOCH ":-0");
    check_refused(EPOCH ": 1");
    check_refused(EPOCH ":1 ");
    check_refused(EPOCH ":\t1");
    check_refused(EPOCH ":1\r\n");
    check_refused(EPOCH ":1x");
    check_refused(EPOCH ":x1");
    check_refused(EPOCH ":0x10");
    check_refused(EPOCH ":1e3");
    check_refused(EPOCH ":1.0");
    check_refused(EPOCH ":\xd9\xa1"); /* ARABIC-INDIC DIGIT ONE */
    check_refused(" " EPOCH ":1");
    check_refused(EPOCH ":1,2");
}

/* The input is text and a length: bytes past len are not read, and a
 * NUL inside len is a byte like any other, refused. */
static void test_length_bounded(void)
{
    static const char full[] = EPOCH ":123456";
    char epoch[CHORUS_EPOCH_LEN + 1];
    uint64_t off;

    CHECK_EQ_INT(parse_n(full, sizeof full - 1 - 3, epoch, &off), 0);
    CHECK(off == 123);
    CHECK_EQ_STR(epoch, EPOCH);
    check_refused_n(full, CHORUS_EPOCH_LEN + 1); /* stops at the colon */
    check_refused_n(full, CHORUS_EPOCH_LEN);
    check_refused_n(full, 0);
    check_refused_n(NULL, 0);

    /* Not NUL-terminated: exactly len bytes, the next one unreadable by
     * contract (ASan builds check it). */
    {
        char *exact = malloc(sizeof full - 1);
        memcpy(exact, full, sizeof full - 1);
        CHECK_EQ_INT(parse_n(exact, sizeof full - 1, epoch, &off), 0);
        CHECK(off == 123456);
        free(exact);
    }

    {
        static const char nul_in_offset[] = EPOCH ":12\0"
                                                  "34";
        static const char nul_after_offset[] = EPOCH ":12\0";
        static const char nul_first[] = EPOCH ":\0"
                                              "12";
        static const char nul_in_epoch[] = "0123456789abcdef\0"
                                           "123456789abcdef:1";
        static const char nul_at_colon[] = EPOCH "\0"
                                                 "1";

        check_refused_n(nul_in_offset, sizeof nul_in_offset - 1);
        check_refused_n(nul_after_offset, sizeof nul_after_offset - 1);
        check_refused_n(nul_first, sizeof nul_first - 1);
        check_refused_n(nul_in_epoch, sizeof nul_in_epoch - 1);
        check_refused_n(nul_at_colon, sizeof nul_at_colon - 1);
    }
}

int main(void)
{
    test_valid();
    test_limits();
    test_shape();
    test_bad_epoch();
    test_bad_offset();
    test_length_bounded();
    return check_report("test_sse_position");
}
