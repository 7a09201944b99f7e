/* Tests of the Redis engine through store.h (broker/store/redis/), against
 * a real redis-server started here on a free loopback port with its own
 * temp dir and no persistence (skipped, and said so, when redis-server is
 * not installed). Two attached loops on one event base stand for two
 * nodes: offsets and epochs assigned by Redis, reads that create nothing,
 * the live feed (every message once, in order, to each watcher), a
 * restart of Redis (the epoch changes, the feed says so), health, and
 * offsets from 1e14 (past Lua's "%.14g") to 2^53. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "check.h"
#include "config.h"
#include "store.h"

#define REDIS_SERVER "/usr/bin/redis-server"

static char dir[] = "/tmp/chorus_test_store_redis.XXXXXX";
static int port;
static pid_t redis_pid;
static struct event_base *base;

static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), p;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    p = ntohs(a.sin_port);
    close(fd);
    return p;
}

static int port_open(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static void start_redis(void)
{
    char p[16];

    snprintf(p, sizeof p, "%d", port);
    redis_pid = fork();
    if (redis_pid == 0) {
        execl(REDIS_SERVER, REDIS_SERVER, "--port", p, "--bind", "127.0.0.1",
              "--dir", dir, "--save", "", "--appendonly", "no", "--logfile",
              "redis.log", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500 && !port_open(); i++)
        usleep(10000);
}

static void stop_redis(int sig)
{
    kill(redis_pid, sig);
    waitpid(redis_pid, NULL, 0);
}

/* Runs the loop until *flag or timeout_ms. */
static void run_until(const int *flag, int timeout_ms)
{
    struct timespec t0, t;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (!*flag) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 >
            timeout_ms)
            return;
    }
}

/* ---- what the loops get -------------------------------------------------- */

typedef struct feed_log {
    uint64_t offsets[64];
    char data[64][8];
    char epoch[33];
    size_t n;
    int epoch_changes;
    uint64_t changed_newest;
} feed_log;

static void on_messages(void *arg, const char *topic, size_t len,
                        const store_msg *msgs, size_t n)
{
    feed_log *f = arg;

    (void)topic;
    (void)len;
    for (size_t i = 0; i < n && f->n < 64; i++, f->n++) {
        f->offsets[f->n] = msgs[i].offset;
        snprintf(f->data[f->n], sizeof f->data[0], "%.*s",
                 (int)msgs[i].data_len, msgs[i].data);
        memcpy(f->epoch, msgs[i].epoch, sizeof f->epoch);
    }
}

static void on_epoch(void *arg, const char *topic, size_t len,
                     const store_topic_info *info)
{
    feed_log *f = arg;

    (void)topic;
    (void)len;
    f->epoch_changes++;
    f->changed_newest = info->newest;
    memcpy(f->epoch, info->epoch, sizeof f->epoch);
}

typedef struct result {
    int done, status;
    store_topic_info info;
    size_t rows;
    char row_data[16][8];
    uint64_t row_off[16];
    uint64_t last_off; /* of the latest row */
    int unordered;     /* a row that did not follow the one before */
} result;

static void topic_cb(void *arg, int status, const store_topic_info *info)
{
    result *r = arg;

    r->status = status;
    if (info)
        r->info = *info;
    r->done = 1;
}

static void append_cb(void *arg, int status, const char *why)
{
    result *r = arg;

    (void)why;
    r->status = status;
    r->done = 1;
}

static int row_fn(void *arg, uint64_t offset, int64_t ts, const char *data,
                  size_t len)
{
    result *r = arg;

    (void)ts;
    if (r->rows < 16) {
        snprintf(r->row_data[r->rows], 8, "%.*s", (int)len, data);
        r->row_off[r->rows] = offset;
    }
    if (r->rows && offset != r->last_off + 1)
        r->unordered = 1;
    r->last_off = offset;
    r->rows++;
    return 0;
}

static void read_cb(void *arg, int status, size_t rows)
{
    result *r = arg;

    r->status = status;
    r->rows = rows;
    r->done = 1;
}

static store_topic_info topic_of(store_loop *l, const char *name)
{
    result r = {0};

    store_topic(l, name, strlen(name), topic_cb, &r);
    run_until(&r.done, 3000);
    CHECK(r.done && r.status == STORE_OK);
    return r.info;
}

/* Publishes "<prefix><i>" for i in 0..n-1 to one topic in one batch. */
static int append_n(store_loop *l, const char *topic, const char *prefix,
                    size_t n, store_msg *msgs, char (*data)[32])
{
    result r = {0};

    for (size_t i = 0; i < n; i++) {
        snprintf(data[i], sizeof data[i], "%s%zu", prefix, i);
        memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].topic = topic;
        msgs[i].topic_len = strlen(topic);
        msgs[i].data = data[i];
        msgs[i].data_len = strlen(data[i]);
        msgs[i].group_first = i == 0;
        msgs[i].next_same = i + 1 < n ? i + 2 : 0;
    }
    store_append(l, msgs, n, append_cb, &r);
    run_until(&r.done, 3000);
    return r.done ? r.status : -2;
}

/* A store of its own on the test's Redis, one loop with the caller's
 * feed (which outlives the store). */
static store_loop *open_store(store **st, config *cfg, const char *url,
                              const char *size, const char *ttl,
                              const store_feed *feed)
{
    char err[256];
    store_loop *l = NULL;
    int up = 0;

    config_init(cfg);
    config_set(cfg, "engine", "redis", err, sizeof err);
    config_set(cfg, "redis_url", url, err, sizeof err);
    config_set(cfg, "history_size", size, err, sizeof err);
    config_set(cfg, "history_ttl", ttl, err, sizeof err);
    CHECK_EQ_INT(store_engine_redis.open(st, cfg, err, sizeof err), STORE_OK);
    CHECK_EQ_INT(store_attach(*st, 0, base, feed, &l, err, sizeof err),
                 STORE_OK);
    for (int i = 0; i < 300 && store_unavailable(*st); i++)
        run_until(&up, 10);
    return l;
}

static void close_store(store *st, store_loop *l, config *cfg)
{
    store_detach(l);
    store_close(st);
    config_free(cfg);
}

/* Moves a topic to newest offset off as a long-lived one would be: its
 * meta hash keeps its epoch and run id (so the scripts take it as valid),
 * only o changes. */
static void set_newest(const char *topic, uint64_t off)
{
    redisContext *c = redisConnect("127.0.0.1", port);
    redisReply *r = c && !c->err ? redisCommand(c, "HSET chorus:{%s}:m o %llu",
                                                topic, (unsigned long long)off)
                                 : NULL;

    CHECK(r && r->type == REDIS_REPLY_INTEGER);
    if (r)
        freeReplyObject(r);
    if (c)
        redisFree(c);
}

/* The id of a topic's oldest stream entry ("" when none). */
static void first_entry(const char *topic, char *id, size_t size)
{
    redisContext *c = redisConnect("127.0.0.1", port);
    redisReply *r = c && !c->err ? redisCommand(c,
                                                "XRANGE chorus:{%s}:s - + "
                                                "COUNT 1",
                                                topic)
                                 : NULL;

    snprintf(id, size, "%s",
             r && r->type == REDIS_REPLY_ARRAY && r->elements == 1
                 ? r->element[0]->element[0]->str
                 : "");
    if (r)
        freeReplyObject(r);
    if (c)
        redisFree(c);
}

static result read_of(store_loop *l, const char *topic, uint64_t after,
                      size_t limit)
{
    result r = {0};

    store_read(l, topic, strlen(topic), after, limit, row_fn, read_cb, &r);
    run_until(&r.done, 3000);
    CHECK(r.done);
    return r;
}

/* A second store on the same Redis, with no count limit and a short age
 * limit: reads spanning more stream entries than the read script fetches
 * at once (16), a batch of several topics, age retention. */
static void test_many_entries(const char *url)
{
    config cfg;
    char data[1][32];
    store *st;
    store_msg msg[1];
    static feed_log fl;
    store_feed feed = {on_messages, on_epoch, &fl};
    result r;
    store_loop *l = open_store(&st, &cfg, url, "0", "1s", &feed);

    for (int i = 0; i < 40; i++)
        CHECK_EQ_INT(append_n(l, "m", "m", 1, msg, data), STORE_OK);
    CHECK_EQ_INT(msg[0].offset, 40);
    r = read_of(l, "m", 3, 30);
    CHECK_EQ_INT(r.status, STORE_OK);
    CHECK_EQ_INT(r.rows, 30);
    CHECK_EQ_INT(r.row_off[0], 4);
    CHECK_EQ_INT(r.last_off, 33);
    CHECK(!r.unordered);
    r = read_of(l, "m", 30, 100);
    CHECK_EQ_INT(r.rows, 10);
    CHECK_EQ_INT(r.last_off, 40);
    CHECK(!r.unordered);
    CHECK_EQ_INT(topic_of(l, "m").oldest, 1);

    /* One batch of three topics, interleaved (one script call): each
     * topic numbered on its own, in batch order. */
    static const char *topics[] = {"x", "y", "x", "z", "y", "x"};
    static const uint64_t want[] = {1, 1, 2, 1, 2, 3};
    store_msg mm[6];
    memset(mm, 0, sizeof mm);
    for (size_t i = 0; i < 6; i++) {
        mm[i].topic = topics[i];
        mm[i].topic_len = 1;
        mm[i].data = topics[i];
        mm[i].data_len = 1;
    }
    mm[0].group_first = mm[1].group_first = mm[3].group_first = 1;
    mm[0].next_same = 3; /* x: 0, 2, 5 */
    mm[2].next_same = 6;
    mm[1].next_same = 5; /* y: 1, 4 */
    r = (result){0};
    store_append(l, mm, 6, append_cb, &r);
    run_until(&r.done, 3000);
    CHECK_EQ_INT(r.status, STORE_OK);
    for (size_t i = 0; i < 6; i++)
        CHECK_EQ_INT(mm[i].offset, want[i]);
    CHECK_EQ_STR(mm[1].epoch, topic_of(l, "y").epoch);
    CHECK_EQ_INT(topic_of(l, "x").newest, 3);
    r = read_of(l, "x", 1, 10);
    CHECK_EQ_INT(r.rows, 2);
    CHECK_EQ_INT(r.last_off, 3);

    /* history_ttl 1s: a publish more than a second later drops the
     * entries older than a second */
    usleep(1200 * 1000);
    CHECK_EQ_INT(append_n(l, "x", "late", 1, msg, data), STORE_OK);
    CHECK_EQ_INT(msg[0].offset, 4);
    CHECK_EQ_INT(topic_of(l, "x").oldest, 4);
    r = read_of(l, "x", 0, 10);
    CHECK_EQ_INT(r.rows, 1);
    CHECK_EQ_STR(r.row_data[0], "late0");
    /* m's 40 entries take three pages of the check */
    CHECK_EQ_INT(append_n(l, "m", "late", 1, msg, data), STORE_OK);
    CHECK_EQ_INT(topic_of(l, "m").oldest, 41);
    close_store(st, l, &cfg);
}

/* ---- large offsets ------------------------------------------------------ */

#define OFFSET_MAX 9007199254740992ULL /* 2^53 */

/* history_size 4 on a topic moved to start: a call whose messages cross
 * the boundary, then single ones. Offsets, the feed, reads from before
 * the boundary, the count limit, and the stream trimmed by exact ids. */
static void test_large_offsets(const char *url, const char *topic,
                               uint64_t start)
{
    config cfg;
    store *st;
    static feed_log fl;
    store_feed feed = {on_messages, on_epoch, &fl};
    store_msg msgs[3];
    char data[3][32], id[64];
    int up = 0;
    result r;

    fl = (feed_log){0};
    store_loop *l = open_store(&st, &cfg, url, "4", "0", &feed);
    store_watch(l, topic, strlen(topic), 1);
    run_until(&up, 300); /* the SUBSCRIBE */
    CHECK_EQ_INT(append_n(l, topic, "s", 1, msgs, data), STORE_OK);
    for (int i = 0; i < 200 && fl.n < 1; i++)
        run_until(&up, 10);
    set_newest(topic, start);
    CHECK_EQ_INT(topic_of(l, topic).newest, start);
    CHECK_EQ_INT(append_n(l, topic, "a", 3, msgs, data), STORE_OK);
    for (size_t i = 0; i < 3; i++)
        CHECK_EQ_INT(msgs[i].offset, start + 1 + i);
    CHECK_EQ_INT(append_n(l, topic, "b", 1, msgs, data), STORE_OK);
    CHECK_EQ_INT(msgs[0].offset, start + 4);
    CHECK_EQ_INT(append_n(l, topic, "c", 1, msgs, data), STORE_OK);
    CHECK_EQ_INT(msgs[0].offset, start + 5);
    for (int i = 0; i < 300 && fl.n < 6; i++)
        run_until(&up, 10);
    CHECK_EQ_INT(fl.n, 6); /* offset 1, then the jump, each once */
    CHECK_EQ_INT(fl.offsets[0], 1);
    for (size_t i = 1; i < 6; i++)
        CHECK_EQ_INT(fl.offsets[i], start + i);
    CHECK_EQ_STR(fl.data[1], "a0");
    CHECK_EQ_STR(fl.data[5], "c0");

    store_topic_info info = topic_of(l, topic);
    CHECK_EQ_INT(info.newest, start + 5);
    CHECK_EQ_INT(info.oldest, start + 2); /* history_size 4 */
    r = read_of(l, topic, start - 1, 10);
    CHECK_EQ_INT(r.status, STORE_OK);
    CHECK_EQ_INT(r.rows, 4);
    CHECK_EQ_INT(r.row_off[0], start + 2);
    CHECK_EQ_STR(r.row_data[0], "a1");
    CHECK_EQ_INT(r.last_off, start + 5);
    CHECK(!r.unordered);
    r = read_of(l, topic, start + 2, 2);
    CHECK_EQ_INT(r.rows, 2);
    CHECK_EQ_STR(r.row_data[0], "a2");
    CHECK_EQ_STR(r.row_data[1], "b0");
    r = read_of(l, topic, start + 5, 10);
    CHECK_EQ_INT(r.status, STORE_OK);
    CHECK_EQ_INT(r.rows, 0);
    r = read_of(l, topic, UINT64_MAX, 10); /* no stream id that large */
    CHECK_EQ_INT(r.status, STORE_OK);
    CHECK_EQ_INT(r.rows, 0);

    /* MINID ~ drops whole stream nodes: publish until the first node (1-0
     * and the entries after it) goes */
    uint64_t newest = start + 5;
    first_entry(topic, id, sizeof id);
    CHECK_EQ_STR(id, "1-0");
    for (int i = 0; i < 120 && strcmp(id, "1-0") == 0; i++) {
        CHECK_EQ_INT(append_n(l, topic, "d", 1, msgs, data), STORE_OK);
        CHECK_EQ_INT(msgs[0].offset, ++newest);
        first_entry(topic, id, sizeof id);
    }
    CHECK(strtoull(id, NULL, 10) > start + 5);
    info = topic_of(l, topic);
    CHECK_EQ_INT(info.newest, newest);
    CHECK_EQ_INT(info.oldest, newest - 3);
    close_store(st, l, &cfg);
}

/* The last offset is 2^53 (past it a double counts no more): a publish
 * beyond fails and changes nothing; reads after it find nothing. */
static void test_offset_limit(const char *url)
{
    config cfg;
    store *st;
    static feed_log fl;
    store_feed feed = {on_messages, on_epoch, &fl};
    store_msg msgs[2];
    char data[2][32];
    result r;

    fl = (feed_log){0};
    store_loop *l = open_store(&st, &cfg, url, "4", "0", &feed);
    CHECK_EQ_INT(append_n(l, "last", "s", 1, msgs, data), STORE_OK);
    set_newest("last", OFFSET_MAX - 1);
    CHECK_EQ_INT(append_n(l, "last", "x", 2, msgs, data), STORE_FAIL);
    CHECK_EQ_INT(append_n(l, "last", "y", 1, msgs, data), STORE_OK);
    CHECK_EQ_INT(msgs[0].offset, OFFSET_MAX);
    CHECK_EQ_INT(append_n(l, "last", "z", 1, msgs, data), STORE_FAIL);
    CHECK_EQ_INT(topic_of(l, "last").newest, OFFSET_MAX);
    r = read_of(l, "last", OFFSET_MAX - 1, 10);
    CHECK_EQ_INT(r.rows, 1);
    CHECK_EQ_INT(r.row_off[0], OFFSET_MAX);
    CHECK_EQ_STR(r.row_data[0], "y0");
    for (uint64_t after = OFFSET_MAX; after < OFFSET_MAX + 3; after++) {
        r = read_of(l, "last", after, 10);
        CHECK_EQ_INT(r.status, STORE_OK);
        CHECK_EQ_INT(r.rows, 0);
    }
    close_store(st, l, &cfg);
}

/* history_ttl across 1e14: the age check trims by an exact id. */
static void test_large_offset_ttl(const char *url)
{
    config cfg;
    store *st;
    static feed_log fl;
    store_feed feed = {on_messages, on_epoch, &fl};
    store_msg msgs[2];
    char data[2][32];
    result r;

    fl = (feed_log){0};
    store_loop *l = open_store(&st, &cfg, url, "0", "1s", &feed);
    CHECK_EQ_INT(append_n(l, "aged", "s", 1, msgs, data), STORE_OK);
    set_newest("aged", 99999999999998ULL);
    CHECK_EQ_INT(append_n(l, "aged", "a", 2, msgs, data), STORE_OK);
    CHECK_EQ_INT(msgs[1].offset, 100000000000000ULL);
    usleep(1200 * 1000);
    CHECK_EQ_INT(append_n(l, "aged", "b", 1, msgs, data), STORE_OK);
    CHECK_EQ_INT(msgs[0].offset, 100000000000001ULL);
    CHECK_EQ_INT(topic_of(l, "aged").oldest, 100000000000001ULL);
    r = read_of(l, "aged", 0, 10);
    CHECK_EQ_INT(r.rows, 1);
    CHECK_EQ_STR(r.row_data[0], "b0");
    close_store(st, l, &cfg);
}

int main(void)
{
    config cfg;
    char url[64], err[256];
    store *st;
    store_loop *a, *b;
    feed_log fa = {0}, fb = {0};
    store_feed feed_a = {on_messages, on_epoch, &fa};
    store_feed feed_b = {on_messages, on_epoch, &fb};
    store_msg msgs[8];
    char data[8][32];
    store_topic_info info, info2;

    if (access(REDIS_SERVER, X_OK) != 0) {
        printf("test_store_redis: %s not installed; skipped\n", REDIS_SERVER);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    if (!mkdtemp(dir))
        return 2;
    port = free_port();
    start_redis();
    base = event_base_new();
    config_init(&cfg);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    config_set(&cfg, "engine", "redis", err, sizeof err);
    config_set(&cfg, "redis_url", url, err, sizeof err);
    config_set(&cfg, "history_size", "5", err, sizeof err);
    CHECK_EQ_INT(store_engine_redis.open(&st, &cfg, err, sizeof err), STORE_OK);
    CHECK_EQ_INT(store_attach(st, 0, base, &feed_a, &a, err, sizeof err),
                 STORE_OK);
    CHECK_EQ_INT(store_attach(st, 1, base, &feed_b, &b, err, sizeof err),
                 STORE_OK);
    int up = 0;
    for (int i = 0; i < 300 && store_unavailable(st); i++)
        run_until(&up, 10);
    CHECK(store_unavailable(st) == NULL);

    /* A topic never published to: an epoch, newest 0; the same on both
     * loops; reading it creates nothing. */
    info = topic_of(a, "t");
    info2 = topic_of(b, "t");
    CHECK_EQ_INT(info.newest, 0);
    CHECK_EQ_INT(info.oldest, 0);
    CHECK_EQ_INT(strlen(info.epoch), 32);
    CHECK_EQ_STR(info.epoch, info2.epoch);

    /* Watch on both loops, publish from both: Redis numbers, each feed
     * gets every offset once, in order. */
    store_watch(a, "t", 1, 1);
    store_watch(b, "t", 1, 1);
    run_until(&up, 300); /* the SUBSCRIBEs */
    CHECK_EQ_INT(append_n(a, "t", "a", 3, msgs, data), STORE_OK);
    CHECK_EQ_INT(msgs[0].offset, 1);
    CHECK_EQ_INT(msgs[2].offset, 3);
    CHECK_EQ_STR(msgs[2].epoch, info.epoch); /* the epoch it was told */
    CHECK_EQ_INT(append_n(b, "t", "b", 4, msgs, data), STORE_OK);
    CHECK_EQ_INT(msgs[0].offset, 4);
    CHECK_EQ_INT(msgs[3].offset, 7);
    for (int i = 0; i < 200 && (fa.n < 7 || fb.n < 7); i++)
        run_until(&up, 10);
    CHECK_EQ_INT(fa.n, 7);
    CHECK_EQ_INT(fb.n, 7);
    for (size_t i = 0; i < 7; i++) {
        CHECK_EQ_INT(fa.offsets[i], i + 1);
        CHECK_EQ_INT(fb.offsets[i], i + 1);
    }
    CHECK_EQ_STR(fa.data[0], "a0");
    CHECK_EQ_STR(fb.data[6], "b3");

    /* history_size 5: offsets 3..7 are left; read after 4 */
    info = topic_of(b, "t");
    CHECK_EQ_INT(info.newest, 7);
    CHECK_EQ_INT(info.oldest, 3);
    result r = {0};
    store_read(a, "t", 1, 4, 10, row_fn, read_cb, &r);
    run_until(&r.done, 3000);
    CHECK_EQ_INT(r.status, STORE_OK);
    CHECK_EQ_INT(r.rows, 3);
    CHECK_EQ_STR(r.row_data[0], "b1");
    CHECK_EQ_STR(r.row_data[2], "b3");
    CHECK_EQ_INT(r.row_off[0], 5);
    CHECK_EQ_INT(r.row_off[2], 7);

    /* Each call is one stream entry (1..3 and 4..7): a read starts and
     * stops inside entries, and never shows what history_size dropped. */
    r = (result){0};
    store_read(a, "t", 1, 3, 2, row_fn, read_cb, &r);
    run_until(&r.done, 3000);
    CHECK_EQ_INT(r.status, STORE_OK);
    CHECK_EQ_INT(r.rows, 2);
    CHECK_EQ_STR(r.row_data[0], "b0");
    CHECK_EQ_STR(r.row_data[1], "b1");
    CHECK_EQ_INT(r.row_off[1], 5);
    r = (result){0};
    store_read(a, "t", 1, 0, 10, row_fn, read_cb, &r);
    run_until(&r.done, 3000);
    CHECK_EQ_INT(r.status, STORE_OK);
    CHECK_EQ_INT(r.rows, 5);
    CHECK_EQ_STR(r.row_data[0], "a2");
    CHECK_EQ_INT(r.row_off[0], 3);
    CHECK_EQ_STR(r.row_data[4], "b3");
    r = (result){0};
    store_read(a, "t", 1, 7, 10, row_fn, read_cb, &r);
    run_until(&r.done, 3000);
    CHECK_EQ_INT(r.status, STORE_OK);
    CHECK_EQ_INT(r.rows, 0);

    test_many_entries(url);
    test_large_offsets(url, "big", 99999999999998ULL);
    test_large_offsets(url, "huge", OFFSET_MAX - 130);
    test_offset_limit(url);
    test_large_offset_ttl(url);

    /* Redis restarts without its data: the feed tells each loop of the
     * new epoch, and offsets start again at 1 under it. */
    char old[33];
    memcpy(old, info.epoch, sizeof old);
    stop_redis(SIGKILL);
    start_redis();
    for (int i = 0;
         i < 1000 && (fa.epoch_changes == 0 || fb.epoch_changes == 0); i++)
        run_until(&up, 10);
    CHECK_EQ_INT(fa.epoch_changes, 1);
    CHECK_EQ_INT(fb.epoch_changes, 1);
    CHECK(strcmp(fa.epoch, old) != 0);
    CHECK_EQ_INT(fa.changed_newest, 0);
    int rc = STORE_FAIL;
    for (int i = 0; i < 100 && rc != STORE_OK; i++) {
        rc = append_n(a, "t", "n", 2, msgs, data);
        if (rc != STORE_OK)
            run_until(&up, 50);
    }
    CHECK_EQ_INT(rc, STORE_OK);
    CHECK_EQ_INT(msgs[0].offset, 1);
    CHECK_EQ_STR(msgs[0].epoch, fa.epoch);
    for (int i = 0; i < 200 && fb.n < 9; i++)
        run_until(&up, 10);
    CHECK_EQ_INT(fb.n, 9);
    CHECK_EQ_INT(fb.offsets[7], 1);
    CHECK_EQ_STR(fb.data[8], "n1");

    /* Redis gone: appends fail, health says why. */
    stop_redis(SIGKILL);
    CHECK_EQ_INT(append_n(a, "t", "x", 1, msgs, data), STORE_FAIL);
    CHECK_EQ_INT(msgs[0].offset, 0);
    for (int i = 0; i < 300 && !store_unavailable(st); i++)
        run_until(&up, 10);
    CHECK(store_unavailable(st) != NULL &&
          strcmp(store_unavailable(st), "redis unavailable") == 0);
    struct evbuffer *out = evbuffer_new();
    store_metrics(st, out);
    evbuffer_add(out, "", 1);
    CHECK(strstr((char *)evbuffer_pullup(out, -1),
                 "chorus_redis_epoch_changes_total 2") != NULL);
    evbuffer_free(out);

    store_detach(a);
    store_detach(b);
    store_close(st);
    config_free(&cfg);
    event_base_free(base);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return check_report("test_store_redis");
}
