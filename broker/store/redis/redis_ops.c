/* The Redis engine's asynchronous requests (loop 0): publish and meta
 * scripts by EVALSHA (EVAL again when Redis answers NOSCRIPT), and
 * XRANGE reads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "log.h"
#include "redis_conn.h"
#include "redis_internal.h"
#include "redis_scripts.h"

/* Arguments before a script's own (redis_scripts.h). */
#define SCRIPT_FIXED_ARGS REDIS_SCRIPT_FIXED_ARGS
/* The publish script's own before the data: size, ttl, channel. */
#define PUBLISH_ARGS 3

typedef struct script_req script_req;
typedef void (*script_done_fn)(script_req *q, const redisReply *r);

struct script_req {
    instance *in;
    const redis_script *script;
    script_done_fn done; /* r NULL on any failure */
    union {
        redis_publish_fn publish;
        redis_meta_fn meta;
        redis_read_fn read;
    } fn;
    void *arg;
    int retried; /* sent again as EVAL */
    int argc;
    const char **argv;
    size_t *lens;
    redis_keys keys;
    char run_id[41];
    char a1[24], a2[24]; /* the script's first two arguments of its own:
                            publish: size, ttl; read: after, limit */
    char channel[300];
};

static void script_free(script_req *q)
{
    free(q->argv);
    free(q->lens);
    free(q);
}

static void on_script_reply(rconn *rc, redisReply *r, void *arg);

static int script_send(script_req *q)
{
    return rconn_command(q->in->cmd, q->argc, q->argv, q->lens, on_script_reply,
                         q);
}

static void on_script_reply(rconn *rc, redisReply *r, void *arg)
{
    script_req *q = arg;

    if (r && r->type == REDIS_REPLY_ERROR) {
        if (!q->retried && strncmp(r->str, "NOSCRIPT", 8) == 0) {
            q->retried = 1;
            q->argv[0] = "EVAL";
            q->lens[0] = 4;
            q->argv[1] = q->script->body;
            q->lens[1] = strlen(q->script->body);
            if (script_send(q) == 0)
                return;
        } else if (strncmp(r->str, "FENCED", 6) == 0) {
            /* The instance is not the one this connection checked: make
             * the connection again, which reads its run_id anew. */
            q->done(q, NULL);
            script_free(q);
            rconn_reset(rc, "run_id changed under the connection");
            return;
        } else {
            log_error("redis: %s script failed: %s", q->script->name, r->str);
        }
        r = NULL;
    }
    q->done(q, r);
    script_free(q);
}

/* A script request for topic with n arguments of its own to fill after
 * the fixed ones (the publish script's size, ttl and channel are filled
 * here). */
static script_req *script_new(redis_engine *e, const redis_script *script,
                              const char *topic, size_t len, size_t n)
{
    instance *in = redis_instance(e, topic, len);
    script_req *q;
    size_t argc = SCRIPT_FIXED_ARGS + n;
    const char *fence = REDIS_FENCE_KEY(e->cfg);

    if (!in->cmd || !rconn_ready(in->cmd) || argc > 0x7fffffff)
        return NULL;
    q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->argv = malloc(argc * sizeof *q->argv);
    q->lens = malloc(argc * sizeof *q->lens);
    if (!q->argv || !q->lens || redis_topic_keys(topic, len, &q->keys)) {
        script_free(q);
        return NULL;
    }
    q->in = in;
    q->script = script;
    q->argc = (int)argc;
    snprintf(q->run_id, sizeof q->run_id, "%s",
             e->cfg->redis_durable ? "" : rconn_run_id(in->cmd));
    snprintf(q->a1, sizeof q->a1, "%llu",
             (unsigned long long)e->cfg->history_size);
    snprintf(q->a2, sizeof q->a2, "%llu",
             (unsigned long long)e->cfg->history_ttl_ms);
    snprintf(q->channel, sizeof q->channel, "%s%.*s", in->prefix, (int)len,
             topic);
    const char *fixed[SCRIPT_FIXED_ARGS + PUBLISH_ARGS] = {
        "EVALSHA", script->sha, "3",   q->keys.meta, q->keys.stream,
        fence,     q->run_id,   q->a1, q->a2,        q->channel};
    for (size_t i = 0; i < SCRIPT_FIXED_ARGS + PUBLISH_ARGS && i < argc; i++) {
        q->argv[i] = fixed[i];
        q->lens[i] = strlen(fixed[i]);
    }
    return q;
}

static void publish_done(script_req *q, const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len != 32 ||
        r->element[1]->type != REDIS_REPLY_INTEGER ||
        r->element[2]->type != REDIS_REPLY_INTEGER) {
        q->fn.publish(q->arg, 0, NULL, 0, 0);
        return;
    }
    q->fn.publish(q->arg, 1, r->element[0]->str,
                  (uint64_t)r->element[1]->integer, r->element[2]->integer);
}

int redis_engine_publish(redis_engine *e, const char *topic, size_t len,
                         const char *const *data, const size_t *data_len,
                         size_t n, redis_publish_fn fn, void *arg)
{
    script_req *q =
        script_new(e, &redis_script_publish, topic, len, PUBLISH_ARGS + n);

    if (!q)
        return -1;
    for (size_t i = 0; i < n; i++) {
        q->argv[SCRIPT_FIXED_ARGS + PUBLISH_ARGS + i] = data[i];
        q->lens[SCRIPT_FIXED_ARGS + PUBLISH_ARGS + i] = data_len[i];
    }
    q->done = publish_done;
    q->fn.publish = fn;
    q->arg = arg;
    if (script_send(q)) {
        script_free(q);
        return -1;
    }
    return 0;
}

static void meta_done(script_req *q, const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len != 32 ||
        r->element[1]->type != REDIS_REPLY_INTEGER ||
        r->element[2]->type != REDIS_REPLY_INTEGER) {
        q->fn.meta(q->arg, 0, NULL, 0, 0);
        return;
    }
    q->fn.meta(q->arg, 1, r->element[0]->str, (uint64_t)r->element[1]->integer,
               (uint64_t)r->element[2]->integer);
}

int redis_engine_meta(redis_engine *e, const char *topic, size_t len,
                      redis_meta_fn fn, void *arg)
{
    script_req *q = script_new(e, &redis_script_meta, topic, len, 0);

    if (!q)
        return -1;
    q->done = meta_done;
    q->fn.meta = fn;
    q->arg = arg;
    if (script_send(q)) {
        script_free(q);
        return -1;
    }
    return 0;
}

/* ---- XRANGE -------------------------------------------------------------- */

int redis_parse_entry(const redisReply *e, redis_row *row)
{
    const redisReply *f;
    char *end;

    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING ||
        e->element[1]->type != REDIS_REPLY_ARRAY)
        return -1;
    row->offset = strtoull(e->element[0]->str, &end, 10);
    if (*end != '-')
        return -1;
    f = e->element[1];
    row->data = NULL;
    row->ts_ms = 0;
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        if (f->element[i]->type != REDIS_REPLY_STRING ||
            f->element[i + 1]->type != REDIS_REPLY_STRING)
            return -1;
        if (strcmp(f->element[i]->str, "t") == 0)
            row->ts_ms = strtoll(f->element[i + 1]->str, NULL, 10);
        else if (strcmp(f->element[i]->str, "d") == 0) {
            row->data = f->element[i + 1]->str;
            row->len = f->element[i + 1]->len;
        }
    }
    return row->data ? 0 : -1;
}

static void read_done(script_req *q, const redisReply *r)
{
    redis_row *rows = NULL;
    size_t n = 0;
    int ok = r && r->type == REDIS_REPLY_ARRAY;

    if (ok && r->elements) {
        rows = malloc(r->elements * sizeof *rows);
        ok = rows != NULL;
        for (; ok && n < r->elements; n++)
            ok = redis_parse_entry(r->element[n], &rows[n]) == 0;
    }
    q->fn.read(q->arg, ok, rows, ok ? n : 0);
    free(rows);
}

int redis_engine_read(redis_engine *e, const char *topic, size_t len,
                      uint64_t after, size_t limit, redis_read_fn fn, void *arg)
{
    script_req *q = script_new(e, &redis_script_read, topic, len, 2);

    if (!q)
        return -1;
    q->lens[SCRIPT_FIXED_ARGS] = (size_t)snprintf(q->a1, sizeof q->a1, "%llu",
                                                  (unsigned long long)after);
    q->lens[SCRIPT_FIXED_ARGS + 1] =
        (size_t)snprintf(q->a2, sizeof q->a2, "%zu", limit);
    q->done = read_done;
    q->fn.read = fn;
    q->arg = arg;
    if (script_send(q)) {
        script_free(q);
        return -1;
    }
    return 0;
}
