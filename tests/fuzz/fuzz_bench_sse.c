/* libFuzzer target for the bench's SSE decoders (bench/bench_sse.c): the
 * event stream decoder and the chunked transfer decoder in front of it,
 * as the bench's SSE subscribers use them (bench_sse_sub.c).
 *
 * Input: bytes 0-3 seed the split pattern (bit 7 of byte 0: the body is
 * chunked), the rest is the response body a server sent. The body is
 * decoded whole and in pseudo-random pieces. The target checks:
 *   - every call: used <= len, progress while bytes remain, NEED_MORE only
 *     once all is used, a value inside the bytes used, data from the
 *     chunked decoder inside its input, nothing written to the input;
 *   - the same field values (joined from their chunks), event ends, body
 *     bytes and chunked result however the body is split. */
#include <string.h>

#include "bench_sse.h"
#include "fuzz.h"

#define MAX_INPUT (1u << 16)
#define MAX_ITEMS (MAX_INPUT + 2)

/* What came out, as hashes in order, and how the chunked body ended. */
typedef struct report {
    uint64_t items[MAX_ITEMS];
    size_t count;
    uint64_t body;
    int chunk_result;
    /* the field value in progress */
    uint64_t value;
} report;

static uint8_t copy[MAX_INPUT], snapshot[MAX_INPUT];
static report whole, split;

#define FNV_INIT 0xcbf29ce484222325ULL

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;

    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static void add_item(report *r, uint64_t h)
{
    FUZZ_ASSERT(r->count < MAX_ITEMS);
    r->items[r->count++] = h;
}

/* Event stream bytes p[0..n). */
static void events(sse_dec *d, const uint8_t *p, size_t n, report *r)
{
    while (n) {
        sse_item it;
        size_t used = sse_dec_next(d, p, n, &it);

        FUZZ_ASSERT(used > 0 && used <= n);
        switch (it.type) {
        case SSE_NEED_MORE: FUZZ_ASSERT(used == n); break;
        case SSE_FIELD:
            FUZZ_ASSERT(it.val >= p && it.val + it.len <= p + used);
            FUZZ_ASSERT(it.field >= SSE_F_DATA && it.field <= SSE_F_OTHER);
            FUZZ_ASSERT(!memchr(it.val, '\n', it.len) &&
                        !memchr(it.val, '\r', it.len));
            if (it.first)
                r->value = fnv(FNV_INIT, &it.field, sizeof it.field);
            r->value = fnv(r->value, it.val, it.len);
            if (it.fin)
                add_item(r, r->value);
            break;
        case SSE_DISPATCH: add_item(r, 0); break;
        default: FUZZ_ASSERT(0);
        }
        p += used;
        n -= used;
    }
}

/* Decodes body[0..n); seed 0 feeds it whole, else in pieces. */
static void run(uint8_t *body, size_t n, uint32_t seed, int chunked, report *r)
{
    sse_dec d;
    chunk_dec cd;
    size_t off = 0;

    sse_dec_init(&d);
    chunk_dec_init(&cd);
    memset(r, 0, sizeof *r);
    r->body = FNV_INIT;
    r->chunk_result = CHUNK_OK;
    while (off < n && r->chunk_result == CHUNK_OK) {
        size_t piece = n - off;
        if (seed) {
            seed = seed * 1103515245u + 12345u;
            size_t want = (seed >> 16) & 0x100 ? (seed >> 8) & 0x3FF
                                               : ((seed >> 16) & 7) + 1;
            if (want && want < piece)
                piece = want;
        }
        uint8_t *p = body + off;
        size_t len = piece;
        off += piece;
        if (!chunked) {
            events(&d, p, len, r);
            continue;
        }
        while (len && r->chunk_result == CHUNK_OK) {
            const uint8_t *data;
            size_t dl, used;
            r->chunk_result = chunk_dec_next(&cd, p, len, &data, &dl, &used);
            FUZZ_ASSERT(used <= len);
            FUZZ_ASSERT(used > 0 || r->chunk_result != CHUNK_OK);
            FUZZ_ASSERT(data >= p && data + dl <= p + used);
            r->body = fnv(r->body, data, dl);
            events(&d, data, dl, r);
            p += used;
            len -= used;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t seed;
    int chunked;

    if (size < 4 || size - 4 > MAX_INPUT)
        return 0;
    seed = (uint32_t)data[0] | (uint32_t)data[1] << 8 |
           (uint32_t)data[2] << 16 | (uint32_t)data[3] << 24;
    chunked = data[0] >> 7;
    seed |= 1;
    data += 4;
    size -= 4;

    memcpy(copy, data, size);
    memcpy(snapshot, data, size);
    run(copy, size, 0, chunked, &whole);
    FUZZ_ASSERT(memcmp(copy, snapshot, size) == 0);
    run(copy, size, seed, chunked, &split);
    FUZZ_ASSERT(whole.chunk_result == split.chunk_result);
    FUZZ_ASSERT(whole.body == split.body);
    FUZZ_ASSERT(whole.count == split.count);
    FUZZ_ASSERT(memcmp(whole.items, split.items,
                       whole.count * sizeof whole.items[0]) == 0);
    return 0;
}
