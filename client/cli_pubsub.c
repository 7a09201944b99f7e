/* chorus pub: one WebSocket session on lib/ws_client (chorus sub, which
 * reconnects and resumes, lives in cli_resume.c).
 *
 * A session owns the event loop and the client; the command supplies what
 * to do when the connection opens and for each JSON reply. Any `error`
 * reply or an unexpected close makes the exit status 1. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>

#include "chorus/ws_client.h"
#include "cli.h"

#define PUB_MAX_IN_FLIGHT 1000
#define PUB_MAX_PENDING (1u << 20) /* queued bytes before we stop reading */
#define STDIN_CHUNK 65536

/* ---- session ---- */

typedef struct session session;

typedef struct session_ops {
    void (*on_open)(session *s);
    void (*on_reply)(session *s, json_t *msg, const char *raw, size_t len);
} session_ops;

struct session {
    const cli_args *args;
    const session_ops *ops;
    void *cmd; /* the command's state */
    struct event_base *base;
    chorus_ws_client *ws;
    int opened;
    int finishing; /* we started the close: a close is then expected */
    int status;
};

/* Ends the session with status (the worst one wins). */
static void session_end(session *s, int status)
{
    if (status > s->status)
        s->status = status;
    if (s->finishing)
        return;
    s->finishing = 1;
    chorus_ws_client_close(s->ws, 1000, "bye");
}

static void on_open(chorus_ws_client *c, void *arg)
{
    session *s = arg;
    (void)c;
    s->opened = 1;
    if (s->args->verbose)
        fprintf(stderr, "chorus: connected to %s\n", s->args->url);
    s->ops->on_open(s);
}

static void on_message(chorus_ws_client *c, int opcode, const uint8_t *data,
                       size_t len, void *arg)
{
    session *s = arg;
    (void)c;
    if (s->finishing && s->status != CLI_OK)
        return;
    json_error_t jerr;
    json_t *msg = opcode == 1 /* text */
                      ? json_loadb((const char *)data, len, 0, &jerr)
                      : NULL;
    if (!msg || !json_is_object(msg) ||
        !json_is_string(json_object_get(msg, "op"))) {
        cli_error("unexpected message from the broker: %.*s",
                  (int)(len > 200 ? 200 : len), (const char *)data);
        json_decref(msg);
        session_end(s, CLI_FAIL);
        return;
    }
    s->ops->on_reply(s, msg, (const char *)data, len);
    json_decref(msg);
}

static void on_close(chorus_ws_client *c, int code, const char *reason,
                     void *arg)
{
    session *s = arg;
    (void)c;
    if (!s->opened) {
        cli_error("cannot connect to %s: %s", s->args->url, reason);
        s->status = CLI_FAIL;
    } else if (!s->finishing) {
        cli_error("connection closed: %d%s%s", code, *reason ? " " : "",
                  reason);
        s->status = CLI_FAIL;
    }
    event_base_loopbreak(s->base);
}

/* Connects and runs the loop until the connection ends. */
static int session_run(session *s, const cli_args *a, const session_ops *ops,
                       void *cmd)
{
    s->args = a;
    s->ops = ops;
    s->cmd = cmd;
    s->base = event_base_new();
    if (!s->base) {
        cli_error("cannot create the event loop");
        return CLI_FAIL;
    }
    chorus_ws_client_opts opts = {0};
    opts.cacert = a->cacert;
    opts.bearer = a->token;
    chorus_ws_client_cbs cbs = {on_open, on_message, on_close};
    char err[256];
    s->ws = chorus_ws_client_connect(s->base, a->url, &opts, &cbs, s, err,
                                     sizeof err);
    if (!s->ws) {
        cli_error("%s", err);
        event_base_free(s->base);
        s->base = NULL;
        return CLI_FAIL;
    }
    return 0;
}

static void session_loop(session *s)
{
    event_base_dispatch(s->base);
    chorus_ws_client_free(s->ws);
    s->ws = NULL;
}

/* "error" replies: "chorus: <context>forbidden: no publish permission". */
static void print_error(const char *context, json_t *msg)
{
    const char *code = json_string_value(json_object_get(msg, "code"));
    const char *text = json_string_value(json_object_get(msg, "message"));
    cli_error("%s%s%s%s", context, code ? code : "error", text ? ": " : "",
              text ? text : "");
}

/* ---- pub ---- */

typedef struct pub_state {
    char *prefix; /* {"op":"publish","topic":"T","id": */
    size_t prefix_len;
    int from_stdin;
    const char *data; /* single message mode */
    /* stdin mode */
    struct evbuffer *in;
    struct event *in_ev; /* NULL when stdin cannot be polled (a file) */
    int in_ev_added;
    int eof;
    uint64_t lineno;    /* request id = line number */
    uint8_t *waiting;   /* bitmap by id: sent, no reply yet */
    size_t waiting_cap; /* in bytes */
    unsigned in_flight;
    uint64_t published;
} pub_state;

static int bit_get(const pub_state *p, uint64_t id)
{
    return id / 8 < p->waiting_cap && (p->waiting[id / 8] >> (id % 8)) & 1;
}

static int bit_set(pub_state *p, uint64_t id, int on)
{
    if (id / 8 >= p->waiting_cap) {
        size_t cap = p->waiting_cap ? p->waiting_cap * 2 : 1024;
        while (cap <= id / 8)
            cap *= 2;
        uint8_t *w = realloc(p->waiting, cap);
        if (!w)
            return -1;
        memset(w + p->waiting_cap, 0, cap - p->waiting_cap);
        p->waiting = w;
        p->waiting_cap = cap;
    }
    if (on)
        p->waiting[id / 8] |= (uint8_t)(1u << (id % 8));
    else
        p->waiting[id / 8] &= (uint8_t) ~(1u << (id % 8));
    return 0;
}

/* Sends one publish: DATA goes on the wire as written when it is JSON
 * (numbers keep their digits), else as a JSON string. */
static int pub_send(session *s, uint64_t id, const char *data, size_t len)
{
    pub_state *p = s->cmd;
    json_error_t jerr;
    /* INT_AS_REAL: integers beyond 64 bits are still JSON numbers */
    json_t *v =
        json_loadb(data, len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &jerr);
    char *quoted = NULL;
    if (v) {
        json_decref(v);
    } else {
        json_t *str = json_stringn(data, len);
        quoted = str ? json_dumps(str, JSON_ENCODE_ANY) : NULL;
        json_decref(str);
        if (!quoted) {
            cli_error("line %llu: not valid UTF-8", (unsigned long long)id);
            return -1;
        }
        data = quoted;
        len = strlen(quoted);
    }
    char idbuf[32];
    int idlen =
        snprintf(idbuf, sizeof idbuf, "%llu,\"data\":", (unsigned long long)id);
    size_t total = p->prefix_len + (size_t)idlen + len + 1;
    char *msg = malloc(total);
    if (!msg) {
        free(quoted);
        cli_error("out of memory");
        return -1;
    }
    memcpy(msg, p->prefix, p->prefix_len);
    memcpy(msg + p->prefix_len, idbuf, (size_t)idlen);
    memcpy(msg + p->prefix_len + idlen, data, len);
    msg[total - 1] = '}';
    free(quoted);
    int r = chorus_ws_client_send_text(s->ws, msg, total);
    free(msg);
    if (r < 0 || bit_set(p, id, 1) < 0) {
        cli_error("cannot send: connection lost");
        return -1;
    }
    p->in_flight++;
    return 0;
}

static int blank(const char *line, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
            return 0;
    return 1;
}

/* Next whole line of stdin in a malloc'd buffer, NULL when none yet. */
static char *pub_next_line(pub_state *p, size_t *n)
{
    char *line = evbuffer_readln(p->in, n, EVBUFFER_EOL_LF);
    size_t left = evbuffer_get_length(p->in);
    if (line || !p->eof || left == 0)
        return line;
    line = malloc(left + 1); /* last line without a newline */
    if (!line)
        return NULL;
    evbuffer_remove(p->in, line, left);
    line[left] = '\0';
    *n = left;
    return line;
}

static void pub_pump(session *s);

static void pub_stdin_cb(evutil_socket_t fd, short what, void *arg)
{
    session *s = arg;
    pub_state *p = s->cmd;
    (void)what;
    int r = evbuffer_read(p->in, fd, STDIN_CHUNK);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        if (r < 0)
            cli_error("reading stdin: %s", strerror(errno));
        p->eof = 1;
        if (r < 0)
            session_end(s, CLI_FAIL);
        event_del(p->in_ev);
        p->in_ev_added = 0;
    }
    pub_pump(s);
}

/* Sends stdin lines while the window has room; ends the session once stdin
 * is exhausted and every request has been answered. */
static void pub_pump(session *s)
{
    pub_state *p = s->cmd;
    while (!s->finishing && p->in_flight < PUB_MAX_IN_FLIGHT &&
           (p->in_flight == 0 ||
            chorus_ws_client_pending(s->ws) < PUB_MAX_PENDING)) {
        size_t n = 0;
        char *line = pub_next_line(p, &n);
        if (!line) {
            if (p->eof)
                break;
            if (p->in_ev) { /* wait for stdin */
                if (!p->in_ev_added && event_add(p->in_ev, NULL) == 0)
                    p->in_ev_added = 1;
                return;
            }
            int r = evbuffer_read(p->in, STDIN_FILENO, STDIN_CHUNK);
            if (r < 0 && errno != EINTR) {
                cli_error("reading stdin: %s", strerror(errno));
                session_end(s, CLI_FAIL);
                return;
            }
            if (r == 0)
                p->eof = 1;
            continue;
        }
        p->lineno++;
        if (n > 0 && line[n - 1] == '\r')
            n--;
        int r = blank(line, n) ? 0 : pub_send(s, p->lineno, line, n);
        free(line);
        if (r < 0) {
            session_end(s, CLI_FAIL);
            return;
        }
    }
    if (p->in_ev_added) { /* window full: stop reading stdin for now */
        event_del(p->in_ev);
        p->in_ev_added = 0;
    }
    if (p->eof && p->in_flight == 0 && evbuffer_get_length(p->in) == 0)
        session_end(s, CLI_OK);
}

static void pub_open(session *s)
{
    pub_state *p = s->cmd;
    if (!p->from_stdin) {
        p->lineno = 1;
        if (pub_send(s, 1, p->data, strlen(p->data)) < 0)
            session_end(s, CLI_FAIL);
        return;
    }
    pub_pump(s);
}

static void pub_reply(session *s, json_t *msg, const char *raw, size_t len)
{
    pub_state *p = s->cmd;
    const char *op = json_string_value(json_object_get(msg, "op"));
    json_t *idv = json_object_get(msg, "id");
    json_int_t id = json_is_integer(idv) ? json_integer_value(idv) : 0;
    int mine = id > 0 && bit_get(p, (uint64_t)id);
    (void)raw;
    (void)len;
    if (strcmp(op, "error") == 0) {
        char ctx[48] = "";
        if (mine && p->from_stdin)
            snprintf(ctx, sizeof ctx, "line %" JSON_INTEGER_FORMAT ": ", id);
        print_error(ctx, msg);
        session_end(s, CLI_FAIL);
        return;
    }
    if (strcmp(op, "published") != 0 || !mine)
        return;
    bit_set(p, (uint64_t)id, 0);
    p->in_flight--;
    p->published++;
    if (s->args->verbose)
        printf("%" JSON_INTEGER_FORMAT "\n",
               json_integer_value(json_object_get(msg, "offset")));
    if (p->from_stdin)
        pub_pump(s);
    else
        session_end(s, CLI_OK);
}

static int pub_prepare(pub_state *p, const cli_args *a)
{
    json_t *topic = json_string(a->pos[0]);
    char *t = topic ? json_dumps(topic, JSON_ENCODE_ANY) : NULL;
    json_decref(topic);
    if (!t) {
        cli_error("topic is not valid UTF-8");
        return -1;
    }
    size_t n = strlen(t) + 64;
    p->prefix = malloc(n);
    if (p->prefix)
        p->prefix_len = (size_t)snprintf(
            p->prefix, n, "{\"op\":\"publish\",\"topic\":%s,\"id\":", t);
    free(t);
    p->from_stdin = strcmp(a->pos[1], "-") == 0;
    p->data = a->pos[1];
    if (p->from_stdin && !(p->in = evbuffer_new()))
        return -1;
    return p->prefix ? 0 : -1;
}

/* Only pipes, sockets and terminals can be waited on; a regular file (or
 * /dev/null) is read when lines are needed. */
static int stdin_pollable(void)
{
    struct stat st;
    if (fstat(STDIN_FILENO, &st) < 0)
        return 0;
    return S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) ||
           (S_ISCHR(st.st_mode) && isatty(STDIN_FILENO));
}

int cli_pub(const cli_args *a)
{
    static const session_ops ops = {pub_open, pub_reply};
    session s = {0};
    pub_state p = {0};
    int r = pub_prepare(&p, a);
    if (r == 0)
        r = session_run(&s, a, &ops, &p);
    if (r == 0) {
        if (p.from_stdin && stdin_pollable())
            p.in_ev = event_new(s.base, STDIN_FILENO, EV_READ | EV_PERSIST,
                                pub_stdin_cb, &s);
        session_loop(&s);
        r = s.status;
        if (r == CLI_OK && p.in_flight > 0) /* closed with acks missing */
            r = CLI_FAIL;
        if (a->verbose && p.from_stdin)
            fprintf(stderr, "chorus: %llu published\n",
                    (unsigned long long)p.published);
    } else {
        r = CLI_FAIL;
    }
    if (p.in_ev)
        event_free(p.in_ev);
    if (s.base)
        event_base_free(s.base);
    if (p.in)
        evbuffer_free(p.in);
    free(p.waiting);
    free(p.prefix);
    if (fflush(stdout) == EOF && r == CLI_OK)
        r = CLI_FAIL;
    return r;
}
