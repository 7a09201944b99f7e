#include "follow.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "chorus/wire.h"
#include "conn.h"
#include "dict.h"
#include "log.h"
#include "loops.h"
#include "publish.h"
#include "redis_engine.h"
#include "replay.h"
#include "server.h"
#include "topics.h"

/* Offsets read from the stream per fill request. */
#define FILL_PAGE 512
#define TICK_MS 250

/* A topic loop 0 follows; its topic (pinned) holds the epoch and the
 * newest offset handed out (last_offset). */
typedef struct rec {
    dict_node node;
    follow *f;
    topic *t;
    uint32_t watchers;      /* loops with subscribers */
    int64_t idle_since_ms;  /* no watcher since; 0 while watched */
    uint64_t want;          /* newest offset known to exist */
    int filling, checking;  /* a request in flight */
    unsigned gen, fill_gen; /* gen changes with the epoch */
} rec;

struct follow {
    server *s;
    dict recs;
    struct event *tick;
    int64_t next_check_ms;
    int64_t down_since_ms; /* 0 while Redis is available */
    int cut_off;           /* clients were closed for this outage */
};

typedef struct name_key {
    const char *name;
    size_t len;
} name_key;

static int rec_eq(const dict_node *n, const void *key)
{
    const rec *r = (const rec *)n;
    const name_key *k = key;

    return r->t->name_len == k->len && memcmp(r->t->name, k->name, k->len) == 0;
}

static rec *find(follow *f, const char *name, size_t len, uint64_t *h)
{
    name_key k = {name, len};

    *h = dict_siphash(name, len, f->s->topics.key);
    return (rec *)dict_find(&f->recs, *h, rec_eq, &k);
}

/* ---- handing offsets to the loops ---------------------------------------- */

/* Fans out messages (in offset order) that follow t's last offset. */
static void deliver(server *s, topic *t, publish_item *items, size_t n)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++)
        if (items[i].offset > t->last_offset)
            items[k++] = items[i];
    if (!k)
        return;
    for (size_t i = 0; i < k; i++) {
        items[i].t = t;
        items[i].next_same = i + 1 < k ? i + 2 : 0;
    }
    follow_before_block(s, t, items[0].offset, k);
    publish_fan_out(s, items, 0);
}

static void start_fill(rec *r);

static void on_fill(void *arg, int ok, const redis_row *rows, size_t n)
{
    rec *r = arg;
    server *s = r->f->s;
    publish_item *items;

    r->filling = 0;
    if (!ok || r->fill_gen != r->gen)
        return; /* the next check tries again */
    items = n ? calloc(n, sizeof *items) : NULL;
    if (n && !items)
        return;
    for (size_t i = 0; i < n; i++) {
        items[i].offset = rows[i].offset;
        items[i].ts_ms = rows[i].ts_ms;
        items[i].data = (char *)rows[i].data;
        items[i].data_len = rows[i].len;
    }
    deliver(s, r->t, items, n);
    free(items);
    if (n == FILL_PAGE || r->want > r->t->last_offset)
        start_fill(r);
}

static void start_fill(rec *r)
{
    server *s = r->f->s;

    if (r->filling)
        return;
    r->filling = 1;
    r->fill_gen = r->gen;
    s->stats.redis_gap_fills++;
    if (redis_engine_read(s->redis, r->t->name, r->t->name_len,
                          r->t->last_offset, FILL_PAGE, on_fill, r))
        r->filling = 0;
}

/* The topic's epoch changed: here, then in the other loops. */
static void switch_all(rec *r, const char *epoch, uint64_t newest)
{
    server *s = r->f->s;
    topic *t = r->t;

    log_info("topic %s: epoch changed (Redis restarted or failed over?); "
             "subscribers get the new epoch",
             t->name);
    s->stats.redis_epoch_changes++;
    r->gen++;
    r->want = newest;
    follow_switch_epoch(s, t, epoch, newest);
    for (int i = 1; i < s->b->n; i++) {
        lmsg *m = lmsg_new(LMSG_EPOCH, t->name, t->name_len);
        if (m) {
            memcpy(m->epoch, epoch, 33);
            m->offset = newest;
        }
        loops_post(s->b, i, m);
    }
}

static void on_meta(void *arg, int ok, const char *epoch, uint64_t newest,
                    uint64_t oldest)
{
    rec *r = arg;

    (void)oldest;
    r->checking = 0;
    if (!ok)
        return;
    if (strcmp(epoch, r->t->epoch) != 0) {
        switch_all(r, epoch, newest);
        return;
    }
    if (newest > r->want)
        r->want = newest;
    if (r->want > r->t->last_offset)
        start_fill(r);
}

static void check(rec *r)
{
    server *s = r->f->s;

    if (r->checking)
        return;
    r->checking = 1;
    if (redis_engine_meta(s->redis, r->t->name, r->t->name_len, on_meta, r))
        r->checking = 0;
}

/* ---- engine hooks -------------------------------------------------------- */

static void on_message(void *arg, const char *name, size_t len,
                       const redis_payload *pl)
{
    server *s = arg;
    uint64_t h, last = pl->first + pl->count - 1;
    rec *r = find(s->follow, name, len, &h);
    publish_item *items;
    size_t pos = 0, n = 0;
    const char *data;
    size_t dlen;

    if (!r)
        return;
    if (strcmp(pl->epoch, r->t->epoch) != 0) {
        /* Redis's word, not the feed's: a message of the old epoch may
         * still be on its way after the check saw the new one. */
        check(r);
        return;
    }
    if (last > r->want)
        r->want = last;
    if (last <= r->t->last_offset)
        return; /* had it (from a fill) */
    if (r->filling || pl->first > r->t->last_offset + 1) {
        start_fill(r); /* a jump: the stream first */
        return;
    }
    items = calloc(pl->count, sizeof *items);
    if (!items) {
        start_fill(r);
        return;
    }
    while (n < pl->count && redis_payload_next(pl, &pos, &data, &dlen) == 0) {
        items[n].offset = pl->first + n;
        items[n].ts_ms = pl->ts_ms;
        items[n].data = (char *)data;
        items[n].data_len = dlen;
        n++;
    }
    if (n == pl->count)
        deliver(s, r->t, items, n);
    else
        log_warn("redis: malformed message body on %s", r->t->name);
    free(items);
    if (r->want > r->t->last_offset)
        start_fill(r);
}

static void on_subscribed(void *arg, const char *name, size_t len)
{
    server *s = arg;
    uint64_t h;
    rec *r = find(s->follow, name, len, &h);

    if (r)
        check(r);
}

/* A command connection is back: check every followed topic now. */
static void on_ready(void *arg)
{
    server *s = arg;
    follow *f = s->follow;

    for (size_t b = 0; b <= f->recs.mask; b++)
        for (dict_node *n = f->recs.buckets[b]; n; n = n->next)
            check((rec *)n);
}

/* ---- interest ------------------------------------------------------------ */

void follow_watch(server *s, const char *name, size_t len, int on,
                  const char *epoch, uint64_t newest)
{
    follow *f = s->follow;
    uint64_t h;
    rec *r = find(f, name, len, &h);
    topic *t;

    if (!on) {
        if (r && r->watchers && --r->watchers == 0)
            r->idle_since_ms = server_now_ms(s);
        return;
    }
    if (r) {
        r->watchers++;
        r->idle_since_ms = 0;
        return;
    }
    t = topics_get(&s->topics, name, len);
    r = calloc(1, sizeof *r);
    if (!t || !r) {
        if (t)
            topics_release(&s->topics, t);
        free(r);
        log_error("out of memory following %.*s", (int)len, name);
        return;
    }
    topics_pin(t);
    if (!t->loaded) {
        memcpy(t->epoch, epoch, sizeof t->epoch);
        t->last_offset = t->next_offset = newest;
        t->loaded = 1;
    }
    r->f = f;
    r->t = t;
    r->watchers = 1;
    r->want = t->last_offset;
    dict_insert(&f->recs, &r->node, h);
    redis_engine_watch(s->redis, name, len, 1);
}

void follow_interest(server *s, topic *t, int on)
{
    lmsg *m;

    if (!s->redis)
        return;
    if (s->index == 0) {
        follow_watch(s, t->name, t->name_len, on, t->epoch, t->last_offset);
        return;
    }
    m = lmsg_new(LMSG_WATCH, t->name, t->name_len);
    if (m) {
        m->count = (size_t)on;
        memcpy(m->epoch, t->epoch, sizeof m->epoch);
        m->offset = t->last_offset;
    }
    loops_post(s->b, 0, m);
}

/* ---- any loop ------------------------------------------------------------ */

void follow_switch_epoch(server *s, topic *t, const char *epoch,
                         uint64_t newest)
{
    size_t len;

    memcpy(t->epoch, epoch, sizeof t->epoch);
    t->last_offset = t->next_offset = newest;
    topics_pin(t); /* closing a slow subscriber must not free t */
    for (sub *sb = t->subs, *next; sb; sb = next) {
        conn *c = sb->owner;
        char *text =
            chorus_encode_subscribed(NULL, t->name, t->epoch, newest, 0, &len);
        next = sb->t_next;
        if (!text) {
            conn_close(c, CHORUS_WS_CLOSE_INTERNAL, "out of memory");
            continue;
        }
        conn_send(c, CHORUS_WS_OP_TEXT, text, len);
        free(text);
        if (c->state != CONN_WS)
            continue;
        sb->live_from = 0;
        replay_start(c, sb, 0);
    }
    topics_unpin(&s->topics, t);
}

void follow_epoch_found(server *s, topic *t, const char *epoch, uint64_t newest)
{
    uint64_t h;
    rec *r = s->follow ? find(s->follow, t->name, t->name_len, &h) : NULL;

    if (r)
        switch_all(r, epoch, newest);
    else
        follow_switch_epoch(s, t, epoch, newest);
}

void follow_epoch_changed(server *s, const char *name, size_t len,
                          const char *epoch, uint64_t newest)
{
    topic *t = topics_find(&s->topics, name, len);

    if (t && t->loaded && strcmp(t->epoch, epoch) != 0)
        follow_switch_epoch(s, t, epoch, newest);
}

void follow_before_block(server *s, topic *t, uint64_t first, size_t count)
{
    uint64_t last = first + count - 1;

    if (!s->redis || first <= t->last_offset + 1)
        return;
    /* Offsets between last_offset and first never reached this loop:
     * its subscribers read them from the stream, then go live. */
    t->last_offset = last;
    topics_pin(t);
    for (sub *sb = t->subs, *next; sb; sb = next) {
        next = sb->t_next;
        if (!sb->replaying && sb->live_from < first - 1)
            replay_start(sb->owner, sb, sb->live_from);
    }
    topics_unpin(&s->topics, t);
}

int follow_available(const server *s)
{
    return !s->redis || __atomic_load_n(&s->b->redis_up, __ATOMIC_RELAXED);
}

/* ---- loop 0's timer ------------------------------------------------------ */

static void drop_idle(follow *f, int64_t now)
{
    server *s = f->s;

    for (size_t b = 0; b <= f->recs.mask; b++) {
        dict_node *n = f->recs.buckets[b], *next;
        for (; n; n = next) {
            rec *r = (rec *)n;
            next = n->next;
            if (!r->idle_since_ms ||
                now - r->idle_since_ms < FOLLOW_LINGER_MS || r->filling ||
                r->checking)
                continue;
            redis_engine_watch(s->redis, r->t->name, r->t->name_len, 0);
            dict_remove(&f->recs, &r->node);
            topics_unpin(&s->topics, r->t);
            free(r);
        }
    }
}

static void check_all(follow *f)
{
    for (size_t b = 0; b <= f->recs.mask; b++)
        for (dict_node *n = f->recs.buckets[b]; n; n = n->next)
            check((rec *)n);
}

/* Cut off past the grace period: every loop closes its clients. */
static void note_availability(follow *f, int64_t now)
{
    server *s = f->s;
    int up = redis_engine_available(s->redis);

    __atomic_store_n(&s->b->redis_up, up, __ATOMIC_RELAXED);
    if (up) {
        f->down_since_ms = 0;
        f->cut_off = 0;
        return;
    }
    if (!f->down_since_ms)
        f->down_since_ms = now;
    if (f->cut_off || now - f->down_since_ms < FOLLOW_GRACE_MS)
        return;
    f->cut_off = 1;
    log_warn("cut off from Redis for %ds: closing clients with 1001 so "
             "that they move to another node",
             FOLLOW_GRACE_MS / 1000);
    for (int i = 0; i < s->b->n; i++)
        loops_post(s->b, i, lmsg_new(LMSG_CUTOFF, NULL, 0));
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    follow *f = arg;
    int64_t now = server_now_ms(f->s);

    (void)fd;
    (void)what;
    note_availability(f, now);
    drop_idle(f, now);
    if (now >= f->next_check_ms) {
        f->next_check_ms = now + FOLLOW_CHECK_MS;
        check_all(f);
    }
}

int follow_init(server *s, char *err, size_t errlen)
{
    follow *f = calloc(1, sizeof *f);
    struct timeval tv = {0, TICK_MS * 1000};
    redis_engine_hooks hooks = {on_message, on_subscribed, on_ready, s};

    if (!f || dict_init(&f->recs, 64)) {
        free(f);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    f->s = s;
    s->follow = f;
    s->redis =
        redis_engine_new(s->base, s->cfg, &hooks, &s->stats, err, errlen);
    f->tick = event_new(s->base, -1, EV_PERSIST, tick_cb, f);
    if (!s->redis || !f->tick) {
        if (s->redis)
            snprintf(err, errlen, "out of memory");
        return -1;
    }
    event_add(f->tick, &tv);
    return 0;
}

void follow_destroy(server *s)
{
    follow *f = s->follow;

    if (!f)
        return;
    /* The engine first: requests in flight are failed while recs live. */
    redis_engine_free(s->redis);
    s->redis = NULL;
    for (size_t b = 0; f->recs.buckets && b <= f->recs.mask; b++) {
        dict_node *n = f->recs.buckets[b], *next;
        for (; n; n = next) {
            next = n->next;
            free(n); /* the topic table goes with the server */
        }
    }
    if (f->recs.buckets)
        dict_destroy(&f->recs);
    if (f->tick)
        event_free(f->tick);
    free(f);
    s->follow = NULL;
}
