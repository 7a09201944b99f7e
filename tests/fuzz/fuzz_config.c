/* libFuzzer target for the configuration reader (broker/core/config_file.c),
 * through config_load_buffer, the function config_load_file uses.
 *
 * The input is the text of a configuration file (at most CONFIG_FILE_MAX
 * bytes, as config_load_file reads). The configuration it is read over
 * already has every string set, so that a reader that shares or frees the
 * caller's strings shows up under ASan. The target checks:
 *   - an error names the source and a line that exists ("fuzz.conf:N: "),
 *     and leaves the configuration exactly as it was;
 *   - a success gives values that survive a round trip: written back as
 *     "key = value" text and read over fresh defaults, they come out the
 *     same;
 *   - config_validate answers 0, or -1 with a message. */
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

#include "config.h"
#include "fuzz.h"

#define SOURCE "fuzz.conf"
#define TEXT_MAX (64u * 1024 + 4 * CONFIG_FILE_MAX)

typedef struct text {
    char *p;
    size_t len;
} text;

static void put(text *t, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void put(text *t, const char *key, const char *fmt, ...)
{
    va_list ap;
    int n;

    n = snprintf(t->p + t->len, TEXT_MAX - t->len, "%s = ", key);
    FUZZ_ASSERT(n > 0 && (size_t)n < TEXT_MAX - t->len);
    t->len += (size_t)n;
    va_start(ap, fmt);
    n = vsnprintf(t->p + t->len, TEXT_MAX - t->len, fmt, ap);
    va_end(ap);
    FUZZ_ASSERT(n >= 0 && (size_t)n < TEXT_MAX - t->len - 1);
    t->len += (size_t)n;
    t->p[t->len++] = '\n';
    t->p[t->len] = '\0';
}

/* A string value: quoted unless it holds a quote (then it was read
 * unquoted, and is written back the same way). */
static void put_string(text *t, const char *key, const char *v)
{
    if (!v)
        return;
    FUZZ_ASSERT(v[0] != '\0' && !strchr(v, '\n'));
    if (strchr(v, '"'))
        put(t, key, "%s", v);
    else
        put(t, key, "\"%s\"", v);
}

static void put_u64(text *t, const char *key, uint64_t v)
{
    put(t, key, "%" PRIu64, v);
}

static void put_ms(text *t, const char *key, uint64_t ms)
{
    if (ms == 0)
        put(t, key, "0");
    else
        put(t, key, "%" PRIu64 "ms", ms);
}

static void put_bool(text *t, const char *key, int v)
{
    FUZZ_ASSERT(v == 0 || v == 1);
    put(t, key, "%s", v ? "on" : "off");
}

/* Writes every value of c as configuration text. */
static void write_config(const config *c, text *t)
{
    static const char *const levels[] = {"error", "warn", "info", "debug"};

    t->len = 0;
    t->p[0] = '\0';
    put_string(t, "listen", c->listen);
    put_bool(t, "echo_endpoint", c->echo_endpoint);
    put_u64(t, "max_message_size", c->max_message_size);
    put_u64(t, "max_outbound_bytes", c->max_outbound_bytes);
    put_u64(t, "max_unacked_bytes", c->max_unacked_bytes);
    put_ms(t, "ping_interval", c->ping_interval_ms);
    put_ms(t, "idle_timeout", c->idle_timeout_ms);
    put_ms(t, "handshake_timeout", c->handshake_timeout_ms);
    FUZZ_ASSERT(c->log_level >= LOG_ERROR && c->log_level <= LOG_DEBUG);
    put(t, "log_level", "%s", levels[c->log_level]);
    put_string(t, "db_path", c->db_path);
    put_u64(t, "history_size", c->history_size);
    put_ms(t, "history_ttl", c->history_ttl_ms);
    FUZZ_ASSERT(c->durability == DURABILITY_NORMAL ||
                c->durability == DURABILITY_FULL);
    put(t, "durability", "%s",
        c->durability == DURABILITY_FULL ? "full" : "normal");
    put_u64(t, "max_connections", c->max_connections);
    put_u64(t, "max_subscriptions_per_connection",
            c->max_subscriptions_per_connection);
    put_u64(t, "max_connections_per_ip", c->max_connections_per_ip);
    put_bool(t, "history", c->history);
    put_bool(t, "compression", c->compression);
    put_bool(t, "io_uring", c->io_uring);
    put_u64(t, "threads", c->threads);
    put_string(t, "auth_secret", c->auth_secret);
    put_string(t, "api_key", c->api_key);
    put_bool(t, "allow_anonymous", c->allow_anonymous);
    put_bool(t, "anonymous_publish", c->anonymous_publish);
    put_string(t, "allowed_origins", c->allowed_origins);
    put_u64(t, "publish_rate", c->publish_rate);
    put_u64(t, "publish_burst", c->publish_burst);
    put_string(t, "tls_listen", c->tls_listen);
    put_string(t, "tls_cert", c->tls_cert);
    put_string(t, "tls_key", c->tls_key);
    put_string(t, "web_root", c->web_root);
}

/* The configuration the input is read over: defaults plus every string. */
static void start_config(config *c)
{
    static const char *const strings[][2] = {
        {"auth_secret", "fuzz-secret-fuzz-secret-fuzz-secret-0123"},
        {"api_key", "fuzz-api-key"},
        {"allowed_origins", "https://a.example https://b.example"},
        {"tls_listen", "[::1]:8443"},
        {"tls_cert", "/etc/chorus/cert.pem"},
        {"tls_key", "/etc/chorus/key.pem"},
        {"web_root", "/srv/chorus"},
    };
    char err[256];

    config_init(c);
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        FUZZ_ASSERT(
            config_set(c, strings[i][0], strings[i][1], err, sizeof err) == 0);
}

/* "fuzz.conf:N: message" with 1 <= N <= lines. */
static void check_error(const char *err, size_t lines)
{
    const char *p = err + strlen(SOURCE ":");
    char *end;
    unsigned long n;

    FUZZ_ASSERT(strncmp(err, SOURCE ":", strlen(SOURCE ":")) == 0);
    if (strcmp(p, " out of memory") == 0)
        return;
    n = strtoul(p, &end, 10);
    FUZZ_ASSERT(end != p && n >= 1 && n <= lines);
    FUZZ_ASSERT(end[0] == ':' && end[1] == ' ' && end[2] != '\0');
}

static text before, after, again;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    config c, fresh;
    char err[600];
    size_t lines = 1;

    if (size > CONFIG_FILE_MAX)
        return 0;
    if (!before.p) {
        before.p = malloc(TEXT_MAX);
        after.p = malloc(TEXT_MAX);
        again.p = malloc(TEXT_MAX);
        FUZZ_ASSERT(before.p && after.p && again.p);
    }
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    start_config(&c);
    write_config(&c, &before);
    err[0] = '\0';
    if (config_load_buffer(&c, (const char *)data, size, SOURCE, err,
                           sizeof err) < 0) {
        check_error(err, lines);
        write_config(&c, &after);
        FUZZ_ASSERT(strcmp(before.p, after.p) == 0);
        config_free(&c);
        return 0;
    }
    if (config_validate(&c, err, sizeof err) < 0)
        FUZZ_ASSERT(err[0] != '\0');
    write_config(&c, &after);
    config_init(&fresh);
    FUZZ_ASSERT(config_load_buffer(&fresh, after.p, after.len, SOURCE, err,
                                   sizeof err) == 0);
    write_config(&fresh, &again);
    FUZZ_ASSERT(strcmp(after.p, again.p) == 0);
    config_free(&fresh);
    config_free(&c);
    return 0;
}
