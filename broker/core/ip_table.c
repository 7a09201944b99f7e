#include "ip_table.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

typedef struct ip_key {
    uint8_t len;
    const uint8_t *addr;
} ip_key;

static int slot_eq(const dict_node *n, const void *key)
{
    const ip_slot *s = (const ip_slot *)n;
    const ip_key *k = key;

    return s->len == k->len && memcmp(s->addr, k->addr, k->len) == 0;
}

int ip_table_init(ip_table *t)
{
    if (RAND_bytes(t->key, sizeof t->key) != 1)
        return -1;
    return dict_init(&t->slots, 64);
}

void ip_table_destroy(ip_table *t)
{
    for (size_t i = 0; t->slots.buckets && i <= t->slots.mask; i++) {
        dict_node *n = t->slots.buckets[i], *next;
        for (; n; n = next) {
            next = n->next;
            free(n);
        }
    }
    dict_destroy(&t->slots);
}

ip_slot *ip_table_acquire(ip_table *t, const struct sockaddr *sa, uint64_t max)
{
    ip_key k;
    ip_slot *s;
    uint64_t h;

    if (sa->sa_family == AF_INET) {
        k.len = 4;
        k.addr = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else if (sa->sa_family == AF_INET6) {
        k.len = 16;
        k.addr = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    } else {
        return NULL;
    }
    h = dict_siphash(k.addr, k.len, t->key);
    s = (ip_slot *)dict_find(&t->slots, h, slot_eq, &k);
    if (s && max && s->count >= max)
        return NULL;
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return NULL;
        s->len = k.len;
        memcpy(s->addr, k.addr, k.len);
        dict_insert(&t->slots, &s->node, h);
    }
    s->count++;
    return s;
}

void ip_table_release(ip_table *t, ip_slot *slot)
{
    if (--slot->count == 0) {
        dict_remove(&t->slots, &slot->node);
        free(slot);
    }
}
