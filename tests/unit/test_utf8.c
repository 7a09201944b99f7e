/* Unit tests for lib/utf8.c: Markus Kuhn's stress test categories, exact
 * fail-fast positions, split feeding, the ASCII fast path, and an
 * exhaustive comparison with a simple reference for short strings. */
#include "chorus/utf8.h"

#include "check.h"

#include <stdint.h>
#include <string.h>

/* Feeds one byte at a time; returns the index of the byte at which the
 * validator failed, or -1 if it never did. *complete gets the end state. */
static long fail_pos(const uint8_t *p, size_t n, int *complete)
{
    chorus_utf8 v;

    chorus_utf8_init(&v);
    for (size_t i = 0; i < n; i++) {
        if (chorus_utf8_feed(&v, p + i, 1) != 0) {
            if (complete)
                *complete = 0;
            return (long)i;
        }
    }
    if (complete)
        *complete = chorus_utf8_complete(&v);
    return -1;
}

#define BYTES(...) ((const uint8_t[]){__VA_ARGS__})
#define NB(...) sizeof((const uint8_t[]){__VA_ARGS__})
/* Expect the whole sequence valid and complete. */
#define VALID(...)                                                            \
    do {                                                                      \
        int c_ = 0;                                                           \
        CHECK_EQ_INT(fail_pos(BYTES(__VA_ARGS__), NB(__VA_ARGS__), &c_), -1); \
        CHECK_EQ_INT(c_, 1);                                                  \
        CHECK_EQ_INT(chorus_utf8_valid(BYTES(__VA_ARGS__), NB(__VA_ARGS__)),  \
                     1);                                                      \
    } while (0)
/* Expect failure exactly at byte index pos. */
#define FAILS_AT(pos, ...)                                                   \
    do {                                                                     \
        CHECK_EQ_INT(fail_pos(BYTES(__VA_ARGS__), NB(__VA_ARGS__), NULL),    \
                     pos);                                                   \
        CHECK_EQ_INT(chorus_utf8_valid(BYTES(__VA_ARGS__), NB(__VA_ARGS__)), \
                     0);                                                     \
    } while (0)
/* Expect a valid prefix that does not end on a character boundary. */
#define TRUNCATED(...)                                                        \
    do {                                                                      \
        int c_ = 1;                                                           \
        CHECK_EQ_INT(fail_pos(BYTES(__VA_ARGS__), NB(__VA_ARGS__), &c_), -1); \
        CHECK_EQ_INT(c_, 0);                                                  \
        CHECK_EQ_INT(chorus_utf8_valid(BYTES(__VA_ARGS__), NB(__VA_ARGS__)),  \
                     0);                                                      \
    } while (0)

static void test_kuhn_correct_and_boundaries(void)
{
    /* 1: kosme */
    VALID(0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5);
    /* 2.1 first possible sequence of each length */
    VALID(0x00);
    VALID(0xC2, 0x80);
    VALID(0xE0, 0xA0, 0x80);
    VALID(0xF0, 0x90, 0x80, 0x80);
    FAILS_AT(0, 0xF8, 0x88, 0x80, 0x80, 0x80);       /* 5 bytes */
    FAILS_AT(0, 0xFC, 0x84, 0x80, 0x80, 0x80, 0x80); /* 6 bytes */
    /* 2.2 last possible sequence of each length */
    VALID(0x7F);
    VALID(0xDF, 0xBF);
    VALID(0xEF, 0xBF, 0xBF);
    FAILS_AT(0, 0xF7, 0xBF, 0xBF, 0xBF); /* U+1FFFFF */
    FAILS_AT(0, 0xFB, 0xBF, 0xBF, 0xBF, 0xBF);
    FAILS_AT(0, 0xFD, 0xBF, 0xBF, 0xBF, 0xBF, 0xBF);
    /* 2.3 other boundary conditions */
    VALID(0xED, 0x9F, 0xBF);             /* U+D7FF */
    VALID(0xEE, 0x80, 0x80);             /* U+E000 */
    VALID(0xEF, 0xBF, 0xBD);             /* U+FFFD */
    VALID(0xF4, 0x8F, 0xBF, 0xBF);       /* U+10FFFF */
    FAILS_AT(1, 0xF4, 0x90, 0x80, 0x80); /* U+110000 */
    /* Noncharacters are valid UTF-8 (5.3). */
    VALID(0xEF, 0xBF, 0xBE);
    VALID(0xEF, 0xBF, 0xBF);
    VALID(0xEF, 0xB7, 0x90);
    VALID(0xF4, 0x8F, 0xBF, 0xBE);
}

static void test_kuhn_malformed(void)
{
    /* 3.1 unexpected continuation bytes */
    FAILS_AT(0, 0x80);
    FAILS_AT(0, 0xBF);
    FAILS_AT(0, 0x80, 0xBF);
    FAILS_AT(2, 'a', 'b', 0x80, 'c');
    FAILS_AT(2, 0xC2, 0x80, 0x80); /* one continuation too many */
    for (unsigned b = 0x80; b <= 0xBF; b++) {
        uint8_t s[1] = {(uint8_t)b};
        CHECK_EQ_INT(fail_pos(s, 1, NULL), 0);
    }
    /* 3.2 lonely start characters followed by a space */
    for (unsigned b = 0xC2; b <= 0xF4; b++) {
        uint8_t s[2] = {(uint8_t)b, 0x20};
        CHECK_EQ_INT(fail_pos(s, 2, NULL), 1);
    }
    FAILS_AT(0, 0xC0, 0x20);
    FAILS_AT(0, 0xC1, 0x20);
    for (unsigned b = 0xF5; b <= 0xFF; b++) {
        uint8_t s[2] = {(uint8_t)b, 0x20};
        CHECK_EQ_INT(fail_pos(s, 2, NULL), 0);
    }
    /* 3.3 sequences with the last continuation byte missing */
    TRUNCATED(0xC2);
    TRUNCATED(0xDF);
    TRUNCATED(0xE0, 0xA0);
    TRUNCATED(0xE1);
    TRUNCATED(0xEF, 0xBF);
    TRUNCATED(0xF0, 0x90, 0x80);
    TRUNCATED(0xF4, 0x8F, 0xBF);
    TRUNCATED(0xF1);
    TRUNCATED('a', 0xE1, 0x80);
    /* 3.4 concatenation of incomplete sequences */
    FAILS_AT(1, 0xC2, 0xE0, 0xA0);
    FAILS_AT(2, 0xE1, 0x80, 0xF0, 0x90, 0x80);
    /* 3.5 impossible bytes */
    FAILS_AT(0, 0xFE);
    FAILS_AT(0, 0xFF);
    FAILS_AT(0, 0xFE, 0xFE, 0xFF, 0xFF);
}

static void test_kuhn_overlong(void)
{
    /* 4.1 overlong '/' */
    FAILS_AT(0, 0xC0, 0xAF);
    FAILS_AT(1, 0xE0, 0x80, 0xAF);
    FAILS_AT(1, 0xF0, 0x80, 0x80, 0xAF);
    FAILS_AT(0, 0xF8, 0x80, 0x80, 0x80, 0xAF);
    FAILS_AT(0, 0xFC, 0x80, 0x80, 0x80, 0x80, 0xAF);
    /* 4.2 maximum overlong sequences */
    FAILS_AT(0, 0xC1, 0xBF);
    FAILS_AT(1, 0xE0, 0x9F, 0xBF);
    FAILS_AT(1, 0xF0, 0x8F, 0xBF, 0xBF);
    FAILS_AT(0, 0xF8, 0x87, 0xBF, 0xBF, 0xBF);
    FAILS_AT(0, 0xFC, 0x83, 0xBF, 0xBF, 0xBF, 0xBF);
    /* 4.3 overlong NUL */
    FAILS_AT(0, 0xC0, 0x80);
    FAILS_AT(1, 0xE0, 0x80, 0x80);
    FAILS_AT(1, 0xF0, 0x80, 0x80, 0x80);
    FAILS_AT(0, 0xF8, 0x80, 0x80, 0x80, 0x80);
    FAILS_AT(0, 0xFC, 0x80, 0x80, 0x80, 0x80, 0x80);
}

static void test_kuhn_surrogates(void)
{
    /* 5.1 single UTF-16 surrogates */
    FAILS_AT(1, 0xED, 0xA0, 0x80);
    FAILS_AT(1, 0xED, 0xAD, 0xBF);
    FAILS_AT(1, 0xED, 0xAE, 0x80);
    FAILS_AT(1, 0xED, 0xAF, 0xBF);
    FAILS_AT(1, 0xED, 0xB0, 0x80);
    FAILS_AT(1, 0xED, 0xBE, 0x80);
    FAILS_AT(1, 0xED, 0xBF, 0xBF);
    /* 5.2 paired surrogates */
    FAILS_AT(1, 0xED, 0xA0, 0x80, 0xED, 0xB0, 0x80);
    FAILS_AT(1, 0xED, 0xAF, 0xBF, 0xED, 0xBF, 0xBF);
    FAILS_AT(4, 'a', 'b', 'c', 0xED, 0xA0, 0x80);
}

static void test_sticky_and_split(void)
{
    const uint8_t ok[] = "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80 world";
    size_t n = sizeof(ok) - 1;
    chorus_utf8 v;

    /* Every two-way split of a valid string is accepted. */
    for (size_t cut = 0; cut <= n; cut++) {
        chorus_utf8_init(&v);
        CHECK_EQ_INT(chorus_utf8_feed(&v, ok, cut), 0);
        CHECK_EQ_INT(chorus_utf8_feed(&v, ok + cut, n - cut), 0);
        CHECK_EQ_INT(chorus_utf8_complete(&v), 1);
    }
    /* Once failed, stays failed even on good input. */
    chorus_utf8_init(&v);
    CHECK_EQ_INT(chorus_utf8_feed(&v, BYTES(0xFF), 1), -1);
    CHECK_EQ_INT(chorus_utf8_feed(&v, BYTES('a'), 1), -1);
    CHECK_EQ_INT(chorus_utf8_feed(&v, BYTES('a'), 0), -1);
    CHECK_EQ_INT(chorus_utf8_complete(&v), 0);
    /* Empty input. */
    chorus_utf8_init(&v);
    CHECK_EQ_INT(chorus_utf8_feed(&v, NULL, 0), 0);
    CHECK_EQ_INT(chorus_utf8_complete(&v), 1);
    CHECK_EQ_INT(chorus_utf8_valid(NULL, 0), 1);
}

/* A bad byte at every offset of a long ASCII run, fed whole, is caught
 * (covers the 8-byte fast path and its tail). */
static void test_ascii_fast_path(void)
{
    uint8_t buf[67];

    for (size_t bad = 0; bad < sizeof(buf); bad++) {
        chorus_utf8 v;
        memset(buf, 'x', sizeof(buf));
        buf[bad] = 0x80;
        CHECK_EQ_INT(chorus_utf8_valid(buf, sizeof(buf)), 0);
        CHECK_EQ_INT(fail_pos(buf, sizeof(buf), NULL), (long)bad);
        /* A 2-byte character there instead is fine. */
        if (bad + 1 < sizeof(buf)) {
            buf[bad] = 0xC3;
            buf[bad + 1] = 0xA9;
            CHECK_EQ_INT(chorus_utf8_valid(buf, sizeof(buf)), 1);
            /* ... but truncated at the end of a chunk it is incomplete. */
            chorus_utf8_init(&v);
            CHECK_EQ_INT(chorus_utf8_feed(&v, buf, bad + 1), 0);
            CHECK_EQ_INT(chorus_utf8_complete(&v), 0);
        }
    }
    memset(buf, 0x7F, sizeof(buf));
    CHECK_EQ_INT(chorus_utf8_valid(buf, sizeof(buf)), 1);
}

/* Reference: is s[0..n) a prefix of some valid UTF-8 string? Decodes whole
 * characters, then judges a trailing partial one by the range of code
 * points its completions could reach. */
static int ref_valid_prefix(const uint8_t *s, size_t n, int *complete)
{
    size_t i = 0;

    while (i < n) {
        uint8_t b = s[i];
        size_t len;
        uint32_t lo, hi, min;
        if (b < 0x80) {
            i++;
            continue;
        }
        if (b >= 0xC0 && b < 0xE0) {
            len = 2, lo = b & 0x1F, min = 0x80;
        } else if (b >= 0xE0 && b < 0xF0) {
            len = 3, lo = b & 0x0F, min = 0x800;
        } else if (b >= 0xF0 && b < 0xF8) {
            len = 4, lo = b & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        hi = lo;
        for (size_t k = 1; k < len; k++) {
            if (i + k < n) {
                if ((s[i + k] & 0xC0) != 0x80)
                    return 0;
                lo = (lo << 6) | (s[i + k] & 0x3F);
                hi = (hi << 6) | (s[i + k] & 0x3F);
            } else {
                lo = lo << 6;
                hi = (hi << 6) | 0x3F;
            }
        }
        if (hi < min || lo > 0x10FFFF || (lo >= 0xD800 && hi <= 0xDFFF))
            return 0;
        if (i + len > n) {
            *complete = 0;
            return 1;
        }
        i += len;
    }
    *complete = 1;
    return 1;
}

/* Fail-fast position predicted by the reference: first k whose prefix
 * s[0..k] is not a valid prefix. */
static long ref_fail_pos(const uint8_t *s, size_t n, int *complete)
{
    for (size_t k = 1; k <= n; k++) {
        if (!ref_valid_prefix(s, k, complete))
            return (long)k - 1;
    }
    if (n == 0)
        *complete = 1;
    return -1;
}

static void compare_with_ref(const uint8_t *s, size_t n, long *mismatches)
{
    int c1 = 0, c2 = 0;
    long p1 = fail_pos(s, n, &c1), p2 = ref_fail_pos(s, n, &c2);

    if (p1 != p2 || (p1 < 0 && c1 != c2) ||
        chorus_utf8_valid(s, n) != (p2 < 0 && c2)) {
        if (*mismatches < 5)
            fprintf(stderr, "mismatch n=%zu %02X %02X %02X %02X\n", n, s[0],
                    n > 1 ? s[1] : 0, n > 2 ? s[2] : 0, n > 3 ? s[3] : 0);
        (*mismatches)++;
    }
}

static void test_exhaustive_vs_reference(void)
{
    static const uint8_t interesting[] = {
        0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0,
        0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0,
        0xF1, 0xF3, 0xF4, 0xF5, 0xF7, 0xF8, 0xFC, 0xFE, 0xFF,
    };
    size_t ni = sizeof(interesting);
    long mismatches = 0;
    uint8_t s[4];

    /* All 1- and 2-byte strings. */
    for (unsigned a = 0; a < 256; a++) {
        s[0] = (uint8_t)a;
        compare_with_ref(s, 1, &mismatches);
        for (unsigned b = 0; b < 256; b++) {
            s[1] = (uint8_t)b;
            compare_with_ref(s, 2, &mismatches);
        }
    }
    /* All 3-byte strings with a non-ASCII lead (ASCII leads add nothing
     * beyond the 2-byte cases), third byte from a spread of values. */
    for (unsigned a = 0x80; a < 256; a++)
        for (unsigned b = 0; b < 256; b++)
            for (size_t c = 0; c < ni; c++) {
                s[0] = (uint8_t)a, s[1] = (uint8_t)b, s[2] = interesting[c];
                compare_with_ref(s, 3, &mismatches);
            }
    /* 4-byte strings over the interesting values. */
    for (size_t a = 0; a < ni; a++)
        for (size_t b = 0; b < ni; b++)
            for (size_t c = 0; c < ni; c++)
                for (size_t e = 0; e < ni; e++) {
                    s[0] = interesting[a], s[1] = interesting[b];
                    s[2] = interesting[c], s[3] = interesting[e];
                    compare_with_ref(s, 4, &mismatches);
                }
    CHECK_EQ_INT(mismatches, 0);
}

int main(void)
{
    test_kuhn_correct_and_boundaries();
    test_kuhn_malformed();
    test_kuhn_overlong();
    test_kuhn_surrogates();
    test_sticky_and_split();
    test_ascii_fast_path();
    test_exhaustive_vs_reference();
    return check_report("test_utf8");
}
