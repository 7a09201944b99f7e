#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chorus/wire.h"
#include "conn.h"
#include "log.h"
#include "publish.h"
#include "replay.h"
#include "server.h"
#include "store.h"
#include "topics.h"

/* Sends a reply built by an encoder and frees it. */
static void send_json(conn *c, char *text, size_t len)
{
    if (!text) {
        conn_close(c, CHORUS_WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    conn_send_reply(c, CHORUS_WS_OP_TEXT, text, len);
    free(text);
}

void session_error(conn *c, json_t *id, const char *code, const char *message)
{
    size_t len;
    char *text;

    metrics_count_error(&c->srv->stats, code);
    text = chorus_encode_error(id, code, message, &len);
    send_json(c, text, len);
}

void session_published(conn *c, json_t *id, const char *topic_name,
                       uint64_t offset)
{
    size_t len;
    char *text;
    text = chorus_encode_published(id, topic_name, offset, &len);
    send_json(c, text, len);
}

/* Checks that come before a subscription: permission, since shape and
 * the per-connection limit. Replies and returns -1 when one fails. */
static int may_subscribe(conn *c, const chorus_request *req, int is_new)
{
    const config *cfg = c->srv->cfg;
    uint64_t max = cfg->max_subscriptions_per_connection;

    if (!auth_can_subscribe(cfg, &c->auth, req->topic, req->topic_len)) {
        session_error(c, req->id, CHORUS_ERR_FORBIDDEN,
                      "no subscribe permission for this topic");
        return -1;
    }
    if (req->has_since && !chorus_epoch_valid(req->since_epoch)) {
        session_error(c, req->id, CHORUS_ERR_BAD_REQUEST,
                      "since.epoch must be 32 lowercase hex characters");
        return -1;
    }
    if (is_new && max && c->nsubs >= max) {
        server_log_limited(c->srv, LOG_CAUSE_SUB_LIMIT, LOG_INFO,
                           &(log_fields){.conn = c->id,
                                         .peer = c->peer,
                                         .topic = req->topic,
                                         .topic_len = req->topic_len,
                                         .code = CHORUS_ERR_TOO_LARGE},
                           "max_subscriptions_per_connection (%llu) reached "
                           "subscribing to %.*s",
                           (unsigned long long)max, (int)req->topic_len,
                           req->topic);
        session_error(c, req->id, CHORUS_ERR_TOO_LARGE,
                      "too many subscriptions on this connection");
        return -1;
    }
    return 0;
}

/* A subscribe waiting for the topic's state from the store. */
typedef struct sub_req {
    conn *c; /* referenced */
    json_t *id;
    int has_since;
    char since_epoch[STORE_EPOCH_LEN + 1];
    uint64_t since_offset;
    size_t len;
    char name[];
} sub_req;

static void sub_req_free(sub_req *r)
{
    if (r->id)
        json_decref(r->id);
    conn_unref(r->c);
    free(r);
}

/* Subscribes c to the topic in the state info, replies `subscribed`
 * and starts the replay asked for. */
static void subscribe_with(conn *c, const sub_req *r,
                           const store_topic_info *info)
{
    server *srv = c->srv;
    uint64_t cursor = 0;
    int recovered = 0;
    topic *t = topics_get(&srv->topics, r->name, r->len);
    sub *s = t ? topics_find_sub(&srv->topics, t, c) : NULL;
    size_t len;
    char *text;

    if (!t) {
        session_error(c, r->id, CHORUS_ERR_INTERNAL, "out of memory");
        return;
    }
    publish_topic_adopt(t, info);
    if (r->has_since)
        replay_plan(srv, t, r->since_epoch, r->since_offset, info, &recovered,
                    &cursor);
    if (!s) {
        s = topics_subscribe(&srv->topics, t, c, &c->subs);
        if (!s) {
            topics_release(&srv->topics, t);
            session_error(c, r->id, CHORUS_ERR_INTERNAL, "out of memory");
            return;
        }
        s->live_from = info->newest;
        c->nsubs++;
    }
    text = chorus_encode_subscribed(r->id, t->name, t->epoch, info->newest,
                                    recovered, &len);
    send_json(c, text, len);
    if (r->has_since && c->state == CONN_WS)
        replay_start(c, s, cursor);
}

static void on_topic_info(void *arg, int status, const store_topic_info *info)
{
    sub_req *r = arg;
    conn *c = r->c;

    if (c->state != CONN_WS)
        ; /* gone meanwhile */
    else if (status != STORE_OK)
        session_error(c, r->id, CHORUS_ERR_INTERNAL,
                      "history store unavailable");
    else
        subscribe_with(c, r, info);
    sub_req_free(r);
}

static void on_subscribe(conn *c, const chorus_request *req)
{
    topic *t = topics_find(&c->srv->topics, req->topic, req->topic_len);
    sub *s = t ? topics_find_sub(&c->srv->topics, t, c) : NULL;
    sub_req *r;

    if (may_subscribe(c, req, s == NULL))
        return;
    r = calloc(1, sizeof *r + req->topic_len + 1);
    if (!r) {
        session_error(c, req->id, CHORUS_ERR_INTERNAL, "out of memory");
        return;
    }
    r->c = c;
    conn_ref(c);
    r->id = req->id ? json_incref(req->id) : NULL;
    r->has_since = req->has_since;
    if (req->has_since) {
        snprintf(r->since_epoch, sizeof r->since_epoch, "%s", req->since_epoch);
        r->since_offset = req->since_offset;
    }
    r->len = req->topic_len;
    memcpy(r->name, req->topic, req->topic_len);
    publish_topic_info(c->srv, r->name, r->len, on_topic_info, r);
}

void session_epoch_changed(conn *c, sub *s, const store_topic_info *info)
{
    size_t len;
    char *text;

    if (c->state != CONN_WS)
        return;
    replay_cancel(c, s);
    s->live_from = info->newest;
    text = chorus_encode_subscribed(NULL, s->t->name, info->epoch, info->newest,
                                    0, &len);
    send_json(c, text, len);
    if (c->state == CONN_WS)
        replay_start(c, s, 0);
}

static void on_unsubscribe(conn *c, const chorus_request *req)
{
    topics *ts = &c->srv->topics;
    topic *t = topics_find(ts, req->topic, req->topic_len);
    sub *s = t ? topics_find_sub(ts, t, c) : NULL;
    size_t len;
    char *text;

    if (!s) {
        session_error(c, req->id, CHORUS_ERR_NOT_SUBSCRIBED,
                      "not subscribed to this topic");
        return;
    }
    replay_cancel(c, s);
    topics_unsubscribe(ts, s, &c->subs);
    c->nsubs--;
    text = chorus_encode_unsubscribed(req->id, req->topic, &len);
    send_json(c, text, len);
}

/* Token bucket of publish_rate per second, publish_burst deep. */
static int take_publish_token(conn *c)
{
    const config *cfg = c->srv->cfg;
    double burst =
        (double)(cfg->publish_burst ? cfg->publish_burst : cfg->publish_rate);
    int64_t now = server_now_ms(c->srv);

    if (!cfg->publish_rate)
        return 1;
    if (c->publish_refill_ms == 0)
        c->publish_tokens = burst;
    else
        c->publish_tokens += (double)(now - c->publish_refill_ms) *
                             (double)cfg->publish_rate / 1000.0;
    if (c->publish_tokens > burst)
        c->publish_tokens = burst;
    c->publish_refill_ms = now;
    if (c->publish_tokens < 1.0)
        return 0;
    c->publish_tokens -= 1.0;
    return 1;
}

static void on_publish(conn *c, const chorus_request *req)
{
    server *srv = c->srv;
    char *data;
    size_t len;

    if (!auth_can_publish(srv->cfg, &c->auth, req->topic, req->topic_len)) {
        session_error(c, req->id, CHORUS_ERR_FORBIDDEN,
                      "no publish permission for this topic");
        return;
    }
    if (!take_publish_token(c)) {
        server_log_limited(srv, LOG_CAUSE_RATE_LIMIT, LOG_INFO,
                           &(log_fields){.conn = c->id,
                                         .peer = c->peer,
                                         .topic = req->topic,
                                         .topic_len = req->topic_len,
                                         .code = CHORUS_ERR_RATE_LIMITED},
                           "publish_rate exceeded publishing to %.*s",
                           (int)req->topic_len, req->topic);
        session_error(c, req->id, CHORUS_ERR_RATE_LIMITED,
                      "publish rate limit exceeded; slow down");
        return;
    }
    data = json_dumps(req->data, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!data) {
        session_error(c, req->id, CHORUS_ERR_INTERNAL, "out of memory");
        return;
    }
    len = strlen(data);
    if (publish_submit(srv, c, ACK_WS, req->id, req->topic, req->topic_len,
                       data, len))
        session_error(c, req->id, CHORUS_ERR_INTERNAL, "out of memory");
    else
        conn_publish_taken(c, len);
}

void session_message(conn *c, const char *data, size_t len)
{
    chorus_request req;
    chorus_wire_error err;
    size_t n;
    char *text;

    if (chorus_request_parse(data, len, &req, &err)) {
        session_error(c, err.id, err.code, err.message);
        chorus_wire_error_clear(&err);
        return;
    }
    switch (req.op) {
    case CHORUS_OP_SUBSCRIBE: on_subscribe(c, &req); break;
    case CHORUS_OP_UNSUBSCRIBE: on_unsubscribe(c, &req); break;
    case CHORUS_OP_PUBLISH: on_publish(c, &req); break;
    case CHORUS_OP_PING:
        text = chorus_encode_pong(req.id, &n);
        send_json(c, text, n);
        break;
    }
    chorus_request_free(&req);
}

static void on_ws_message(conn *c, int opcode, uint8_t *data, size_t len)
{
    (void)opcode; /* text: binary frames are refused before */
    session_message(c, (const char *)data, len);
}

/* Nothing more may be delivered to c: no subscription keeps it. */
static void detach(conn *c)
{
    replay_cancel_all(c);
    c->nsubs = 0;
    topics_unsubscribe_all(&c->srv->topics, &c->subs);
}

const conn_handler session_handler = {.on_message = on_ws_message,
                                      .on_drain = replay_pump,
                                      .on_detach = detach,
                                      .name = "/ws"};

void session_publish_answered(conn *c, json_t *id, size_t data_len,
                              const char *topic_name, const char *epoch,
                              uint64_t offset, const char *error)
{
    (void)epoch;
    if (c->state == CONN_WS && error)
        session_error(c, id, CHORUS_ERR_INTERNAL, error);
    else if (c->state == CONN_WS)
        session_published(c, id, topic_name, offset);
    conn_publish_answered(c, data_len); /* after the ack: it may close */
}
