#include "publish.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "chorus/wire.h"
#include "conn.h"
#include "frame_ref.h"
#include "history.h"
#include "http_api.h"
#include "log.h"
#include "server.h"
#include "session.h"
#include "topics.h"

static void commit_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    publish_flush(arg);
}

int publish_init(server *s)
{
    s->batch.commit_ev = event_new(s->base, -1, 0, commit_cb, s);
    if (!s->batch.commit_ev)
        return -1;
    return 0;
}

void publish_destroy(server *s)
{
    publish_flush(s);
    if (s->batch.commit_ev)
        event_free(s->batch.commit_ev);
    free(s->batch.items);
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

int publish_submit(server *s, conn *c, ack_kind ack, json_t *id, topic *t,
                   char *data, size_t data_len)
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
    topics_pin(t);
    it->c = c;
    conn_ref(c);
    it->ack = ack;
    it->id = id ? json_incref(id) : NULL;
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

typedef struct message_src {
    const topic *t;
    const publish_item *it;
} message_src;

static size_t fill_message(uint8_t *payload, void *arg)
{
    const message_src *m = arg;

    return chorus_encode_message((char *)payload, m->t->name,
                                 m->t->name_len, m->it->offset,
                                 m->it->ts_ms, m->it->data,
                                 m->it->data_len);
}

/* Encodes all of one topic's messages of this batch once, as one block of
 * consecutive frames, and shares that block with every live subscriber:
 * one buffer reference per subscriber per batch, whatever the number of
 * messages, and no copy. */
static void fan_out(server *s, publish_item *items, size_t first)
{
    topic *t = items[first].t;
    size_t total = 0, len = 0, count = 0;
    frame_ref *f;

    for (size_t i = first + 1; i; i = items[i - 1].next_same) {
        total += chorus_message_bound(t->name_len, items[i - 1].data_len) +
                 FRAME_REF_HEADROOM;
        t->last_offset = items[i - 1].offset;
        count++;
    }
    if (!t->subs)
        return;
    f = frame_ref_new(total);
    if (!f) {
        log_error("out of memory fanning out %s", t->name);
        return;
    }
    for (size_t i = first + 1; i; i = items[i - 1].next_same) {
        message_src m = {t, &items[i - 1]};
        size_t bound = chorus_message_bound(t->name_len, m.it->data_len);
        len += frame_write(frame_ref_payload(f) + len, CHORUS_WS_OP_TEXT,
                           bound, fill_message, &m);
    }
    frame_ref_seal_raw(f, len);
    /* A send may close a slow subscriber, which unlinks only that
     * subscriber's own node; the topic stays pinned by the batch. */
    for (sub *sb = t->subs, *next; sb; sb = next) {
        next = sb->t_next;
        if (sb->replaying)
            continue;
        if (conn_send_shared(sb->owner, f) == 0)
            s->stats.messages_delivered += count;
    }
    frame_ref_decref(f);
}

static void acknowledge(publish_item *it, const char *error)
{
    conn *c = it->c;

    if (c->state == CONN_DEAD)
        return;
    if (it->ack == ACK_HTTP) {
        http_api_publish_done(c, it->t, it->offset, error);
        return;
    }
    if (c->state != CONN_WS)
        return;
    if (error)
        session_error(c, it->id, CHORUS_ERR_INTERNAL, error);
    else
        session_published(c, it->id, it->t->name, it->offset);
}

static int write_batch(server *s)
{
    publish_batch *b = &s->batch;

    if (!s->hist)
        return 0;
    if (history_begin(s->hist))
        return -1;
    for (size_t i = 0; i < b->n; i++) {
        publish_item *it = &b->items[i];
        if (history_append(s->hist, it->t->store_id, it->offset, it->ts_ms,
                           it->data, it->data_len)) {
            history_rollback(s->hist);
            return -1;
        }
    }
    if (history_commit(s->hist))
        return -1;
    return 0;
}

void publish_flush(server *s)
{
    publish_batch *b = &s->batch;
    publish_item *items = b->items;
    size_t n = b->n, cap = b->cap;
    int failed;

    if (n == 0)
        return;
    {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        failed = write_batch(s) != 0;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (s->hist)
            metrics_observe_commit(&s->stats,
                                   (double)(t1.tv_sec - t0.tv_sec) +
                                       (double)(t1.tv_nsec - t0.tv_nsec) /
                                           1e9);
    }
    if (failed) {
        s->stats.history_errors++;
        if (server_log_due(s, LOG_CAUSE_HISTORY))
            log_error("history: write of %zu messages failed: %s", n,
                  history_errmsg(s->hist));
    } else {
        s->stats.history_commits++;
        s->stats.messages_published += n;
    }
    /* Detach the items first: an HTTP ack may go on to serve a pipelined
     * request, which may publish into a new batch. */
    b->items = NULL;
    b->n = b->cap = 0;
    for (size_t i = 0; i < n; i++) {
        publish_item *it = &items[i];
        if (it->t->batch_head == i + 1) {
            if (failed) /* nobody saw these offsets: hand them out again */
                it->t->next_offset = it->t->last_offset;
            else
                fan_out(s, items, i);
            it->t->batch_head = it->t->batch_tail = 0;
        }
        acknowledge(it, failed ? "history write failed" : NULL);
        free(it->data);
        if (it->id)
            json_decref(it->id);
        conn_unref(it->c);
        topics_unpin(&s->topics, it->t);
    }
    if (!b->items) { /* keep the array for the next turn */
        b->items = items;
        b->cap = cap;
    } else {
        free(items);
    }
}
