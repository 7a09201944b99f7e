/* WebSocket URL parser: ws://, wss://, http:// and https://, with an
 * optional port and path. Declared in chorus/ws_client.h. */
#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "chorus/ws_client.h"

static int url_scheme(const char *s, size_t n, chorus_url *out)
{
    static const struct {
        const char *name;
        int tls, port;
    } schemes[] = {
        {"ws", 0, 80},
        {"wss", 1, 443},
        {"http", 0, 80},
        {"https", 1, 443},
    };
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        if (strlen(schemes[i].name) == n &&
            strncasecmp(s, schemes[i].name, n) == 0) {
            out->tls = schemes[i].tls;
            out->port = schemes[i].port;
            return 0;
        }
    }
    return -1;
}

static int host_char_ok(unsigned char ch)
{
    return isalnum(ch) || ch == '.' || ch == '-' || ch == '_';
}

/* "[v6]" at *p: sets the host span (without brackets) and returns the
 * position after ']', or NULL when it is not a valid IPv6 literal. */
static const char *parse_v6_host(const char *p, const char **host,
                                 size_t *host_len)
{
    const char *end = strchr(p, ']');
    if (!end)
        return NULL;
    *host = p + 1;
    *host_len = (size_t)(end - *host);
    struct in6_addr a6;
    char tmp[64];
    if (*host_len == 0 || *host_len >= sizeof tmp)
        return NULL;
    memcpy(tmp, *host, *host_len);
    tmp[*host_len] = '\0';
    return inet_pton(AF_INET6, tmp, &a6) == 1 ? end + 1 : NULL;
}

/* Host at p (bracketed IPv6 or a name); copies it into out->host and
 * returns the position after it, or NULL. */
static const char *parse_host(const char *p, chorus_url *out)
{
    const char *host = p;
    size_t host_len;
    if (*p == '[') {
        p = parse_v6_host(p, &host, &host_len);
        if (!p)
            return NULL;
    } else {
        host_len = strcspn(p, ":/?#");
        for (size_t i = 0; i < host_len; i++)
            if (!host_char_ok((unsigned char)host[i]))
                return NULL; /* includes userinfo '@' */
        p += host_len;
    }
    if (host_len == 0 || host_len >= sizeof out->host)
        return NULL;
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    return p;
}

/* Optional ":port" at p (1..65535); returns the position after it or
 * NULL. */
static const char *parse_port(const char *p, chorus_url *out)
{
    if (*p != ':')
        return p;
    long port = 0;
    p++;
    if (!isdigit((unsigned char)*p))
        return NULL;
    while (isdigit((unsigned char)*p)) {
        port = port * 10 + (*p++ - '0');
        if (port > 65535)
            return NULL;
    }
    if (port == 0)
        return NULL;
    out->port = (int)port;
    return p;
}

/* Path and query at p, without the fragment; "/" when absent. */
static int parse_path(const char *p, chorus_url *out)
{
    if (*p != '\0' && *p != '/' && *p != '?' && *p != '#')
        return -1;
    size_t path_len = strcspn(p, "#");
    for (size_t i = 0; i < path_len; i++)
        if ((unsigned char)p[i] <= 0x20 || p[i] == 0x7f)
            return -1; /* would corrupt the request line */
    size_t lead = (path_len == 0 || p[0] == '?') ? 1 : 0;
    if (lead + path_len >= sizeof out->path)
        return -1;
    if (lead)
        out->path[0] = '/';
    memcpy(out->path + lead, p, path_len);
    out->path[lead + path_len] = '\0';
    return 0;
}

int chorus_url_parse(const char *url, chorus_url *out)
{
    memset(out, 0, sizeof *out);
    const char *p = strstr(url, "://");
    if (!p || url_scheme(url, (size_t)(p - url), out) < 0)
        return -1;
    p = parse_host(p + 3, out);
    if (p)
        p = parse_port(p, out);
    return p ? parse_path(p, out) : -1;
}
