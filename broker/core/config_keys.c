/* The configuration keys: every key is described once, in the table
 * below, and config_set() turns one key's text value into its field by
 * it (the file reader and the command line both go through config_set). */
#include "config_internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define OFF(field) offsetof(config, field)

const key_def config_keys[] = {
    {"listen", T_LISTEN, OFF(listen), 0, 0, NULL},
    {"echo_endpoint", T_BOOL, OFF(echo_endpoint), 0, 0, NULL},
    {"max_message_size", T_SIZE, OFF(max_message_size), 1, 256 * MIB,
     "must be between 1 and 256m"},
    {"max_outbound_bytes", T_SIZE, OFF(max_outbound_bytes), 1, 0,
     "must be at least 1"},
    {"max_unacked_bytes", T_SIZE, OFF(max_unacked_bytes), 1, 0,
     "must be at least 1"},
    {"ping_interval", T_DURATION, OFF(ping_interval_ms), 0, 0, NULL},
    {"idle_timeout", T_DURATION, OFF(idle_timeout_ms), 0, 0, NULL},
    {"handshake_timeout", T_DURATION, OFF(handshake_timeout_ms), 1, 0,
     "must be greater than 0"},
    {"message_timeout", T_DURATION, OFF(message_timeout_ms), 0, 0, NULL},
    {"log_level", T_LOG_LEVEL, OFF(log_level), 0, 0, NULL},
    {"log_format", T_LOG_FORMAT, OFF(log_format), 0, 0, NULL},
    {"db_path", T_PATH, OFF(db_path), 0, 0, NULL},
    {"history_size", T_COUNT, OFF(history_size), 0, 0, NULL},
    {"history_ttl", T_DURATION, OFF(history_ttl_ms), 0, 0, NULL},
    {"durability", T_DURABILITY, OFF(durability), 0, 0, NULL},
    {"max_connections", T_COUNT, OFF(max_connections), 0, 0, NULL},
    {"max_subscriptions_per_connection", T_COUNT,
     OFF(max_subscriptions_per_connection), 0, 0, NULL},
    {"max_connections_per_ip", T_COUNT, OFF(max_connections_per_ip), 0, 0,
     NULL},
    {"history", T_BOOL, OFF(history), 0, 0, NULL},
    {"compression", T_BOOL, OFF(compression), 0, 0, NULL},
    {"io_uring", T_BOOL, OFF(io_uring), 0, 0, NULL},
    {"threads", T_COUNT, OFF(threads), 0, 64, "must be between 0 and 64"},
    /* An HS256 key shorter than the hash (32 bytes) is refused (RFC 7518,
     * section 3.2); min is in bytes for strings. */
    {"auth_secret", T_STRING, OFF(auth_secret), 32, 0,
     "must be at least 32 bytes (an HS256 key, RFC 7518 section 3.2)"},
    {"api_key", T_STRING, OFF(api_key), 0, 0, NULL},
    {"allow_anonymous", T_BOOL, OFF(allow_anonymous), 0, 0, NULL},
    {"anonymous_publish", T_BOOL, OFF(anonymous_publish), 0, 0, NULL},
    {"allowed_origins", T_STRING, OFF(allowed_origins), 0, 0, NULL},
    {"publish_rate", T_COUNT, OFF(publish_rate), 0, 0, NULL},
    {"publish_burst", T_COUNT, OFF(publish_burst), 0, 0, NULL},
    {"tls_listen", T_LISTEN, OFF(tls_listen), 0, 0, NULL},
    {"tcp_congestion", T_TCP_CC, OFF(tcp_congestion), 0, 0, NULL},
    {"tls_cert", T_PATH, OFF(tls_cert), 0, 0, NULL},
    {"tls_key", T_PATH, OFF(tls_key), 0, 0, NULL},
    {"web_root", T_PATH, OFF(web_root), 0, 0, NULL},
    {"engine", T_ENGINE, OFF(engine), 0, 0, NULL},
    {"redis_url", T_REDIS_URL, OFF(redis_urls), 0, 0, NULL},
    {"redis_durable", T_BOOL, OFF(redis_durable), 0, 0, NULL},
    {"redis_timeout", T_DURATION, OFF(redis_timeout_ms), 1, 0,
     "must be greater than 0"},
};

const size_t config_nkeys = sizeof config_keys / sizeof config_keys[0];

/* The expected form of each type, for error messages. */
static const char *expected_form(const key_def *k)
{
    switch (k->type) {
    case T_BOOL: return "expected on or off";
    case T_SIZE: return "expected a size in bytes like 65536, 64k, 16m, 1g";
    case T_DURATION:
        return k->min > 0 ? "expected a duration like 500ms, 30s, 5m, 24h"
                          : "expected a duration like 500ms, 30s, 5m, 24h, "
                            "or 0 for off";
    case T_COUNT: return "expected a non-negative integer";
    case T_LOG_LEVEL: return "expected one of error, warn, info, debug";
    case T_LOG_FORMAT: return "expected text or json";
    case T_DURABILITY: return "expected normal or full";
    case T_LISTEN:
        return "expected host:port, [ipv6]:port or :port, port 1-65535";
    case T_PATH: return "expected a file path";
    case T_STRING: return "expected a non-empty text";
    case T_ENGINE: return "expected sqlite or redis";
    case T_REDIS_URL: return "expected redis://[:password@]host:port[/db]";
    case T_TCP_CC: return "expected a TCP congestion control like cubic or bbr";
    }
    return "invalid value";
}

const key_def *config_find_key(const char *name)
{
    for (size_t i = 0; i < config_nkeys; i++)
        if (strcmp(config_keys[i].name, name) == 0)
            return &config_keys[i];
    return NULL;
}

const char *config_key_name(size_t i)
{
    return i < config_nkeys ? config_keys[i].name : NULL;
}

key_storage config_key_storage(const key_def *k)
{
    switch (k->type) {
    case T_LISTEN:
    case T_PATH:
    case T_STRING:
    case T_TCP_CC: return STORE_STRING;
    case T_REDIS_URL: return STORE_URLS;
    case T_SIZE:
    case T_DURATION:
    case T_COUNT: return STORE_U64;
    case T_BOOL:
    case T_LOG_LEVEL:
    case T_LOG_FORMAT:
    case T_DURABILITY:
    case T_ENGINE: return STORE_INT;
    }
    return STORE_INT;
}

/* Error for a value that does not parse: names the key, the expected form
 * and (shortened) what was given. */
static void bad_value(const key_def *k, const char *value, char *err,
                      size_t errlen)
{
    size_t n = strlen(value);
    int cut = n > 40;

    config_set_err(err, errlen, "%s: %s, not \"%.*s%s\"", k->name,
                   expected_form(k), cut ? 40 : (int)n, value,
                   cut ? "..." : "");
}

static int check_bounds(const key_def *k, uint64_t v, char *err, size_t errlen)
{
    uint64_t max = k->max;

    if (k->type == T_DURATION && (max == 0 || max > DURATION_MAX_MS))
        max = DURATION_MAX_MS;
    if (v < k->min || (max && v > max)) {
        if (k->bound_msg)
            config_set_err(err, errlen, "%s: %s", k->name, k->bound_msg);
        else
            config_set_err(err, errlen, "%s: must be at most 3650d", k->name);
        return -1;
    }
    return 0;
}

static int set_string(char **field, const char *value, const key_def *k,
                      char *err, size_t errlen)
{
    char *copy = config_strdup(value);

    if (!copy) {
        config_set_err(err, errlen, "%s: out of memory", k->name);
        return -1;
    }
    free(*field);
    *field = copy;
    return 0;
}

/* Parsers of the keys whose value is an int, and of those whose value is
 * a uint64_t (bounded by the key's min and max); NULL for other types. */
static int (*const int_parser[])(const char *, int *) = {
    [T_BOOL] = config_parse_bool,
    [T_LOG_LEVEL] = config_parse_log_level,
    [T_LOG_FORMAT] = config_parse_log_format,
    [T_DURABILITY] = config_parse_durability,
    [T_ENGINE] = config_parse_engine,
    [T_REDIS_URL] = NULL,
};
static int (*const u64_parser[])(const char *, uint64_t *) = {
    [T_SIZE] = config_parse_size,
    [T_DURATION] = config_parse_duration,
    [T_COUNT] = config_parse_count,
    [T_REDIS_URL] = NULL,
};

/* Adds one redis_url; the same instance twice would make the topic
 * hash put one topic in two places. */
static int add_redis_url(config *c, const char *value, char *err, size_t errlen)
{
    redis_addr a, b;
    char msg[256], **urls;

    if (config_parse_redis_url(value, &a, msg, sizeof msg) < 0) {
        config_set_err(err, errlen, "redis_url: %s", msg);
        return -1;
    }
    for (size_t i = 0; i < c->redis_url_count; i++) {
        config_parse_redis_url(c->redis_urls[i], &b, NULL, 0);
        if (strcmp(a.host, b.host) == 0 && a.port == b.port && a.db == b.db) {
            config_set_err(err, errlen, "redis_url: %s:%d/%u is listed twice",
                           a.host, a.port, a.db);
            return -1;
        }
    }
    urls = realloc(c->redis_urls, (c->redis_url_count + 1) * sizeof *urls);
    if (!urls || !(urls[c->redis_url_count] = config_strdup(value))) {
        if (urls)
            c->redis_urls = urls;
        config_set_err(err, errlen, "redis_url: out of memory");
        return -1;
    }
    c->redis_urls = urls;
    c->redis_url_count++;
    return 0;
}

/* Whether the kernel gives a TCP socket this congestion control: only it
 * knows, since a module not yet loaded may still be loadable. The config
 * file is the place to hear of a typo, not the listener at startup. */
static int check_tcp_congestion(const char *value, char *err, size_t errlen)
{
    int fd, rc;

    if (strlen(value) >= 16) { /* TCP_CA_NAME_MAX: the kernel would cut it */
        config_set_err(err, errlen,
                       "tcp_congestion: \"%.40s\" is too long "
                       "for a congestion control name",
                       value);
        return -1;
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        config_set_err(err, errlen, "tcp_congestion: cannot open a socket: %s",
                       strerror(errno));
        return -1;
    }
    rc = setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, value,
                    (socklen_t)strlen(value));
    if (rc < 0)
        config_set_err(
            err, errlen,
            "tcp_congestion: \"%.40s\" is not available here (%s); "
            "see /proc/sys/net/ipv4/tcp_available_congestion_control",
            value, strerror(errno));
    close(fd);
    return rc < 0 ? -1 : 0;
}

int config_set(config *c, const char *key, const char *value, char *err,
               size_t errlen)
{
    const key_def *k = config_find_key(key);
    void *field;
    uint64_t u;
    int i;
    char host[256];

    if (!k) {
        config_set_err(err, errlen, "unknown key \"%s\"", key);
        return -1;
    }
    if (value[0] == '\0') {
        config_set_err(err, errlen, "%s: missing value (%s)", k->name,
                       expected_form(k));
        return -1;
    }
    field = (char *)c + k->offset;
    if (k->type == T_REDIS_URL)
        return add_redis_url(c, value, err, errlen);
    if (k->type == T_TCP_CC) {
        if (check_tcp_congestion(value, err, errlen) < 0)
            return -1;
        return set_string(field, value, k, err, errlen);
    }
    if (int_parser[k->type]) {
        if (int_parser[k->type](value, &i) == 0) {
            *(int *)field = i;
            return 0;
        }
    } else if (u64_parser[k->type]) {
        if (u64_parser[k->type](value, &u) == 0) {
            if (check_bounds(k, u, err, errlen) < 0)
                return -1;
            *(uint64_t *)field = u;
            return 0;
        }
    } else if (k->type == T_STRING && strlen(value) < k->min) {
        /* The value is a secret: its length only. */
        config_set_err(err, errlen, "%s: %s; this one has %zu", k->name,
                       k->bound_msg, strlen(value));
        return -1;
    } else if (k->type != T_LISTEN ||
               config_parse_listen(value, host, sizeof host, &i) == 0) {
        return set_string(field, value, k, err, errlen);
    }
    bad_value(k, value, err, errlen);
    return -1;
}
