#include "publish.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "chorus/wire.h"
#include "conn.h"
#include "fanout.h"
#include "frame_ref.h"
#include "log.h"
#include "loops.h"
#include "server.h"
#include "topics.h"

static void start_commit(server *s);

static double now_mono(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int publish_here(const server *s)
{
    if (s->store && !s->store->engine->central_publish)
        return 1;
    return s->index == 0;
}

/* End of a loop turn: hand the batch to the engine if none is in flight
 * (else it goes when that one is done), or complete it here when there
 * is no engine. */
static void commit_cb(evutil_socket_t fd, short what, void *arg)
{
    server *s = arg;

    (void)fd;
    (void)what;
    if (s->store)
        start_commit(s);
    else
        publish_flush(s);
}

int publish_init(server *s, char *err, size_t errlen)
{
    s->batch.commit_ev = event_new(s->base, -1, 0, commit_cb, s);
    if (!s->batch.commit_ev) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static void slot_free(publish_slot *sl)
{
    free(sl->msgs);
    free(sl->acks);
}

void publish_destroy(server *s)
{
    publish_flush(s);
    if (s->batch.commit_ev)
        event_free(s->batch.commit_ev);
    slot_free(&s->batch.collecting);
    slot_free(&s->batch.inflight);
}

/* Without history a topic lives only in memory: each time it is created
 * it starts over at offset 0 in a new epoch. */
static int load_volatile(topic *t)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char r[16];

    if (RAND_bytes(r, sizeof r) != 1)
        return -1;
    for (size_t i = 0; i < sizeof r; i++) {
        t->epoch[2 * i] = hex[r[i] >> 4];
        t->epoch[2 * i + 1] = hex[r[i] & 15];
    }
    t->epoch[32] = '\0';
    t->loaded = 1;
    return 0;
}

void publish_topic_info(server *s, const char *name, size_t len,
                        store_topic_cb cb, void *arg)
{
    store_topic_info info;
    topic *t;

    if (s->store) {
        store_topic(s->store, name, len, cb, arg);
        return;
    }
    t = topics_get(&s->topics, name, len);
    if (!t || (!t->loaded && load_volatile(t) != 0)) {
        if (t)
            topics_release(&s->topics, t);
        cb(arg, STORE_FAIL, NULL);
        return;
    }
    memcpy(info.epoch, t->epoch, sizeof info.epoch);
    info.newest = t->last_offset;
    info.oldest = 0; /* nothing is kept */
    topics_pin(t);   /* the callback may subscribe to it */
    cb(arg, STORE_OK, &info);
    topics_unpin(&s->topics, t);
}

void publish_topic_adopt(topic *t, const store_topic_info *info)
{
    memcpy(t->epoch, info->epoch, sizeof t->epoch);
    t->loaded = 1;
    if (info->newest > t->last_offset)
        t->last_offset = info->newest;
}

static int slot_grow(publish_slot *sl)
{
    size_t cap = sl->cap ? sl->cap * 2 : 64;
    store_msg *msgs = realloc(sl->msgs, cap * sizeof *msgs);
    publish_ack *acks;

    if (!msgs)
        return -1;
    sl->msgs = msgs;
    acks = realloc(sl->acks, cap * sizeof *acks);
    if (!acks)
        return -1;
    sl->acks = acks;
    sl->cap = cap;
    return 0;
}

/* Appends a publish to the collecting batch; takes ownership of data.
 * With no engine, the offset is assigned here. */
static int batch_add(server *s, const char *name, size_t len, conn *c,
                     ack_kind ack, json_t *id, lmsg *reply, char *data,
                     size_t data_len)
{
    publish_slot *b = &s->batch.collecting;
    topic *t = topics_get(&s->topics, name, len);
    store_msg *m;
    publish_ack *a;

    if (!t || (!s->store && !t->loaded && load_volatile(t) != 0) ||
        (b->n == b->cap && slot_grow(b) != 0)) {
        if (t)
            topics_release(&s->topics, t);
        free(data);
        return -1;
    }
    m = &b->msgs[b->n];
    a = &b->acks[b->n++];
    topics_pin(t);
    *a = (publish_ack){t, c, reply, ack, id ? json_incref(id) : NULL, data};
    if (c)
        conn_ref(c);
    *m = (store_msg){.topic = t->name,
                     .topic_len = t->name_len,
                     .data = data,
                     .data_len = data_len,
                     .ts_ms = server_now_ms(s)};
    if (!s->store) {
        m->offset = ++t->next_offset;
        memcpy(m->epoch, t->epoch, sizeof m->epoch);
    }
    if (t->batch_tail)
        b->msgs[t->batch_tail - 1].next_same = b->n;
    else
        t->batch_head = b->n;
    t->batch_tail = b->n;
    if (b->n == 1)
        event_active(s->batch.commit_ev, EV_TIMEOUT, 0);
    return 0;
}

/* A publish received by a loop that does not append, waiting for its
 * ack from loop 0. */
typedef struct pending_ack {
    conn *c;
    ack_kind ack;
    json_t *id;
    size_t data_len;
} pending_ack;

static int forward(server *s, conn *c, ack_kind ack, json_t *id,
                   const char *name, size_t len, char *data, size_t data_len)
{
    pending_ack *p = malloc(sizeof *p);
    lmsg *m = lmsg_new(LMSG_PUBLISH, name, len);

    if (!p || !m) {
        free(p);
        free(m);
        free(data);
        return -1;
    }
    p->c = c;
    conn_ref(c);
    p->ack = ack;
    p->id = id ? json_incref(id) : NULL;
    p->data_len = data_len;
    m->origin = s->index;
    m->token = p;
    m->data = data;
    m->data_len = data_len;
    if (loops_try_post(s->b, 0, m) == 0)
        return 0;
    /* Loop 0 is gone (shutdown): nothing will ever answer p. */
    conn_unref(c);
    if (p->id)
        json_decref(p->id);
    free(p);
    lmsg_free(m); /* frees data */
    return -1;
}

int publish_submit(server *s, conn *c, ack_kind ack, json_t *id,
                   const char *name, size_t len, char *data, size_t data_len)
{
    if (!publish_here(s))
        return forward(s, c, ack, id, name, len, data, data_len);
    return batch_add(s, name, len, c, ack, id, NULL, data, data_len);
}

/* Sends a forwarded publish's message back to its loop as the ack. */
static void reply_forwarded(server *s, lmsg *m, const char *epoch,
                            uint64_t offset, int failed)
{
    m->type = LMSG_ACK;
    m->offset = offset;
    m->failed = failed;
    if (epoch)
        memcpy(m->epoch, epoch, sizeof m->epoch);
    loops_post(s->b, m->origin, m);
}

void publish_receive_forwarded(server *s, lmsg *m)
{
    char *data = m->data; /* ours now: batch_add takes it or frees it */

    m->data = NULL;
    if (batch_add(s, m->name, m->name_len, NULL, ACK_WS, NULL, m, data,
                  m->data_len) == 0)
        return;
    reply_forwarded(s, m, NULL, 0, 1);
}

/* Answers the publisher of data_len bytes: `published` or HTTP 200, or
 * `internal`. */
static void answer(conn *c, ack_kind ack, json_t *id, size_t data_len,
                   const char *name, const char *epoch, uint64_t offset,
                   const char *error)
{
    if (c->state != CONN_DEAD)
        c->srv->publish_answer[ack](c, id, data_len, name, epoch, offset,
                                    error);
}

void publish_forwarded_ack(server *s, lmsg *m)
{
    pending_ack *p = m->token;

    (void)s;
    answer(p->c, p->ack, p->id, p->data_len, m->name, m->epoch, m->offset,
           m->failed ? "history write failed" : NULL);
    if (p->id)
        json_decref(p->id);
    conn_unref(p->c);
    free(p);
}

static void acknowledge(server *s, const store_msg *m, publish_ack *a,
                        const char *error)
{
    if (a->c)
        answer(a->c, a->ack, a->id, m->data_len, m->topic, m->epoch, m->offset,
               error);
    else
        reply_forwarded(s, a->reply, m->epoch, m->offset, error != NULL);
}

/* Fault injection for tests (tests/integration/test_lost_block.py):
 * with CHORUS_FAULT_LOSE_BLOCK=<topic> in the environment, the first
 * committed block of that topic is handled as if building it had run out
 * of memory. Loop 0 only. */
static int fault_lose(const topic *t)
{
    static const char *name;
    static int read_env, fired;

    if (!read_env) {
        read_env = 1;
        name = getenv("CHORUS_FAULT_LOSE_BLOCK");
    }
    if (!name || fired || strcmp(name, t->name) != 0)
        return 0;
    fired = 1;
    return 1;
}

/* Hands one topic's committed block to every other loop. */
static void pass_on(server *s, topic *t, frame_ref *f, uint64_t first,
                    size_t count, const size_t *pos)
{
    for (int i = 1; i < s->b->n; i++) {
        lmsg *m = lmsg_new(LMSG_COMMITTED, t->name, t->name_len);
        if (m && (m->pos = malloc((count + 1) * sizeof *pos))) {
            memcpy(m->pos, pos, (count + 1) * sizeof *pos);
            frame_ref_incref(f);
            m->block = f;
            m->offset = first;
            m->count = count;
            loops_post(s->b, i, m);
        } else {
            free(m);
            loops_post_lost(s->b, i);
        }
    }
}

/* Fans one topic's committed messages out here and in every other loop. */
static void fan_out(server *s, const store_msg *msgs, topic *t, size_t first)
{
    size_t count, *pos;
    frame_ref *f;

    /* A subscribe may have read a newer offset from the store already. */
    for (size_t i = first + 1; i; i = msgs[i - 1].next_same)
        if (msgs[i - 1].offset > t->last_offset)
            t->last_offset = msgs[i - 1].offset;
    memcpy(t->epoch, msgs[first].epoch, sizeof t->epoch);
    t->loaded = 1;
    if (!t->subs && s->b->n == 1)
        return;
    f = fault_lose(t) ? NULL : fanout_build(t, msgs, first, &count, &pos);
    if (!f) {
        log_error("out of memory fanning out %s", t->name);
        fanout_lost(t);
        for (int i = 1; i < s->b->n; i++)
            loops_post_lost(s->b, i);
        return;
    }
    fanout_deliver(s, t, f, msgs[first].offset, count, pos);
    pass_on(s, t, f, msgs[first].offset, count, pos);
    free(pos);
    frame_ref_decref(f);
}

/* Marks the first message of each topic and unlinks the batch from the
 * topics, so that new publishes start a new batch. */
static void seal(publish_slot *sl)
{
    for (size_t i = 0; i < sl->n; i++)
        sl->msgs[i].group_first = sl->acks[i].t->batch_head == i + 1;
    for (size_t i = 0; i < sl->n; i++)
        sl->acks[i].t->batch_head = sl->acks[i].t->batch_tail = 0;
}

/* Makes a stored (or failed) batch visible: fan-out and acks. */
static void complete(server *s, publish_slot *sl, int failed, double seconds,
                     const char *why)
{
    /* An engine with a feed delivers every message through it. */
    int fans_out = !s->store || s->store->engine->central_publish;

    if (s->store)
        metrics_observe_commit(&s->stats, seconds);
    if (failed) {
        stat_inc(&s->stats.history_errors);
        server_log_limited(s, LOG_CAUSE_HISTORY, LOG_ERROR, &(log_fields){0},
                           "history: write of %zu messages failed: %s", sl->n,
                           why ? why : "unknown error");
    } else {
        stat_add(&s->stats.history_commits, s->store != NULL);
        stat_add(&s->stats.messages_published, sl->n);
    }
    for (size_t i = 0; i < sl->n; i++) {
        publish_ack *a = &sl->acks[i];
        if (sl->msgs[i].group_first && !failed && fans_out)
            fan_out(s, sl->msgs, a->t, i);
        acknowledge(s, &sl->msgs[i], a, failed ? "history write failed" : NULL);
        free(a->data);
        if (a->id)
            json_decref(a->id);
        if (a->c)
            conn_unref(a->c);
        topics_unpin(&s->topics, a->t);
    }
    sl->n = 0;
}

/* The engine's answer for the batch in flight. */
static void append_done(void *arg, int status, const char *why)
{
    server *s = arg;
    publish_batch *b = &s->batch;

    /* An HTTP ack may serve a pipelined request that publishes: it joins
     * the collecting batch, not this one. */
    complete(s, &b->inflight, status != STORE_OK, now_mono() - b->started, why);
    start_commit(s);
}

/* Hands the collected batch to the engine, if none is in flight. The
 * callback may run before store_append returns. */
static void start_commit(server *s)
{
    publish_batch *b = &s->batch;
    publish_slot spare = b->inflight;

    if (b->collecting.n == 0 || b->inflight.n)
        return;
    seal(&b->collecting);
    b->inflight = b->collecting;
    b->collecting = spare; /* reuse the arrays of the last batch */
    b->collecting.n = 0;
    b->started = now_mono();
    store_append(s->store, b->inflight.msgs, b->inflight.n, append_done, s);
}

void publish_flush(server *s)
{
    publish_batch *b = &s->batch;

    if (s->store) { /* until nothing is pending (shutdown) */
        while (b->inflight.n || b->collecting.n) {
            start_commit(s);
            store_flush(s->store);
        }
        return;
    }
    if (b->collecting.n == 0)
        return;
    seal(&b->collecting);
    /* No store: visible at once. An ack may publish again: into the
     * other slot. */
    publish_slot done = b->collecting;
    b->collecting = b->inflight;
    b->collecting.n = 0;
    complete(s, &done, 0, 0, NULL);
    b->inflight = done;
}
