/* Intrusive chained hash table (the node lives inside the caller's
 * struct). Keys are hashed with keyed SipHash so that clients cannot pick
 * topic names that all collide. The table never owns its nodes. */
#ifndef CHORUS_DICT_H
#define CHORUS_DICT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dict_node {
    struct dict_node *next;
    uint64_t hash;
} dict_node;

typedef struct dict {
    dict_node **buckets;
    size_t mask; /* buckets - 1; a power of two minus one */
    /* Atomic so that another thread may read the size (dict_count) while
     * the owner changes the table; only the owner writes it. */
    _Atomic size_t count;
} dict;

typedef int (*dict_eq_fn)(const dict_node *node, const void *key);

int dict_init(dict *d, size_t initial_buckets);
void dict_destroy(dict *d);

dict_node *dict_find(const dict *d, uint64_t hash, dict_eq_fn eq,
                     const void *key);

/* Inserts n (not already present); grows the table at load factor 1.
 * Returns 0, or -1 when growing failed (n is inserted all the same). */
int dict_insert(dict *d, dict_node *n, uint64_t hash);
void dict_remove(dict *d, dict_node *n);

/* The number of nodes; callable from any thread (a recent value). */
size_t dict_count(const dict *d);

/* SipHash-2-4 of p[0..len) under a 16-byte key. */
uint64_t dict_siphash(const void *p, size_t len, const uint8_t key[16]);

#endif
