#include "fanout.h"

#include <stdlib.h>

#include "chorus/wire.h"
#include "chorus/ws_frame.h"
#include "compress.h"
#include "conn.h"
#include "frame_ref.h"
#include "publish.h"
#include "store.h"
#include "server.h"
#include "sse_event.h"
#include "topics.h"

typedef struct message_src {
    const topic *t;
    const store_msg *it;
} message_src;

static size_t fill_message(uint8_t *payload, void *arg)
{
    const message_src *m = arg;

    return chorus_encode_message((char *)payload, m->t->name, m->t->name_len,
                                 m->it->offset, m->it->ts_ms, m->it->data,
                                 m->it->data_len);
}

/* The message after the 1-based index i: along next_same, or, for a run
 * (end != 0), the next in the array up to end (1-based). 0 after the last. */
static size_t next_of(const store_msg *msgs, size_t i, size_t end)
{
    if (end)
        return i < end ? i + 1 : 0;
    return msgs[i - 1].next_same;
}

static frame_ref *build(const topic *t, const store_msg *items, size_t first,
                        size_t end, size_t *count, size_t **pos)
{
    size_t total = 0, n = 0, len = 0, k = 0;
    frame_ref *f;

    for (size_t i = first + 1; i; i = next_of(items, i, end), n++)
        total += chorus_message_bound(t->name_len, items[i - 1].data_len) +
                 FRAME_REF_HEADROOM;
    f = frame_ref_new(total);
    *pos = malloc((n + 1) * sizeof **pos);
    if (!f || !*pos) {
        if (f)
            frame_ref_decref(f);
        free(*pos);
        *pos = NULL;
        return NULL;
    }
    for (size_t i = first + 1; i; i = next_of(items, i, end)) {
        message_src m = {t, &items[i - 1]};
        size_t bound = chorus_message_bound(t->name_len, m.it->data_len);
        (*pos)[k++] = len;
        len += frame_write(frame_ref_payload(f) + len, CHORUS_WS_OP_TEXT, bound,
                           fill_message, &m);
    }
    (*pos)[k] = len;
    frame_ref_seal_raw(f, len);
    *count = n;
    return f;
}

frame_ref *fanout_build(const topic *t, const store_msg *items, size_t first,
                        size_t *count, size_t **pos)
{
    return build(t, items, first, 0, count, pos);
}

frame_ref *fanout_build_run(const topic *t, const store_msg *msgs, size_t n,
                            size_t *count, size_t **pos)
{
    return build(t, msgs, 0, n, count, pos);
}

/* Sends frames i.. of a block to one subscriber. */
static void send_tail(server *s, sub *sb, frame_ref *f, const size_t *pos,
                      size_t i, size_t count)
{
    if (conn_send_shared_range(sb->owner, f, pos[i], pos[count] - pos[i]) == 0)
        stat_add(&s->stats.messages_delivered, count - i);
}

void fanout_deliver(server *s, topic *t, frame_ref *f, uint64_t first,
                    size_t count, const size_t *pos)
{
    uint64_t last = first + count - 1;
    frame_ref *zf = NULL; /* compressed twin, built on first need */
    frame_ref *sf = NULL; /* Server-Sent Events twin, likewise */
    size_t *zpos = NULL, *spos = NULL;
    int ztried = 0, stried = 0;

    if (last > t->last_offset)
        t->last_offset = last;
    /* A send may close a slow subscriber, which unlinks only that
     * subscriber's own node; the caller keeps the topic alive. */
    for (sub *sb = t->subs, *next; sb; sb = next) {
        size_t i = 0;
        next = sb->t_next;
        if (sb->replaying || sb->live_from >= last)
            continue;
        if (sb->live_from >= first)
            i = (size_t)(sb->live_from - first) + 1;
        if (sb->sse) {
            if (!stried) {
                stried = 1;
                sf = sse_event_block(t, f, first, count, pos, &spos);
            }
            if (sf)
                send_tail(s, sb, sf, spos, i, count);
            else /* it would miss these: it resumes instead */
                conn_close(sb->owner, CHORUS_WS_CLOSE_TRY_AGAIN,
                           "out of memory");
            continue;
        }
        if (((conn *)sb->owner)->pmd && !ztried) {
            ztried = 1;
            zf = compress_block(s, f, count, pos, &zpos);
        }
        if (((conn *)sb->owner)->pmd && zf)
            send_tail(s, sb, zf, zpos, i, count);
        else
            send_tail(s, sb, f, pos, i, count);
    }
    if (zf)
        frame_ref_decref(zf);
    if (sf)
        frame_ref_decref(sf);
    free(zpos);
    free(spos);
}

#define LOST_REASON "missed messages (out of memory); resume"

void fanout_lost(topic *t)
{
    /* Closing drops the subscription: the caller keeps t alive. */
    for (sub *sb = t->subs, *next; sb; sb = next) {
        next = sb->t_next;
        conn_close(sb->owner, CHORUS_WS_CLOSE_TRY_AGAIN, LOST_REASON);
    }
}

void fanout_lost_all(server *s)
{
    for (conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == CONN_WS && c->nsubs)
            conn_close(c, CHORUS_WS_CLOSE_TRY_AGAIN, LOST_REASON);
    }
}

void publish_deliver_block(server *s, const char *name, size_t len,
                           frame_ref *f, uint64_t first, size_t count,
                           const size_t *pos)
{
    topic *t = topics_find(&s->topics, name, len);

    if (!t || !t->loaded)
        return; /* nobody here subscribes to it */
    topics_pin(t);
    fanout_deliver(s, t, f, first, count, pos);
    topics_unpin(&s->topics, t);
}
