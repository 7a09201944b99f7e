#include "replay.h"

#include <stdlib.h>
#include <string.h>

#include "chorus/wire.h"
#include "chorus/ws_frame.h"
#include "conn.h"
#include "frame_ref.h"
#include "log.h"
#include "server.h"
#include "sse_event.h"
#include "topics.h"

void replay_plan(server *srv, topic *t, const char *epoch, uint64_t since,
                 const store_topic_info *info, int *recovered, uint64_t *cursor)
{
    uint64_t newest = info->newest;

    (void)t;
    stat_inc(&srv->stats.replays);
    if (strcmp(epoch, info->epoch) != 0 || since > newest) {
        /* A foreign epoch, or an offset this epoch never reached: the
         * client's position means nothing here; send all we have. */
        *recovered = 0;
        *cursor = srv->store ? 0 : newest;
        return;
    }
    *cursor = since;
    if (!srv->store) { /* nothing stored: only "up to date" recovers */
        *recovered = since == newest;
        *cursor = newest;
        return;
    }
    *recovered =
        since == newest || (info->oldest != 0 && info->oldest <= since + 1);
}

static void unlink_replay(conn *c, sub *s)
{
    sub **p = &c->replay_head, *prev = NULL;

    while (*p && *p != s) {
        prev = *p;
        p = &(*p)->replay_next;
    }
    if (!*p)
        return;
    *p = s->replay_next;
    if (c->replay_tail == s)
        c->replay_tail = prev;
    s->replay_next = NULL;
    s->replaying = 0;
    c->replay_gen++;
}

/* Live from here: offsets up to the cursor have been sent. */
static void finish(conn *c, sub *s)
{
    if (s->cursor > s->live_from)
        s->live_from = s->cursor;
    unlink_replay(c, s);
}

void replay_start(conn *c, sub *s, uint64_t cursor)
{
    s->cursor = cursor;
    c->replay_gen++; /* a page in flight for s is stale now */
    if (!s->replaying) {
        s->replaying = 1;
        s->replay_next = NULL;
        if (c->replay_tail)
            c->replay_tail->replay_next = s;
        else
            c->replay_head = s;
        c->replay_tail = s;
    }
    replay_pump(c);
}

void replay_cancel(conn *c, sub *s)
{
    if (s->replaying)
        unlink_replay(c, s);
}

void replay_cancel_all(conn *c)
{
    while (c->replay_head)
        unlink_replay(c, c->replay_head);
}

/* One page read from the store for the subscription at the head of
 * the replay list. */
typedef struct page_ctx {
    conn *c; /* referenced */
    sub *s;  /* valid while c->replay_gen == gen */
    uint64_t gen;
    size_t high_water;
    int failed; /* a send failed: the connection was closed */
    int sync;   /* store_read has not returned yet */
    int done;   /* page_done ran while sync */
} page_ctx;

static int emit_row(void *arg, uint64_t offset, int64_t ts_ms, const char *data,
                    size_t data_len)
{
    page_ctx *p = arg;
    topic *t;
    size_t n;
    frame_ref *f;

    if (p->gen != p->c->replay_gen || p->c->state != CONN_WS)
        return 1; /* stale: the subscription changed meanwhile */
    t = p->s->t;
    if (p->s->sse) {
        f = sse_event_message(t, offset, ts_ms, data, data_len);
    } else if ((f = frame_ref_new(
                    chorus_message_bound(t->name_len, data_len)))) {
        n = chorus_encode_message((char *)frame_ref_payload(f), t->name,
                                  t->name_len, offset, ts_ms, data, data_len);
        frame_ref_seal(f, CHORUS_WS_OP_TEXT, n);
    }
    if (!f) {
        p->failed = 1;
        return 1;
    }
    if (conn_send_shared(p->c, f)) {
        frame_ref_decref(f);
        p->failed = 1;
        return 1;
    }
    frame_ref_decref(f);
    p->s->cursor = offset;
    stat_inc(&p->c->srv->stats.replayed_messages);
    stat_inc(&p->c->srv->stats.messages_delivered);
    return conn_queued(p->c) >= p->high_water;
}

static void page_done(void *arg, int status, size_t rows)
{
    page_ctx *p = arg;
    conn *c = p->c;
    int current = p->gen == c->replay_gen && c->state == CONN_WS;

    c->replay_reading = 0;
    if (current && status != STORE_OK) {
        conn_close(c, CHORUS_WS_CLOSE_INTERNAL, "history read failed");
    } else if (current && !p->failed && rows == 0) {
        finish(c, p->s); /* the rest was trimmed meanwhile */
    }
    if (p->sync) {
        p->done = 1; /* replay_pump goes on */
        return;
    }
    free(p);
    replay_pump(c);
    conn_unref(c);
}

/* Reads the next page for the head of c's replay list. Returns 1 when
 * that page is done (the pump may go on), 0 when it is still being read
 * or the pump must stop. */
static int read_page(conn *c, size_t high_water)
{
    sub *s = c->replay_head;
    page_ctx *p = calloc(1, sizeof *p);
    int done;

    if (!p) {
        conn_close(c, CHORUS_WS_CLOSE_INTERNAL, "out of memory");
        return 0;
    }
    *p = (page_ctx){c, s, c->replay_gen, high_water, 0, 1, 0};
    conn_ref(c);
    c->replay_reading = 1;
    store_read(c->srv->store, s->t->name, s->t->name_len, s->cursor,
               REPLAY_PAGE_ROWS, emit_row, page_done, p);
    if (!p->done) {
        p->sync = 0; /* page_done pumps on when it comes */
        return 0;
    }
    done = !p->failed;
    free(p);
    conn_unref(c);
    return done;
}

void replay_pump(conn *c)
{
    server *srv = c->srv;
    size_t high_water = REPLAY_HIGH_WATER;

    if (srv->cfg->max_outbound_bytes / 2 < high_water)
        high_water = srv->cfg->max_outbound_bytes / 2;
    while (c->state == CONN_WS && c->replay_head && !c->replay_reading &&
           conn_queued(c) < high_water) {
        sub *s = c->replay_head;

        if ((s->cursor >= s->live_from && s->cursor >= s->t->last_offset) ||
            !srv->store) {
            finish(c, s); /* caught up: live from now on */
            continue;
        }
        if (!read_page(c, high_water))
            return;
    }
}
