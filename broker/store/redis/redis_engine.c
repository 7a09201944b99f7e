/* A loop's Redis instances: connections, the watched channels, and the
 * connection hooks (the fence and the scripts on every connect). */
#include "redis_engine.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/rand.h>

#include "dict.h"
#include "log.h"
#include "metrics.h"
#include "redis_conn.h"
#include "redis_internal.h"
#include "redis_scripts.h"

static pthread_once_t scripts_once = PTHREAD_ONCE_INIT;

/* Channels per SUBSCRIBE command when many are (re)subscribed at once. */
#define SUBSCRIBE_BATCH 256

size_t redis_engine_instance_of(const char *topic, size_t len, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a 64 */

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)topic[i];
        h *= 1099511628211ULL;
    }
    return n ? (size_t)(h % n) : 0;
}

instance *redis_instance(redis_engine *e, const char *topic, size_t len)
{
    return &e->inst[redis_engine_instance_of(topic, len, e->n)];
}

int redis_topic_keys(const char *topic, size_t len, redis_keys *k)
{
    if (len > sizeof k->meta - 16)
        return -1;
    snprintf(k->meta, sizeof k->meta, "chorus:{%.*s}:m", (int)len, topic);
    snprintf(k->stream, sizeof k->stream, "chorus:{%.*s}:s", (int)len, topic);
    return 0;
}

void redis_new_epoch(char out[33])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char r[16] = {0};

    RAND_bytes(r, sizeof r);
    for (size_t i = 0; i < sizeof r; i++) {
        out[2 * i] = hex[r[i] >> 4];
        out[2 * i + 1] = hex[r[i] & 15];
    }
    out[32] = '\0';
}

/* ---- the set of watched topics, per instance ----------------------------- */

typedef struct watch_node {
    dict_node node;
    size_t len;
    char name[];
} watch_node;

typedef struct name_key {
    const char *name;
    size_t len;
} name_key;

static int watch_eq(const dict_node *n, const void *key)
{
    const watch_node *w = (const watch_node *)n;
    const name_key *k = key;

    return w->len == k->len && memcmp(w->name, k->name, k->len) == 0;
}

static watch_node *watch_find(redis_engine *e, instance *in, const char *name,
                              size_t len, uint64_t *h)
{
    name_key k = {name, len};

    *h = dict_siphash(name, len, e->key);
    return (watch_node *)dict_find(&in->watched, *h, watch_eq, &k);
}

/* Queues one (un)subscribe of a channel for the end of the turn. */
static void queue_sub(redis_engine *e, instance *in, const char *topic,
                      size_t len, int on)
{
    pending_sub *p;

    if (in->npend == in->cap) {
        size_t cap = in->cap ? in->cap * 2 : 64;
        pending_sub *a = realloc(in->pend, cap * sizeof *a);
        if (!a) {
            log_error("redis: out of memory queueing a subscription");
            return;
        }
        in->pend = a;
        in->cap = cap;
    }
    p = &in->pend[in->npend];
    p->len = in->prefix_len + len;
    p->channel = malloc(p->len);
    if (!p->channel)
        return;
    memcpy(p->channel, in->prefix, in->prefix_len);
    memcpy(p->channel + in->prefix_len, topic, len);
    p->on = on;
    in->npend++;
    event_active(e->flush_ev, EV_TIMEOUT, 0);
}

void redis_engine_watch(redis_engine *e, const char *topic, size_t len, int on)
{
    instance *in = redis_instance(e, topic, len);
    uint64_t h;
    watch_node *w = watch_find(e, in, topic, len, &h);

    if (on && !w) {
        w = malloc(sizeof *w + len);
        if (!w) {
            log_error("redis: out of memory watching %.*s", (int)len, topic);
            return;
        }
        w->len = len;
        memcpy(w->name, topic, len);
        dict_insert(&in->watched, &w->node, h);
    } else if (!on && w) {
        dict_remove(&in->watched, &w->node);
        free(w);
    } else {
        return;
    }
    queue_sub(e, in, topic, len, on);
}

/* Sends the queued (un)subscribes, runs of the same kind in one command
 * each. Without a connection they are dropped: the watched set is
 * subscribed anew when it comes back. */
static void flush_subs(instance *in)
{
    const char *names[SUBSCRIBE_BATCH];
    size_t lens[SUBSCRIBE_BATCH];
    size_t i = 0;

    while (i < in->npend) {
        int n = 0, on = in->pend[i].on;
        size_t start = i;
        while (i < in->npend && in->pend[i].on == on && n < SUBSCRIBE_BATCH) {
            names[n] = in->pend[i].channel;
            lens[n++] = in->pend[i].len;
            i++;
        }
        if (in->sub && rconn_ready(in->sub))
            rconn_subscribe(in->sub, !on, n, names, lens);
        for (size_t k = start; k < i; k++)
            free(in->pend[k].channel);
    }
    in->npend = 0;
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    redis_engine *e = arg;

    (void)fd;
    (void)what;
    for (size_t i = 0; i < e->n; i++)
        flush_subs(&e->inst[i]);
}

/* ---- connection hooks ---------------------------------------------------- */

static void ignore_reply(rconn *rc, redisReply *r, void *arg)
{
    (void)arg;
    if (r && r->type == REDIS_REPLY_ERROR) {
        char why[300];
        snprintf(why, sizeof why, "set-up refused: %s", r->str);
        rconn_reset(rc, why);
    }
}

/* Every connect: the fence (redis_scripts.h), then the scripts, ahead
 * of anything else on this connection. */
static void cmd_up(rconn *rc, void *arg)
{
    instance *in = arg;
    char seed[33];
    const char *set[] = {"SET", REDIS_RUN_ID_KEY, rconn_run_id(rc)};
    const char *set_seed[] = {"SET", REDIS_SEED_KEY, seed, "NX"};
    const char *load[][3] = {
        {"SCRIPT", "LOAD", redis_script_publish.body},
        {"SCRIPT", "LOAD", redis_script_meta.body},
        {"SCRIPT", "LOAD", redis_script_read.body},
    };

    redis_new_epoch(seed);
    if (in->e->cfg->redis_durable)
        rconn_command(rc, 4, set_seed, NULL, ignore_reply, NULL);
    else
        rconn_command(rc, 3, set, NULL, ignore_reply, NULL);
    for (size_t i = 0; i < sizeof load / sizeof load[0]; i++)
        rconn_command(rc, 3, load[i], NULL, ignore_reply, NULL);
    if (in->e->hooks.ready)
        in->e->hooks.ready(in->e->hooks.arg);
}

/* The instance went down: its pub/sub connection is made again too, so
 * that every watched topic is checked when it is back (a restarted Redis
 * keeps no subscriptions, and one that only paused may have cut us off). */
static void cmd_down(rconn *rc, void *arg)
{
    instance *in = arg;

    (void)rc;
    if (in->sub)
        rconn_reset(in->sub, "command connection lost");
}

/* (Re)subscribes every watched topic, in batches. */
static void sub_up(rconn *rc, void *arg)
{
    instance *in = arg;

    (void)rc;
    for (size_t i = 0; i < in->npend; i++)
        free(in->pend[i].channel);
    in->npend = 0;
    for (size_t b = 0; b <= in->watched.mask; b++)
        for (dict_node *n = in->watched.buckets[b]; n; n = n->next) {
            watch_node *w = (watch_node *)n;
            queue_sub(in->e, in, w->name, w->len, 1);
        }
}

static int strip_prefix(const instance *in, const char *ch, size_t len,
                        const char **topic, size_t *tlen)
{
    if (len <= in->prefix_len || memcmp(ch, in->prefix, in->prefix_len) != 0)
        return -1;
    *topic = ch + in->prefix_len;
    *tlen = len - in->prefix_len;
    return 0;
}

static void sub_subscribed(rconn *rc, const char *ch, size_t len, void *arg)
{
    instance *in = arg;
    const char *topic;
    size_t tlen;

    (void)rc;
    if (strip_prefix(in, ch, len, &topic, &tlen) == 0)
        in->e->hooks.subscribed(in->e->hooks.arg, topic, tlen);
}

static void sub_message(rconn *rc, const char *ch, size_t len,
                        const char *payload, size_t plen, void *arg)
{
    instance *in = arg;
    const char *topic;
    size_t tlen;
    redis_payload pl;

    (void)rc;
    if (strip_prefix(in, ch, len, &topic, &tlen) < 0)
        return;
    if (redis_payload_parse(payload, plen, &pl) < 0) {
        log_warn("redis: malformed message on channel %.*s", (int)len, ch);
        return;
    }
    in->e->hooks.message(in->e->hooks.arg, topic, tlen, &pl);
}

/* ---- life cycle ---------------------------------------------------------- */

static int instance_init(redis_engine *e, instance *in, size_t index, char *err,
                         size_t errlen)
{
    const config *cfg = e->cfg;
    rconn_hooks ch = {cmd_up, cmd_down, NULL, NULL, in};
    rconn_hooks sh = {sub_up, NULL, sub_subscribed, sub_message, in};

    in->e = e;
    in->index = index;
    if (config_parse_redis_url(cfg->redis_urls[index], &in->addr, err, errlen) <
        0)
        return -1;
    in->prefix_len = (size_t)snprintf(in->prefix, sizeof in->prefix,
                                      "chorus:%u:", in->addr.db);
    if (dict_init(&in->watched, 64)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    in->cmd =
        rconn_new(e->base, &in->addr, cfg->redis_timeout_ms, 0, &ch, e->m);
    in->sub =
        rconn_new(e->base, &in->addr, cfg->redis_timeout_ms, 1, &sh, e->m);
    if (!in->cmd || !in->sub) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static void instance_destroy(instance *in)
{
    rconn_free(in->sub);
    rconn_free(in->cmd);
    in->sub = in->cmd = NULL;
    for (size_t i = 0; i < in->npend; i++)
        free(in->pend[i].channel);
    free(in->pend);
    if (in->watched.buckets) {
        for (size_t b = 0; b <= in->watched.mask; b++) {
            dict_node *n = in->watched.buckets[b], *next;
            for (; n; n = next) {
                next = n->next;
                free(n);
            }
        }
        dict_destroy(&in->watched);
    }
}

redis_engine *redis_engine_new(struct event_base *base, const config *cfg,
                               const redis_engine_hooks *hooks, metrics *m,
                               char *err, size_t errlen)
{
    redis_engine *e = calloc(1, sizeof *e);

    if (!e || !(e->inst = calloc(cfg->redis_url_count, sizeof *e->inst)) ||
        RAND_bytes(e->key, sizeof e->key) != 1 ||
        !(e->flush_ev = event_new(base, -1, 0, flush_cb, e))) {
        snprintf(err, errlen, "out of memory");
        redis_engine_free(e);
        return NULL;
    }
    e->base = base;
    e->cfg = cfg;
    e->m = m;
    e->n = cfg->redis_url_count;
    e->hooks = *hooks;
    pthread_once(&scripts_once, redis_scripts_init);
    for (size_t i = 0; i < e->n; i++) {
        if (instance_init(e, &e->inst[i], i, err, errlen)) {
            redis_engine_free(e);
            return NULL;
        }
    }
    return e;
}

void redis_engine_free(redis_engine *e)
{
    if (!e)
        return;
    for (size_t i = 0; e->inst && i < e->n; i++)
        instance_destroy(&e->inst[i]);
    if (e->flush_ev)
        event_free(e->flush_ev);
    free(e->inst);
    free(e);
}

void redis_engine_drain(redis_engine *e, uint64_t timeout_ms)
{
    for (size_t i = 0; i < e->n; i++)
        if (e->inst[i].cmd)
            rconn_drain(e->inst[i].cmd, timeout_ms);
}

int redis_engine_up(const redis_engine *e)
{
    for (size_t i = 0; i < e->n; i++)
        if (!e->inst[i].cmd || !rconn_ready(e->inst[i].cmd))
            return 0;
    return 1;
}
