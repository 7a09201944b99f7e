/* The Redis engine behind store.h (engine = redis).
 *
 * Every loop that attaches gets, per Redis instance, a command connection
 * of its own (its publish scripts, pipelined; its reads) and a pub/sub
 * connection of its own (the feed of the topics it watches), all on its
 * event base: no loop ever waits for another, and the engine publishes
 * from every loop (central_publish = 0). Each message reaches a loop's
 * subscribers through that loop's feed (redis_follow.h), the loop's own
 * publishes included, once and in offset order.
 *
 * Atomicity of a batch: Redis stores each topic's messages of a batch in
 * one stream entry, all or none; a batch makes one script call per
 * instance (per REDIS_PUBLISH_MAX_TOPICS topics), so its topics may be
 * in separate calls. When some call fails,
 * the batch's callback reports STORE_FAIL and the messages that were
 * stored nonetheless keep their offset (non-zero); the others have
 * offset 0. A publisher may thus be told `internal` for a message that
 * was stored (never the reverse). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "log.h"
#include "metrics.h"
#include "redis_conn.h"
#include "redis_engine.h"
#include "redis_follow.h"
#include "redis_internal.h"
#include "store.h"

/* Loops that can attach (config.c bounds threads to 64). */
#define MAX_LOOPS 64

typedef struct redis_store redis_store;

typedef struct redis_loop {
    store_loop base;
    redis_store *rs;
    int index;
    redis_engine *e;
    rfollow *f;
    metrics m; /* the redis_* figures of this loop */
} redis_loop;

struct redis_store {
    store base;
    const config *cfg;
    redis_loop *loops[MAX_LOOPS]; /* set at attach, cleared at detach */
};

/* ---- open / attach ------------------------------------------------------- */

static int redis_open(store **out, const config *cfg, char *err, size_t errlen)
{
    redis_store *rs;
    redis_addr a;

    if (cfg->redis_url_count == 0) {
        snprintf(err, errlen, "engine = redis needs a redis_url");
        return STORE_FAIL;
    }
    for (size_t i = 0; i < cfg->redis_url_count; i++)
        if (config_parse_redis_url(cfg->redis_urls[i], &a, err, errlen))
            return STORE_FAIL;
    rs = calloc(1, sizeof *rs);
    if (!rs) {
        snprintf(err, errlen, "out of memory");
        return STORE_FAIL;
    }
    rs->base.engine = &store_engine_redis;
    rs->cfg = cfg;
    *out = &rs->base;
    return STORE_OK;
}

static void redis_close(store *st)
{
    free(st);
}

static int redis_attach(store *st, int index, struct event_base *base,
                        const store_feed *feed, store_loop **out, char *err,
                        size_t errlen)
{
    redis_store *rs = (redis_store *)st;
    redis_loop *l;
    redis_engine_hooks hooks = {rfollow_on_message, rfollow_on_subscribed,
                                rfollow_on_ready, NULL};

    if (index < 0 || index >= MAX_LOOPS) {
        snprintf(err, errlen, "too many loops for the redis engine");
        return STORE_FAIL;
    }
    l = calloc(1, sizeof *l);
    if (!l || !(l->f = rfollow_new(base, feed))) {
        free(l);
        snprintf(err, errlen, "out of memory");
        return STORE_FAIL;
    }
    hooks.arg = l->f;
    l->e = redis_engine_new(base, rs->cfg, &hooks, &l->m, err, errlen);
    if (!l->e) {
        rfollow_free(l->f);
        free(l);
        return STORE_FAIL;
    }
    rfollow_set_engine(l->f, l->e, &l->m.redis_gap_fills,
                       &l->m.redis_epoch_changes);
    l->base.engine = &store_engine_redis;
    l->base.st = st;
    l->rs = rs;
    l->index = index;
    __atomic_store_n(&rs->loops[index], l, __ATOMIC_RELEASE);
    *out = &l->base;
    return STORE_OK;
}

static void redis_flush(store_loop *sl)
{
    redis_loop *l = (redis_loop *)sl;

    redis_engine_drain(l->e, l->rs->cfg->redis_timeout_ms);
}

static void redis_detach(store_loop *sl)
{
    redis_loop *l = (redis_loop *)sl;

    redis_flush(sl);
    __atomic_store_n(&l->rs->loops[l->index], NULL, __ATOMIC_RELEASE);
    /* the engine first: what is in flight fails into the follower */
    redis_engine_free(l->e);
    rfollow_free(l->f);
    free(l);
}

/* ---- append -------------------------------------------------------------- */

/* One batch: one script call per instance (and per
 * REDIS_PUBLISH_MAX_TOPICS topics), acknowledged when all answered. */
typedef struct batch {
    store_msg *msgs;
    size_t calls_left;
    int failed;
    store_append_cb cb;
    void *arg;
} batch;

typedef struct call {
    batch *b;
    size_t n;      /* topics */
    size_t *first; /* per topic, the index of its first message */
    redis_pub *pubs;
    char *bodies; /* every topic's messages in the payload's framing */
} call;

static void call_free(call *c)
{
    if (!c)
        return;
    free(c->first);
    free(c->pubs);
    free(c->bodies);
    free(c);
}

static void batch_call_done(batch *b)
{
    if (--b->calls_left)
        return;
    b->cb(b->arg, b->failed ? STORE_FAIL : STORE_OK,
          b->failed ? "redis unavailable" : NULL);
    free(b);
}

static void on_published(void *arg, int ok, int64_t ts_ms)
{
    call *c = arg;
    store_msg *msgs = c->b->msgs;

    (void)ts_ms;
    for (size_t t = 0; t < c->n; t++) {
        uint64_t off = c->pubs[t].first;
        for (size_t i = c->first[t] + 1; i; i = msgs[i - 1].next_same) {
            store_msg *m = &msgs[i - 1];
            m->offset = ok ? off++ : 0;
            if (ok)
                memcpy(m->epoch, c->pubs[t].epoch, sizeof m->epoch);
        }
    }
    if (!ok)
        c->b->failed = 1;
    batch_call_done(c->b);
    call_free(c);
}

/* Lays out the n topics' messages as bodies; 0, or -1 out of memory. */
static int call_fill(call *c, const store_msg *msgs)
{
    size_t size = 0;
    char *w;

    for (size_t t = 0; t < c->n; t++) {
        redis_pub *p = &c->pubs[t];
        p->topic = msgs[c->first[t]].topic;
        p->len = msgs[c->first[t]].topic_len;
        for (size_t i = c->first[t] + 1; i; i = msgs[i - 1].next_same) {
            p->body_len += redis_payload_entry_size(msgs[i - 1].data_len);
            p->n++;
        }
        size += p->body_len;
    }
    if (!(c->bodies = w = malloc(size ? size : 1)))
        return -1;
    for (size_t t = 0; t < c->n; t++) {
        c->pubs[t].body = w;
        for (size_t i = c->first[t] + 1; i; i = msgs[i - 1].next_same)
            w = redis_payload_put(w, msgs[i - 1].data, msgs[i - 1].data_len);
    }
    return 0;
}

/* Sends the n topics whose first messages are at firsts (all of one
 * instance) in one call; a failure to send is a failed call. */
static void send_call(redis_loop *l, batch *b, const size_t *firsts, size_t n)
{
    call *c = calloc(1, sizeof *c);

    b->calls_left++;
    if (!c || !(c->first = malloc(n * sizeof *c->first)) ||
        !(c->pubs = calloc(n, sizeof *c->pubs))) {
        call_free(c);
        b->failed = 1;
        batch_call_done(b);
        return;
    }
    c->b = b;
    c->n = n;
    memcpy(c->first, firsts, n * sizeof *firsts);
    if (call_fill(c, b->msgs) ||
        redis_engine_publish(l->e, c->pubs, n, on_published, c))
        on_published(c, 0, 0);
}

/* Sends the batch's topics, grouped by instance. */
static void send_batch(redis_loop *l, batch *b, size_t n, size_t *firsts)
{
    const store_msg *msgs = b->msgs;
    size_t instances = l->rs->cfg->redis_url_count;

    for (size_t in = 0; in < instances; in++) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (!msgs[i].group_first ||
                redis_engine_instance_of(msgs[i].topic, msgs[i].topic_len,
                                         instances) != in)
                continue;
            firsts[k++] = i;
            if (k == REDIS_PUBLISH_MAX_TOPICS) {
                send_call(l, b, firsts, k);
                k = 0;
            }
        }
        if (k)
            send_call(l, b, firsts, k);
    }
}

static void redis_append(store_loop *sl, store_msg *msgs, size_t n,
                         store_append_cb cb, void *arg)
{
    redis_loop *l = (redis_loop *)sl;
    batch *b = calloc(1, sizeof *b);
    size_t *firsts = malloc(REDIS_PUBLISH_MAX_TOPICS * sizeof *firsts);
    size_t groups = 0;

    for (size_t i = 0; i < n; i++) {
        msgs[i].offset = 0;
        groups += msgs[i].group_first != 0;
    }
    if (!b || !firsts || groups == 0) {
        cb(arg, STORE_FAIL,
           b && firsts ? "a batch without a first message" : "out of memory");
        free(b);
        free(firsts);
        return;
    }
    b->msgs = msgs;
    b->cb = cb;
    b->arg = arg;
    b->calls_left = 1; /* held until every call is sent */
    send_batch(l, b, n, firsts);
    free(firsts);
    batch_call_done(b);
}

/* ---- topic, read, watch -------------------------------------------------- */

typedef struct topic_req {
    redis_loop *l;
    store_topic_cb cb;
    void *arg;
    size_t len;
    char name[];
} topic_req;

static void on_topic(void *arg, int ok, const char *epoch, uint64_t newest,
                     uint64_t oldest)
{
    topic_req *q = arg;
    store_topic_info info;

    if (ok) {
        memcpy(info.epoch, epoch, sizeof info.epoch);
        info.newest = rfollow_seen(q->l->f, q->name, q->len, epoch, newest);
        info.oldest = oldest;
    }
    q->cb(q->arg, ok ? STORE_OK : STORE_FAIL, ok ? &info : NULL);
    free(q);
}

static void redis_topic(store_loop *sl, const char *name, size_t len,
                        store_topic_cb cb, void *arg)
{
    redis_loop *l = (redis_loop *)sl;
    topic_req *q = malloc(sizeof *q + len);

    if (!q) {
        cb(arg, STORE_FAIL, NULL);
        return;
    }
    q->l = l;
    q->cb = cb;
    q->arg = arg;
    q->len = len;
    memcpy(q->name, name, len);
    if (redis_engine_meta(l->e, name, len, on_topic, q))
        on_topic(q, 0, NULL, 0, 0);
}

typedef struct read_req {
    store_row_fn row;
    store_read_cb done;
    void *arg;
} read_req;

static void on_read(void *arg, int ok, const redis_row *rows, size_t n)
{
    read_req *q = arg;
    size_t handed = 0;

    while (ok && handed < n) {
        const redis_row *r = &rows[handed++];
        if (q->row(q->arg, r->offset, r->ts_ms, r->data, r->len))
            break;
    }
    q->done(q->arg, ok ? STORE_OK : STORE_FAIL, handed);
    free(q);
}

static void redis_read(store_loop *sl, const char *name, size_t len,
                       uint64_t after, size_t limit, store_row_fn row,
                       store_read_cb done, void *arg)
{
    redis_loop *l = (redis_loop *)sl;
    read_req *q = malloc(sizeof *q);

    if (!q) {
        done(arg, STORE_FAIL, 0);
        return;
    }
    q->row = row;
    q->done = done;
    q->arg = arg;
    if (redis_engine_read(l->e, name, len, after, limit, on_read, q))
        on_read(q, 0, NULL, 0);
}

static void redis_watch(store_loop *sl, const char *name, size_t len, int on)
{
    rfollow_watch(((redis_loop *)sl)->f, name, len, on);
}

/* ---- health and figures -------------------------------------------------- */

static const char *redis_unavailable(store *st)
{
    redis_store *rs = (redis_store *)st;

    for (int i = 0; i < MAX_LOOPS; i++) {
        redis_loop *l = __atomic_load_n(&rs->loops[i], __ATOMIC_ACQUIRE);
        if (l && !redis_engine_up(l->e))
            return "redis unavailable";
    }
    return NULL;
}

static void redis_metrics_out(store *st, struct evbuffer *out)
{
    redis_store *rs = (redis_store *)st;
    metrics sum;

    memset(&sum, 0, sizeof sum);
    /* Read while the loops run: each figure is a word only its loop
     * writes, so a scrape sees a recent value of each. */
    for (int i = 0; i < MAX_LOOPS; i++) {
        redis_loop *l = __atomic_load_n(&rs->loops[i], __ATOMIC_ACQUIRE);
        if (!l)
            continue;
        for (int b = 0; b <= METRICS_REDIS_RTT_BUCKETS; b++)
            stat_add(&sum.redis_rtt_buckets[b],
                     stat_get(&l->m.redis_rtt_buckets[b]));
        stat_add(&sum.redis_rtt_sum_ns, stat_get(&l->m.redis_rtt_sum_ns));
        stat_add(&sum.redis_reconnects, stat_get(&l->m.redis_reconnects));
        stat_add(&sum.redis_pending, stat_get(&l->m.redis_pending));
        stat_add(&sum.redis_gap_fills, stat_get(&l->m.redis_gap_fills));
        stat_add(&sum.redis_epoch_changes, stat_get(&l->m.redis_epoch_changes));
    }
    metrics_render_redis(&sum, out);
}

const store_engine store_engine_redis = {
    .name = "redis",
    .central_publish = 0,
    .open = redis_open,
    .close = redis_close,
    .attach = redis_attach,
    .flush = redis_flush,
    .detach = redis_detach,
    .append = redis_append,
    .topic = redis_topic,
    .read = redis_read,
    .watch = redis_watch,
    .unavailable = redis_unavailable,
    .metrics = redis_metrics_out,
};
