/* libFuzzer target for the RFC 6455 decoder (lib/ws_frame.c, lib/utf8.c).
 *
 * Built and run by scripts/fuzz.sh (see tests/fuzz/CMakeLists.txt).
 *
 * Input: byte 0 picks the message limit (bits 0-2) and whether RSV1 is
 * allowed (bit 3: permessage-deflate), bytes 1-4 seed the split pattern,
 * the rest is the byte stream. The stream is decoded in both roles, once
 * whole and once in pseudo-random chunks through a pending buffer, and
 * these invariants are checked after every call:
 *   - consumed <= len; any event but NEED_MORE/ERROR consumes something;
 *   - bytes past `consumed` are left untouched;
 *   - event fields are in range (opcodes, close codes, pointers, lengths);
 *   - after ERROR the decoder keeps answering ERROR with the same code;
 *   - completed TEXT messages are valid UTF-8 (unless compressed) and
 *     within the limit; RSV1 only when allowed, on every chunk of the
 *     message;
 *   - whole and chunked decoding report the same messages, control frames
 *     and error code. */
#include "chorus/ws_frame.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INPUT (1 << 16)

#define FUZZ_ASSERT(c)                                                 \
    do {                                                               \
        if (!(c)) {                                                    \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, \
                    __LINE__, #c);                                     \
            abort();                                                   \
        }                                                              \
    } while (0)

/* Summary of what a run reported, compared between split patterns. */
typedef struct summary {
    uint64_t hash; /* FNV-1a over completed messages and controls */
    unsigned messages;
    unsigned controls;
    unsigned error; /* close code of the ERROR event, 0 if none */
} summary;

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;

    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static uint8_t pend[MAX_INPUT], snapshot[MAX_INPUT], msg[MAX_INPUT];

static void check_event(const chorus_ws_decoder *d, const chorus_ws_event *ev,
                        const uint8_t *buf, size_t len, size_t used)
{
    FUZZ_ASSERT(used <= len);
    switch (ev->type) {
    case CHORUS_WS_EV_NEED_MORE: break;
    case CHORUS_WS_EV_DATA:
        FUZZ_ASSERT(ev->opcode == CHORUS_WS_OP_TEXT ||
                    ev->opcode == CHORUS_WS_OP_BINARY);
        FUZZ_ASSERT(used > 0);
        FUZZ_ASSERT(ev->data >= buf && ev->data + ev->len <= buf + used);
        break;
    case CHORUS_WS_EV_CONTROL:
        FUZZ_ASSERT(ev->opcode == CHORUS_WS_OP_CLOSE ||
                    ev->opcode == CHORUS_WS_OP_PING ||
                    ev->opcode == CHORUS_WS_OP_PONG);
        FUZZ_ASSERT(ev->len <= 125 && ev->fin == 1);
        FUZZ_ASSERT(ev->data >= buf && ev->data + ev->len == buf + used);
        if (ev->opcode == CHORUS_WS_OP_CLOSE) {
            FUZZ_ASSERT(ev->close_code == CHORUS_WS_CLOSE_NO_STATUS ||
                        chorus_ws_close_code_valid(ev->close_code));
            FUZZ_ASSERT((ev->len == 0) ==
                        (ev->close_code == CHORUS_WS_CLOSE_NO_STATUS));
            if (ev->len >= 2)
                FUZZ_ASSERT(chorus_utf8_valid(ev->data + 2, ev->len - 2));
        }
        break;
    case CHORUS_WS_EV_ERROR:
        FUZZ_ASSERT(ev->close_code == CHORUS_WS_CLOSE_PROTOCOL ||
                    ev->close_code == CHORUS_WS_CLOSE_BAD_DATA ||
                    ev->close_code == CHORUS_WS_CLOSE_TOO_BIG);
        FUZZ_ASSERT(ev->reason && ev->reason[0]);
        FUZZ_ASSERT(d->failed);
        break;
    default: FUZZ_ASSERT(0);
    }
}

/* Decodes stream[0..n) feeding chunks whose sizes come from the seed
 * (seed 0: everything at once). */
static summary run(chorus_ws_role role, uint64_t max, int rsv1,
                   const uint8_t *stream, size_t n, uint32_t seed)
{
    chorus_ws_decoder d;
    summary s = {0xcbf29ce484222325ULL, 0, 0, 0};
    uint64_t mhash = 0xcbf29ce484222325ULL;
    size_t plen = 0, off = 0, mlen = 0;
    int mop = 0, mcomp = 0;

    chorus_ws_decoder_init(&d, role, max);
    d.allow_rsv1 = rsv1;
    while (off < n) {
        size_t chunk = n - off;
        if (seed) {
            seed = seed * 1103515245u + 12345u;
            /* Mostly tiny chunks, sometimes large ones. */
            size_t want = (seed >> 16) & 0x100 ? (seed >> 8) & 0x3FF
                                               : ((seed >> 16) & 7) + 1;
            if (want && want < chunk)
                chunk = want;
        }
        memcpy(pend + plen, stream + off, chunk);
        plen += chunk;
        off += chunk;
        for (;;) {
            chorus_ws_event ev;
            size_t used = (size_t)-1;
            memcpy(snapshot, pend, plen);
            chorus_ws_decode(&d, pend, plen, &used, &ev);
            check_event(&d, &ev, pend, plen, used);
            if (ev.type == CHORUS_WS_EV_ERROR) {
                chorus_ws_event again;
                size_t used2;
                chorus_ws_decode(&d, pend, plen, &used2, &again);
                FUZZ_ASSERT(again.type == CHORUS_WS_EV_ERROR &&
                            again.close_code == ev.close_code && used2 == 0);
                s.error = ev.close_code;
                return s;
            }
            FUZZ_ASSERT(memcmp(pend + used, snapshot + used, plen - used) == 0);
            if (ev.type == CHORUS_WS_EV_DATA) {
                FUZZ_ASSERT(mop == 0 || mop == ev.opcode);
                FUZZ_ASSERT(mop == 0 || mcomp == ev.compressed);
                FUZZ_ASSERT(rsv1 || !ev.compressed);
                mop = ev.opcode;
                mcomp = ev.compressed;
                memcpy(msg + mlen, ev.data, ev.len);
                mlen += ev.len;
                FUZZ_ASSERT(max == 0 || mlen <= max);
                mhash = fnv(mhash, ev.data, ev.len);
                if (ev.fin) {
                    /* compressed text is checked after inflating */
                    if (mop == CHORUS_WS_OP_TEXT && !mcomp)
                        FUZZ_ASSERT(chorus_utf8_valid(msg, mlen));
                    s.hash = fnv(s.hash, &mop, sizeof(mop));
                    s.hash = fnv(s.hash, &mcomp, sizeof(mcomp));
                    s.hash = fnv(s.hash, &mlen, sizeof(mlen));
                    s.hash = fnv(s.hash, &mhash, sizeof(mhash));
                    s.messages++;
                    mhash = 0xcbf29ce484222325ULL;
                    mlen = 0;
                    mop = 0;
                    mcomp = 0;
                }
            } else if (ev.type == CHORUS_WS_EV_CONTROL) {
                s.hash = fnv(s.hash, &ev.opcode, sizeof(ev.opcode));
                s.hash = fnv(s.hash, &ev.close_code, sizeof(ev.close_code));
                s.hash = fnv(s.hash, ev.data, ev.len);
                s.controls++;
            }
            memmove(pend, pend + used, plen - used);
            plen -= used;
            if (ev.type == CHORUS_WS_EV_NEED_MORE) {
                /* No progress is possible without more bytes. */
                chorus_ws_decode(&d, pend, plen, &used, &ev);
                FUZZ_ASSERT(ev.type == CHORUS_WS_EV_NEED_MORE && used == 0);
                break;
            }
        }
    }
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t limits[8] = {0, 1, 10, 125, 126, 1000, 65535, 65536};
    uint64_t max;
    uint32_t seed;
    int rsv1;

    if (size < 5 || size - 5 > MAX_INPUT)
        return 0;
    max = limits[data[0] & 7];
    rsv1 = (data[0] >> 3) & 1;
    seed = (uint32_t)data[1] | (uint32_t)data[2] << 8 |
           (uint32_t)data[3] << 16 | (uint32_t)data[4] << 24;
    seed |= 1; /* never 0: 0 means "whole" */
    data += 5;
    size -= 5;
    for (int r = 0; r < 2; r++) {
        chorus_ws_role role = r ? CHORUS_WS_CLIENT : CHORUS_WS_SERVER;
        summary whole = run(role, max, rsv1, data, size, 0);
        summary split = run(role, max, rsv1, data, size, seed);
        FUZZ_ASSERT(whole.hash == split.hash);
        FUZZ_ASSERT(whole.messages == split.messages);
        FUZZ_ASSERT(whole.controls == split.controls);
        FUZZ_ASSERT(whole.error == split.error);
    }
    return 0;
}
