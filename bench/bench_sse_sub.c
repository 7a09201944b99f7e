/* SSE subscribers (--sub sse): GET /sse/{topic} (Chorus) or nchan's
 * EventSource on /sub/{topic}, then the event stream, decoded in place
 * by bench_sse.c with nothing allocated per message. A "message" event's
 * payload is checked like a WebSocket delivery's (stats_record: order,
 * loss, duplicates, latency); Chorus's "id: <epoch>:<offset>" must also
 * go up by one per event, which is what a resume by Last-Event-ID
 * relies on.
 *
 * A data line that arrived whole is parsed where it lies and only its
 * payload header (HDR_LEN bytes) is kept until the blank line that ends
 * the event; a data line cut by a read keeps its first PFX_MAX bytes in
 * c->pfx, as the WebSocket path does for a fragmented message. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "bench.h"

/* lib/wire.c's message event without its "op" member, as /sse sends it */
#define SSE_HEAD "{\"topic\":\""

int sse_request(const conn *c, char *buf, size_t n)
{
    const char *path = B.proto == PROTO_NCHAN ? "/sub/" : "/sse/";
    int k = snprintf(buf, n,
                     "GET %s%s HTTP/1.1\r\nHost: %s\r\n"
                     "Accept: text/event-stream\r\nCache-Control: no-cache\r\n"
                     "\r\n",
                     path, B.tname[c->topic], B.hostport);

    return k > 0 && (size_t)k < n ? k : -1;
}

static int header_has(const chorus_http_response *res, const char *name,
                      const char *token)
{
    const chorus_http_header *h =
        chorus_http_find_header(res->headers, res->num_headers, name);

    return h && strcasestr(h->value, token) != NULL;
}

int sse_check_response(conn *c, const chorus_http_response *res)
{
    char msg[80];

    if (res->status != 200) {
        snprintf(msg, sizeof msg, "GET answered HTTP %d", res->status);
        net_dead(c, 1006, msg);
        return -1;
    }
    if (!header_has(res, "Content-Type", "text/event-stream")) {
        net_dead(c, 1006, "response is not text/event-stream");
        return -1;
    }
    memset(&c->sse_st, 0, sizeof c->sse_st);
    sse_dec_init(&c->sse_st.dec);
    chunk_dec_init(&c->sse_st.chunks);
    c->sse_st.chunked = header_has(res, "Transfer-Encoding", "chunked");
    c->pfx_len = 0;
    c->msg_len = 0;
    return 0;
}

void sse_opened(conn *c)
{
    /* nchan sends nothing to say it subscribed; Chorus sends "subscribed" */
    if (B.proto == PROTO_NCHAN) {
        c->subscribed = 1;
        B.subs_ok++;
    }
}

/* ------------------------------------------------------------ fields */

static void keep_prefix(conn *c, const uint8_t *p, size_t n)
{
    size_t cp = PFX_MAX - c->pfx_len;

    if (cp > n)
        cp = n;
    memcpy(c->pfx + c->pfx_len, p, cp);
    c->pfx_len = (uint16_t)(c->pfx_len + cp);
}

/* The payload inside a Chorus message event's data s[0..n), or NULL. */
static const uint8_t *payload_of(const conn *c, const uint8_t *s, size_t n,
                                 int whole, size_t *avail)
{
    const uint8_t *d = s;

    if (B.proto == PROTO_CHORUS)
        d = proto_chorus_data(c, s, n, whole, SSE_HEAD, sizeof SSE_HEAD - 1);
    if (d)
        *avail = (size_t)(s + n - d);
    return d;
}

static void data_chunk(conn *c, const sse_item *it)
{
    sse_sub *s = &c->sse_st;
    const uint8_t *d;
    size_t avail;

    if (s->payload)
        return; /* its header came whole in an earlier line of the event */
    if (it->first && it->fin && !s->has_data && !s->named_other) {
        /* the usual case: the data line whole, in place */
        d = payload_of(c, it->val, it->len, 1, &avail);
        if (d && avail >= HDR_LEN) {
            memcpy(c->pfx, d, HDR_LEN);
            c->pfx_len = HDR_LEN;
            s->payload = 1;
            s->has_data = 1;
            return;
        }
    }
    if (it->first && s->has_data) { /* lines of one event join with LF */
        keep_prefix(c, (const uint8_t *)"\n", 1);
        c->msg_len++;
    }
    s->has_data = 1;
    keep_prefix(c, it->val, it->len);
    c->msg_len += it->len;
}

static void name_chunk(conn *c, const sse_item *it)
{
    sse_sub *s = &c->sse_st;
    size_t room = sizeof s->name - s->name_len;

    if (it->first && it->fin && it->len == 7 &&
        memcmp(it->val, "message", 7) == 0) {
        s->name_len = 7;
        s->named_other = 0;
        return;
    }
    if (it->first)
        s->name_len = 0;
    if (it->len > room) {
        s->name_len = sizeof s->name; /* too long: none of ours */
        return;
    }
    memcpy(s->name + s->name_len, it->val, it->len);
    s->name_len = (uint8_t)(s->name_len + it->len);
    if (it->fin)
        s->named_other = !(s->name_len == 7 && !memcmp(s->name, "message", 7));
}

/* The id's offset: the digits after its last non-digit. */
static void id_chunk(conn *c, const sse_item *it)
{
    sse_sub *s = &c->sse_st;
    const uint8_t *p = it->val + it->len;
    uint64_t mul = 1;

    if (it->first && it->fin) { /* whole: read back from its end */
        s->id = 0;
        while (p > it->val && (unsigned)(p[-1] - '0') < 10) {
            s->id += (uint64_t)(p[-1] - '0') * mul;
            mul *= 10;
            p--;
        }
        return;
    }
    if (it->first)
        s->id = 0;
    for (size_t i = 0; i < it->len; i++) {
        unsigned dg = (unsigned)(it->val[i] - '0');
        s->id = dg < 10 ? s->id * 10 + dg : 0;
    }
}

static void on_field(conn *c, const sse_item *it)
{
    switch (it->field) {
    case SSE_F_DATA: data_chunk(c, it); break;
    case SSE_F_EVENT: name_chunk(c, it); break;
    case SSE_F_ID:
        if (B.proto == PROTO_CHORUS)
            id_chunk(c, it);
        break;
    case SSE_F_COMMENT:
        if (it->first)
            B.sse_comments++;
        break;
    default: break; /* retry, unknown fields */
    }
}

/* ------------------------------------------------------------ events */

static int named(const sse_sub *s, const char *name)
{
    size_t n = strlen(name);
    return s->name_len == n && memcmp(s->name, name, n) == 0;
}

static void check_id(conn *c)
{
    sse_sub *s = &c->sse_st;

    if (B.proto != PROTO_CHORUS)
        return;
    if (s->last_id && s->id != s->last_id + 1 && B.id_bad++ < 3)
        note("subscriber %u: event id offset %llu after %llu", c->idx,
             (unsigned long long)s->id, (unsigned long long)s->last_id);
    s->last_id = s->id;
}

static void on_message_event(conn *c, uint64_t now)
{
    sse_sub *s = &c->sse_st;
    const uint8_t *d;
    size_t avail = 0;

    check_id(c);
    if (s->payload) {
        stats_record(c, c->pfx, HDR_LEN, now);
        return;
    }
    d = payload_of(c, c->pfx, c->pfx_len, c->msg_len == c->pfx_len, &avail);
    if (d)
        stats_record(c, d, avail, now);
    else if (B.bad++ < 3)
        note("message event without string data: %.*s", (int)c->pfx_len,
             c->pfx);
}

static void on_event(conn *c, uint64_t now)
{
    sse_sub *s = &c->sse_st;

    if (!s->has_data) {
        /* no data line: not an event (the standard drops it) */
    } else if (!s->named_other) {
        on_message_event(c, now);
    } else if (named(s, "subscribed")) {
        /* its id is the position the stream delivers after */
        if (B.proto == PROTO_CHORUS)
            s->last_id = s->id;
        if (!c->subscribed) {
            c->subscribed = 1;
            B.subs_ok++;
        }
    } else if (named(s, "gap")) {
        B.sse_gaps++;
        note("subscriber %u: gap %.*s", c->idx, (int)c->pfx_len, c->pfx);
    } else if (named(s, "close")) {
        note("subscriber %u: close event %.*s", c->idx, (int)c->pfx_len,
             c->pfx);
    }
    s->has_data = s->payload = s->named_other = 0;
    s->name_len = 0;
    c->pfx_len = 0;
    c->msg_len = 0;
}

static void events(conn *c, const uint8_t *p, size_t n, uint64_t now)
{
    sse_item it;

    while (n && c->state == S_OPEN) {
        size_t used = sse_dec_next(&c->sse_st.dec, p, n, &it);
        p += used;
        n -= used;
        if (it.type == SSE_FIELD)
            on_field(c, &it);
        else if (it.type == SSE_DISPATCH)
            on_event(c, now);
    }
}

void sse_feed(conn *c, const uint8_t *buf, size_t len, uint64_t now)
{
    const uint8_t *data;
    size_t n, used;
    int r;

    if (!c->sse_st.chunked) {
        events(c, buf, len, now);
        return;
    }
    while (len && c->state == S_OPEN) {
        r = chunk_dec_next(&c->sse_st.chunks, buf, len, &data, &n, &used);
        buf += used;
        len -= used;
        events(c, data, n, now);
        if (r == CHUNK_ERROR) {
            net_dead(c, 1002, "malformed chunked encoding");
            return;
        }
        if (r == CHUNK_END) {
            net_dead(c, 1000, "event stream ended");
            return;
        }
    }
}
