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
/* The most a script has of its own: publish's ttl, channel, count, body. */
#define SCRIPT_MAX_OWN 4

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
    const char *argv[SCRIPT_FIXED_ARGS + SCRIPT_MAX_OWN];
    size_t lens[SCRIPT_FIXED_ARGS + SCRIPT_MAX_OWN];
    redis_keys keys;
    char run_id[41];
    char size[24];
    char a1[24], a2[24]; /* the script's own numbers: publish: ttl,
                            count; read: after, limit */
    char channel[300];
};

static void script_free(script_req *q)
{
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

/* Sets argument i of q to the string arg. */
static void script_arg(script_req *q, int i, const char *arg, size_t len)
{
    q->argv[i] = arg;
    q->lens[i] = len;
}

/* A script request for topic with n arguments of its own, which the
 * caller sets after the fixed ones. */
static script_req *script_new(redis_engine *e, const redis_script *script,
                              const char *topic, size_t len, int n)
{
    instance *in = redis_instance(e, topic, len);
    script_req *q;
    const char *fence = REDIS_FENCE_KEY(e->cfg);

    if (!in->cmd || !rconn_ready(in->cmd))
        return NULL;
    q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    if (redis_topic_keys(topic, len, &q->keys)) {
        script_free(q);
        return NULL;
    }
    q->in = in;
    q->script = script;
    q->argc = SCRIPT_FIXED_ARGS + n;
    snprintf(q->run_id, sizeof q->run_id, "%s",
             e->cfg->redis_durable ? "" : rconn_run_id(in->cmd));
    snprintf(q->size, sizeof q->size, "%llu",
             (unsigned long long)e->cfg->history_size);
    const char *fixed[SCRIPT_FIXED_ARGS] = {"EVALSHA",    script->sha,    "3",
                                            q->keys.meta, q->keys.stream, fence,
                                            q->run_id,    q->size};
    for (int i = 0; i < SCRIPT_FIXED_ARGS; i++)
        script_arg(q, i, fixed[i], strlen(fixed[i]));
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
                         const char *body, size_t body_len, size_t n,
                         redis_publish_fn fn, void *arg)
{
    script_req *q = script_new(e, &redis_script_publish, topic, len, 4);
    int k = SCRIPT_FIXED_ARGS;

    if (!q)
        return -1;
    snprintf(q->a1, sizeof q->a1, "%llu",
             (unsigned long long)e->cfg->history_ttl_ms);
    snprintf(q->a2, sizeof q->a2, "%zu", n);
    snprintf(q->channel, sizeof q->channel, "%s%.*s", q->in->prefix, (int)len,
             topic);
    script_arg(q, k++, q->a1, strlen(q->a1));
    script_arg(q, k++, q->channel, strlen(q->channel));
    script_arg(q, k++, q->a2, strlen(q->a2));
    script_arg(q, k, body, body_len);
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

/* ---- read ---------------------------------------------------------------- */

/* A stream entry of the publish script: the payload of its messages. */
static int parse_entry(const redisReply *e, redis_payload *pl)
{
    const redisReply *f;
    const char *body = NULL;
    size_t body_len = 0;
    uint64_t last, n = 0;
    int64_t ts = 0;
    char *end;

    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING ||
        e->element[1]->type != REDIS_REPLY_ARRAY)
        return -1;
    last = strtoull(e->element[0]->str, &end, 10);
    if (*end != '-')
        return -1;
    f = e->element[1];
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const redisReply *k = f->element[i], *v = f->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            return -1;
        if (strcmp(k->str, "t") == 0)
            ts = strtoll(v->str, NULL, 10);
        else if (strcmp(k->str, "n") == 0)
            n = strtoull(v->str, NULL, 10);
        else if (strcmp(k->str, "d") == 0) {
            body = v->str;
            body_len = v->len;
        }
    }
    if (!body || n == 0 || n > last)
        return -1;
    redis_payload_of_body(pl, last - n + 1, ts, (size_t)n, body, body_len);
    return 0;
}

/* Splits the entries into rows from offset `from` on, at most limit.
 * Returns the number of rows, or -1 when an entry is malformed. */
static long split_entries(const redisReply *es, uint64_t from, size_t limit,
                          redis_row *rows)
{
    size_t n = 0;

    for (size_t i = 0; i < es->elements && n < limit; i++) {
        redis_payload pl;
        size_t pos = 0, k = 0;
        const char *data;
        size_t len;
        int rc;

        if (parse_entry(es->element[i], &pl))
            return -1;
        while ((rc = redis_payload_next(&pl, &pos, &data, &len)) == 0) {
            uint64_t off = pl.first + k++;
            if (k > pl.count)
                return -1;
            if (off >= from && n < limit)
                rows[n++] = (redis_row){off, pl.ts_ms, data, len};
        }
        if (rc < 0 || k != pl.count)
            return -1;
    }
    return (long)n;
}

static void read_done(script_req *q, const redisReply *r)
{
    const redisReply *es;
    redis_row *rows = NULL;
    size_t limit = strtoull(q->a2, NULL, 10);
    long n = -1;

    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_INTEGER &&
        r->element[1]->type == REDIS_REPLY_ARRAY) {
        es = r->element[1];
        n = 0;
        if (es->elements && limit) {
            rows = malloc(limit * sizeof *rows);
            n = rows ? split_entries(es, (uint64_t)r->element[0]->integer,
                                     limit, rows)
                     : -1;
        }
    }
    q->fn.read(q->arg, n >= 0, rows, n > 0 ? (size_t)n : 0);
    free(rows);
}

int redis_engine_read(redis_engine *e, const char *topic, size_t len,
                      uint64_t after, size_t limit, redis_read_fn fn, void *arg)
{
    script_req *q = script_new(e, &redis_script_read, topic, len, 2);

    if (!q)
        return -1;
    script_arg(q, SCRIPT_FIXED_ARGS, q->a1,
               (size_t)snprintf(q->a1, sizeof q->a1, "%llu",
                                (unsigned long long)after));
    script_arg(q, SCRIPT_FIXED_ARGS + 1, q->a2,
               (size_t)snprintf(q->a2, sizeof q->a2, "%zu", limit));
    q->done = read_done;
    q->fn.read = fn;
    q->arg = arg;
    if (script_send(q)) {
        script_free(q);
        return -1;
    }
    return 0;
}
