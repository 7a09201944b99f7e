/* Log-bucketed latency histogram in the style of HdrHistogram: 128 linear
 * sub-buckets per power of two (under 0.8% relative error), fixed size, no
 * allocation per sample. Values are nanoseconds. */
#ifndef CHORUS_BENCH_HIST_H
#define CHORUS_BENCH_HIST_H

#include <stdint.h>
#include <string.h>

#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS ((64 - HIST_SUB_BITS + 1) * HIST_SUB)

typedef struct hist {
    uint64_t count;
    uint64_t max;
    uint64_t b[HIST_BUCKETS];
} hist;

static inline void hist_init(hist *h)
{
    memset(h, 0, sizeof(*h));
}

static inline unsigned hist_index(uint64_t v)
{
    unsigned e;

    if (v < HIST_SUB)
        return (unsigned)v;
    e = 63u - (unsigned)__builtin_clzll(v); /* >= HIST_SUB_BITS */
    return (e - HIST_SUB_BITS + 1) * HIST_SUB +
           (unsigned)((v >> (e - HIST_SUB_BITS)) - HIST_SUB);
}

/* Midpoint of bucket i. */
static inline uint64_t hist_value(unsigned i)
{
    unsigned b, s, e;
    uint64_t lo, width;

    if (i < HIST_SUB)
        return i;
    b = i / HIST_SUB;
    s = i % HIST_SUB;
    e = b + HIST_SUB_BITS - 1;
    lo = (uint64_t)(HIST_SUB + s) << (e - HIST_SUB_BITS);
    width = (uint64_t)1 << (e - HIST_SUB_BITS);
    return lo + width / 2;
}

static inline void hist_record(hist *h, uint64_t v)
{
    h->b[hist_index(v)]++;
    h->count++;
    if (v > h->max)
        h->max = v;
}

/* Value at quantile q (0..1); exact max for q >= 1. */
static inline uint64_t hist_quantile(const hist *h, double q)
{
    uint64_t target, seen = 0;

    if (h->count == 0)
        return 0;
    if (q >= 1.0)
        return h->max;
    target = (uint64_t)(q * (double)h->count + 0.999999);
    if (target == 0)
        target = 1;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= target) {
            uint64_t v = hist_value(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}

#endif
