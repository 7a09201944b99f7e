#include "redis_conn.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/rand.h>

#include "log.h"
#include "metrics.h"

/* Reconnect backoff: doubles from the first to the last, each wait drawn
 * from [half, whole] so that nodes cut off together do not come back in
 * the same millisecond. */
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000

/* A request in flight. hiredis calls back every request exactly once,
 * possibly after the connection was given up (with NULL), so a request
 * is freed by its hiredis callback; done marks one already answered. */
typedef struct rreq {
    struct rreq *next;
    rconn *rc;
    rconn_reply_fn fn;
    void *arg;
    uint64_t t0_ns;
    int done;
} rreq;

struct rconn {
    struct event_base *base;
    redis_addr addr;
    uint64_t timeout_ms;
    int pubsub;
    rconn_hooks hooks;
    metrics *m;
    redisAsyncContext *ac; /* NULL while down */
    int ready;
    uint64_t connect_ns; /* when the current attempt started */
    uint64_t sent_ns;    /* the last request sent */
    char run_id[41];
    rreq *head, *tail;   /* in flight, oldest first */
    struct event *tick;  /* timeouts */
    struct event *retry; /* the next attempt */
    unsigned failures;   /* attempts since the last success */
};

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void connect_now(rconn *rc);

static void observe_rtt(rconn *rc, uint64_t ns)
{
    if (rc->m)
        metrics_observe_redis_rtt(rc->m, ns);
}

static void pending_add(rconn *rc, int64_t d)
{
    if (rc->m)
        rc->m->redis_pending += (uint64_t)d;
}

static void schedule_retry(rconn *rc)
{
    uint64_t base = BACKOFF_FIRST_MS, wait;
    uint32_t r = 0;
    struct timeval tv;

    for (unsigned i = 0; i < rc->failures && base < BACKOFF_MAX_MS; i++)
        base *= 2;
    if (base > BACKOFF_MAX_MS)
        base = BACKOFF_MAX_MS;
    rc->failures++;
    RAND_bytes((unsigned char *)&r, sizeof r);
    wait = base / 2 + r % (base / 2 + 1);
    tv.tv_sec = (time_t)(wait / 1000);
    tv.tv_usec = (suseconds_t)(wait % 1000) * 1000;
    evtimer_add(rc->retry, &tv);
}

/* Fails every request in flight; hiredis still calls each back later
 * (with NULL), which frees it. */
static void fail_in_flight(rconn *rc)
{
    rreq *q = rc->head;

    rc->head = rc->tail = NULL;
    for (; q; q = q->next) {
        q->done = 1;
        pending_add(rc, -1);
        q->fn(rc, NULL, q->arg);
    }
}

/* The connection is gone (or given up): tell the owner, try again. */
static void went_down(rconn *rc, const char *why)
{
    int was_ready = rc->ready;

    rc->ac = NULL;
    __atomic_store_n(&rc->ready, 0, __ATOMIC_RELAXED);
    if (was_ready || rc->failures == 0)
        log_warn("redis %s:%d%s: %s", rc->addr.host, rc->addr.port,
                 rc->pubsub ? " (pub/sub)" : "", why);
    fail_in_flight(rc);
    if (was_ready && rc->m)
        rc->m->redis_reconnects++;
    if (rc->hooks.down)
        rc->hooks.down(rc, rc->hooks.arg);
    schedule_retry(rc);
}

void rconn_reset(rconn *rc, const char *why)
{
    redisAsyncContext *ac = rc->ac;

    if (!ac)
        return;
    ac->data = NULL; /* its disconnect callback is ours no more */
    went_down(rc, why);
    redisAsyncFree(ac);
}

static void on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    rreq *q = priv;
    rconn *rc = q->rc;

    (void)ac;
    if (!q->done) {
        /* Redis answers in order: q is the oldest. */
        rc->head = q->next;
        if (!rc->head)
            rc->tail = NULL;
        q->done = 1;
        pending_add(rc, -1);
        if (r)
            observe_rtt(rc, now_ns() - q->t0_ns);
        q->fn(rc, r, q->arg);
    }
    free(q);
}

static int send_request(rconn *rc, int argc, const char **argv,
                        const size_t *argvlen, rconn_reply_fn fn, void *arg)
{
    rreq *q = calloc(1, sizeof *q);

    if (!q)
        return -1;
    q->rc = rc;
    q->fn = fn;
    q->arg = arg;
    q->t0_ns = rc->sent_ns = now_ns();
    if (redisAsyncCommandArgv(rc->ac, on_reply, q, argc, argv, argvlen) !=
        REDIS_OK) {
        free(q);
        return -1;
    }
    if (rc->tail)
        rc->tail->next = q;
    else
        rc->head = q;
    rc->tail = q;
    pending_add(rc, 1);
    return 0;
}

int rconn_command(rconn *rc, int argc, const char **argv, const size_t *argvlen,
                  rconn_reply_fn fn, void *arg)
{
    if (!rc->ready || rc->pubsub)
        return -1;
    return send_request(rc, argc, argv, argvlen, fn, arg);
}

/* ---- the handshake: AUTH, SELECT, INFO server ---------------------------- */

static int reply_ok(const redisReply *r)
{
    return r && r->type != REDIS_REPLY_ERROR;
}

static void handshake_failed(rconn *rc, const redisReply *r, const char *step)
{
    char why[300];

    snprintf(why, sizeof why, "%s failed: %s", step,
             r && r->type == REDIS_REPLY_ERROR ? r->str : "no reply");
    rconn_reset(rc, why);
}

static void became_ready(rconn *rc)
{
    __atomic_store_n(&rc->ready, 1, __ATOMIC_RELAXED);
    if (rc->failures > 1 || (rc->m && rc->m->redis_reconnects))
        log_info("redis %s:%d%s: connected (run_id %.8s)", rc->addr.host,
                 rc->addr.port, rc->pubsub ? " (pub/sub)" : "", rc->run_id);
    rc->failures = 0;
    if (rc->hooks.up)
        rc->hooks.up(rc, rc->hooks.arg);
}

static void on_info(rconn *rc, redisReply *r, void *arg)
{
    const char *p;

    (void)arg;
    if (!r)
        return;
    if (!reply_ok(r) || r->type != REDIS_REPLY_STRING ||
        !(p = strstr(r->str, "run_id:")) || strlen(p + 7) < 40) {
        handshake_failed(rc, r, "INFO server");
        return;
    }
    memcpy(rc->run_id, p + 7, 40);
    rc->run_id[40] = '\0';
    became_ready(rc);
}

static void on_step(rconn *rc, redisReply *r, void *arg)
{
    if (r && !reply_ok(r))
        handshake_failed(rc, r, arg);
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    rconn *rc = ac->data;
    char db[16];
    const char *auth[] = {"AUTH", rc ? rc->addr.password : ""};
    const char *sel[] = {"SELECT", db};
    const char *info[] = {"INFO", "server"};

    if (!rc || rc->ac != ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees ac after this callback */
        ac->data = NULL;
        went_down(rc, ac->errstr);
        return;
    }
    redisEnableKeepAlive(&ac->c);
    snprintf(db, sizeof db, "%u", rc->addr.db);
    /* Pipelined: each step fails the connection if Redis refuses it. */
    if ((rc->addr.password[0] &&
         send_request(rc, 2, auth, NULL, on_step, "AUTH")) ||
        (rc->addr.db && !rc->pubsub &&
         send_request(rc, 2, sel, NULL, on_step, "SELECT")) ||
        send_request(rc, 2, info, NULL, on_info, NULL))
        rconn_reset(rc, "out of memory");
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    rconn *rc = ac->data;

    if (!rc || rc->ac != ac)
        return;
    ac->data = NULL;
    went_down(rc, status == REDIS_OK
                      ? "disconnected"
                      : (ac->errstr[0] ? ac->errstr : "connection lost"));
}

static void connect_now(rconn *rc)
{
    redisAsyncContext *ac = redisAsyncConnect(rc->addr.host, rc->addr.port);

    rc->connect_ns = now_ns();
    if (!ac || ac->err) {
        char why[200];
        snprintf(why, sizeof why, "cannot connect: %s",
                 ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        went_down(rc, why);
        return;
    }
    ac->data = rc;
    rc->ac = ac;
    redisLibeventAttach(ac, rc->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    connect_now(arg);
}

static void on_ping(rconn *rc, redisReply *r, void *arg)
{
    (void)rc;
    (void)r;
    (void)arg;
}

/* The oldest request, or a connect, waiting past the timeout. An idle
 * command connection is pinged every half timeout, so that a Redis that
 * stopped answering is noticed (and /healthz says so) before a publish
 * has to wait for it. */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    rconn *rc = arg;
    uint64_t limit = rc->timeout_ms * 1000000ULL, now = now_ns();
    const char *ping[] = {"PING"};

    (void)fd;
    (void)what;
    if (!rc->ac)
        return;
    if (rc->head && now - rc->head->t0_ns > limit)
        rconn_reset(rc, "no reply within redis_timeout");
    else if (!rc->ready && now - rc->connect_ns > limit)
        rconn_reset(rc, "connect timed out (redis_timeout)");
    else if (rc->ready && !rc->pubsub && !rc->head &&
             now - rc->sent_ns > limit / 2)
        send_request(rc, 1, ping, NULL, on_ping, NULL);
}

void rconn_drain(rconn *rc, uint64_t timeout_ms)
{
    uint64_t deadline = now_ns() + timeout_ms * 1000000ULL;

    while (rc->ac && rc->head && now_ns() < deadline) {
        struct pollfd p = {rc->ac->c.fd, POLLIN, 0};
        int ms = (int)((deadline - now_ns()) / 1000000ULL) + 1;
        redisAsyncHandleWrite(rc->ac); /* what is still buffered */
        if (!rc->ac)
            break;
        if (poll(&p, 1, ms) > 0 && rc->ac)
            redisAsyncHandleRead(rc->ac);
    }
    if (rc->head)
        rconn_reset(rc, "no reply before shutdown (redis_timeout)");
}

/* ---- pub/sub ------------------------------------------------------------- */

static void on_pubsub(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;
    rconn *rc = ac->data;

    (void)priv;
    if (!rc || !reply || reply->type != REDIS_REPLY_ARRAY ||
        reply->elements != 3 || reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(reply->element[0]->str, "subscribe") == 0 &&
        rc->hooks.subscribed && reply->element[1]->type == REDIS_REPLY_STRING) {
        rc->hooks.subscribed(rc, reply->element[1]->str, reply->element[1]->len,
                             rc->hooks.arg);
        return;
    }
    if (strcmp(reply->element[0]->str, "message") == 0 && rc->hooks.message &&
        reply->element[1]->type == REDIS_REPLY_STRING &&
        reply->element[2]->type == REDIS_REPLY_STRING)
        rc->hooks.message(rc, reply->element[1]->str, reply->element[1]->len,
                          reply->element[2]->str, reply->element[2]->len,
                          rc->hooks.arg);
}

int rconn_subscribe(rconn *rc, int unsubscribe, int n, const char **channels,
                    const size_t *lens)
{
    const char **argv;
    size_t *argvlen;
    int rcode;

    if (!rc->ready || !rc->pubsub || n <= 0)
        return -1;
    argv = malloc((size_t)(n + 1) * sizeof *argv);
    argvlen = malloc((size_t)(n + 1) * sizeof *argvlen);
    if (!argv || !argvlen) {
        free(argv);
        free(argvlen);
        return -1;
    }
    argv[0] = unsubscribe ? "UNSUBSCRIBE" : "SUBSCRIBE";
    argvlen[0] = strlen(argv[0]);
    memcpy(argv + 1, channels, (size_t)n * sizeof *argv);
    memcpy(argvlen + 1, lens, (size_t)n * sizeof *argvlen);
    rcode = redisAsyncCommandArgv(rc->ac, on_pubsub, NULL, n + 1, argv,
                                  argvlen) == REDIS_OK
                ? 0
                : -1;
    free(argv);
    free(argvlen);
    return rcode;
}

/* ---- life cycle ---------------------------------------------------------- */

rconn *rconn_new(struct event_base *base, const redis_addr *addr,
                 uint64_t timeout_ms, int pubsub, const rconn_hooks *hooks,
                 metrics *m)
{
    rconn *rc = calloc(1, sizeof *rc);
    struct timeval tv = {0, 0};
    uint64_t every = timeout_ms / 4;

    if (!rc)
        return NULL;
    rc->base = base;
    rc->addr = *addr;
    rc->timeout_ms = timeout_ms;
    rc->pubsub = pubsub;
    rc->hooks = *hooks;
    rc->m = m;
    rc->tick = event_new(base, -1, EV_PERSIST, tick_cb, rc);
    rc->retry = evtimer_new(base, retry_cb, rc);
    if (!rc->tick || !rc->retry) {
        rconn_free(rc);
        return NULL;
    }
    if (every < 10)
        every = 10;
    if (every > 250)
        every = 250;
    tv.tv_usec = (suseconds_t)every * 1000;
    event_add(rc->tick, &tv);
    connect_now(rc);
    return rc;
}

void rconn_free(rconn *rc)
{
    if (!rc)
        return;
    rc->hooks.down = NULL;
    if (rc->ac) {
        redisAsyncContext *ac = rc->ac;
        ac->data = NULL;
        rc->ac = NULL;
        rc->ready = 0;
        fail_in_flight(rc);
        redisAsyncFree(ac);
    }
    if (rc->tick)
        event_free(rc->tick);
    if (rc->retry)
        event_free(rc->retry);
    free(rc);
}

int rconn_ready(const rconn *rc)
{
    /* also read by other threads (/healthz) */
    return __atomic_load_n(&rc->ready, __ATOMIC_RELAXED);
}

const char *rconn_run_id(const rconn *rc)
{
    return rc->run_id;
}

const redis_addr *rconn_addr(const rconn *rc)
{
    return &rc->addr;
}
