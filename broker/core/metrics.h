/* Counters of one server and their Prometheus text rendering
 * (GET /metrics). */
#ifndef CHORUS_METRICS_H
#define CHORUS_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

struct evbuffer;
typedef struct server server;

typedef enum {
    REJECT_MAX_CONNECTIONS,
    REJECT_PER_IP,
    REJECT_AUTH,
    REJECT_ORIGIN,
    REJECT_BAD_HANDSHAKE,
    REJECT_HANDSHAKE_TIMEOUT,
    REJECT_TLS,
    REJECT_FD_LIMIT, /* accepted with the spare descriptor, refused */
    REJECT__COUNT
} reject_cause;

typedef enum {
    ERRCODE_BAD_REQUEST,
    ERRCODE_UNKNOWN_OP,
    ERRCODE_INVALID_TOPIC,
    ERRCODE_UNAUTHORIZED,
    ERRCODE_FORBIDDEN,
    ERRCODE_TOO_LARGE,
    ERRCODE_RATE_LIMITED,
    ERRCODE_NOT_SUBSCRIBED,
    ERRCODE_INTERNAL,
    ERRCODE__COUNT
} error_code_index;

/* Upper bounds (seconds) of the history commit latency histogram. */
#define METRICS_COMMIT_BUCKETS 12

/* Upper bounds (seconds) of the Redis round-trip time histogram. */
#define METRICS_REDIS_RTT_BUCKETS 10

/* A counter of one event loop: only that loop's thread writes it, while
 * GET /metrics, served by any loop, reads it. Atomic so that the read is
 * defined; with a single writer, an increment is a relaxed load and store
 * (no locked instruction), so it costs what a plain ++ does. */
typedef _Atomic uint64_t stat_counter;

/* Adds n to a counter of the calling loop; returns the new value. */
static inline uint64_t stat_add(stat_counter *c, uint64_t n)
{
    uint64_t v = atomic_load_explicit(c, memory_order_relaxed) + n;

    atomic_store_explicit(c, v, memory_order_relaxed);
    return v;
}

static inline uint64_t stat_inc(stat_counter *c)
{
    return stat_add(c, 1);
}

/* Reads a counter of any loop: a recent value, never a torn one. */
static inline uint64_t stat_get(const stat_counter *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* Every field is a stat_counter, so that the loops' counters can be
 * summed field by field (metrics.c). */
typedef struct metrics {
    stat_counter connections_total;
    stat_counter rejected[REJECT__COUNT];
    stat_counter messages_published;
    stat_counter messages_delivered;
    stat_counter bytes_in;
    stat_counter bytes_out;
    stat_counter slow_consumer_closes;
    stat_counter publish_read_pauses; /* max_unacked_bytes reached */
    stat_counter replays;
    stat_counter replayed_messages;
    stat_counter history_commits;
    stat_counter history_errors;
    stat_counter commit_latency_buckets[METRICS_COMMIT_BUCKETS + 1]; /* +Inf */
    stat_counter commit_latency_sum_ns;
    stat_counter errors[ERRCODE__COUNT];
    stat_counter idle_closes;
    stat_counter too_large; /* 1009 closes and 413 answers */
    stat_counter token_expired_closes;
    stat_counter partial_writes; /* by writev; io_uring's are in send_batch */
    stat_counter sse_streams;    /* open SSE streams (a gauge) */
    stat_counter sse_streams_total; /* SSE streams opened */
    /* engine = redis */
    stat_counter redis_rtt_buckets[METRICS_REDIS_RTT_BUCKETS + 1]; /* +Inf */
    stat_counter redis_rtt_sum_ns;
    stat_counter redis_reconnects;
    stat_counter redis_pending; /* requests in flight (a gauge) */
    stat_counter redis_gap_fills;
    stat_counter redis_epoch_changes;
} metrics;

/* Maps an error code string (CHORUS_ERR_*) to its index; -1 if unknown. */
int metrics_error_index(const char *code);
void metrics_count_error(metrics *m, const char *code);
void metrics_observe_commit(metrics *m, double seconds);
void metrics_observe_redis_rtt(metrics *m, uint64_t ns);
/* The redis_* figures of m (engine = redis), in Prometheus text. */
void metrics_render_redis(const metrics *m, struct evbuffer *out);

/* Appends every metric in Prometheus text format 0.0.4. */
void metrics_render(const server *s, struct evbuffer *out);

#endif
