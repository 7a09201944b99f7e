/* Incremental UTF-8 validation (RFC 3629), usable across fragment
 * boundaries. Pure: no I/O, no allocation. */
#ifndef CHORUS_UTF8_H
#define CHORUS_UTF8_H

#include <stddef.h>
#include <stdint.h>

typedef struct chorus_utf8 {
    uint32_t state; /* 0 = at a character boundary */
} chorus_utf8;

void chorus_utf8_init(chorus_utf8 *v);

/* Feeds n more bytes of the same text. Returns 0 while the text so far is a
 * valid prefix of some UTF-8 string, -1 at the first byte that makes it
 * invalid (overlongs, surrogates, > U+10FFFF and stray continuation bytes
 * included). Once -1 is returned the validator stays failed. */
int chorus_utf8_feed(chorus_utf8 *v, const uint8_t *p, size_t n);

/* 1 when the text fed so far ends on a character boundary. */
int chorus_utf8_complete(const chorus_utf8 *v);

/* One-shot check of a complete string: 1 valid, 0 invalid. */
int chorus_utf8_valid(const uint8_t *p, size_t n);

#endif
