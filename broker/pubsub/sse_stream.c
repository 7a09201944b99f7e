#include "sse_stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "chorus/wire.h"
#include "chorus/ws_frame.h"
#include "conn.h"
#include "log.h"
#include "publish.h"
#include "replay.h"
#include "server.h"
#include "topics.h"

/* EventSource waits `retry` ms before reconnecting: about a second, plus
 * a jitter that differs per connection, so that the clients of a broker
 * that restarted do not all come back in the same instant. */
#define RETRY_BASE_MS 1000
#define RETRY_JITTER_MS 1000

/* Topic names are of A-Z a-z 0-9 . _ - : / @, epochs hex: no JSON
 * escaping is needed in these events. `subscribed` and `gap` together
 * take at most the topic and about 400 bytes. */
#define EVENT_MAX (CHORUS_TOPIC_MAX + 512)

/* Sends n bytes of text (a snprintf result for a buffer of cap bytes). */
static void send_text(conn *c, const char *text, int n, size_t cap)
{
    if (n > 0 && (size_t)n < cap)
        conn_send_bytes(c, text, (size_t)n);
    else /* cannot happen: the buffers are sized for the longest */
        conn_close(c, CHORUS_WS_CLOSE_INTERNAL, "event too long");
}

static void send_retry(conn *c)
{
    uint64_t x = c->id * 0x9e3779b97f4a7c15ull; /* spreads the ids */
    char text[64];

    x ^= x >> 29;
    send_text(
        c, text,
        snprintf(text, sizeof text, "retry: %llu\n\n",
                 (unsigned long long)(RETRY_BASE_MS + x % RETRY_JITTER_MS)),
        sizeof text);
}

/* `subscribed`, whose id is the position the stream delivers after (so
 * that a reconnect before any message resumes there), and `gap` when the
 * position asked for could not be recovered. */
static void send_subscribed(conn *c, const topic *t, const char *epoch,
                            uint64_t newest, uint64_t cursor, int recovered,
                            int gap)
{
    char text[EVENT_MAX];
    int n = snprintf(text, sizeof text,
                     "id: %s:%llu\nevent: subscribed\ndata: "
                     "{\"topic\":\"%s\",\"epoch\":\"%s\",\"offset\":%llu,"
                     "\"recovered\":%s,\"ping_interval_ms\":%llu}\n\n",
                     epoch, (unsigned long long)cursor, t->name, epoch,
                     (unsigned long long)newest, recovered ? "true" : "false",
                     (unsigned long long)c->srv->cfg->ping_interval_ms);

    if (gap && n > 0 && (size_t)n < sizeof text)
        n += snprintf(text + n, sizeof text - (size_t)n,
                      "event: gap\ndata: {\"epoch\":\"%s\",\"offset\":%llu}"
                      "\n\n",
                      epoch, (unsigned long long)newest);
    send_text(c, text, n, sizeof text);
}

/* A subscription waiting for the topic's state from the store. */
typedef struct stream_req {
    conn *c; /* referenced */
    sse_since since;
    size_t len;
    char name[];
} stream_req;

static void subscribe_with(conn *c, const stream_req *r,
                           const store_topic_info *info)
{
    server *srv = c->srv;
    topic *t = topics_get(&srv->topics, r->name, r->len);
    uint64_t cursor = info->newest;
    int recovered = 1;
    sub *s;

    if (!t || !(s = topics_subscribe(&srv->topics, t, c, &c->subs))) {
        if (t)
            topics_release(&srv->topics, t);
        conn_close(c, CHORUS_WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    s->sse = 1;
    c->nsubs = 1;
    publish_topic_adopt(t, info);
    if (r->since.has)
        replay_plan(srv, t, r->since.epoch, r->since.offset, info, &recovered,
                    &cursor);
    s->live_from = info->newest;
    send_subscribed(c, t, t->epoch, info->newest, cursor, recovered,
                    !recovered);
    if (r->since.has && c->state == CONN_WS)
        replay_start(c, s, cursor);
}

static void on_topic_info(void *arg, int status, const store_topic_info *info)
{
    stream_req *r = arg;
    conn *c = r->c;

    if (c->state != CONN_WS)
        ; /* gone meanwhile */
    else if (status != STORE_OK) {
        /* The head is out: the stream ends with the cause, and the
         * client's EventSource comes back after `retry`. */
        conn_close(c, CHORUS_WS_CLOSE_INTERNAL, "history store unavailable");
    } else
        subscribe_with(c, r, info);
    conn_unref(c);
    free(r);
}

void sse_stream_start(conn *c, const char *name, size_t len,
                      const sse_since *since)
{
    stream_req *r = calloc(1, sizeof *r + len + 1);

    /* Counted from here to gone(), which conn_abort calls once. */
    stat_inc(&c->srv->stats.sse_streams_total);
    stat_inc(&c->srv->stats.sse_streams);
    send_retry(c);
    if (!r) {
        conn_close(c, CHORUS_WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    r->c = c;
    conn_ref(c);
    r->since = *since;
    r->len = len;
    memcpy(r->name, name, len);
    publish_topic_info(c->srv, r->name, r->len, on_topic_info, r);
}

void sse_stream_epoch_changed(conn *c, sub *s, const store_topic_info *info)
{
    if (c->state != CONN_WS)
        return;
    replay_cancel(c, s);
    s->live_from = info->newest;
    send_subscribed(c, s->t, info->epoch, info->newest, 0, 0, 1);
    if (c->state == CONN_WS)
        replay_start(c, s, 0);
}

/* The comment keeps proxies from closing an idle stream; EventSource
 * hides comments, so the `ping` event beside it is what lets a page see
 * that its stream still lives (no id: Last-Event-ID stays). */
static void ping(conn *c)
{
    char text[96];

    send_text(c, text,
              snprintf(text, sizeof text,
                       ": ping\n\nevent: ping\ndata: {\"ts\":%lld}\n\n",
                       (long long)server_now_ms(c->srv)),
              sizeof text);
}

/* The last event: why the stream ends, as the WebSocket close code and
 * reason would say it (1001 the broker stops, 1013 slow consumer, 1008
 * token expired, 1011 internal): the client reconnects and resumes. */
static size_t end_event(conn *c, uint16_t code, const char *reason, char *out,
                        size_t cap)
{
    json_t *r = json_string(reason ? reason : "");
    char *quoted = r ? json_dumps(r, JSON_ENCODE_ANY) : NULL;
    int n = snprintf(out, cap,
                     "event: close\ndata: {\"code\":%u,\"reason\":%s}\n\n",
                     code, quoted ? quoted : "\"\"");

    (void)c;
    free(quoted);
    json_decref(r);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* Nothing more may be delivered to c: its subscription goes. */
static void detach(conn *c)
{
    replay_cancel_all(c);
    c->nsubs = 0;
    topics_unsubscribe_all(&c->srv->topics, &c->subs);
}

/* The stream is over: it leaves the open-streams gauge. */
static void gone(conn *c)
{
    stat_add(&c->srv->stats.sse_streams, (uint64_t)-1);
}

const conn_handler sse_stream_handler = {.on_drain = replay_pump,
                                         .on_detach = detach,
                                         .name = "/sse",
                                         .stream = 1,
                                         .on_ping = ping,
                                         .on_end = end_event,
                                         .on_gone = gone};
