/* The Redis engine's asynchronous requests, on the calling loop's command
 * connections: the publish, meta and read scripts by EVALSHA (EVAL again
 * when Redis answers NOSCRIPT). */
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
/* The most a one-topic script has of its own: read's after, limit. */
#define SCRIPT_MAX_OWN 2

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
    const char **argv; /* one_argv, or allocated for a publish */
    size_t *lens;
    const char *one_argv[SCRIPT_FIXED_ARGS + SCRIPT_MAX_OWN];
    size_t one_lens[SCRIPT_FIXED_ARGS + SCRIPT_MAX_OWN];
    redis_keys keys;
    char run_id[41];
    char size[24];
    char a1[24], a2[24]; /* read: after, limit; publish: ttl */
    /* publish only (allocated) */
    redis_pub *pubs;
    size_t npubs;
    struct pub_args *pa;
};

static void script_free(script_req *q)
{
    if (q->argv != q->one_argv) {
        free(q->argv);
        free(q->lens);
    }
    free(q->pa);
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
    q->argv = q->one_argv;
    q->lens = q->one_lens;
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

/* ---- publish ------------------------------------------------------------- */

/* A topic's own arguments of the publish script. */
struct pub_args {
    redis_keys keys;
    char channel[300];
    char count[24];
};

static void publish_done(script_req *q, const redisReply *r)
{
    int ok = r && r->type == REDIS_REPLY_ARRAY &&
             r->elements == 1 + 2 * q->npubs &&
             r->element[0]->type == REDIS_REPLY_INTEGER;

    for (size_t i = 0; ok && i < q->npubs; i++) {
        const redisReply *ep = r->element[1 + 2 * i],
                         *fi = r->element[2 + 2 * i];
        ok = ep->type == REDIS_REPLY_STRING && ep->len == 32 &&
             fi->type == REDIS_REPLY_INTEGER && fi->integer > 0;
        if (ok) {
            memcpy(q->pubs[i].epoch, ep->str, 33);
            q->pubs[i].first = (uint64_t)fi->integer;
        }
    }
    q->fn.publish(q->arg, ok, ok ? r->element[0]->integer : 0);
}

/* EVALSHA sha numkeys fence (meta stream)... rid size ttl
 * (channel count body)... */
static int publish_args(redis_engine *e, script_req *q)
{
    size_t n = q->npubs, argc = 4 + 2 * n + 3 + 3 * n, k = 0;
    const char *fence = REDIS_FENCE_KEY(e->cfg);

    q->argv = malloc(argc * sizeof *q->argv);
    q->lens = malloc(argc * sizeof *q->lens);
    q->pa = calloc(n, sizeof *q->pa);
    if (!q->argv || !q->lens || !q->pa)
        return -1;
    q->argc = (int)argc;
    snprintf(q->a2, sizeof q->a2, "%zu", 1 + 2 * n);
    script_arg(q, (int)k++, "EVALSHA", 7);
    script_arg(q, (int)k++, q->script->sha, 40);
    script_arg(q, (int)k++, q->a2, strlen(q->a2));
    script_arg(q, (int)k++, fence, strlen(fence));
    for (size_t i = 0; i < n; i++) {
        const redis_pub *p = &q->pubs[i];
        struct pub_args *a = &q->pa[i];
        if (redis_topic_keys(p->topic, p->len, &a->keys))
            return -1;
        snprintf(a->channel, sizeof a->channel, "%s%.*s", q->in->prefix,
                 (int)p->len, p->topic);
        snprintf(a->count, sizeof a->count, "%zu", p->n);
        script_arg(q, (int)k++, a->keys.meta, strlen(a->keys.meta));
        script_arg(q, (int)k++, a->keys.stream, strlen(a->keys.stream));
    }
    script_arg(q, (int)k++, q->run_id, strlen(q->run_id));
    script_arg(q, (int)k++, q->size, strlen(q->size));
    script_arg(q, (int)k++, q->a1, strlen(q->a1));
    for (size_t i = 0; i < n; i++) {
        struct pub_args *a = &q->pa[i];
        script_arg(q, (int)k++, a->channel, strlen(a->channel));
        script_arg(q, (int)k++, a->count, strlen(a->count));
        script_arg(q, (int)k++, q->pubs[i].body, q->pubs[i].body_len);
    }
    return 0;
}

int redis_engine_publish(redis_engine *e, redis_pub *pubs, size_t n,
                         redis_publish_fn fn, void *arg)
{
    script_req *q;

    if (n == 0 || n > REDIS_PUBLISH_MAX_TOPICS)
        return -1;
    /* the instance and run_id of the first topic (all share them); the
     * one-topic arguments it lays out are replaced by publish_args */
    q = script_new(e, &redis_script_publish, pubs[0].topic, pubs[0].len, 0);
    if (!q)
        return -1;
    q->pubs = pubs;
    q->npubs = n;
    snprintf(q->a1, sizeof q->a1, "%llu",
             (unsigned long long)e->cfg->history_ttl_ms);
    if (publish_args(e, q)) {
        script_free(q);
        return -1;
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

/* Splits the entries into rows from offset `from` on and after `after`
 * (the script's from is a double, which rounds past 2^53), at most limit.
 * Returns the number of rows, or -1 when an entry is malformed. */
static long split_entries(const redisReply *es, uint64_t from, uint64_t after,
                          size_t limit, redis_row *rows)
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
            if (off >= from && off > after && n < limit)
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
    uint64_t after = strtoull(q->a1, NULL, 10);
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
                                     after, limit, rows)
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
