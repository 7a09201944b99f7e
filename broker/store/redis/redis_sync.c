/* The Redis engine's blocking side: one connection per instance per
 * loop, for the reads a subscribe needs before it answers. Each request
 * waits at most redis_timeout; after a failure the loop fails requests
 * to that instance at once for REDIS_SYNC_BACKOFF_MS. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "log.h"
#include "redis_internal.h"
#include "redis_scripts.h"

int redis_parse_entry(const redisReply *e, redis_row *row);

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void redis_sync_close(instance *in)
{
    if (in->sync)
        redisFree(in->sync);
    in->sync = NULL;
}

static void sync_failed(instance *in, const char *what)
{
    log_warn("redis %s:%d: %s%s%s", in->addr.host, in->addr.port, what,
             in->sync && in->sync->errstr[0] ? ": " : "",
             in->sync ? in->sync->errstr : "");
    redis_sync_close(in);
    in->sync_failed_ms = mono_ms();
}

/* One command; NULL (connection dropped) on an I/O error or timeout. An
 * error reply is returned as such. */
static redisReply *sync_command(instance *in, int argc, const char **argv,
                                const size_t *lens)
{
    redisReply *r = redisCommandArgv(in->sync, argc, argv, lens);

    in->sync_timed_out = 0;
    if (!r) {
        in->sync_timed_out = in->sync->err == REDIS_ERR_IO &&
                             (errno == EAGAIN || errno == EWOULDBLOCK);
        sync_failed(in, in->sync_timed_out ? "no reply within redis_timeout"
                                           : "request failed");
    }
    return r;
}

static int sync_step(instance *in, int argc, const char **argv)
{
    redisReply *r = sync_command(in, argc, argv, NULL);
    int ok = r && r->type != REDIS_REPLY_ERROR;

    if (r && !ok)
        log_warn("redis %s:%d: %s refused: %s", in->addr.host, in->addr.port,
                 argv[0], r->str);
    if (r)
        freeReplyObject(r);
    if (!ok)
        redis_sync_close(in);
    return ok ? 0 : -1;
}

/* Connects (AUTH, SELECT, run_id) unless connected or in the backoff. */
static int sync_connect(redis_engine *e, instance *in)
{
    uint64_t ms = e->cfg->redis_timeout_ms;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    char db[16];
    const char *auth[] = {"AUTH", in->addr.password};
    const char *sel[] = {"SELECT", db};
    const char *info[] = {"INFO", "server"};
    redisReply *r;
    const char *p;

    if (in->sync)
        return 0;
    if (in->sync_failed_ms &&
        mono_ms() - in->sync_failed_ms < REDIS_SYNC_BACKOFF_MS)
        return -1;
    in->sync = redisConnectWithTimeout(in->addr.host, in->addr.port, tv);
    if (!in->sync || in->sync->err) {
        sync_failed(in, "cannot connect");
        return -1;
    }
    redisSetTimeout(in->sync, tv);
    redisEnableKeepAlive(in->sync);
    snprintf(db, sizeof db, "%u", in->addr.db);
    if ((in->addr.password[0] && sync_step(in, 2, auth)) ||
        (in->addr.db && sync_step(in, 2, sel)))
        goto fail;
    r = sync_command(in, 2, info, NULL);
    if (!r)
        goto fail;
    p = r->type == REDIS_REPLY_STRING ? strstr(r->str, "run_id:") : NULL;
    if (!p || strlen(p + 7) < 40) {
        freeReplyObject(r);
        redis_sync_close(in);
        goto fail;
    }
    memcpy(in->sync_run_id, p + 7, 40);
    in->sync_run_id[40] = '\0';
    freeReplyObject(r);
    return 0;
fail:
    in->sync_failed_ms = mono_ms();
    return -1;
}

/* Runs a script (with up to two arguments of its own), setting the fence
 * key from this connection when no node has set it for this incarnation
 * yet (redis_scripts.h), and sending the body when Redis lacks it. */
static redisReply *sync_script(redis_engine *e, instance *in,
                               const redis_script *script, const char *topic,
                               size_t len, int nargs, const char *a1,
                               const char *a2)
{
    redis_keys k;
    char seed[33];
    const char *rid = e->cfg->redis_durable ? "" : in->sync_run_id;
    const char *argv[REDIS_SCRIPT_FIXED_ARGS + 2] = {
        "EVALSHA", script->sha, "3", k.meta, k.stream, REDIS_FENCE_KEY(e->cfg),
        rid,       a1,          a2};
    const char *set[] = {"SET", REDIS_RUN_ID_KEY, rid};
    const char *set_seed[] = {"SET", REDIS_SEED_KEY, seed, "NX"};
    redisReply *r = NULL;

    if (redis_topic_keys(topic, len, &k))
        return NULL;
    redis_new_epoch(seed);
    for (int attempt = 0; attempt < 3; attempt++) {
        r = sync_command(in, REDIS_SCRIPT_FIXED_ARGS + nargs, argv, NULL);
        if (!r || r->type != REDIS_REPLY_ERROR)
            return r;
        if (strncmp(r->str, "NOSCRIPT", 8) == 0) {
            argv[0] = "EVAL";
            argv[1] = script->body;
        } else if (strncmp(r->str, "FENCED", 6) == 0) {
            if (rid[0] ? sync_step(in, 3, set) : sync_step(in, 4, set_seed))
                break;
        } else {
            break;
        }
        freeReplyObject(r);
        r = NULL;
    }
    if (r)
        log_error("redis: %s script failed: %s", script->name, r->str);
    return r;
}

/* Connects if needed and runs one request; a connection found dead (a
 * Redis restart since its last use) is made again once, at once. */
static redisReply *sync_request(redis_engine *e, instance *in,
                                const redis_script *script, const char *topic,
                                size_t len, int nargs, const char *a1,
                                const char *a2)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        int had = in->sync != NULL;
        redisReply *r;
        if (sync_connect(e, in))
            return NULL;
        r = sync_script(e, in, script, topic, len, nargs, a1, a2);
        if (r || !had || in->sync_timed_out)
            return r;
        in->sync_failed_ms = 0;
    }
    return NULL;
}

int redis_engine_meta_sync(redis_engine *e, const char *topic, size_t len,
                           char epoch[33], uint64_t *newest, uint64_t *oldest)
{
    instance *in = redis_instance(e, topic, len);
    redisReply *r;
    int rc = -1;

    r = sync_request(e, in, &redis_script_meta, topic, len, 0, NULL, NULL);
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[0]->len == 32 &&
        r->element[1]->type == REDIS_REPLY_INTEGER &&
        r->element[2]->type == REDIS_REPLY_INTEGER) {
        memcpy(epoch, r->element[0]->str, 32);
        epoch[32] = '\0';
        *newest = (uint64_t)r->element[1]->integer;
        *oldest = (uint64_t)r->element[2]->integer;
        rc = 0;
    }
    if (r)
        freeReplyObject(r);
    return rc;
}

int redis_engine_read_sync(redis_engine *e, const char *topic, size_t len,
                           uint64_t after, size_t limit, redis_row_fn fn,
                           void *arg)
{
    instance *in = redis_instance(e, topic, len);
    char from[32], count[32];
    redisReply *r;
    int visited = 0;

    snprintf(from, sizeof from, "%llu", (unsigned long long)after);
    snprintf(count, sizeof count, "%zu", limit);
    r = sync_request(e, in, &redis_script_read, topic, len, 2, from, count);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        if (r)
            freeReplyObject(r);
        return -1;
    }
    for (size_t i = 0; i < r->elements; i++) {
        redis_row row;
        if (redis_parse_entry(r->element[i], &row)) {
            visited = -1;
            break;
        }
        visited++;
        if (fn(row.offset, row.ts_ms, row.data, row.len, arg))
            break;
    }
    freeReplyObject(r);
    return visited;
}
