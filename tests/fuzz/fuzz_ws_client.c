/* libFuzzer target for the client-side frame decoders: the bench's
 * (bench/bench_ws.c, which skips UTF-8 checks for speed) checked against
 * the lib's strict decoder in CLIENT role (lib/ws_frame.c), which the
 * chorus CLI uses through lib/ws_client.c.
 *
 * Input: bytes 0-3 seed the split pattern, the rest is what a server sent.
 * The stream is decoded by the bench decoder whole and in pseudo-random
 * chunks, and by the lib decoder whole. The target checks:
 *   - every call: consumed <= len, bytes past consumed untouched, DATA
 *     inside the consumed bytes, CONTROL a whole control frame;
 *   - the bench decoder reports the same messages, control frames and
 *     error however the stream is split;
 *   - the two decoders agree: while the lib's decoder has found no error
 *     the bench's reports the same messages and control frames, and the
 *     bench's never reports an error the lib's does not (it only checks
 *     less). */
#include <string.h>

#include "bench.h"
#include "chorus/ws_frame.h"
#include "fuzz.h"

#define MAX_INPUT (1u << 16)
#define MAX_ITEMS (MAX_INPUT / 2 + 2)

/* What a decoder reported: one hash per completed message or control
 * frame, in order, and whether it stopped on an error. */
typedef struct report {
    uint64_t items[MAX_ITEMS];
    size_t count;
    int error;
} report;

static uint8_t pend[MAX_INPUT], snapshot[MAX_INPUT], copy[MAX_INPUT];
static report whole, split, strict;

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;

    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

#define FNV_INIT 0xcbf29ce484222325ULL

static void add_item(report *r, uint64_t h)
{
    FUZZ_ASSERT(r->count < MAX_ITEMS);
    r->items[r->count++] = h;
}

static void check_event(const chorus_ws_event *ev, const uint8_t *buf,
                        size_t len, size_t used)
{
    FUZZ_ASSERT(used <= len);
    switch (ev->type) {
    case CHORUS_WS_EV_NEED_MORE: break;
    case CHORUS_WS_EV_DATA:
        FUZZ_ASSERT(ev->data >= buf && ev->data + ev->len <= buf + used);
        break;
    case CHORUS_WS_EV_CONTROL:
        FUZZ_ASSERT(ev->opcode == CHORUS_WS_OP_CLOSE ||
                    ev->opcode == CHORUS_WS_OP_PING ||
                    ev->opcode == CHORUS_WS_OP_PONG);
        FUZZ_ASSERT(ev->len <= 125 && used > ev->len);
        FUZZ_ASSERT(ev->data + ev->len == buf + used);
        break;
    case CHORUS_WS_EV_ERROR:
        FUZZ_ASSERT(ev->close_code >= 1000 && ev->reason && ev->reason[0]);
        break;
    default: FUZZ_ASSERT(0);
    }
}

/* A message or control frame as one hash: opcode class and bytes. */
static uint64_t control_hash(const chorus_ws_event *ev)
{
    uint64_t h = fnv(FNV_INIT, &ev->opcode, sizeof ev->opcode);
    return fnv(h, ev->data, ev->len);
}

/* Decodes stream[0..n) with the bench decoder; seed 0 feeds it whole,
 * else in chunks, keeping undecoded bytes in front as bench_net.c does. */
static void run_bench(const uint8_t *stream, size_t n, uint32_t seed, report *r)
{
    ws_dec d;
    uint64_t msg = FNV_INIT;
    size_t plen = 0, off = 0;

    ws_dec_init(&d);
    r->count = 0;
    r->error = 0;
    while (off < n) {
        size_t chunk = n - off;
        if (seed) {
            seed = seed * 1103515245u + 12345u;
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
            ws_dec_decode(&d, pend, plen, &used, &ev);
            check_event(&ev, pend, plen, used);
            if (ev.type == CHORUS_WS_EV_ERROR) {
                r->error = 1;
                return;
            }
            FUZZ_ASSERT(memcmp(pend + used, snapshot + used, plen - used) == 0);
            if (ev.type == CHORUS_WS_EV_DATA) {
                msg = fnv(msg, ev.data, ev.len);
                if (ev.fin) {
                    add_item(r, msg);
                    msg = FNV_INIT;
                }
            } else if (ev.type == CHORUS_WS_EV_CONTROL) {
                add_item(r, control_hash(&ev));
            }
            memmove(pend, pend + used, plen - used);
            plen -= used;
            if (ev.type == CHORUS_WS_EV_NEED_MORE)
                break;
        }
    }
}

/* The lib's decoder in CLIENT role, no size limit, fed whole. */
static void run_strict(uint8_t *buf, size_t n, report *r)
{
    chorus_ws_decoder d;
    uint64_t msg = FNV_INIT;
    size_t off = 0;

    chorus_ws_decoder_init(&d, CHORUS_WS_CLIENT, 0);
    r->count = 0;
    r->error = 0;
    for (;;) {
        chorus_ws_event ev;
        size_t used = (size_t)-1;
        chorus_ws_decode(&d, buf + off, n - off, &used, &ev);
        check_event(&ev, buf + off, n - off, used);
        off += used;
        if (ev.type == CHORUS_WS_EV_ERROR) {
            r->error = 1;
            return;
        }
        if (ev.type == CHORUS_WS_EV_NEED_MORE)
            return;
        if (ev.type == CHORUS_WS_EV_DATA) {
            msg = fnv(msg, ev.data, ev.len);
            if (ev.fin) {
                add_item(r, msg);
                msg = FNV_INIT;
            }
        } else {
            add_item(r, control_hash(&ev));
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t seed;

    if (size < 4 || size - 4 > MAX_INPUT)
        return 0;
    seed = (uint32_t)data[0] | (uint32_t)data[1] << 8 |
           (uint32_t)data[2] << 16 | (uint32_t)data[3] << 24;
    seed |= 1;
    data += 4;
    size -= 4;

    run_bench(data, size, 0, &whole);
    run_bench(data, size, seed, &split);
    FUZZ_ASSERT(whole.error == split.error && whole.count == split.count);
    FUZZ_ASSERT(memcmp(whole.items, split.items,
                       whole.count * sizeof whole.items[0]) == 0);

    memcpy(copy, data, size);
    run_strict(copy, size, &strict);
    /* The strict decoder stops at or before any error the bench finds. */
    if (!strict.error)
        FUZZ_ASSERT(!whole.error && whole.count == strict.count);
    else
        FUZZ_ASSERT(strict.count <= whole.count);
    if (whole.error)
        FUZZ_ASSERT(strict.error);
    size_t same = strict.count < whole.count ? strict.count : whole.count;
    FUZZ_ASSERT(
        memcmp(whole.items, strict.items, same * sizeof whole.items[0]) == 0);
    return 0;
}
