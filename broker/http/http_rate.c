#include "http_rate.h"

#include <pthread.h>
#include <string.h>

#include "conn.h"
#include "ip_table.h"
#include "server.h"

/* A set-associative table of buckets: an address hashes to one set of
 * WAYS entries. When more addresses than that are active in a set, the
 * one refilled longest ago is evicted and starts again with a full
 * bucket; the table stays a fixed size whatever the number of clients. */
#define SETS 1024
#define WAYS 4

typedef struct bucket {
    uint8_t len; /* 0: free */
    uint8_t addr[16];
    double tokens;
    int64_t refill_ms;
} bucket;

static bucket table[SETS][WAYS];
static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;

static uint32_t hash_addr(const uint8_t *addr, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (size_t i = 0; i < len; i++)
        h = (h ^ addr[i]) * 16777619u;
    return h;
}

/* The bucket of addr in its set, taken over from the stalest when absent
 * (then full). */
static bucket *find_bucket(const uint8_t *addr, uint8_t len, double burst,
                           int64_t now)
{
    bucket *set = table[hash_addr(addr, len) % SETS], *victim = &set[0];

    for (int i = 0; i < WAYS; i++) {
        if (set[i].len == len && memcmp(set[i].addr, addr, len) == 0)
            return &set[i];
        if (set[i].len == 0 || set[i].refill_ms < victim->refill_ms)
            victim = &set[i];
    }
    victim->len = len;
    memcpy(victim->addr, addr, len);
    victim->tokens = burst;
    victim->refill_ms = now;
    return victim;
}

int http_rate_take(conn *c)
{
    const config *cfg = c->srv->cfg;
    double burst =
        (double)(cfg->publish_burst ? cfg->publish_burst : cfg->publish_rate);
    int64_t now = server_now_ms(c->srv);
    bucket *b;
    int ok;

    if (!cfg->publish_rate || !c->ip)
        return 1;
    pthread_mutex_lock(&table_mu);
    b = find_bucket(c->ip->addr, c->ip->len, burst, now);
    /* Each loop caches its own clock: one may read a time earlier than
     * another loop already wrote here, which must not take tokens away. */
    if (now > b->refill_ms) {
        b->tokens +=
            (double)(now - b->refill_ms) * (double)cfg->publish_rate / 1000.0;
        if (b->tokens > burst)
            b->tokens = burst;
        b->refill_ms = now;
    }
    ok = b->tokens >= 1.0;
    if (ok)
        b->tokens -= 1.0;
    pthread_mutex_unlock(&table_mu);
    return ok;
}
