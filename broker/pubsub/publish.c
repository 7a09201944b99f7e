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
#include "loops.h"
#include "history.h"
#include "log.h"
#include "server.h"
#include "topics.h"
#include "writer.h"

static void start_commit(server *s);

/* End of a loop turn: hand the batch to the writer thread if it is idle
 * (else it goes when the one in flight is done), or complete it here
 * when there is no store to write. */
static void commit_cb(evutil_socket_t fd, short what, void *arg)
{
    server *s = arg;

    (void)fd;
    (void)what;
    if (s->batch.writer)
        start_commit(s);
    else
        publish_flush(s);
}

static void writer_done(void *arg);

int publish_init(server *s, char *err, size_t errlen)
{
    const config *cfg = s->cfg;
    history_opts hopts = {cfg->durability == DURABILITY_FULL, cfg->history_size,
                          cfg->history_ttl_ms};

    s->batch.commit_ev = event_new(s->base, -1, 0, commit_cb, s);
    if (!s->batch.commit_ev) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (s->index != 0 || !s->hist)
        return 0;
    s->batch.writer = writer_start(cfg->db_path, &hopts, s->base, writer_done,
                                   s, err, errlen);
    return s->batch.writer ? 0 : -1;
}

void publish_destroy(server *s)
{
    publish_flush(s);
    writer_stop(s->batch.writer);
    if (s->batch.commit_ev)
        event_free(s->batch.commit_ev);
    free(s->batch.items);
    free(s->batch.inflight);
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

topic *publish_load_topic(server *s, const char *name, size_t len)
{
    topic *t = topics_get(&s->topics, name, len);
    history_topic ht;

    if (!t)
        return NULL;
    if (t->loaded)
        return t;
    if (!s->hist) {
        if (load_volatile(t) == 0)
            return t;
        topics_release(&s->topics, t);
        return NULL;
    }
    if (history_topic_load(s->hist, t->name, 1, &ht) != 0) {
        log_error("history: cannot load topic %s: %s", t->name,
                  history_errmsg(s->hist));
        topics_release(&s->topics, t);
        return NULL;
    }
    t->loaded = 1;
    t->store_id = ht.id;
    memcpy(t->epoch, ht.epoch, sizeof t->epoch);
    t->last_offset = t->next_offset = ht.last_offset;
    return t;
}

int publish_newest(server *s, topic *t, uint64_t *newest)
{
    history_topic ht;

    *newest = t->last_offset;
    if (s->index == 0 || !s->hist)
        return 0;
    /* Loop 0 commits; blocks reach this loop a little later. An ack it
     * sent may already have reached a client, so ask the store. */
    if (history_topic_load(s->hist, t->name, 0, &ht) < 0) {
        log_error("history: cannot read topic %s: %s", t->name,
                  history_errmsg(s->hist));
        return -1;
    }
    if (ht.last_offset > *newest)
        *newest = ht.last_offset;
    return 0;
}

/* Appends an item to loop 0's batch; takes ownership of data. */
static int batch_add(server *s, topic *t, conn *c, ack_kind ack, json_t *id,
                     lmsg *reply, char *data, size_t data_len)
{
    publish_batch *b = &s->batch;
    publish_item *it;

    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        publish_item *items = realloc(b->items, cap * sizeof *items);
        if (!items) {
            free(data);
            topics_release(&s->topics, t);
            return -1;
        }
        b->items = items;
        b->cap = cap;
    }
    it = &b->items[b->n++];
    it->t = t;
    it->store_id = t->store_id;
    topics_pin(t);
    it->c = c;
    if (c)
        conn_ref(c);
    it->ack = ack;
    it->id = id ? json_incref(id) : NULL;
    it->reply = reply;
    it->offset = ++t->next_offset;
    it->ts_ms = server_now_ms(s);
    it->data = data;
    it->data_len = data_len;
    it->next_same = 0;
    if (t->batch_tail)
        b->items[t->batch_tail - 1].next_same = b->n;
    else
        t->batch_head = b->n;
    t->batch_tail = b->n;
    if (b->n == 1)
        event_active(b->commit_ev, EV_TIMEOUT, 0);
    return 0;
}

/* A publish received by a loop other than 0, waiting for its ack. */
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
    loops_post(s->b, 0, m);
    return 0;
}

int publish_submit(server *s, conn *c, ack_kind ack, json_t *id,
                   const char *name, size_t len, char *data, size_t data_len)
{
    topic *t;

    if (s->index != 0)
        return forward(s, c, ack, id, name, len, data, data_len);
    t = publish_load_topic(s, name, len);
    if (!t) {
        free(data);
        return -1;
    }
    return batch_add(s, t, c, ack, id, NULL, data, data_len);
}

/* Sends a forwarded publish's message back to its loop as the ack. */
static void reply_forwarded(server *s, lmsg *m, const topic *t, uint64_t offset,
                            int failed)
{
    m->type = LMSG_ACK;
    m->offset = offset;
    m->failed = failed;
    if (t)
        memcpy(m->epoch, t->epoch, sizeof m->epoch);
    loops_post(s->b, m->origin, m);
}

void publish_receive_forwarded(server *s, lmsg *m)
{
    topic *t = publish_load_topic(s, m->name, m->name_len);
    char *data = m->data; /* ours now: batch_add takes it or frees it */

    m->data = NULL;
    if (!t)
        free(data);
    else if (batch_add(s, t, NULL, ACK_WS, NULL, m, data, m->data_len) == 0)
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

static void acknowledge(server *s, publish_item *it, const char *error)
{
    if (it->c)
        answer(it->c, it->ack, it->id, it->data_len, it->t->name, it->t->epoch,
               it->offset, error);
    else
        reply_forwarded(s, it->reply, it->t, it->offset, error != NULL);
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

/* Fans one topic's committed items out here and in every other loop. */
static void fan_out(server *s, publish_item *items, size_t first)
{
    topic *t = items[first].t;
    size_t count, *pos;
    frame_ref *f;

    for (size_t i = first + 1; i; i = items[i - 1].next_same)
        t->last_offset = items[i - 1].offset;
    if (!t->subs && s->b->n == 1)
        return;
    f = fault_lose(t) ? NULL : fanout_build(t, items, first, &count, &pos);
    if (!f) {
        log_error("out of memory fanning out %s", t->name);
        fanout_lost(t);
        for (int i = 1; i < s->b->n; i++)
            loops_post_lost(s->b, i);
        return;
    }
    fanout_deliver(s, t, f, items[first].offset, count, pos);
    for (int i = 1; i < s->b->n; i++) {
        lmsg *m = lmsg_new(LMSG_COMMITTED, t->name, t->name_len);
        if (m && (m->pos = malloc((count + 1) * sizeof *pos))) {
            memcpy(m->pos, pos, (count + 1) * sizeof *pos);
            frame_ref_incref(f);
            m->block = f;
            m->offset = items[first].offset;
            m->count = count;
            loops_post(s->b, i, m);
        } else {
            free(m);
            loops_post_lost(s->b, i);
        }
    }
    free(pos);
    frame_ref_decref(f);
}

/* Marks the first item of each topic and unlinks the batch from the
 * topics, so that new publishes start a new batch. */
static void seal(publish_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        items[i].group_first = items[i].t->batch_head == i + 1;
    for (size_t i = 0; i < n; i++)
        items[i].t->batch_head = items[i].t->batch_tail = 0;
}

/* After a failed commit nobody saw its offsets: the topics start again
 * from their last committed offset, and the batch collected meanwhile is
 * numbered anew after it. */
static void renumber(server *s, const publish_item *failed, size_t n)
{
    publish_batch *b = &s->batch;

    for (size_t i = 0; i < n; i++)
        failed[i].t->next_offset = failed[i].t->last_offset;
    for (size_t i = 0; i < b->n; i++)
        b->items[i].t->next_offset = b->items[i].t->last_offset;
    for (size_t i = 0; i < b->n; i++)
        b->items[i].offset = ++b->items[i].t->next_offset;
}

/* Makes a committed (or failed) batch visible: fan-out and acks. */
static void complete(server *s, publish_item *items, size_t n, int failed,
                     double seconds, const char *why)
{
    if (s->hist)
        metrics_observe_commit(&s->stats, seconds);
    if (failed) {
        s->stats.history_errors++;
        if (server_log_due(s, LOG_CAUSE_HISTORY))
            log_error("history: write of %zu messages failed: %s", n, why);
        renumber(s, items, n);
    } else {
        s->stats.history_commits++;
        s->stats.messages_published += n;
    }
    for (size_t i = 0; i < n; i++) {
        publish_item *it = &items[i];
        if (it->group_first && !failed)
            fan_out(s, items, i);
        acknowledge(s, it, failed ? "history write failed" : NULL);
        free(it->data);
        if (it->id)
            json_decref(it->id);
        if (it->c)
            conn_unref(it->c);
        topics_unpin(&s->topics, it->t);
    }
}

/* Hands the collected batch to the writer thread, if it is idle. */
static void start_commit(server *s)
{
    publish_batch *b = &s->batch;
    publish_item *spare = b->inflight;
    size_t spare_cap = b->inflight_cap;

    if (b->n == 0 || b->inflight_n)
        return;
    seal(b->items, b->n);
    b->inflight = b->items;
    b->inflight_n = b->n;
    b->inflight_cap = b->cap;
    b->items = spare; /* reuse the array of the last batch */
    b->cap = spare_cap;
    b->n = 0;
    writer_submit(b->writer, b->inflight, b->inflight_n);
}

/* Collects the writer's result, if there is one (waiting for it when
 * wait is set), and completes that batch. */
static void finish_commit(server *s, int wait)
{
    publish_batch *b = &s->batch;
    int failed;
    double seconds;
    const char *why;
    size_t n = b->inflight_n;

    if (!n || !writer_take(b->writer, wait, &failed, &seconds, &why))
        return;
    /* An HTTP ack may serve a pipelined request that publishes: it joins
     * the collecting batch, not this one. */
    b->inflight_n = 0;
    complete(s, b->inflight, n, failed, seconds, why);
}

static void writer_done(void *arg)
{
    server *s = arg;

    finish_commit(s, 0);
    start_commit(s);
}

void publish_flush(server *s)
{
    publish_batch *b = &s->batch;
    publish_item *items = b->items;
    size_t n = b->n, cap = b->cap;

    if (b->writer) { /* until nothing is pending (shutdown) */
        while (b->inflight_n || b->n) {
            finish_commit(s, 1);
            start_commit(s);
        }
        return;
    }
    if (n == 0)
        return;
    seal(items, n);
    b->items = NULL;
    b->n = b->cap = 0;
    complete(s, items, n, 0, 0, NULL); /* no store: visible at once */
    if (!b->items) {                   /* keep the array for the next turn */
        b->items = items;
        b->cap = cap;
    } else {
        free(items);
    }
}
