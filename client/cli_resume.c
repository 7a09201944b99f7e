/* chorus sub: subscribe and print message events, optionally resuming.
 *
 * Per topic the command remembers the epoch of the subscription and the
 * offset of the last message it printed (the "position"). With --since the
 * first subscription starts from a given position; with --resume FILE the
 * positions are loaded from and saved to FILE; with --reconnect (implied by
 * --resume) a lost connection is re-established with exponential backoff
 * and every topic is subscribed again with `since`, so that nothing still
 * in the broker's history is lost and nothing is printed twice.
 *
 * Invariants:
 * - a message is printed only when its offset is above the position of its
 *   topic in the current epoch; the position moves only after the line has
 *   been written and flushed;
 * - FILE only ever holds positions that were reached (written atomically:
 *   temporary file, fsync, rename), at most 100 ms behind and exactly up to
 *   date on exit. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "chorus/ws_client.h"
#include "cli.h"
#include "cli_resume.h"

#define BACKOFF_START_MS 100u
#define BACKOFF_CAP_MS 5000u
#define LIVENESS_TICK_MS 5000u
#define PING_AFTER_MS 15000u /* silence before we ping */
#define DEAD_AFTER_MS 45000u /* silence before we give the connection up */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- connection ---- */

static void sub_connect(sub_ctx *s);

static void stop(sub_ctx *s, int status)
{
    if (status > s->status)
        s->status = status;
    if (s->stopping)
        return;
    s->stopping = 1;
    if (s->ws)
        chorus_ws_client_close(s->ws, 1000, "bye"); /* on_close ends it */
    else
        event_base_loopbreak(s->base);
}

static void send_json(sub_ctx *s, json_t *req)
{
    char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!text) {
        cli_error("out of memory");
        stop(s, CLI_FAIL);
        return;
    }
    if (chorus_ws_client_send_text(s->ws, text, strlen(text)) < 0)
        chorus_ws_client_close(s->ws, 1000, "cannot send");
    free(text);
}

static void on_open(chorus_ws_client *c, void *arg)
{
    sub_ctx *s = arg;
    (void)c;
    s->opened = 1;
    s->last_rx_ms = now_ms();
    s->ping_out = 0;
    if (s->a->verbose)
        fprintf(stderr, "chorus: connected to %s\n", s->a->url);
    for (int i = 0; i < s->ntopics && s->ws && !s->stopping; i++) {
        sub_topic *t = &s->topics[i];
        t->confirmed = 0;
        t->sent_since = t->epoch != NULL;
        json_t *req = json_pack("{s:s, s:I, s:s}", "op", "subscribe", "id",
                                (json_int_t)(i + 1), "topic", t->name);
        if (req && t->epoch)
            json_object_set_new(req, "since",
                                json_pack("{s:s, s:I}", "epoch", t->epoch,
                                          "offset", (json_int_t)t->last));
        send_json(s, req);
    }
}

/* A number that is an exact non-negative integer (the message may have
 * been parsed with integers as reals). */
static int get_u64(json_t *v, uint64_t *out)
{
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d >= 0 && d < 9007199254740992.0 && d == (double)(uint64_t)d) {
            *out = (uint64_t)d;
            return 0;
        }
    }
    return -1;
}

static sub_topic *find_topic(sub_ctx *s, const char *name)
{
    for (int i = 0; name && i < s->ntopics; i++)
        if (strcmp(s->topics[i].name, name) == 0)
            return &s->topics[i];
    return NULL;
}

/* Moves the topic's position as a `subscribed` reply says: live from
 * here on, a new epoch (start over), a gap, or a clean resume. Returns -1
 * when out of memory. */
static int apply_subscribed(sub_topic *t, const char *epoch, uint64_t newest,
                            int recovered)
{
    if (!t->sent_since) { /* live from here on */
        if (sub_set_epoch(t, epoch) < 0)
            return -1;
        t->last = newest;
        t->contiguous = 1;
    } else if (strcmp(epoch, t->epoch) != 0) {
        cli_error("topic %s: history gap (recovered: false)", t->name);
        cli_error("topic %s: new epoch %s (was %s): starting over from its "
                  "oldest retained message",
                  t->name, epoch, t->epoch);
        if (sub_set_epoch(t, epoch) < 0)
            return -1;
        t->last = 0;
        t->contiguous = 0;
    } else if (!recovered || newest < t->last) {
        cli_error("topic %s: history gap (recovered: false)", t->name);
        if (newest < t->last) {
            /* the broker lost messages we have printed: skip what it
             * resends of them, print what comes after */
            cli_error("topic %s: the broker's newest offset is %llu, we had "
                      "printed up to %llu",
                      t->name, (unsigned long long)newest,
                      (unsigned long long)t->last);
            t->last = newest;
        }
        t->contiguous = 0;
    } else {
        t->contiguous = 1;
    }
    return 0;
}

/* Once every topic is confirmed the connection works: reset the backoff. */
static void confirm_topic(sub_ctx *s, sub_topic *t)
{
    t->confirmed = 1;
    sub_mark_dirty(s);
    int all = 1;
    for (int i = 0; i < s->ntopics; i++)
        all &= s->topics[i].confirmed;
    if (all)
        s->attempt = 0;
}

static void on_subscribed(sub_ctx *s, json_t *msg)
{
    sub_topic *t =
        find_topic(s, json_string_value(json_object_get(msg, "topic")));
    const char *epoch = json_string_value(json_object_get(msg, "epoch"));
    uint64_t newest;
    if (!t || !epoch || get_u64(json_object_get(msg, "offset"), &newest)) {
        cli_error("unexpected reply from the broker (subscribed)");
        stop(s, CLI_FAIL);
        return;
    }
    int recovered = json_is_true(json_object_get(msg, "recovered"));
    /* Without an id: the epoch changed under the live subscription
     * (PROTOCOL.md); a gap like any `recovered: false`, whether or not
     * this connection resumed. */
    if (!json_object_get(msg, "id") && t->epoch)
        t->sent_since = 1;
    if (s->a->verbose)
        fprintf(stderr, "chorus: subscribed to %s (epoch %s, offset %llu%s)\n",
                t->name, epoch, (unsigned long long)newest,
                t->sent_since ? (recovered ? ", recovered" : ", not recovered")
                              : "");
    if (apply_subscribed(t, epoch, newest, recovered) < 0) {
        cli_error("out of memory");
        stop(s, CLI_FAIL);
        return;
    }
    confirm_topic(s, t);
}

/* One event per line, as received; the broker sends compact JSON, so a
 * reply that spans lines is re-encoded. */
static int print_event(json_t *msg, const char *raw, size_t len)
{
    if (memchr(raw, '\n', len) || memchr(raw, '\r', len)) {
        if (json_dumpf(msg, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER) < 0)
            return -1;
    } else if (fwrite(raw, 1, len, stdout) != len) {
        return -1;
    }
    if (putchar('\n') == EOF || fflush(stdout) == EOF)
        return -1;
    return 0;
}

static void on_event(sub_ctx *s, json_t *msg, const char *raw, size_t len)
{
    sub_topic *t =
        find_topic(s, json_string_value(json_object_get(msg, "topic")));
    uint64_t off;
    if (!t || !t->epoch || get_u64(json_object_get(msg, "offset"), &off))
        return; /* not ours, or before `subscribed` (never happens) */
    if (off <= t->last)
        return; /* printed already */
    if (t->contiguous && off != t->last + 1)
        cli_error("topic %s: offsets %llu to %llu are missing", t->name,
                  (unsigned long long)(t->last + 1),
                  (unsigned long long)(off - 1));
    if (print_event(msg, raw, len) < 0) {
        int err = errno;
        if (err != EPIPE) /* reader went away: a normal end */
            cli_error("cannot write to stdout: %s", strerror(err));
        stop(s, err == EPIPE ? CLI_OK : CLI_FAIL);
        return;
    }
    t->last = off;
    t->contiguous = 1;
    sub_mark_dirty(s);
}

static void on_error_reply(sub_ctx *s, json_t *msg)
{
    json_int_t id = json_integer_value(json_object_get(msg, "id"));
    const char *code = json_string_value(json_object_get(msg, "code"));
    const char *text = json_string_value(json_object_get(msg, "message"));
    const char *topic =
        id >= 1 && id <= s->ntopics ? s->topics[id - 1].name : NULL;
    cli_error("%s%s%s%s%s", topic ? topic : "", topic ? ": " : "",
              code ? code : "error", text ? ": " : "", text ? text : "");
    if (s->reconnect && code &&
        (strcmp(code, "internal") == 0 || strcmp(code, "rate_limited") == 0)) {
        /* may pass: start over on a new connection */
        chorus_ws_client_close(s->ws, 1000, "retry");
        return;
    }
    stop(s, CLI_FAIL);
}

static void on_message(chorus_ws_client *c, int opcode, const uint8_t *data,
                       size_t len, void *arg)
{
    sub_ctx *s = arg;
    (void)c;
    s->last_rx_ms = now_ms();
    s->ping_out = 0;
    if (s->stopping)
        return;
    json_error_t jerr;
    json_t *msg = NULL;
    if (opcode == 1) { /* text; huge integers in data: parse them as reals */
        msg = json_loadb((const char *)data, len, 0, &jerr);
        if (!msg)
            msg = json_loadb((const char *)data, len, JSON_DECODE_INT_AS_REAL,
                             &jerr);
    }
    const char *op = json_string_value(json_object_get(msg, "op"));
    if (!op || !json_is_object(msg)) {
        cli_error("unexpected message from the broker: %.*s",
                  (int)(len > 200 ? 200 : len), (const char *)data);
        json_decref(msg);
        stop(s, CLI_FAIL);
        return;
    }
    if (strcmp(op, "message") == 0)
        on_event(s, msg, (const char *)data, len);
    else if (strcmp(op, "subscribed") == 0)
        on_subscribed(s, msg);
    else if (strcmp(op, "error") == 0)
        on_error_reply(s, msg);
    json_decref(msg);
}

/* Closes after which reconnecting cannot help. */
static int fatal_close(int code, const char *reason)
{
    if (code == 1002 || code == 1003 || code == 1007 || code == 1008 ||
        code == 1009)
        return 1;
    if (strncmp(reason, "HTTP 4", 6) == 0 &&
        strncmp(reason, "HTTP 408", 8) != 0 &&
        strncmp(reason, "HTTP 429", 8) != 0)
        return 1;
    return strncmp(reason, "bad URL", 7) == 0 ||
           strstr(reason, "certificate verify failed") != NULL;
}

static uint64_t rng_next(sub_ctx *s)
{
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return s->rng * 0x2545F4914F6CDD1Dull;
}

/* Exponential backoff with jitter: attempt n waits a random time in
 * [d/2, d], d = min(cap, start * 2^n). */
static unsigned backoff_ms(sub_ctx *s)
{
    unsigned d = BACKOFF_CAP_MS;
    if (s->attempt < 16 && (BACKOFF_START_MS << s->attempt) < BACKOFF_CAP_MS)
        d = BACKOFF_START_MS << s->attempt;
    if (s->attempt < 100)
        s->attempt++;
    return d / 2 + (unsigned)(rng_next(s) % (d / 2 + 1));
}

static void on_close(chorus_ws_client *c, int code, const char *reason,
                     void *arg)
{
    sub_ctx *s = arg;
    int was_open = s->opened;
    chorus_ws_client_free(c); /* deferred until we return */
    s->ws = NULL;
    s->opened = 0;
    if (s->live_timer)
        evtimer_del(s->live_timer);
    if (s->stopping) {
        event_base_loopbreak(s->base);
        return;
    }
    const char *sep = *reason ? " " : "";
    if (!s->reconnect || fatal_close(code, reason)) {
        if (was_open)
            cli_error("connection closed: %d%s%s", code, sep, reason);
        else
            cli_error("cannot connect to %s: %s", s->a->url, reason);
        s->status = CLI_FAIL;
        s->stopping = 1;
        event_base_loopbreak(s->base);
        return;
    }
    unsigned ms = backoff_ms(s);
    if (was_open || s->attempt == 1 || s->a->verbose) {
        if (was_open)
            cli_error("connection closed: %d%s%s; reconnecting in %u ms", code,
                      sep, reason, ms);
        else
            cli_error("cannot connect to %s: %s; retrying in %u ms", s->a->url,
                      reason, ms);
    }
    struct timeval tv = sub_tv_ms(ms);
    evtimer_add(s->retry_timer, &tv);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sub_connect(arg);
}

/* Pings a silent connection; gives up on one that stays silent (a peer
 * that vanished without a FIN or RST). */
static void live_cb(evutil_socket_t fd, short what, void *arg)
{
    sub_ctx *s = arg;
    (void)fd;
    (void)what;
    if (!s->ws || !s->opened || s->stopping)
        return;
    uint64_t idle = now_ms() - s->last_rx_ms;
    if (idle >= DEAD_AFTER_MS) {
        cli_error("no data from the broker for %llu s: dropping the "
                  "connection",
                  (unsigned long long)(idle / 1000));
        chorus_ws_client_close(s->ws, 1001, "no answer");
        return;
    }
    if (idle >= PING_AFTER_MS && !s->ping_out) {
        s->ping_out = 1;
        send_json(s, json_pack("{s:s, s:s}", "op", "ping", "id", "alive"));
    }
}

static void sub_connect(sub_ctx *s)
{
    chorus_ws_client_opts opts = {0};
    opts.cacert = s->a->cacert;
    opts.bearer = s->a->token;
    chorus_ws_client_cbs cbs = {on_open, on_message, on_close};
    char err[256];
    s->opened = 0;
    s->ws = chorus_ws_client_connect(s->base, s->a->url, &opts, &cbs, s, err,
                                     sizeof err);
    if (!s->ws) {
        cli_error("%s", err);
        s->status = CLI_FAIL;
        s->stopping = 1;
        event_base_loopbreak(s->base);
        return;
    }
    struct timeval tv = sub_tv_ms(LIVENESS_TICK_MS);
    event_add(s->live_timer, &tv);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    sub_ctx *s = arg;
    (void)sig;
    (void)what;
    if (s->stopping) { /* a second ^C: do not wait for the close */
        event_base_loopbreak(s->base);
        return;
    }
    stop(s, CLI_OK);
}

/* ---- arguments ---- */

/* EPOCH:OFFSET, split at the last colon. */
static int parse_since(const char *arg, sub_topic *t)
{
    const char *colon = strrchr(arg, ':');
    if (!colon || colon[1] == '\0')
        return -1;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(colon + 1, &end, 10);
    if (*end || errno || colon[1] == '-' || colon[1] == '+' ||
        n > (unsigned long long)INT64_MAX)
        return -1;
    t->epoch = strndup(arg, (size_t)(colon - arg));
    if (!t->epoch)
        return -1;
    t->last = n;
    return 0;
}

static int add_topic(sub_ctx *s, const char *name)
{
    if (find_topic(s, name))
        return 0; /* one subscription per topic */
    sub_topic *t = &s->topics[s->ntopics++];
    memset(t, 0, sizeof *t);
    t->name = name;
    if (s->state) {
        json_t *v = json_object_get(s->state, name);
        if (v) {
            t->epoch = strdup(json_string_value(json_object_get(v, "epoch")));
            if (!t->epoch)
                return -1;
            t->last =
                (uint64_t)json_integer_value(json_object_get(v, "offset"));
        }
    }
    return 0;
}

static int setup(sub_ctx *s, const cli_args *a)
{
    const char *since = cli_opt(a, "since");
    s->a = a;
    s->state_path = cli_opt(a, "resume");
    s->reconnect = s->state_path || cli_opt(a, "reconnect");
    if (s->state_path && !*s->state_path) {
        cli_error("sub: --resume needs a file name");
        return CLI_USAGE;
    }
    if (since && a->npos != 1) {
        cli_error("sub: --since needs exactly one topic");
        return CLI_USAGE;
    }
    if (s->state_path && sub_state_load(s) < 0)
        return CLI_FAIL;
    size_t n = (size_t)a->npos + (s->state ? json_object_size(s->state) : 0);
    s->topics = calloc(n ? n : 1, sizeof *s->topics);
    if (!s->topics)
        return CLI_FAIL;
    for (int i = 0; i < a->npos; i++)
        if (add_topic(s, a->pos[i]) < 0)
            return CLI_FAIL;
    if (a->npos == 0 && s->state) { /* every topic of the file */
        const char *key;
        json_t *v;
        json_object_foreach(s->state, key, v)
        {
            if (add_topic(s, key) < 0)
                return CLI_FAIL;
        }
    }
    if (s->ntopics == 0) {
        cli_error("sub: no topic given%s",
                  s->state_path ? " and none in the --resume file" : "");
        return CLI_USAGE;
    }
    if (since) { /* a position from --resume wins */
        sub_topic pos = {0};
        if (parse_since(since, &pos) < 0) {
            cli_error("sub: --since wants EPOCH:OFFSET, got '%s'", since);
            return CLI_USAGE;
        }
        if (!s->topics[0].epoch) {
            s->topics[0].epoch = pos.epoch;
            s->topics[0].last = pos.last;
        } else {
            free(pos.epoch);
        }
    }
    s->rng = (uint64_t)now_ms() * 0x9E3779B97F4A7C15ull ^
             ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL);
    s->rng |= 1;
    return CLI_OK;
}

int cli_sub(const cli_args *a)
{
    sub_ctx s;
    memset(&s, 0, sizeof s);
    int r = setup(&s, a);
    if (r == CLI_OK && !(s.base = event_base_new())) {
        cli_error("cannot create the event loop");
        r = CLI_FAIL;
    }
    if (r == CLI_OK) {
        s.save_timer = evtimer_new(s.base, sub_save_cb, &s);
        s.retry_timer = evtimer_new(s.base, retry_cb, &s);
        s.live_timer = event_new(s.base, -1, EV_PERSIST, live_cb, &s);
        /* ^C and SIGTERM end a subscription normally, positions saved */
        s.sigint = evsignal_new(s.base, SIGINT, on_signal, &s);
        s.sigterm = evsignal_new(s.base, SIGTERM, on_signal, &s);
        if (!s.save_timer || !s.retry_timer || !s.live_timer || !s.sigint ||
            !s.sigterm || evsignal_add(s.sigint, NULL) < 0 ||
            evsignal_add(s.sigterm, NULL) < 0) {
            cli_error("cannot set up the event loop");
            r = CLI_FAIL;
        }
    }
    if (r == CLI_OK) {
        sub_connect(&s);
        if (!s.stopping)
            event_base_dispatch(s.base);
        if (s.ws) { /* a second signal cut the close short */
            chorus_ws_client_free(s.ws);
            s.ws = NULL;
        }
        if (sub_state_save(&s) < 0 && s.status == CLI_OK)
            s.status = CLI_FAIL;
        r = s.status;
    }
    struct event *evs[] = {s.save_timer, s.retry_timer, s.live_timer, s.sigint,
                           s.sigterm};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i])
            event_free(evs[i]);
    if (s.base)
        event_base_free(s.base);
    for (int i = 0; i < s.ntopics; i++)
        free(s.topics[i].epoch);
    free(s.topics);
    json_decref(s.state);
    return r;
}
