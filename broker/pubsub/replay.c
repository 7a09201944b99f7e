#include "replay.h"

#include <string.h>

#include <event2/event.h>

#include "chorus/wire.h"
#include "chorus/ws_frame.h"
#include "conn.h"
#include "frame_ref.h"
#include "history.h"
#include "log.h"
#include "publish.h"
#include "server.h"
#include "topics.h"

int replay_plan(server *srv, topic *t, const char *epoch, uint64_t since,
                uint64_t newest, int *recovered, uint64_t *cursor)
{
    uint64_t first;

    srv->stats.replays++;
    if (strcmp(epoch, t->epoch) != 0 || since > newest) {
        /* A foreign epoch, or an offset this epoch never reached: the
         * client's position means nothing here; send all we have. */
        *recovered = 0;
        *cursor = srv->hist || srv->redis ? 0 : newest;
        return 0;
    }
    *cursor = since;
    if (srv->redis) { /* publish_newest read the oldest retained */
        *recovered = since == newest || (t->oldest && t->oldest <= since + 1);
        return 0;
    }
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
    p->c->srv->stats.replayed_messages++;
    p->c->srv->stats.messages_delivered++;
    return conn_queued(p->c) >= p->high_water;
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    server *srv = arg;

    (void)fd;
    (void)what;
    srv->replay_retry_armed = 0;
    for (conn *c = srv->conns; c; c = c->next)
        if (c->replay_head)
            replay_pump(c);
}

/* engine = redis: replays that could not read are tried again soon. */
static void retry_later(server *srv)
{
    struct timeval tv = {0, REPLAY_RETRY_MS * 1000};

    if (srv->replay_retry_armed)
        return;
    if (event_base_once(srv->base, -1, EV_TIMEOUT, retry_cb, srv, &tv) == 0)
        srv->replay_retry_armed = 1;
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
        rows =
            publish_read(srv, s->t, s->cursor, REPLAY_PAGE_ROWS, emit_row, &p);
        if (p.failed)
            return; /* the connection was closed */
        if (rows < 0 && srv->redis) {
            /* Redis out of reach: the subscriber waits, connected. */
            retry_later(srv);
            return;
        }
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
