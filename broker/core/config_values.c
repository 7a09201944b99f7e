/* Configuration value parsers: the text of one value to a number, an enum
 * or an address. Pure: no I/O, no allocation. */
#include "config_internal.h"

#include <arpa/inet.h>
#include <string.h>

/* Parses a run of decimal digits at *s into *out, advancing *s. Returns -1
 * on no digits or overflow. */
int config_parse_digits(const char **s, uint64_t *out)
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

int config_parse_count(const char *s, uint64_t *out)
{
    uint64_t v;

    if (config_parse_digits(&s, &v) < 0 || *s != '\0')
        return -1;
    *out = v;
    return 0;
}

/* s as one of the n names: its index in *out. The callers list the names
 * in the order of their values (0, 1, ...: the enums of config.h). */
static int parse_name(const char *s, const char *const *names, int n, int *out)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    return -1;
}

_Static_assert(LOG_ERROR == 0 && LOG_DEBUG == 3 && LOG_FORMAT_TEXT == 0 &&
                   LOG_FORMAT_JSON == 1 && DURABILITY_NORMAL == 0 &&
                   DURABILITY_FULL == 1 && ENGINE_SQLITE == 0 &&
                   ENGINE_REDIS == 1,
               "the parsers' names are listed in the order of these values");

#define PARSE_NAME(s, out, names) \
    parse_name(s, names, (int)(sizeof names / sizeof names[0]), out)

int config_parse_bool(const char *s, int *out)
{
    static const char *const names[] = {"off", "on"};

    return PARSE_NAME(s, out, names);
}

int config_parse_size(const char *s, uint64_t *out)
{
    uint64_t v, mult = 1;

    if (config_parse_digits(&s, &v) < 0)
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
    if (config_parse_digits(&s, &v) < 0)
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

    return PARSE_NAME(s, out, names);
}

int config_parse_engine(const char *s, int *out)
{
    static const char *const names[] = {"sqlite", "redis"};

    return PARSE_NAME(s, out, names);
}

int config_parse_log_format(const char *s, int *out)
{
    static const char *const names[] = {"text", "json"};

    return PARSE_NAME(s, out, names);
}

int config_parse_durability(const char *s, int *out)
{
    static const char *const names[] = {"normal", "full"};

    return PARSE_NAME(s, out, names);
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
    if (config_parse_digits(&ps, &p) < 0 || *ps != '\0' || p < 1 || p > 65535)
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
        config_set_err(
            err, errlen,
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
        if (config_parse_digits(&d, &db) < 0 || *d != '\0' || db > 1000000)
            goto bad;
    }
    out->db = (unsigned)db;
    return 0;
bad:
    config_set_err(err, errlen, "expected redis://[:password@]host:port[/db]");
    return -1;
}
