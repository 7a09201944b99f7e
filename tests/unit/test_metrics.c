/* broker/core/metrics.c: error-code mapping, the commit latency histogram and
 * the exact Prometheus text of a server with known counters. The server
 * has no event base: rendering reads only counters and the topic table. */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "check.h"
#include "metrics.h"
#include "send_batch.h"
#include "server.h"

static char *render(const server *s)
{
    struct evbuffer *b = evbuffer_new();
    metrics_render(s, b);
    size_t n = evbuffer_get_length(b);
    char *text = malloc(n + 2);
    text[0] = '\n'; /* so that every line is found as "\nLINE\n" */
    evbuffer_remove(b, text + 1, n);
    text[n + 1] = '\0';
    evbuffer_free(b);
    return text;
}

static int has_line(const char *text, const char *line)
{
    char want[512];
    snprintf(want, sizeof want, "\n%s\n", line);
    return strstr(text, want) != NULL;
}

#define CHECK_LINE(text, line)                                               \
    do {                                                                     \
        check_count++;                                                       \
        if (!has_line(text, line)) {                                         \
            check_failures++;                                                \
            fprintf(stderr, "%s:%d: missing line: %s\n", __FILE__, __LINE__, \
                    line);                                                   \
        }                                                                    \
    } while (0)

static void test_error_index(void)
{
    CHECK_EQ_INT(metrics_error_index("bad_request"), ERRCODE_BAD_REQUEST);
    CHECK_EQ_INT(metrics_error_index("forbidden"), ERRCODE_FORBIDDEN);
    CHECK_EQ_INT(metrics_error_index("rate_limited"), ERRCODE_RATE_LIMITED);
    CHECK_EQ_INT(metrics_error_index("internal"), ERRCODE_INTERNAL);
    CHECK_EQ_INT(metrics_error_index("nope"), -1);
    CHECK_EQ_INT(metrics_error_index(NULL), -1);
    metrics m;
    memset(&m, 0, sizeof m);
    metrics_count_error(&m, "too_large");
    metrics_count_error(&m, "too_large");
    metrics_count_error(&m, "made_up"); /* counted, as internal */
    CHECK_EQ_INT(m.errors[ERRCODE_TOO_LARGE], 2);
    CHECK_EQ_INT(m.errors[ERRCODE_INTERNAL], 1);
}

static void test_histogram(void)
{
    metrics m;
    memset(&m, 0, sizeof m);
    metrics_observe_commit(&m, 0.00005); /* <= 0.0001 */
    metrics_observe_commit(&m, 0.0001);  /* bounds are inclusive */
    metrics_observe_commit(&m, 0.003);   /* <= 0.005 */
    metrics_observe_commit(&m, 7.0);     /* +Inf */
    metrics_observe_commit(&m, -1.0);    /* clock step: counted as 0 */
    CHECK_EQ_INT(m.commit_latency_buckets[0], 3);
    CHECK_EQ_INT(m.commit_latency_buckets[4], 1);
    CHECK_EQ_INT(m.commit_latency_buckets[METRICS_COMMIT_BUCKETS], 1);
    CHECK(m.commit_latency_sum_ns > 7003140000ULL &&
          m.commit_latency_sum_ns < 7003160000ULL);
}

static void test_render(void)
{
    static server s; /* zeroed: no base, no listener, no connections */
    CHECK_EQ_INT(topics_init(&s.topics), 0);
    int owners[3];
    sub *lists[3] = {NULL, NULL, NULL};
    topic *a = topics_get(&s.topics, "a", 1);
    topic *b = topics_get(&s.topics, "b", 1);
    topics_subscribe(&s.topics, a, &owners[0], &lists[0]);
    topics_subscribe(&s.topics, a, &owners[1], &lists[1]);
    topics_subscribe(&s.topics, b, &owners[2], &lists[2]);

    s.nconns = 7;
    metrics *m = &s.stats;
    m->connections_total = 42;
    m->rejected[REJECT_AUTH] = 3;
    m->rejected[REJECT_ORIGIN] = 1;
    m->rejected[REJECT_MAX_CONNECTIONS] = 2;
    m->messages_published = 100;
    m->messages_delivered = 250;
    m->bytes_in = 123456;
    m->bytes_out = 9876543210ULL;
    m->slow_consumer_closes = 4;
    m->replays = 5;
    m->replayed_messages = 60;
    m->history_commits = 9;
    m->history_errors = 1;
    m->idle_closes = 8;
    m->too_large = 6;
    m->token_expired_closes = 2;
    m->partial_writes = 11;
    m->sse_streams = 3;
    m->sse_streams_total = 13;
    metrics_count_error(m, "forbidden");
    metrics_observe_commit(m, 0.0002);
    metrics_observe_commit(m, 0.002);
    metrics_observe_commit(m, 0.02);
    metrics_observe_commit(m, 10);

    char *t = render(&s);
    CHECK_LINE(t, "# HELP chorus_connections Open client connections.");
    CHECK_LINE(t, "# TYPE chorus_connections gauge");
    CHECK_LINE(t, "chorus_connections 7");
    CHECK_LINE(t, "# TYPE chorus_connections_total counter");
    CHECK_LINE(t, "chorus_connections_total 42");
    CHECK_LINE(t, "# TYPE chorus_connections_rejected_total counter");
    CHECK_LINE(
        t, "chorus_connections_rejected_total{cause=\"max_connections\"} 2");
    CHECK_LINE(t, "chorus_connections_rejected_total{cause=\"per_ip\"} 0");
    CHECK_LINE(t, "chorus_connections_rejected_total{cause=\"auth\"} 3");
    CHECK_LINE(t, "chorus_connections_rejected_total{cause=\"origin\"} 1");
    CHECK_LINE(t,
               "chorus_connections_rejected_total{cause=\"bad_handshake\"} 0");
    CHECK_LINE(
        t, "chorus_connections_rejected_total{cause=\"handshake_timeout\"} 0");
    CHECK_LINE(t, "chorus_connections_rejected_total{cause=\"tls\"} 0");
    CHECK_LINE(t, "# TYPE chorus_subscriptions gauge");
    CHECK_LINE(t, "chorus_subscriptions 3");
    CHECK_LINE(t, "# TYPE chorus_sse_streams gauge");
    CHECK_LINE(t, "chorus_sse_streams 3");
    CHECK_LINE(t, "# TYPE chorus_sse_streams_total counter");
    CHECK_LINE(t, "chorus_sse_streams_total 13");
    CHECK_LINE(t, "# TYPE chorus_topics gauge");
    CHECK_LINE(t, "chorus_topics 2");
    CHECK_LINE(t, "chorus_messages_published_total 100");
    CHECK_LINE(t, "chorus_messages_delivered_total 250");
    CHECK_LINE(t, "chorus_received_bytes_total 123456");
    CHECK_LINE(t, "chorus_sent_bytes_total 9876543210");
    CHECK_LINE(t, "chorus_slow_consumer_closes_total 4");
    CHECK_LINE(t, "chorus_replays_total 5");
    CHECK_LINE(t, "chorus_replayed_messages_total 60");
    CHECK_LINE(t, "chorus_history_commits_total 9");
    CHECK_LINE(t, "chorus_history_errors_total 1");
    CHECK_LINE(t, "# TYPE chorus_history_commit_duration_seconds histogram");
    CHECK_LINE(
        t, "chorus_history_commit_duration_seconds_bucket{le=\"0.0001\"} 0");
    CHECK_LINE(
        t, "chorus_history_commit_duration_seconds_bucket{le=\"0.0005\"} 1");
    CHECK_LINE(t,
               "chorus_history_commit_duration_seconds_bucket{le=\"0.001\"} 1");
    CHECK_LINE(
        t, "chorus_history_commit_duration_seconds_bucket{le=\"0.0025\"} 2");
    CHECK_LINE(t,
               "chorus_history_commit_duration_seconds_bucket{le=\"0.025\"} 3");
    CHECK_LINE(t, "chorus_history_commit_duration_seconds_bucket{le=\"5\"} 3");
    CHECK_LINE(t,
               "chorus_history_commit_duration_seconds_bucket{le=\"+Inf\"} 4");
    CHECK_LINE(t, "chorus_history_commit_duration_seconds_sum 10.0222");
    CHECK_LINE(t, "chorus_history_commit_duration_seconds_count 4");
    CHECK_LINE(t, "# TYPE chorus_errors_total counter");
    CHECK_LINE(t, "chorus_errors_total{code=\"forbidden\"} 1");
    CHECK_LINE(t, "chorus_errors_total{code=\"bad_request\"} 0");
    CHECK_LINE(t, "chorus_errors_total{code=\"not_subscribed\"} 0");
    CHECK_LINE(t, "chorus_idle_closes_total 8");
    CHECK_LINE(t, "chorus_messages_too_large_total 6");
    CHECK_LINE(t, "chorus_token_expired_closes_total 2");
    /* No ring (s.sends is NULL): none in use, none of its partial writes. */
    CHECK_LINE(t, "# TYPE chorus_io_uring_built_in gauge");
    CHECK_LINE(t, send_batch_built_in() ? "chorus_io_uring_built_in 1"
                                        : "chorus_io_uring_built_in 0");
    CHECK_LINE(t, "# TYPE chorus_io_uring_rings gauge");
    CHECK_LINE(t, "chorus_io_uring_rings 0");
    CHECK_LINE(t, "# TYPE chorus_partial_writes_total counter");
    CHECK_LINE(t, "chorus_partial_writes_total{via=\"io_uring\"} 0");
    CHECK_LINE(t, "chorus_partial_writes_total{via=\"writev\"} 11");

    /* Every sample line belongs to a family announced just before it by
     * HELP and TYPE; no family appears twice. */
    int families = 0, samples = 0, ok = 1;
    char family[128] = "";
    for (char *line = strtok(t + 1, "\n"); line; line = strtok(NULL, "\n")) {
        char name[128];
        if (strncmp(line, "# HELP ", 7) == 0) {
            sscanf(line + 7, "%127s", family);
            families++;
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0)
            continue;
        samples++;
        size_t n = strcspn(line, "{ ");
        snprintf(name, sizeof name, "%.*s", (int)n, line);
        size_t fl = strlen(family);
        if (strncmp(name, family, fl) != 0 ||
            (name[fl] != '\0' && strcmp(name + fl, "_bucket") != 0 &&
             strcmp(name + fl, "_sum") != 0 &&
             strcmp(name + fl, "_count") != 0)) {
            fprintf(stderr, "sample %s outside family %s\n", name, family);
            ok = 0;
        }
    }
    CHECK(ok);
    CHECK_EQ_INT(families, 25);
    CHECK_EQ_INT(samples, 21 + REJECT__COUNT + ERRCODE__COUNT +
                              METRICS_COMMIT_BUCKETS + 3 + 2);
    free(t);

    topics_unsubscribe_all(&s.topics, &lists[0]);
    topics_unsubscribe_all(&s.topics, &lists[1]);
    topics_unsubscribe_all(&s.topics, &lists[2]);
    topics_destroy(&s.topics);
}

int main(void)
{
    test_error_index();
    test_histogram();
    test_render();
    return check_report("test_metrics");
}
