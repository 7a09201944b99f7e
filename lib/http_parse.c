/* HTTP/1.x message head parser (see chorus/http_parse.h).
 *
 * Pure: no allocation, no I/O, no libevent. The head is read line by line;
 * a line is only interpreted once its LF has arrived, except for the checks
 * that can already fail on a prefix (a CR not followed by LF, obs-fold, the
 * line, header-count and head limits). Hence every prefix of a valid head
 * answers CHORUS_HTTP_INCOMPLETE, and a head that will exceed a limit is
 * refused as soon as that is certain, without waiting for its end.
 *
 * Line length (for max_line) counts the bytes before the CRLF or LF. Head
 * length (for max_head and the return value) counts everything up to and
 * including the LF of the blank line. A NULL lim means default_limits.
 */
#include "chorus/http_parse.h"

#include <limits.h>
#include <string.h>

static const chorus_http_limits default_limits = {
    .max_line = 8192,
    .max_headers = CHORUS_HTTP_MAX_HEADERS,
    .max_head = 16384,
};

/* tchar of RFC 7230 section 3.2.6. */
static int is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
        (c >= 'A' && c <= 'Z'))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-vchar, SP or HTAB: visible ASCII and obs-text, no other CTL. */
static int is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static unsigned char ascii_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

static int ascii_casecmp_n(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ascii_lower((unsigned char)a[i]) !=
            ascii_lower((unsigned char)b[i]))
            return 1;
    return 0;
}

/* Finds the end of the line starting at buf[start]. Returns 0 with
 * *content_len (bytes before CR LF / LF) and *next (offset after the LF),
 * or INCOMPLETE / MALFORMED / TOO_LARGE. */
static int next_line(const char *buf, size_t len, size_t start,
                     const chorus_http_limits *lim, size_t *content_len,
                     size_t *next)
{
    size_t i;

    for (i = start; i < len; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == '\n') {
            *content_len = i - start;
            *next = i + 1;
            break;
        }
        if (c == '\r') {
            if (i + 1 == len)
                break; /* the LF may follow */
            if (buf[i + 1] != '\n')
                return CHORUS_HTTP_MALFORMED;
            *content_len = i - start;
            *next = i + 2;
            break;
        }
        if (i - start + 1 > lim->max_line)
            return CHORUS_HTTP_TOO_LARGE;
    }
    if (i >= len || (buf[i] == '\r' && i + 1 == len)) {
        /* The head is at least len + 1 bytes long. */
        if (len >= lim->max_head)
            return CHORUS_HTTP_TOO_LARGE;
        return CHORUS_HTTP_INCOMPLETE;
    }
    if (*next > lim->max_head)
        return CHORUS_HTTP_TOO_LARGE;
    return 0;
}

/* "HTTP/1.0" or "HTTP/1.1" at p (n bytes available); sets *minor. */
static int parse_version(const char *p, size_t n, int *minor)
{
    if (n < 8 || memcmp(p, "HTTP/1.", 7) != 0)
        return -1;
    if (p[7] != '0' && p[7] != '1')
        return -1;
    *minor = p[7] - '0';
    return 0;
}

/* name ":" OWS value OWS, the line without its terminator. */
static int parse_header_line(const char *p, size_t n, chorus_http_header *h)
{
    size_t i = 0, vs, ve;

    while (i < n && is_tchar((unsigned char)p[i]))
        i++;
    if (i == 0 || i == n || p[i] != ':')
        return -1; /* empty name, no colon, or space/other before it */
    h->name = p;
    h->name_len = i;
    for (size_t k = i + 1; k < n; k++)
        if (!is_value_char((unsigned char)p[k]))
            return -1;
    vs = i + 1;
    ve = n;
    while (vs < ve && is_ows((unsigned char)p[vs]))
        vs++;
    while (ve > vs && is_ows((unsigned char)p[ve - 1]))
        ve--;
    h->value = p + vs;
    h->value_len = ve - vs;
    return 0;
}

/* Parses header lines from buf[pos] up to the blank line. Returns the head
 * length or a negative code. */
static int parse_headers(const char *buf, size_t len, size_t pos,
                         const chorus_http_limits *lim,
                         chorus_http_header *headers, size_t *num)
{
    size_t max_headers = lim->max_headers;
    size_t content, next;
    int r;

    if (max_headers > CHORUS_HTTP_MAX_HEADERS)
        max_headers = CHORUS_HTTP_MAX_HEADERS;
    *num = 0;
    for (;;) {
        if (pos < len && is_ows((unsigned char)buf[pos]))
            return CHORUS_HTTP_MALFORMED; /* obs-fold */
        if (pos < len && buf[pos] != '\r' && buf[pos] != '\n' &&
            *num == max_headers)
            return CHORUS_HTTP_TOO_LARGE; /* one header too many */
        r = next_line(buf, len, pos, lim, &content, &next);
        if (r != 0)
            return r;
        if (content == 0)
            return next > INT_MAX ? CHORUS_HTTP_TOO_LARGE : (int)next;
        if (parse_header_line(buf + pos, content, &headers[*num]) != 0)
            return CHORUS_HTTP_MALFORMED;
        (*num)++;
        pos = next;
    }
}

/* method SP target SP HTTP-version, the line without its terminator. */
static int parse_request_line(const char *p, size_t n, chorus_http_request *req)
{
    size_t i = 0, t;

    while (i < n && is_tchar((unsigned char)p[i]))
        i++;
    if (i == 0 || i == n || p[i] != ' ')
        return -1;
    req->method = p;
    req->method_len = i;
    t = ++i;
    if (i == n || p[i] != '/')
        return -1;
    while (i < n && (unsigned char)p[i] > 0x20 && (unsigned char)p[i] < 0x7f)
        i++;
    if (i == n || p[i] != ' ')
        return -1;
    req->target = p + t;
    req->target_len = i - t;
    i++;
    if (n - i != 8 || parse_version(p + i, n - i, &req->minor_version) != 0)
        return -1;
    return 0;
}

int chorus_http_parse_request(const char *buf, size_t len,
                              const chorus_http_limits *lim,
                              chorus_http_request *req)
{
    size_t content, next;
    int r;

    if (!lim)
        lim = &default_limits;
    req->num_headers = 0;
    r = next_line(buf, len, 0, lim, &content, &next);
    if (r != 0)
        return r;
    if (parse_request_line(buf, content, req) != 0)
        return CHORUS_HTTP_MALFORMED;
    return parse_headers(buf, len, next, lim, req->headers, &req->num_headers);
}

/* HTTP-version SP 3DIGIT [SP reason], the line without its terminator. An
 * absent reason (no SP either) is tolerated, as picohttpparser does. */
static int parse_status_line(const char *p, size_t n, chorus_http_response *res)
{
    if (n < 12 || parse_version(p, n, &res->minor_version) != 0 || p[8] != ' ')
        return -1;
    res->status = 0;
    for (size_t i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        res->status = res->status * 10 + (p[i] - '0');
    }
    res->reason = p + n;
    res->reason_len = 0;
    if (n == 12)
        return 0;
    if (p[12] != ' ')
        return -1;
    for (size_t i = 13; i < n; i++)
        if (!is_value_char((unsigned char)p[i]))
            return -1;
    res->reason = p + 13;
    res->reason_len = n - 13;
    return 0;
}

int chorus_http_parse_response(const char *buf, size_t len,
                               const chorus_http_limits *lim,
                               chorus_http_response *res)
{
    size_t content, next;
    int r;

    if (!lim)
        lim = &default_limits;
    res->num_headers = 0;
    r = next_line(buf, len, 0, lim, &content, &next);
    if (r != 0)
        return r;
    if (parse_status_line(buf, content, res) != 0)
        return CHORUS_HTTP_MALFORMED;
    return parse_headers(buf, len, next, lim, res->headers, &res->num_headers);
}

static int name_is(const chorus_http_header *h, const char *name,
                   size_t name_len)
{
    return h->name_len == name_len &&
           ascii_casecmp_n(h->name, name, name_len) == 0;
}

const chorus_http_header *
chorus_http_find_header(const chorus_http_header *headers, size_t n,
                        const char *name)
{
    size_t name_len = strlen(name);

    for (size_t i = 0; i < n; i++)
        if (name_is(&headers[i], name, name_len))
            return &headers[i];
    return NULL;
}

size_t chorus_http_count_header(const chorus_http_header *headers, size_t n,
                                const char *name)
{
    size_t name_len = strlen(name), count = 0;

    for (size_t i = 0; i < n; i++)
        if (name_is(&headers[i], name, name_len))
            count++;
    return count;
}

int chorus_http_has_token(const char *value, size_t len, const char *token)
{
    size_t token_len = strlen(token), i = 0;

    if (token_len == 0)
        return 0;
    while (i < len) {
        size_t s = i, e;
        while (i < len && value[i] != ',')
            i++;
        e = i++; /* skip the comma */
        while (s < e && is_ows((unsigned char)value[s]))
            s++;
        while (e > s && is_ows((unsigned char)value[e - 1]))
            e--;
        if (e - s == token_len &&
            ascii_casecmp_n(value + s, token, token_len) == 0)
            return 1;
    }
    return 0;
}

void chorus_http_split_target(const char *target, size_t len, const char **path,
                              size_t *path_len, const char **query,
                              size_t *query_len)
{
    const char *q = memchr(target, '?', len);

    *path = target;
    if (!q) {
        *path_len = len;
        *query = NULL;
        *query_len = 0;
        return;
    }
    *path_len = (size_t)(q - target);
    *query = q + 1;
    *query_len = len - *path_len - 1;
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = ascii_lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes one character of src at *i, advancing *i. Returns the byte
 * (1..255) or -1 on a bad escape or a NUL, encoded or not. */
static int decode_one(const char *src, size_t len, size_t *i, int plus)
{
    unsigned char c = (unsigned char)src[*i];
    int hi, lo;

    if (c == '%') {
        if (len - *i < 3)
            return -1;
        hi = hex_value((unsigned char)src[*i + 1]);
        lo = hex_value((unsigned char)src[*i + 2]);
        if (hi < 0 || lo < 0 || (hi | lo) == 0)
            return -1;
        *i += 3;
        return hi * 16 + lo;
    }
    (*i)++;
    if (c == '\0')
        return -1;
    return (plus && c == '+') ? ' ' : c;
}

static int decode(const char *src, size_t len, char *out, size_t out_size,
                  int plus)
{
    size_t i = 0, n = 0;

    if (out_size == 0 || out_size - 1 > INT_MAX)
        return -1;
    while (i < len) {
        int c = decode_one(src, len, &i, plus);
        if (c < 0 || n == out_size - 1) {
            out[0] = '\0';
            return -1;
        }
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return (int)n;
}

int chorus_http_percent_decode(const char *src, size_t len, char *out,
                               size_t out_size)
{
    return decode(src, len, out, out_size, 0);
}

/* 1 if the encoded key src[0..len) decodes to name, 0 if not, -1 if it
 * is malformed. */
static int key_is(const char *src, size_t len, const char *name)
{
    size_t i = 0, k = 0;
    int match = 1;

    while (i < len) {
        int c = decode_one(src, len, &i, 1);
        if (c < 0)
            return -1;
        if (match && (name[k] == '\0' || (unsigned char)name[k] != c))
            match = 0;
        if (match)
            k++;
    }
    return match && name[k] == '\0';
}

int chorus_http_query_param(const char *query, size_t len, const char *name,
                            char *out, size_t out_size)
{
    size_t i = 0;

    if (!query)
        return -1;
    while (i < len) {
        const char *pair = query + i, *eq;
        size_t pair_len, key_len;
        int r;

        while (i < len && query[i] != '&')
            i++;
        pair_len = (size_t)(query + i - pair);
        i++; /* skip the '&' */
        if (pair_len == 0)
            continue;
        eq = memchr(pair, '=', pair_len);
        key_len = eq ? (size_t)(eq - pair) : pair_len;
        r = key_is(pair, key_len, name);
        if (r < 0)
            return -2;
        if (r == 0)
            continue;
        if (!eq)
            r = decode("", 0, out, out_size, 1);
        else
            r = decode(eq + 1, pair_len - key_len - 1, out, out_size, 1);
        return r < 0 ? -2 : r;
    }
    return -1;
}
