#include "redis_follow.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "dict.h"
#include "log.h"
#include "redis_engine.h"

/* Offsets read from the stream per fill request. */
#define FILL_PAGE 512
#define TICK_MS 250

typedef struct frec {
    dict_node node;
    rfollow *f;
    char epoch[STORE_EPOCH_LEN + 1];
    int known;              /* epoch and delivered are set */
    uint64_t delivered;     /* newest offset handed to the feed */
    uint64_t want;          /* newest offset known to exist */
    int watched;            /* subscribed in Redis */
    int64_t idle_since_ms;  /* not watched since; 0 while watched */
    int64_t heard_ms;       /* the channel's last message */
    int filling, checking;  /* a request in flight */
    unsigned gen, fill_gen; /* gen changes with the epoch */
    size_t len;
    char name[];
} frec;

struct rfollow {
    const store_feed *feed;
    redis_engine *e;
    uint64_t *gap_fills, *epoch_changes;
    dict recs;
    uint8_t key[16];
    struct event *tick;
    int64_t next_check_ms;
};

typedef struct name_key {
    const char *name;
    size_t len;
} name_key;

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int rec_eq(const dict_node *n, const void *key)
{
    const frec *r = (const frec *)n;
    const name_key *k = key;

    return r->len == k->len && memcmp(r->name, k->name, k->len) == 0;
}

static frec *find(rfollow *f, const char *name, size_t len, uint64_t *h)
{
    name_key k = {name, len};

    *h = dict_siphash(name, len, f->key);
    return (frec *)dict_find(&f->recs, *h, rec_eq, &k);
}

static frec *get(rfollow *f, const char *name, size_t len)
{
    uint64_t h;
    frec *r = find(f, name, len, &h);

    if (r)
        return r;
    r = calloc(1, sizeof *r + len + 1);
    if (!r)
        return NULL;
    r->f = f;
    r->len = len;
    memcpy(r->name, name, len);
    r->idle_since_ms = mono_ms();
    dict_insert(&f->recs, &r->node, h);
    return r;
}

/* ---- handing offsets to the feed ----------------------------------------- */

/* msgs in offset order; those not after delivered are dropped. */
static void deliver(frec *r, store_msg *msgs, size_t n)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++)
        if (msgs[i].offset > r->delivered)
            msgs[k++] = msgs[i];
    if (!k)
        return;
    for (size_t i = 0; i < k; i++) {
        msgs[i].topic = r->name;
        msgs[i].topic_len = r->len;
        memcpy(msgs[i].epoch, r->epoch, sizeof msgs[i].epoch);
    }
    r->delivered = msgs[k - 1].offset;
    if (r->delivered > r->want)
        r->want = r->delivered;
    if (r->f->feed && r->watched)
        r->f->feed->messages(r->f->feed->arg, r->name, r->len, msgs, k);
}

static void start_fill(frec *r);

static void on_fill(void *arg, int ok, const redis_row *rows, size_t n)
{
    frec *r = arg;
    store_msg *msgs;

    r->filling = 0;
    if (!ok || r->fill_gen != r->gen)
        return; /* the next check tries again */
    msgs = n ? calloc(n, sizeof *msgs) : NULL;
    if (n && !msgs)
        return;
    for (size_t i = 0; i < n; i++) {
        msgs[i].offset = rows[i].offset;
        msgs[i].ts_ms = rows[i].ts_ms;
        msgs[i].data = rows[i].data;
        msgs[i].data_len = rows[i].len;
    }
    deliver(r, msgs, n);
    free(msgs);
    if (n == FILL_PAGE || r->want > r->delivered)
        start_fill(r);
}

static void start_fill(frec *r)
{
    if (r->filling || !r->f->e)
        return;
    r->filling = 1;
    r->fill_gen = r->gen;
    if (r->f->gap_fills)
        (*r->f->gap_fills)++;
    if (redis_engine_read(r->f->e, r->name, r->len, r->delivered, FILL_PAGE,
                          on_fill, r))
        r->filling = 0;
}

static void on_meta(void *arg, int ok, const char *epoch, uint64_t newest,
                    uint64_t oldest)
{
    frec *r = arg;
    store_topic_info info;

    r->checking = 0;
    if (!ok)
        return;
    if (!r->known) { /* followed from here */
        memcpy(r->epoch, epoch, sizeof r->epoch);
        r->delivered = r->want = newest;
        r->known = 1;
        return;
    }
    if (strcmp(epoch, r->epoch) != 0) {
        log_info("topic %.*s: epoch changed (Redis restarted or failed "
                 "over?); subscribers get the new epoch",
                 (int)r->len, r->name);
        if (r->f->epoch_changes)
            (*r->f->epoch_changes)++;
        memcpy(r->epoch, epoch, sizeof r->epoch);
        r->delivered = r->want = newest;
        r->gen++;
        memcpy(info.epoch, epoch, sizeof info.epoch);
        info.newest = newest;
        info.oldest = oldest;
        if (r->f->feed && r->watched)
            r->f->feed->epoch_changed(r->f->feed->arg, r->name, r->len, &info);
        return;
    }
    if (newest > r->want)
        r->want = newest;
    if (r->want > r->delivered)
        start_fill(r);
}

static void check(frec *r)
{
    if (r->checking || !r->f->e)
        return;
    r->checking = 1;
    if (redis_engine_meta(r->f->e, r->name, r->len, on_meta, r))
        r->checking = 0;
}

/* ---- the engine's hooks -------------------------------------------------- */

void rfollow_on_message(void *arg, const char *name, size_t len,
                        const redis_payload *pl)
{
    rfollow *f = arg;
    uint64_t h, last = pl->first + pl->count - 1;
    frec *r = find(f, name, len, &h);
    store_msg *msgs;
    size_t pos = 0, n = 0, dlen;
    const char *data;

    if (!r || !r->watched)
        return;
    r->heard_ms = mono_ms();
    if (!r->known || strcmp(pl->epoch, r->epoch) != 0) {
        /* Redis's word, not the channel's: a message of an old epoch may
         * still be on its way after a check saw the new one. */
        check(r);
        return;
    }
    if (last > r->want)
        r->want = last;
    if (last <= r->delivered)
        return; /* had it (from a fill) */
    if (r->filling || pl->first > r->delivered + 1) {
        start_fill(r); /* a jump: the stream first */
        return;
    }
    msgs = calloc(pl->count, sizeof *msgs);
    if (!msgs) {
        start_fill(r);
        return;
    }
    while (n < pl->count && redis_payload_next(pl, &pos, &data, &dlen) == 0) {
        msgs[n].offset = pl->first + n;
        msgs[n].ts_ms = pl->ts_ms;
        msgs[n].data = data;
        msgs[n].data_len = dlen;
        n++;
    }
    if (n == pl->count)
        deliver(r, msgs, n);
    else
        log_warn("redis: malformed message body on %.*s", (int)len, name);
    free(msgs);
    if (r->want > r->delivered)
        start_fill(r);
}

void rfollow_on_subscribed(void *arg, const char *name, size_t len)
{
    rfollow *f = arg;
    uint64_t h;
    frec *r = find(f, name, len, &h);

    if (r && r->watched)
        check(r);
}

/* A command connection is back: check what is followed now rather than
 * at the next periodic check. */
void rfollow_on_ready(void *arg)
{
    rfollow *f = arg;

    for (size_t b = 0; b <= f->recs.mask; b++)
        for (dict_node *n = f->recs.buckets[b]; n; n = n->next)
            if (((frec *)n)->watched)
                check((frec *)n);
}

/* ---- interest ------------------------------------------------------------ */

uint64_t rfollow_seen(rfollow *f, const char *name, size_t len,
                      const char *epoch, uint64_t newest)
{
    frec *r;

    if (!f->feed)
        return newest;
    r = get(f, name, len);
    if (!r)
        return newest;
    if (r->watched && r->known && strcmp(epoch, r->epoch) == 0 &&
        r->delivered > newest)
        return r->delivered;
    if (!r->known) {
        memcpy(r->epoch, epoch, sizeof r->epoch);
        r->delivered = r->want = newest;
        r->known = 1;
    } else if (r->watched && strcmp(epoch, r->epoch) != 0) {
        check(r); /* the follower switches, not the reader */
    } else if (!r->watched &&
               (strcmp(epoch, r->epoch) != 0 || newest < r->delivered)) {
        /* not followed meanwhile: start where the subscriber does */
        memcpy(r->epoch, epoch, sizeof r->epoch);
        r->delivered = r->want = newest;
        r->gen++;
    }
    if (!r->watched)
        r->idle_since_ms = mono_ms();
    return newest;
}

void rfollow_watch(rfollow *f, const char *name, size_t len, int on)
{
    uint64_t h;
    frec *r = on ? get(f, name, len) : find(f, name, len, &h);

    if (!f->feed || !r)
        return;
    if (on && !r->watched) {
        r->watched = 1;
        r->idle_since_ms = 0;
        redis_engine_watch(f->e, name, len, 1);
    } else if (!on && r->watched) {
        r->watched = 0;
        r->idle_since_ms = mono_ms();
    }
}

/* ---- the timer ----------------------------------------------------------- */

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    rfollow *f = arg;
    int64_t now = mono_ms();
    int check_due = now >= f->next_check_ms;

    (void)fd;
    (void)what;
    if (check_due)
        f->next_check_ms = now + REDIS_FOLLOW_CHECK_MS;
    for (size_t b = 0; b <= f->recs.mask; b++) {
        dict_node *n = f->recs.buckets[b], *next;
        for (; n; n = next) {
            frec *r = (frec *)n;
            next = n->next;
            if (r->watched) {
                /* A busy channel shows a loss by its next message's
                 * offset: only quiet ones need asking. */
                if (check_due && now - r->heard_ms >= REDIS_FOLLOW_CHECK_MS)
                    check(r);
                continue;
            }
            if (now - r->idle_since_ms < REDIS_FOLLOW_LINGER_MS || r->filling ||
                r->checking)
                continue;
            if (f->e) /* nothing when it was never subscribed */
                redis_engine_watch(f->e, r->name, r->len, 0);
            dict_remove(&f->recs, &r->node);
            free(r);
        }
    }
}

rfollow *rfollow_new(struct event_base *base, const store_feed *feed)
{
    rfollow *f = calloc(1, sizeof *f);
    struct timeval tv = {0, TICK_MS * 1000};

    if (!f || dict_init(&f->recs, 64) ||
        RAND_bytes(f->key, sizeof f->key) != 1) {
        free(f);
        return NULL;
    }
    f->feed = feed;
    f->tick = event_new(base, -1, EV_PERSIST, tick_cb, f);
    if (!f->tick) {
        rfollow_free(f);
        return NULL;
    }
    event_add(f->tick, &tv);
    return f;
}

void rfollow_set_engine(rfollow *f, redis_engine *e, uint64_t *gap_fills,
                        uint64_t *epoch_changes)
{
    f->e = e;
    f->gap_fills = gap_fills;
    f->epoch_changes = epoch_changes;
}

void rfollow_free(rfollow *f)
{
    if (!f)
        return;
    for (size_t b = 0; f->recs.buckets && b <= f->recs.mask; b++) {
        dict_node *n = f->recs.buckets[b], *next;
        for (; n; n = next) {
            next = n->next;
            free(n);
        }
    }
    if (f->recs.buckets)
        dict_destroy(&f->recs);
    if (f->tick)
        event_free(f->tick);
    free(f);
}
