#include "replay.h"

#include <string.h>

#include "chorus/wire.h"
#include "chorus/ws_frame.h"
#include "conn.h"
#include "frame_ref.h"
#include "history.h"
#include "log.h"
#include "server.h"
#include "topics.h"

int replay_plan(server *srv, topic *t, const char *epoch, uint64_t since,
                uint64_t newest, int *recovered, uint64_t *cursor)
{
    uint64_t first;

    stat_inc(&srv->stats.replays);
    if (strcmp(epoch, t->epoch) != 0 || since > newest) {
        /* A foreign epoch, or an offset this epoch never reached: the
         * client's position means nothing here; send all we have. */
        *recovered = 0;
        *cursor = srv->hist ? 0 : newest;
        return 0;
    }
    *cursor = since;
    if (!srv->hist) { /* nothing stored: only "up to date" recovers */
        *recovered = since == newest;
        *cursor = newest;
        return 0;
    }
    if (since == newest) {
        *recovered = 1;
        return 0;
    }
    if (history_first_offset(srv->hist, t->store_id, &first)) {
        log_error("history: %s", history_errmsg(srv->hist));
        return -1;
    }
    *recovered = first != 0 && first <= since + 1;
    return 0;
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

typedef struct page_ctx {
    conn *c;
    sub *s;
    size_t high_water;
    int failed;
} page_ctx;

static int emit_row(uint64_t offset, int64_t ts_ms, const char *data,
                    size_t data_len, void *arg)
{
    page_ctx *p = arg;
    topic *t = p->s->t;
    size_t bound = chorus_message_bound(t->name_len, data_len), n;
    frame_ref *f = frame_ref_new(bound);

    if (!f) {
        p->failed = 1;
        return 1;
    }
    n = chorus_encode_message((char *)frame_ref_payload(f), t->name,
                              t->name_len, offset, ts_ms, data, data_len);
    frame_ref_seal(f, CHORUS_WS_OP_TEXT, n);
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

void replay_pump(conn *c)
{
    server *srv = c->srv;
    page_ctx p = {c, NULL, REPLAY_HIGH_WATER, 0};

    if (srv->cfg->max_outbound_bytes / 2 < p.high_water)
        p.high_water = srv->cfg->max_outbound_bytes / 2;
    while (c->state == CONN_WS && c->replay_head &&
           conn_queued(c) < p.high_water) {
        sub *s = c->replay_head;
        int rows;

        if (s->cursor >= s->live_from && s->cursor >= s->t->last_offset) {
            finish(c, s); /* caught up: live from now on */
            continue;
        }
        p.s = s;
        rows = history_read(srv->hist, s->t->store_id, s->cursor,
                            REPLAY_PAGE_ROWS, emit_row, &p);
        if (p.failed)
            return; /* the connection was closed */
        if (rows < 0) {
            log_error("history: replay of %s failed: %s", s->t->name,
                      history_errmsg(srv->hist));
            conn_close(c, CHORUS_WS_CLOSE_INTERNAL, "history read failed");
            return;
        }
        if (rows == 0)
            finish(c, s); /* the rest was trimmed meanwhile */
    }
}
