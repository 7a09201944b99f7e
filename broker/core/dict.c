#include "dict.h"

#include <stdlib.h>
#include <string.h>

int dict_init(dict *d, size_t initial_buckets)
{
    size_t n = 16;

    while (n < initial_buckets)
        n <<= 1;
    d->buckets = calloc(n, sizeof *d->buckets);
    if (!d->buckets)
        return -1;
    d->mask = n - 1;
    d->count = 0;
    return 0;
}

void dict_destroy(dict *d)
{
    free(d->buckets);
    d->buckets = NULL;
    d->count = 0;
}

dict_node *dict_find(const dict *d, uint64_t hash, dict_eq_fn eq,
                     const void *key)
{
    for (dict_node *n = d->buckets[hash & d->mask]; n; n = n->next)
        if (n->hash == hash && eq(n, key))
            return n;
    return NULL;
}

static int grow(dict *d)
{
    size_t size = (d->mask + 1) * 2;
    dict_node **b = calloc(size, sizeof *b);

    if (!b)
        return -1;
    for (size_t i = 0; i <= d->mask; i++) {
        dict_node *n = d->buckets[i], *next;
        for (; n; n = next) {
            next = n->next;
            n->next = b[n->hash & (size - 1)];
            b[n->hash & (size - 1)] = n;
        }
    }
    free(d->buckets);
    d->buckets = b;
    d->mask = size - 1;
    return 0;
}

/* Only the owner writes count: a relaxed load and store suffice. */
static void count_add(dict *d, size_t delta)
{
    size_t n = atomic_load_explicit(&d->count, memory_order_relaxed);

    atomic_store_explicit(&d->count, n + delta, memory_order_relaxed);
}

size_t dict_count(const dict *d)
{
    return atomic_load_explicit(&d->count, memory_order_relaxed);
}

int dict_insert(dict *d, dict_node *n, uint64_t hash)
{
    dict_node **slot = &d->buckets[hash & d->mask];

    n->hash = hash;
    n->next = *slot;
    *slot = n;
    count_add(d, 1);
    return dict_count(d) > d->mask + 1 ? grow(d) : 0;
}

void dict_remove(dict *d, dict_node *n)
{
    dict_node **p = &d->buckets[n->hash & d->mask];

    while (*p && *p != n)
        p = &(*p)->next;
    if (*p) {
        *p = n->next;
        count_add(d, (size_t)-1);
    }
}

/* SipHash-2-4, after the reference implementation by Aumasson and
 * Bernstein. */
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND           \
    do {                   \
        v0 += v1;          \
        v1 = ROTL(v1, 13); \
        v1 ^= v0;          \
        v0 = ROTL(v0, 32); \
        v2 += v3;          \
        v3 = ROTL(v3, 16); \
        v3 ^= v2;          \
        v0 += v3;          \
        v3 = ROTL(v3, 21); \
        v3 ^= v0;          \
        v2 += v1;          \
        v1 = ROTL(v1, 17); \
        v1 ^= v2;          \
        v2 = ROTL(v2, 32); \
    } while (0)

static uint64_t load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8); /* little-endian hosts only (x86-64, aarch64) */
    return v;
}

uint64_t dict_siphash(const void *data, size_t len, const uint8_t key[16])
{
    const uint8_t *p = data, *end = p + (len & ~(size_t)7);
    uint64_t k0 = load64(key), k1 = load64(key + 8);
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    uint64_t b = (uint64_t)len << 56;

    for (; p != end; p += 8) {
        uint64_t m = load64(p);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)p[i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}
