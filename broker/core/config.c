/* Broker configuration: defaults, value parsers, and the "key = value" file
 * reader. Every key is described once, in the keys[] table below; the
 * reader and config_set() are driven by it. Depends on libc only. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KIB 1024ULL
#define MIB (1024ULL * KIB)
#define GIB (1024ULL * MIB)

/* Longest accepted duration: ten years, so that callers can add any
 * duration to a millisecond clock or turn it into a timeval safely. */
#define DURATION_MAX_MS (3650ULL * 24 * 3600 * 1000)

typedef enum {
    T_BOOL,
    T_SIZE,
    T_DURATION,
    T_COUNT,
    T_LOG_LEVEL,
    T_LOG_FORMAT,
    T_DURABILITY,
    T_LISTEN,
    T_PATH,
    T_STRING,
    T_ENGINE,
    T_REDIS_URL, /* repeatable: each line adds one */
} key_type;

/* One configuration key. For sizes, durations and counts, min and max bound
 * the parsed value (max 0 = the type's own limit). */
typedef struct key_def {
    const char *name;
    key_type type;
    size_t offset;
    uint64_t min, max;
    const char *bound_msg; /* shown when min/max is violated */
} key_def;

#define OFF(field) offsetof(config, field)

static const key_def keys[] = {
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
    {"tls_cert", T_PATH, OFF(tls_cert), 0, 0, NULL},
    {"tls_key", T_PATH, OFF(tls_key), 0, 0, NULL},
    {"web_root", T_PATH, OFF(web_root), 0, 0, NULL},
    {"engine", T_ENGINE, OFF(engine), 0, 0, NULL},
    {"redis_url", T_REDIS_URL, OFF(redis_urls), 0, 0, NULL},
    {"redis_durable", T_BOOL, OFF(redis_durable), 0, 0, NULL},
    {"redis_timeout", T_DURATION, OFF(redis_timeout_ms), 1, 0,
     "must be greater than 0"},
};

#define NKEYS (sizeof keys / sizeof keys[0])

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
    }
    return "invalid value";
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);

    if (p)
        memcpy(p, s, n);
    return p;
}

void config_init(config *c)
{
    memset(c, 0, sizeof *c);
    c->listen = xstrdup("127.0.0.1:8080");
    c->echo_endpoint = 0;
    c->max_message_size = 1 * MIB;
    c->max_outbound_bytes = 16 * MIB;
    c->max_unacked_bytes = 16 * MIB;
    c->ping_interval_ms = 30 * 1000;
    c->idle_timeout_ms = 90 * 1000;
    c->handshake_timeout_ms = 10 * 1000;
    c->message_timeout_ms = 30 * 1000;
    c->log_level = LOG_INFO;
    c->db_path = xstrdup("./chorus.db");
    c->history_size = 1000;
    c->history_ttl_ms = 24ULL * 3600 * 1000;
    c->durability = DURABILITY_NORMAL;
    c->max_connections = 10000;
    c->max_subscriptions_per_connection = 1000;
    c->history = 1;
    c->io_uring = 1;
    c->engine = ENGINE_SQLITE;
    c->redis_timeout_ms = 2000;
}

static void free_urls(config *c)
{
    for (size_t i = 0; i < c->redis_url_count; i++)
        free(c->redis_urls[i]);
    free(c->redis_urls);
    c->redis_urls = NULL;
    c->redis_url_count = 0;
}

/* Replaces dst's redis_url list with a copy of src's. -1 out of memory
 * (dst's list is then empty). */
static int copy_urls(config *dst, const config *src)
{
    char **copy = NULL;

    free_urls(dst);
    if (src->redis_url_count == 0)
        return 0;
    copy = calloc(src->redis_url_count, sizeof *copy);
    if (!copy)
        return -1;
    for (size_t i = 0; i < src->redis_url_count; i++) {
        copy[i] = xstrdup(src->redis_urls[i]);
        if (!copy[i]) {
            while (i--)
                free(copy[i]);
            free(copy);
            return -1;
        }
    }
    dst->redis_urls = copy;
    dst->redis_url_count = src->redis_url_count;
    return 0;
}

static int is_string_type(key_type t)
{
    return t == T_LISTEN || t == T_PATH || t == T_STRING;
}

void config_free(config *c)
{
    for (size_t i = 0; i < NKEYS; i++) {
        if (is_string_type(keys[i].type)) {
            char **field = (char **)((char *)c + keys[i].offset);
            free(*field);
            *field = NULL;
        }
    }
    free_urls(c);
}

int config_copy(config *dst, const config *src)
{
    *dst = *src;
    for (size_t i = 0; i < NKEYS; i++)
        if (is_string_type(keys[i].type))
            *(char **)((char *)dst + keys[i].offset) = NULL;
    dst->redis_urls = NULL; /* copied below, as the strings are */
    dst->redis_url_count = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        if (config_copy_key(dst, src, keys[i].name)) {
            config_free(dst);
            return -1;
        }
    }
    return 0;
}

void config_resolve_threads(config *c)
{
    if (c->threads == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        c->threads = cores > 0 ? (uint64_t)cores : 1;
    }
    /* Without a shared store the loops could not agree on epochs. */
    if (!c->history)
        c->threads = 1;
}

/* ---- value parsers ---------------------------------------------------- */

/* Parses a run of decimal digits at *s into *out, advancing *s. Returns -1
 * on no digits or overflow. */
static int parse_digits(const char **s, uint64_t *out)
{
    const char *p = *s;
    uint64_t v = 0;

    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *s = p;
    *out = v;
    return 0;
}

static int parse_count(const char *s, uint64_t *out)
{
    uint64_t v;

    if (parse_digits(&s, &v) < 0 || *s != '\0')
        return -1;
    *out = v;
    return 0;
}

int config_parse_bool(const char *s, int *out)
{
    if (strcmp(s, "on") == 0)
        *out = 1;
    else if (strcmp(s, "off") == 0)
        *out = 0;
    else
        return -1;
    return 0;
}

int config_parse_size(const char *s, uint64_t *out)
{
    uint64_t v, mult = 1;

    if (parse_digits(&s, &v) < 0)
        return -1;
    switch (*s) {
    case '\0': break;
    case 'k':
    case 'K':
        mult = KIB;
        s++;
        break;
    case 'm':
    case 'M':
        mult = MIB;
        s++;
        break;
    case 'g':
    case 'G':
        mult = GIB;
        s++;
        break;
    default: return -1;
    }
    if (*s != '\0' || (v != 0 && v > UINT64_MAX / mult))
        return -1;
    *out = v * mult;
    return 0;
}

int config_parse_duration(const char *s, uint64_t *ms)
{
    static const struct {
        const char *suffix;
        uint64_t ms;
    } units[] = {
        {"ms", 1},
        {"s", 1000},
        {"m", 60 * 1000},
        {"h", 3600 * 1000},
        {"d", 24 * 3600 * 1000},
    };
    uint64_t v;

    if (strcmp(s, "0") == 0) {
        *ms = 0;
        return 0;
    }
    if (parse_digits(&s, &v) < 0)
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(s, units[i].suffix) != 0)
            continue;
        if (v > UINT64_MAX / units[i].ms)
            return -1;
        *ms = v * units[i].ms;
        return 0;
    }
    return -1;
}

int config_parse_log_level(const char *s, int *out)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};

    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = LOG_ERROR + i;
            return 0;
        }
    }
    return -1;
}

static int parse_engine(const char *s, int *out)
{
    if (strcmp(s, "sqlite") == 0)
        *out = ENGINE_SQLITE;
    else if (strcmp(s, "redis") == 0)
        *out = ENGINE_REDIS;
    else
        return -1;
    return 0;
}

int config_parse_log_format(const char *s, int *out)
{
    if (strcmp(s, "text") == 0)
        *out = LOG_FORMAT_TEXT;
    else if (strcmp(s, "json") == 0)
        *out = LOG_FORMAT_JSON;
    else
        return -1;
    return 0;
}

static int parse_durability(const char *s, int *out)
{
    if (strcmp(s, "normal") == 0)
        *out = DURABILITY_NORMAL;
    else if (strcmp(s, "full") == 0)
        *out = DURABILITY_FULL;
    else
        return -1;
    return 0;
}

/* A host name or IPv4 address: letters, digits, '.', '-', '_'. */
static int hostname_valid(const char *h, size_t n)
{
    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = h[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_'))
            return 0;
    }
    return 1;
}

int config_parse_listen(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon, *h = s;
    size_t n;
    uint64_t p;
    char v6[64];

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return -1;
        h = s + 1;
        n = (size_t)(close - h);
        colon = close + 1;
        if (n == 0 || n >= sizeof v6)
            return -1;
        memcpy(v6, h, n);
        v6[n] = '\0';
        unsigned char addr[16];
        if (inet_pton(AF_INET6, v6, addr) != 1)
            return -1;
    } else {
        colon = strchr(s, ':');
        if (!colon || strchr(colon + 1, ':'))
            return -1; /* none, or an IPv6 address without brackets */
        n = (size_t)(colon - s);
        if (n == 0) {
            h = "0.0.0.0";
            n = strlen(h);
        } else if (!hostname_valid(h, n)) {
            return -1;
        }
    }
    const char *ps = colon + 1;
    if (parse_digits(&ps, &p) < 0 || *ps != '\0' || p < 1 || p > 65535)
        return -1;
    if (n >= hostlen)
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    *port = (int)p;
    return 0;
}

/* Copies the n bytes at s into out (outlen with the NUL). -1 too long. */
static int copy_part(char *out, size_t outlen, const char *s, size_t n)
{
    if (n >= outlen)
        return -1;
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

int config_parse_redis_url(const char *s, redis_addr *out, char *err,
                           size_t errlen)
{
    const char *p, *at, *slash, *hp;
    char hostport[300];
    uint64_t db = 0;

    memset(out, 0, sizeof *out);
    if (strncmp(s, "rediss://", 9) == 0) {
        set_err(err, errlen,
                "rediss:// (TLS) is not supported: Debian 12's hiredis is "
                "built without TLS; reach Redis over a private network or "
                "a local TLS tunnel");
        return -1;
    }
    if (strncmp(s, "redis://", 8) != 0)
        goto bad;
    p = s + 8;
    slash = strchr(p, '/');
    at = memchr(p, '@', slash ? (size_t)(slash - p) : strlen(p));
    if (at) {
        if (*p != ':' || copy_part(out->password, sizeof out->password, p + 1,
                                   (size_t)(at - p - 1)) < 0)
            goto bad; /* only the ":password@" form: no user names */
        p = at + 1;
    }
    hp = p;
    if (copy_part(hostport, sizeof hostport, hp,
                  slash ? (size_t)(slash - hp) : strlen(hp)) < 0 ||
        hostport[0] == ':' ||
        config_parse_listen(hostport, out->host, sizeof out->host, &out->port) <
            0)
        goto bad;
    if (slash) {
        const char *d = slash + 1;
        if (parse_digits(&d, &db) < 0 || *d != '\0' || db > 1000000)
            goto bad;
    }
    out->db = (unsigned)db;
    return 0;
bad:
    set_err(err, errlen, "expected redis://[:password@]host:port[/db]");
    return -1;
}

/* ---- setting keys ----------------------------------------------------- */

static const key_def *find_key(const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

/* Error for a value that does not parse: names the key, the expected form
 * and (shortened) what was given. */
static void bad_value(const key_def *k, const char *value, char *err,
                      size_t errlen)
{
    size_t n = strlen(value);
    int cut = n > 40;

    set_err(err, errlen, "%s: %s, not \"%.*s%s\"", k->name, expected_form(k),
            cut ? 40 : (int)n, value, cut ? "..." : "");
}

static int check_bounds(const key_def *k, uint64_t v, char *err, size_t errlen)
{
    uint64_t max = k->max;

    if (k->type == T_DURATION && (max == 0 || max > DURATION_MAX_MS))
        max = DURATION_MAX_MS;
    if (v < k->min || (max && v > max)) {
        if (k->bound_msg)
            set_err(err, errlen, "%s: %s", k->name, k->bound_msg);
        else
            set_err(err, errlen, "%s: must be at most 3650d", k->name);
        return -1;
    }
    return 0;
}

static int set_string(char **field, const char *value, const key_def *k,
                      char *err, size_t errlen)
{
    char *copy = xstrdup(value);

    if (!copy) {
        set_err(err, errlen, "%s: out of memory", k->name);
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
    [T_DURABILITY] = parse_durability,
    [T_ENGINE] = parse_engine,
    [T_REDIS_URL] = NULL,
};
static int (*const u64_parser[])(const char *, uint64_t *) = {
    [T_SIZE] = config_parse_size,
    [T_DURATION] = config_parse_duration,
    [T_COUNT] = parse_count,
    [T_REDIS_URL] = NULL,
};

/* Adds one redis_url; the same instance twice would make the topic
 * hash put one topic in two places. */
static int add_redis_url(config *c, const char *value, char *err, size_t errlen)
{
    redis_addr a, b;
    char msg[256], **urls;

    if (config_parse_redis_url(value, &a, msg, sizeof msg) < 0) {
        set_err(err, errlen, "redis_url: %s", msg);
        return -1;
    }
    for (size_t i = 0; i < c->redis_url_count; i++) {
        config_parse_redis_url(c->redis_urls[i], &b, NULL, 0);
        if (strcmp(a.host, b.host) == 0 && a.port == b.port && a.db == b.db) {
            set_err(err, errlen, "redis_url: %s:%d/%u is listed twice", a.host,
                    a.port, a.db);
            return -1;
        }
    }
    urls = realloc(c->redis_urls, (c->redis_url_count + 1) * sizeof *urls);
    if (!urls || !(urls[c->redis_url_count] = xstrdup(value))) {
        if (urls)
            c->redis_urls = urls;
        set_err(err, errlen, "redis_url: out of memory");
        return -1;
    }
    c->redis_urls = urls;
    c->redis_url_count++;
    return 0;
}

const char *config_key_name(size_t i)
{
    return i < NKEYS ? keys[i].name : NULL;
}

static int same_string(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

int config_key_differs(const config *a, const config *b, const char *key)
{
    const key_def *k = find_key(key);
    const char *fa, *fb;

    if (!k)
        return -1;
    if (k->type == T_REDIS_URL) {
        if (a->redis_url_count != b->redis_url_count)
            return 1;
        for (size_t i = 0; i < a->redis_url_count; i++)
            if (strcmp(a->redis_urls[i], b->redis_urls[i]) != 0)
                return 1;
        return 0;
    }
    fa = (const char *)a + k->offset;
    fb = (const char *)b + k->offset;
    if (is_string_type(k->type))
        return !same_string(*(char *const *)fa, *(char *const *)fb);
    if (int_parser[k->type])
        return *(const int *)fa != *(const int *)fb;
    return *(const uint64_t *)fa != *(const uint64_t *)fb;
}

int config_copy_key(config *dst, const config *src, const char *key)
{
    const key_def *k = find_key(key);
    char *dfield, *copy;
    const char *sfield;

    if (!k)
        return -1;
    if (k->type == T_REDIS_URL)
        return copy_urls(dst, src);
    dfield = (char *)dst + k->offset;
    sfield = (const char *)src + k->offset;
    if (is_string_type(k->type)) {
        const char *v = *(char *const *)sfield;
        copy = v ? xstrdup(v) : NULL;
        if (v && !copy)
            return -1;
        free(*(char **)dfield);
        *(char **)dfield = copy;
    } else if (int_parser[k->type]) {
        *(int *)dfield = *(const int *)sfield;
    } else {
        *(uint64_t *)dfield = *(const uint64_t *)sfield;
    }
    return 0;
}

int config_set(config *c, const char *key, const char *value, char *err,
               size_t errlen)
{
    const key_def *k = find_key(key);
    void *field;
    uint64_t u;
    int i;
    char host[256];

    if (!k) {
        set_err(err, errlen, "unknown key \"%s\"", key);
        return -1;
    }
    if (value[0] == '\0') {
        set_err(err, errlen, "%s: missing value (%s)", k->name,
                expected_form(k));
        return -1;
    }
    field = (char *)c + k->offset;
    if (k->type == T_REDIS_URL)
        return add_redis_url(c, value, err, errlen);
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
        set_err(err, errlen, "%s: %s; this one has %zu", k->name, k->bound_msg,
                strlen(value));
        return -1;
    } else if (k->type != T_LISTEN ||
               config_parse_listen(value, host, sizeof host, &i) == 0) {
        return set_string(field, value, k, err, errlen);
    }
    bad_value(k, value, err, errlen);
    return -1;
}

/* Keys of one engine set, away from their default, while the other
 * engine is in use, and an engine = redis without an instance: the
 * offending key's name, with the message in err; NULL when consistent. */
static const char *engine_conflict(const config *c, char *err, size_t errlen)
{
    if (c->engine == ENGINE_SQLITE) {
        const char *key = c->redis_url_count            ? "redis_url"
                          : c->redis_durable            ? "redis_durable"
                          : c->redis_timeout_ms != 2000 ? "redis_timeout"
                                                        : NULL;
        if (key)
            set_err(err, errlen,
                    "%s: only used with engine = redis (engine is sqlite)",
                    key);
        return key;
    }
    if (c->redis_url_count == 0) {
        set_err(err, errlen, "engine: engine = redis needs a redis_url");
        return "engine";
    }
    if (strcmp(c->db_path, "./chorus.db") != 0) {
        set_err(err, errlen,
                "db_path: not used with engine = redis (history lives in "
                "Redis; no SQLite file is opened)");
        return "db_path";
    }
    if (c->durability != DURABILITY_NORMAL) {
        set_err(err, errlen,
                "durability: a SQLite setting; with engine = redis use "
                "redis_durable and Redis's appendfsync");
        return "durability";
    }
    if (!c->history) {
        set_err(err, errlen,
                "history: engine = redis always keeps history (in Redis)");
        return "history";
    }
    return NULL;
}

int config_validate(const config *c, char *err, size_t errlen)
{
    if (engine_conflict(c, err, errlen))
        return -1;
    if (c->ping_interval_ms && c->idle_timeout_ms &&
        c->idle_timeout_ms <= c->ping_interval_ms) {
        set_err(err, errlen,
                "idle_timeout (%llums) must be 0 (off) or greater than "
                "ping_interval (%llums)",
                (unsigned long long)c->idle_timeout_ms,
                (unsigned long long)c->ping_interval_ms);
        return -1;
    }
    if (c->tls_listen && (!c->tls_cert || !c->tls_key)) {
        set_err(err, errlen, "tls_listen needs tls_cert and tls_key");
        return -1;
    }
    return 0;
}

/* ---- the file reader -------------------------------------------------- */

static int is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f' ||
           ch == '\n';
}

static char *trim(char *s)
{
    char *e;

    while (is_space(*s))
        s++;
    e = s + strlen(s);
    while (e > s && is_space(e[-1]))
        *--e = '\0';
    return s;
}

/* Cuts a trailing comment: '#' at the start of the value or after
 * whitespace. */
static void cut_comment(char *v)
{
    for (char *p = v; *p; p++) {
        if (*p == '#' && (p == v || is_space(p[-1]))) {
            *p = '\0';
            return;
        }
    }
}

/* Splits one line into key and value (both trimmed, value unquoted and
 * without comment). Returns 1 for a key/value line, 0 for a blank or
 * comment line, -1 with a message in err. */
static int split_line(char *line, char **key, char **value, char *err,
                      size_t errlen)
{
    char *s = trim(line), *eq, *v;

    if (*s == '\0' || *s == '#')
        return 0;
    eq = strchr(s, '=');
    if (!eq) {
        set_err(err, errlen, "expected \"key = value\", found no '='");
        return -1;
    }
    *eq = '\0';
    *key = trim(s);
    if (**key == '\0') {
        set_err(err, errlen,
                "expected \"key = value\", found no key "
                "before '='");
        return -1;
    }
    v = trim(eq + 1);
    if (*v == '"') {
        char *close = strchr(v + 1, '"');
        if (!close) {
            set_err(err, errlen, "%s: missing closing '\"'", *key);
            return -1;
        }
        *close = '\0';
        char *rest = trim(close + 1);
        if (*rest != '\0' && *rest != '#') {
            set_err(err, errlen, "%s: unexpected text after quoted value",
                    *key);
            return -1;
        }
        *value = v + 1;
        return 1;
    }
    cut_comment(v);
    *value = trim(v);
    return 1;
}

/* The engine checks of config_validate, reported at the line that set
 * the offending key (or the engine line) of this file. */
static int check_engine_keys(const config *c, const unsigned *seen,
                             const char *path, char *err, size_t errlen)
{
    char msg[256];
    const char *key = engine_conflict(c, msg, sizeof msg);
    unsigned line;

    if (!key)
        return 0;
    line = seen[find_key(key) - keys];
    if (!line)
        line = seen[find_key("engine") - keys];
    if (line)
        set_err(err, errlen, "%s:%u: %s", path, line, msg);
    else
        set_err(err, errlen, "%s: %s", path, msg);
    return -1;
}

/* Applies one line (NUL-terminated, its newline included or not) to c;
 * seen[] holds the line each key was first set on. Returns 0, or -1 with
 * a message (without name:line) in msg. */
static int apply_line(config *c, char *line, unsigned lineno, unsigned seen[],
                      char *msg, size_t msglen)
{
    char *key, *value;
    int rc = split_line(line, &key, &value, msg, msglen);

    if (rc <= 0)
        return rc;
    const key_def *k = find_key(key);
    size_t idx = k ? (size_t)(k - keys) : 0;
    if (k && seen[idx] && k->type != T_REDIS_URL) { /* redis_url repeats */
        set_err(msg, msglen, "%s: duplicate key (first set on line %u)", key,
                seen[idx]);
        return -1;
    }
    if (k)
        seen[idx] = lineno;
    return config_set(c, key, value, msg, msglen);
}

/* Parses buf[0..len) line by line into c. Reports "name:line: message". */
static int load_lines(config *c, const char *buf, size_t len, const char *name,
                      char *err, size_t errlen)
{
    char *line = malloc(len + 1), msg[512];
    unsigned lineno = 0, seen[NKEYS] = {0};
    size_t off = 0;
    int rc = 0;

    if (!line) {
        set_err(err, errlen, "%s: out of memory", name);
        return -1;
    }
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
        off = 3; /* UTF-8 byte order mark */
    while (off < len && rc >= 0) {
        const char *nl = memchr(buf + off, '\n', len - off);
        size_t n = nl ? (size_t)(nl - (buf + off)) + 1 : len - off;
        lineno++;
        if (memchr(buf + off, '\0', n)) {
            set_err(msg, sizeof msg, "line contains a NUL byte");
            rc = -1;
        } else {
            memcpy(line, buf + off, n);
            line[n] = '\0';
            rc = apply_line(c, line, lineno, seen, msg, sizeof msg);
        }
        if (rc < 0)
            set_err(err, errlen, "%s:%u: %s", name, lineno, msg);
        off += n;
    }
    if (rc >= 0)
        rc = check_engine_keys(c, seen, name, err, errlen);
    free(line);
    return rc < 0 ? -1 : 0;
}

/* Parses into a copy and keeps it only if the whole text is valid, so bad
 * text leaves c untouched. */
int config_load_buffer(config *c, const char *buf, size_t len, const char *name,
                       char *err, size_t errlen)
{
    config tmp;

    if (config_copy(&tmp, c)) {
        set_err(err, errlen, "%s: out of memory", name);
        return -1;
    }
    if (load_lines(&tmp, buf, len, name, err, errlen) < 0) {
        config_free(&tmp);
        return -1;
    }
    config_free(c);
    *c = tmp;
    return 0;
}

/* Reads the whole file (at most CONFIG_FILE_MAX bytes) into *out. */
static int read_file(const char *path, char **out, size_t *out_len, char *err,
                     size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0;

    if (!f) {
        set_err(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    buf = malloc(CONFIG_FILE_MAX + 1);
    if (!buf) {
        set_err(err, errlen, "%s: out of memory", path);
        fclose(f);
        return -1;
    }
    len = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
    if (ferror(f)) {
        set_err(err, errlen, "%s: %s", path, strerror(errno));
        len = (size_t)-1;
    } else if (len > CONFIG_FILE_MAX) {
        set_err(err, errlen,
                "%s: larger than %u bytes, not a configuration file", path,
                CONFIG_FILE_MAX);
        len = (size_t)-1;
    }
    fclose(f);
    if (len == (size_t)-1) {
        free(buf);
        return -1;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

int config_load_file(config *c, const char *path, char *err, size_t errlen)
{
    char *buf;
    size_t len;
    int rc;

    if (read_file(path, &buf, &len, err, errlen) < 0)
        return -1;
    rc = config_load_buffer(c, buf, len, path, err, errlen);
    free(buf);
    return rc;
}
