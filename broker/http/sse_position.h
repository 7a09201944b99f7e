/* The resume position of a Server-Sent Events stream, "<epoch>:<offset>"
 * (docs/PROTOCOL.md, "Server-Sent Events"), as a client sends it in
 * Last-Event-ID or ?since=: untrusted bytes with a length, not a C
 * string. Pure (no I/O, no allocation, no reply), so that it can be unit
 * tested and fuzzed (tests/fuzz/fuzz_sse_position.c); http/sse.c turns a
 * refusal into its 400. */
#ifndef CHORUS_SSE_POSITION_H
#define CHORUS_SSE_POSITION_H

#include <stddef.h>
#include <stdint.h>

#include "chorus/wire.h"

/* Parses text[0..len): exactly CHORUS_EPOCH_LEN lowercase hex characters
 * (an epoch as chorus_epoch_valid takes it), ':', then one or more
 * decimal digits (leading zeros allowed) whose value fits in uint64_t.
 * Nothing else anywhere: no sign, space, second colon or NUL. Returns 0
 * and fills epoch (NUL-terminated) and offset, or -1 and leaves both
 * untouched. */
int sse_position_parse(const char *text, size_t len,
                       char epoch[CHORUS_EPOCH_LEN + 1], uint64_t *offset);

#endif
