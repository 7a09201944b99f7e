/* Unit tests for broker/core/dict.c: SipHash-2-4 against the reference
 * vectors, insert/find/remove of many keys across table growth, colliding
 * hashes, and harmless removal of nodes that are not in the table. */
#include "dict.h"

#include "check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* SipHash-2-4 reference outputs (veorq/SipHash vectors.h, vectors_sip64),
 * key 00..0f, message 00..(len-1), output bytes little-endian. */
static const uint8_t sip_vectors[16][8] = {
    {0x31, 0x0e, 0x0e, 0xdd, 0x47, 0xdb, 0x6f, 0x72},
    {0xfd, 0x67, 0xdc, 0x93, 0xc5, 0x39, 0xf8, 0x74},
    {0x5a, 0x4f, 0xa9, 0xd9, 0x09, 0x80, 0x6c, 0x0d},
    {0x2d, 0x7e, 0xfb, 0xd7, 0x96, 0x66, 0x67, 0x85},
    {0xb7, 0x87, 0x71, 0x27, 0xe0, 0x94, 0x27, 0xcf},
    {0x8d, 0xa6, 0x99, 0xcd, 0x64, 0x55, 0x76, 0x18},
    {0xce, 0xe3, 0xfe, 0x58, 0x6e, 0x46, 0xc9, 0xcb},
    {0x37, 0xd1, 0x01, 0x8b, 0xf5, 0x00, 0x02, 0xab},
    {0x62, 0x24, 0x93, 0x9a, 0x79, 0xf5, 0xf5, 0x93},
    {0xb0, 0xe4, 0xa9, 0x0b, 0xdf, 0x82, 0x00, 0x9e},
    {0xf3, 0xb9, 0xdd, 0x94, 0xc5, 0xbb, 0x5d, 0x7a},
    {0xa7, 0xad, 0x6b, 0x22, 0x46, 0x2f, 0xb3, 0xf4},
    {0xfb, 0xe5, 0x0e, 0x86, 0xbc, 0x8f, 0x1e, 0x75},
    {0x90, 0x3d, 0x84, 0xc0, 0x27, 0x56, 0xea, 0x14},
    {0xee, 0xf2, 0x7a, 0x8e, 0x90, 0xca, 0x23, 0xf7},
    {0xe5, 0x45, 0xbe, 0x49, 0x61, 0xca, 0x29, 0xa1},
};

static uint64_t le64(const uint8_t b[8])
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | b[i];
    return v;
}

static void test_siphash_vectors(void)
{
    uint8_t key[16], msg[16];
    /* Same bytes at an odd address: the implementation must not depend
     * on alignment. */
    uint8_t shifted[17];

    for (int i = 0; i < 16; i++)
        key[i] = msg[i] = (uint8_t)i;
    memcpy(shifted + 1, msg, sizeof msg);

    CHECK(dict_siphash(msg, 0, key) == 0x726fdb47dd0e0e31ULL);
    for (size_t len = 0; len < 16; len++) {
        uint64_t want = le64(sip_vectors[len]);
        uint64_t got = dict_siphash(msg, len, key);
        if (got != want)
            fprintf(stderr, "siphash len %zu: got %016llx want %016llx\n", len,
                    (unsigned long long)got, (unsigned long long)want);
        CHECK(got == want);
        CHECK(dict_siphash(shifted + 1, len, key) == want);
    }
}

static void test_siphash_key_and_input(void)
{
    uint8_t k1[16] = {0}, k2[16] = {0};
    const char *s = "topic/name";

    k2[15] = 1;
    CHECK(dict_siphash(s, strlen(s), k1) == dict_siphash(s, strlen(s), k1));
    CHECK(dict_siphash(s, strlen(s), k1) != dict_siphash(s, strlen(s), k2));
    CHECK(dict_siphash(s, strlen(s), k1) != dict_siphash(s, strlen(s) - 1, k1));
    /* Trailing zero bytes change the hash (length is mixed in). */
    CHECK(dict_siphash("a\0", 1, k1) != dict_siphash("a\0", 2, k1));
}

typedef struct item {
    dict_node node;
    uint32_t key;
} item;

static int item_eq(const dict_node *n, const void *key)
{
    return ((const item *)n)->key == *(const uint32_t *)key;
}

static const uint8_t test_key[16] = {1, 2,  3,  4,  5,  6,  7,  8,
                                     9, 10, 11, 12, 13, 14, 15, 16};

static uint64_t hash_u32(uint32_t k)
{
    return dict_siphash(&k, sizeof k, test_key);
}

static item *find_u32(const dict *d, uint32_t k)
{
    return (item *)dict_find(d, hash_u32(k), item_eq, &k);
}

static int is_pow2_minus_1(size_t m)
{
    return ((m + 1) & m) == 0;
}

static void test_init_sizes(void)
{
    dict d;

    CHECK_EQ_INT(dict_init(&d, 0), 0);
    CHECK_EQ_INT(d.mask, 15);
    CHECK_EQ_INT(d.count, 0);
    dict_destroy(&d);
    CHECK(d.buckets == NULL);

    CHECK_EQ_INT(dict_init(&d, 16), 0);
    CHECK_EQ_INT(d.mask, 15);
    dict_destroy(&d);

    CHECK_EQ_INT(dict_init(&d, 17), 0);
    CHECK_EQ_INT(d.mask, 31);
    dict_destroy(&d);

    CHECK_EQ_INT(dict_init(&d, 1000), 0);
    CHECK_EQ_INT(d.mask, 1023);
    dict_destroy(&d);
}

#define MANY 100000u

static void test_many(void)
{
    dict d;
    item *items = calloc(MANY, sizeof *items);
    int insert_failures = 0, missing = 0, wrong = 0, load_ok = 1;
    uint32_t absent;

    CHECK(items != NULL);
    if (!items)
        return;
    CHECK_EQ_INT(dict_init(&d, 0), 0);
    for (uint32_t i = 0; i < MANY; i++) {
        items[i].key = i * 2654435761u; /* distinct (odd multiplier) */
        if (dict_insert(&d, &items[i].node, hash_u32(items[i].key)))
            insert_failures++;
        if (d.count > d.mask + 1)
            load_ok = 0;
    }
    CHECK_EQ_INT(insert_failures, 0);
    CHECK_EQ_INT(d.count, MANY);
    CHECK(load_ok); /* load factor stays <= 1 */
    CHECK(is_pow2_minus_1(d.mask));
    CHECK(d.mask + 1 >= MANY);
    CHECK(d.mask + 1 <= 2 * (size_t)MANY); /* no runaway growth */

    for (uint32_t i = 0; i < MANY; i++) {
        item *it = find_u32(&d, items[i].key);
        if (!it)
            missing++;
        else if (it != &items[i])
            wrong++;
    }
    CHECK_EQ_INT(missing, 0);
    CHECK_EQ_INT(wrong, 0);
    CHECK(items[0].node.hash == hash_u32(items[0].key));

    /* A key none of the items has (verified, not assumed). */
    absent = 1;
    for (uint32_t i = 0; i < MANY; i++)
        if (items[i].key == absent) {
            absent += 2;
            i = (uint32_t)-1; /* restart the scan */
        }
    CHECK(find_u32(&d, absent) == NULL);

    /* Remove every even index. */
    for (uint32_t i = 0; i < MANY; i += 2)
        dict_remove(&d, &items[i].node);
    CHECK_EQ_INT(d.count, MANY / 2);
    missing = wrong = 0;
    for (uint32_t i = 0; i < MANY; i++) {
        item *it = find_u32(&d, items[i].key);
        if (i % 2 == 0 && it)
            wrong++;
        if (i % 2 == 1 && it != &items[i])
            missing++;
    }
    CHECK_EQ_INT(wrong, 0);
    CHECK_EQ_INT(missing, 0);

    /* Removing them again is harmless: no count change, others intact. */
    for (uint32_t i = 0; i < MANY; i += 2)
        dict_remove(&d, &items[i].node);
    CHECK_EQ_INT(d.count, MANY / 2);
    CHECK(find_u32(&d, items[1].key) == &items[1]);
    CHECK(find_u32(&d, items[MANY - 1].key) == &items[MANY - 1]);

    /* Re-insert the removed ones: all present again. */
    for (uint32_t i = 0; i < MANY; i += 2)
        dict_insert(&d, &items[i].node, hash_u32(items[i].key));
    CHECK_EQ_INT(d.count, MANY);
    missing = 0;
    for (uint32_t i = 0; i < MANY; i++)
        if (find_u32(&d, items[i].key) != &items[i])
            missing++;
    CHECK_EQ_INT(missing, 0);

    /* Remove all: empty. */
    for (uint32_t i = 0; i < MANY; i++)
        dict_remove(&d, &items[i].node);
    CHECK_EQ_INT(d.count, 0);
    missing = 0;
    for (size_t b = 0; b <= d.mask; b++)
        if (d.buckets[b])
            missing++;
    CHECK_EQ_INT(missing, 0);
    CHECK(find_u32(&d, items[5].key) == NULL);

    dict_destroy(&d);
    free(items);
}

static void test_remove_absent(void)
{
    dict d;
    item a = {.key = 1}, b = {.key = 2}, stranger = {.key = 3};
    item empty_bucket = {.key = 4};

    CHECK_EQ_INT(dict_init(&d, 0), 0);
    dict_insert(&d, &a.node, 7); /* same bucket as stranger below */
    dict_insert(&d, &b.node, 7 + 16);
    /* A node never inserted, whose hash lands in an occupied bucket. */
    stranger.node.hash = 7;
    stranger.node.next = NULL;
    dict_remove(&d, &stranger.node);
    CHECK_EQ_INT(d.count, 2);
    CHECK(dict_find(&d, 7, item_eq, &a.key) == &a.node);
    CHECK(dict_find(&d, 7 + 16, item_eq, &b.key) == &b.node);
    /* ... and one whose bucket is empty. */
    empty_bucket.node.hash = 3;
    empty_bucket.node.next = NULL;
    dict_remove(&d, &empty_bucket.node);
    CHECK_EQ_INT(d.count, 2);

    /* Removing a present node twice. */
    dict_remove(&d, &a.node);
    CHECK_EQ_INT(d.count, 1);
    dict_remove(&d, &a.node);
    CHECK_EQ_INT(d.count, 1);
    CHECK(dict_find(&d, 7, item_eq, &a.key) == NULL);
    CHECK(dict_find(&d, 7 + 16, item_eq, &b.key) == &b.node);
    dict_remove(&d, &b.node);
    CHECK_EQ_INT(d.count, 0);
    dict_destroy(&d);
}

/* Equal hashes, distinct keys: eq tells them apart, through growth. */
static void test_collisions(void)
{
    enum { N = 200 };
    dict d;
    item its[N];
    int bad = 0;

    CHECK_EQ_INT(dict_init(&d, 0), 0);
    for (uint32_t i = 0; i < N; i++) {
        its[i].key = i;
        dict_insert(&d, &its[i].node, 0x1234);
    }
    CHECK_EQ_INT(d.count, N);
    CHECK(d.mask + 1 >= N);
    for (uint32_t i = 0; i < N; i++)
        if (dict_find(&d, 0x1234, item_eq, &its[i].key) != &its[i].node)
            bad++;
    CHECK_EQ_INT(bad, 0);
    {
        uint32_t k = N + 1;
        CHECK(dict_find(&d, 0x1234, item_eq, &k) == NULL);
        k = 5; /* right key, wrong hash */
        CHECK(dict_find(&d, 0x1235, item_eq, &k) == NULL);
    }
    /* Remove from the middle, head and tail of the chain. */
    dict_remove(&d, &its[100].node);
    dict_remove(&d, &its[0].node);
    dict_remove(&d, &its[N - 1].node);
    CHECK_EQ_INT(d.count, N - 3);
    bad = 0;
    for (uint32_t i = 0; i < N; i++) {
        dict_node *n = dict_find(&d, 0x1234, item_eq, &its[i].key);
        int gone = i == 100 || i == 0 || i == N - 1;
        if (gone ? n != NULL : n != &its[i].node)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    dict_destroy(&d);
}

int main(void)
{
    test_siphash_vectors();
    test_siphash_key_and_input();
    test_init_sizes();
    test_many();
    test_remove_absent();
    test_collisions();
    return check_report("test_dict");
}
