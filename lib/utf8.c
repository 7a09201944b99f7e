/* Incremental UTF-8 validator (RFC 3629).
 *
 * A DFA in the style of Bjoern Hoehrmann's decoder: every byte maps to a
 * class, and (state, class) to the next state. The states encode exactly
 * which continuation byte range is allowed next, so the validator fails at
 * the first byte that cannot continue a valid sequence (0xE0 0x80 fails at
 * the 0x80, 0xED 0xA0 at the 0xA0, 0xF4 0x90 at the 0x90) and at once for
 * bytes that can never appear (0xC0, 0xC1, 0xF5..0xFF).
 *
 * ASCII runs, the common case for JSON messages, are checked 8 bytes at a
 * time while the validator sits on a character boundary. */
#include "chorus/utf8.h"

#include <string.h>

/* States are multiples of 16 so that state + class indexes the table. */
enum {
    S_ACCEPT = 0,  /* character boundary */
    S_REJECT = 16, /* sticky failure */
    S_CONT1 = 32,  /* one more 80..BF */
    S_CONT2 = 48,  /* two more 80..BF */
    S_CONT3 = 64,  /* three more 80..BF */
    S_E0 = 80,     /* after E0: A0..BF (no overlongs), then one */
    S_ED = 96,     /* after ED: 80..9F (no surrogates), then one */
    S_F0 = 112,    /* after F0: 90..BF (no overlongs), then two */
    S_F4 = 128,    /* after F4: 80..8F (<= U+10FFFF), then two */
};

/* Byte classes:
 * 0 00..7F   1 80..8F   2 90..9F   3 A0..BF   4 C0 C1 F5..FF (never valid)
 * 5 C2..DF   6 E0       7 E1..EC EE EF        8 ED
 * 9 F0       10 F1..F3  11 F4 */
/* clang-format off */
static const uint8_t byte_class[256] = {
    /* 00..7F */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    /* 80..8F */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /* 90..9F */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    /* A0..BF */
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    /* C0..DF */
    4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
    5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
    /* E0..EF */
    6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 7,
    /* F0..FF */
    9, 10, 10, 10, 11, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
};

/* transition[state + class]; 12 classes per row, padded to 16. */
#define A_ S_ACCEPT
#define X_ S_REJECT
#define C1 S_CONT1
#define C2 S_CONT2
#define C3 S_CONT3
static const uint8_t transition[9 * 16] = {
    /*         00  80  90  A0  inv C2  E0    E1  ED    F0    F1  F4 */
    /* ACC */ A_, X_, X_, X_, X_, C1, S_E0, C2, S_ED, S_F0, C3, S_F4,
              X_, X_, X_, X_,
    /* REJ */ X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_,
              X_, X_, X_, X_,
    /* C1  */ X_, A_, A_, A_, X_, X_, X_, X_, X_, X_, X_, X_,
              X_, X_, X_, X_,
    /* C2  */ X_, C1, C1, C1, X_, X_, X_, X_, X_, X_, X_, X_,
              X_, X_, X_, X_,
    /* C3  */ X_, C2, C2, C2, X_, X_, X_, X_, X_, X_, X_, X_,
              X_, X_, X_, X_,
    /* E0  */ X_, X_, X_, C1, X_, X_, X_, X_, X_, X_, X_, X_,
              X_, X_, X_, X_,
    /* ED  */ X_, C1, C1, X_, X_, X_, X_, X_, X_, X_, X_, X_,
              X_, X_, X_, X_,
    /* F0  */ X_, X_, C2, C2, X_, X_, X_, X_, X_, X_, X_, X_,
              X_, X_, X_, X_,
    /* F4  */ X_, C2, X_, X_, X_, X_, X_, X_, X_, X_, X_, X_,
              X_, X_, X_, X_,
};
/* clang-format on */
#undef A_
#undef X_
#undef C1
#undef C2
#undef C3

#define HIGH_BITS 0x8080808080808080ULL

void chorus_utf8_init(chorus_utf8 *v)
{
    v->state = S_ACCEPT;
}

int chorus_utf8_feed(chorus_utf8 *v, const uint8_t *p, size_t n)
{
    uint32_t state = v->state;
    size_t i = 0;

    if (state == S_REJECT)
        return -1;
    while (i < n) {
        if (state == S_ACCEPT) {
            /* ASCII fast path: skip whole 8-byte words with no high bit. */
            while (n - i >= 8) {
                uint64_t w;
                memcpy(&w, p + i, 8);
                if (w & HIGH_BITS)
                    break;
                i += 8;
            }
            while (i < n && p[i] < 0x80)
                i++;
            if (i == n)
                break;
        }
        state = transition[state + byte_class[p[i]]];
        if (state == S_REJECT) {
            v->state = S_REJECT;
            return -1;
        }
        i++;
    }
    v->state = state;
    return 0;
}

int chorus_utf8_complete(const chorus_utf8 *v)
{
    return v->state == S_ACCEPT;
}

int chorus_utf8_valid(const uint8_t *p, size_t n)
{
    chorus_utf8 v;

    chorus_utf8_init(&v);
    return chorus_utf8_feed(&v, p, n) == 0 && chorus_utf8_complete(&v);
}
