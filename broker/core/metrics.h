/* Counters of one server and their Prometheus text rendering
 * (GET /metrics). */
#ifndef CHORUS_METRICS_H
#define CHORUS_METRICS_H

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

/* Every field is a uint64_t counter, so that the loops' counters can be
 * summed field by field (metrics.c). */
typedef struct metrics {
    uint64_t connections_total;
    uint64_t rejected[REJECT__COUNT];
    uint64_t messages_published;
    uint64_t messages_delivered;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t slow_consumer_closes;
    uint64_t publish_read_pauses; /* max_unacked_bytes reached */
    uint64_t replays;
    uint64_t replayed_messages;
    uint64_t history_commits;
    uint64_t history_errors;
    uint64_t commit_latency_buckets[METRICS_COMMIT_BUCKETS + 1]; /* +Inf */
    uint64_t commit_latency_sum_ns;
    uint64_t errors[ERRCODE__COUNT];
    uint64_t idle_closes;
    uint64_t too_large; /* 1009 closes and 413 answers */
    uint64_t token_expired_closes;
    uint64_t partial_writes; /* by writev; io_uring's are in send_batch */
    /* engine = redis */
    uint64_t redis_rtt_buckets[METRICS_REDIS_RTT_BUCKETS + 1]; /* +Inf */
    uint64_t redis_rtt_sum_ns;
    uint64_t redis_reconnects;
    uint64_t redis_pending; /* requests in flight (a gauge) */
    uint64_t redis_gap_fills;
    uint64_t redis_epoch_changes;
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
