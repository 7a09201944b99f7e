/* Prometheus text exposition (format 0.0.4) of the broker's counters.
 * Rendering only reads, with relaxed atomic loads: every loop's stats,
 * nconns and topic table sizes, which those loops write meanwhile. */
#include "metrics.h"

#include <inttypes.h>
#include <string.h>

#include <event2/buffer.h>

#include "chorus/wire.h"
#include "send_batch.h"
#include "server.h"

static const double commit_bounds[METRICS_COMMIT_BUCKETS] = {
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5,
};

static const double redis_rtt_bounds[METRICS_REDIS_RTT_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1,
};

static const char *const reject_names[REJECT__COUNT] = {
    [REJECT_MAX_CONNECTIONS] = "max_connections",
    [REJECT_PER_IP] = "per_ip",
    [REJECT_AUTH] = "auth",
    [REJECT_ORIGIN] = "origin",
    [REJECT_BAD_HANDSHAKE] = "bad_handshake",
    [REJECT_HANDSHAKE_TIMEOUT] = "handshake_timeout",
    [REJECT_TLS] = "tls",
    [REJECT_FD_LIMIT] = "fd_limit",
};

static const char *const error_names[ERRCODE__COUNT] = {
    [ERRCODE_BAD_REQUEST] = CHORUS_ERR_BAD_REQUEST,
    [ERRCODE_UNKNOWN_OP] = CHORUS_ERR_UNKNOWN_OP,
    [ERRCODE_INVALID_TOPIC] = CHORUS_ERR_INVALID_TOPIC,
    [ERRCODE_UNAUTHORIZED] = CHORUS_ERR_UNAUTHORIZED,
    [ERRCODE_FORBIDDEN] = CHORUS_ERR_FORBIDDEN,
    [ERRCODE_TOO_LARGE] = CHORUS_ERR_TOO_LARGE,
    [ERRCODE_RATE_LIMITED] = CHORUS_ERR_RATE_LIMITED,
    [ERRCODE_NOT_SUBSCRIBED] = CHORUS_ERR_NOT_SUBSCRIBED,
    [ERRCODE_INTERNAL] = CHORUS_ERR_INTERNAL,
};

int metrics_error_index(const char *code)
{
    if (!code)
        return -1;
    for (int i = 0; i < ERRCODE__COUNT; i++)
        if (strcmp(error_names[i], code) == 0)
            return i;
    return -1;
}

void metrics_count_error(metrics *m, const char *code)
{
    int i = metrics_error_index(code);
    stat_inc(&m->errors[i < 0 ? ERRCODE_INTERNAL : i]);
}

void metrics_observe_commit(metrics *m, double seconds)
{
    int i = 0;
    if (!(seconds >= 0)) /* negative or NaN: a clock step */
        seconds = 0;
    while (i < METRICS_COMMIT_BUCKETS && seconds > commit_bounds[i])
        i++;
    stat_inc(&m->commit_latency_buckets[i]);
    stat_add(&m->commit_latency_sum_ns, (uint64_t)(seconds * 1e9 + 0.5));
}

void metrics_observe_redis_rtt(metrics *m, uint64_t ns)
{
    double seconds = (double)ns / 1e9;
    int i = 0;

    while (i < METRICS_REDIS_RTT_BUCKETS && seconds > redis_rtt_bounds[i])
        i++;
    stat_inc(&m->redis_rtt_buckets[i]);
    stat_add(&m->redis_rtt_sum_ns, ns);
}

static void head(struct evbuffer *out, const char *name, const char *type,
                 const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
                        type);
}

static void one(struct evbuffer *out, const char *name, const char *type,
                const char *help, uint64_t v)
{
    head(out, name, type, help);
    evbuffer_add_printf(out, "%s %" PRIu64 "\n", name, v);
}

static void labelled(struct evbuffer *out, const char *name, const char *help,
                     const char *label, const char *const *names,
                     const stat_counter *v, int n)
{
    head(out, name, "counter", help);
    for (int i = 0; i < n; i++)
        evbuffer_add_printf(out, "%s{%s=\"%s\"} %" PRIu64 "\n", name, label,
                            names[i], stat_get(&v[i]));
}

/* n buckets with their upper bounds, then +Inf in buckets[n]. */
static void histogram(struct evbuffer *out, const char *name, const char *help,
                      const double *bounds, const stat_counter *buckets, int n,
                      const stat_counter *sum_ns)
{
    uint64_t cum = 0;

    head(out, name, "histogram", help);
    for (int i = 0; i < n; i++) {
        cum += stat_get(&buckets[i]);
        evbuffer_add_printf(out, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name,
                            bounds[i], cum);
    }
    cum += stat_get(&buckets[n]);
    evbuffer_add_printf(out, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
    evbuffer_add_printf(out, "%s_sum %.9g\n", name,
                        (double)stat_get(sum_ns) / 1e9);
    evbuffer_add_printf(out, "%s_count %" PRIu64 "\n", name, cum);
}

static void commit_histogram(struct evbuffer *out, const metrics *m)
{
    histogram(out, "chorus_history_commit_duration_seconds",
              "Time to commit one batch to the history store.", commit_bounds,
              m->commit_latency_buckets, METRICS_COMMIT_BUCKETS,
              &m->commit_latency_sum_ns);
}

void metrics_render_redis(const metrics *m, struct evbuffer *out)
{
    histogram(out, "chorus_redis_rtt_seconds",
              "Round-trip time of requests to Redis.", redis_rtt_bounds,
              m->redis_rtt_buckets, METRICS_REDIS_RTT_BUCKETS,
              &m->redis_rtt_sum_ns);
    one(out, "chorus_redis_reconnects_total", "counter",
        "Redis connections lost and made again.",
        stat_get(&m->redis_reconnects));
    one(out, "chorus_redis_pending_requests", "gauge",
        "Requests sent to Redis and not answered yet.",
        stat_get(&m->redis_pending));
    one(out, "chorus_redis_gap_fills_total", "counter",
        "Offsets missing from the live feed, filled from the stream.",
        stat_get(&m->redis_gap_fills));
    one(out, "chorus_redis_epoch_changes_total", "counter",
        "Topic epochs found changed (Redis restarted or failed over).",
        stat_get(&m->redis_epoch_changes));
}

/* Whether the end-of-turn writes go through io_uring, and the writes a
 * socket took only part of, by the way they were issued. */
static void write_path(struct evbuffer *out, const server *s,
                       uint64_t writev_partials)
{
    static const char *const via[] = {"io_uring", "writev"};
    stat_counter partial[2] = {0, writev_partials};
    uint64_t rings = 0;
    int n = s->b ? s->b->n : 1;

    for (int i = 0; i < n; i++) {
        const server *o = s->b ? &s->b->loops[i] : s;
        rings += (uint64_t)send_batch_active(o->sends);
        stat_add(&partial[0], send_batch_partial_writes(o->sends));
    }
    one(out, "chorus_io_uring_built_in", "gauge",
        "1 if chorusd was built with liburing.",
        (uint64_t)send_batch_built_in());
    one(out, "chorus_io_uring_rings", "gauge",
        "Event loops writing through io_uring (io_uring = on, available "
        "and not failed).",
        rings);
    labelled(out, "chorus_partial_writes_total",
             "End-of-turn writes the socket took only part of (the rest "
             "waits until it is writable), by system call.",
             "via", via, partial, 2);
}

/* Adds b's counters (of a running loop) to the caller's own total. */
static void add(metrics *total, const metrics *b)
{
    stat_counter *dst = (stat_counter *)total;
    const stat_counter *src = (const stat_counter *)b;

    _Static_assert(sizeof(metrics) % sizeof(stat_counter) == 0,
                   "metrics holds stat_counter fields only");
    for (size_t i = 0; i < sizeof *total / sizeof(stat_counter); i++)
        stat_add(&dst[i], stat_get(&src[i]));
}

/* Sums every loop's (or, in unit tests, the lone server's) counters. The
 * loops run meanwhile: each value read is a recent one, not one instant
 * of all. */
void metrics_render(const server *s, struct evbuffer *out)
{
    metrics total = {0}, *m = &total;
    uint64_t nconns = 0, subs = 0, ntopics = 0;
    int n = s->b ? s->b->n : 1;

    for (int i = 0; i < n; i++) {
        const server *o = s->b ? &s->b->loops[i] : s;
        add(&total, &o->stats);
        nconns += atomic_load_explicit(&o->nconns, memory_order_relaxed);
        subs +=
            atomic_load_explicit(&o->topics.subs.count, memory_order_relaxed);
        ntopics += atomic_load_explicit(&o->topics.by_name.count,
                                        memory_order_relaxed);
    }
    one(out, "chorus_connections", "gauge", "Open client connections.", nconns);
    one(out, "chorus_connections_total", "counter",
        "Connections accepted since start.", stat_get(&m->connections_total));
    labelled(out, "chorus_connections_rejected_total",
             "Connections refused, by cause.", "cause", reject_names,
             m->rejected, REJECT__COUNT);
    one(out, "chorus_subscriptions", "gauge", "Current subscriptions.", subs);
    one(out, "chorus_sse_streams", "gauge",
        "Open Server-Sent Events streams (GET /sse/{topic}).",
        stat_get(&m->sse_streams));
    one(out, "chorus_sse_streams_total", "counter",
        "Server-Sent Events streams opened since start.",
        stat_get(&m->sse_streams_total));
    one(out, "chorus_topics", "gauge",
        "Topics in memory (summed over event loops).", ntopics);
    one(out, "chorus_messages_published_total", "counter",
        "Messages accepted for publishing.", stat_get(&m->messages_published));
    one(out, "chorus_messages_delivered_total", "counter",
        "Messages sent to subscribers, live or replayed.",
        stat_get(&m->messages_delivered));
    one(out, "chorus_received_bytes_total", "counter",
        "Bytes read from clients.", stat_get(&m->bytes_in));
    one(out, "chorus_sent_bytes_total", "counter", "Bytes written to clients.",
        stat_get(&m->bytes_out));
    one(out, "chorus_slow_consumer_closes_total", "counter",
        "Connections closed because their output queue was full.",
        stat_get(&m->slow_consumer_closes));
    one(out, "chorus_publish_read_pauses_total", "counter",
        "Times reading from a publisher paused for max_unacked_bytes.",
        stat_get(&m->publish_read_pauses));
    one(out, "chorus_replays_total", "counter", "History replays served.",
        stat_get(&m->replays));
    one(out, "chorus_replayed_messages_total", "counter",
        "Messages sent from history by replays.",
        stat_get(&m->replayed_messages));
    one(out, "chorus_history_commits_total", "counter",
        "Batches committed to the history store.",
        stat_get(&m->history_commits));
    one(out, "chorus_history_errors_total", "counter",
        "Failed history store writes.", stat_get(&m->history_errors));
    commit_histogram(out, m);
    labelled(out, "chorus_errors_total", "Error replies sent, by code.", "code",
             error_names, m->errors, ERRCODE__COUNT);
    one(out, "chorus_messages_too_large_total", "counter",
        "Messages refused for max_message_size (close 1009 or HTTP 413).",
        stat_get(&m->too_large));
    one(out, "chorus_idle_closes_total", "counter",
        "Connections closed after idle_timeout.", stat_get(&m->idle_closes));
    one(out, "chorus_token_expired_closes_total", "counter",
        "Connections closed because their token expired.",
        stat_get(&m->token_expired_closes));
    write_path(out, s, stat_get(&m->partial_writes));
}
