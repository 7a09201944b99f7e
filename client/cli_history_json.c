/* chorus history: prints the messages of one page of the history answer,
 * one JSON line each. The answer has already been accepted by jansson;
 * offset, ts and data are copied from the raw text (whitespace outside
 * strings dropped), so numbers keep their exact digits. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_history_json.h"

typedef struct span {
    const char *p;
    size_t n;
} span;

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end && *p != '"'; p++)
        if (*p == '\\')
            p++;
    return p < end ? p + 1 : end;
}

/* End of the value at p. */
static const char *skip_value(const char *p, const char *end)
{
    if (p >= end)
        return end;
    if (*p == '"')
        return skip_string(p, end);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < end) {
            if (*p == '"') {
                p = skip_string(p, end);
                continue;
            }
            if (*p == '{' || *p == '[')
                depth++;
            else if (*p == '}' || *p == ']') {
                if (--depth == 0)
                    return p + 1;
            }
            p++;
        }
        return end;
    }
    while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' &&
           *p != '\t' && *p != '\n' && *p != '\r')
        p++;
    return p;
}

static int key_is(span k, const char *name)
{
    size_t n = strlen(name);
    return k.n == n + 2 && memcmp(k.p + 1, name, n) == 0;
}

/* Calls fn for each member of the object at *pp; leaves *pp after it. */
static int each_member(const char **pp, const char *end,
                       int (*fn)(span key, const char **pp, const char *end,
                                 void *arg),
                       void *arg)
{
    const char *p = skip_ws(*pp, end);
    if (p >= end || *p != '{')
        return -1;
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}') {
        *pp = p + 1;
        return 0;
    }
    while (p < end) {
        span key = {p, 0};
        p = skip_string(p, end);
        key.n = (size_t)(p - key.p);
        p = skip_ws(p, end);
        if (p >= end || *p != ':')
            return -1;
        p = skip_ws(p + 1, end);
        if (fn(key, &p, end, arg) < 0)
            return -1;
        p = skip_ws(p, end);
        if (p < end && *p == ',') {
            p = skip_ws(p + 1, end);
            continue;
        }
        if (p < end && *p == '}') {
            *pp = p + 1;
            return 0;
        }
        return -1;
    }
    return -1;
}

/* Writes a value without insignificant whitespace (so it fits on a line). */
static void put_compact(span v, FILE *out)
{
    int in_str = 0;
    for (size_t i = 0; i < v.n; i++) {
        char ch = v.p[i];
        if (in_str) {
            putc(ch, out);
            if (ch == '\\' && i + 1 < v.n)
                putc(v.p[++i], out);
            else if (ch == '"')
                in_str = 0;
        } else if (ch == '"') {
            in_str = 1;
            putc(ch, out);
        } else if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') {
            putc(ch, out);
        }
    }
}

typedef struct row {
    span offset, ts, data;
} row;

static int row_member(span key, const char **pp, const char *end, void *arg)
{
    row *r = arg;
    const char *v = *pp;
    *pp = skip_value(v, end);
    span s = {v, (size_t)(*pp - v)};
    if (key_is(key, "offset"))
        r->offset = s;
    else if (key_is(key, "ts"))
        r->ts = s;
    else if (key_is(key, "data"))
        r->data = s;
    return 0;
}

static int print_row(hist_page *pg, const row *r)
{
    char num[32];
    if (!r->offset.p || !r->data.p || r->offset.n == 0 ||
        r->offset.n >= sizeof num)
        return -1;
    memcpy(num, r->offset.p, r->offset.n);
    num[r->offset.n] = '\0';
    char *e;
    errno = 0;
    unsigned long long off = strtoull(num, &e, 10);
    if (*e || errno || off <= pg->last)
        return -1; /* offsets must increase */
    pg->last = off;
    pg->count++;
    printf("{\"topic\":%s,\"offset\":%llu,\"ts\":", pg->topic_json, off);
    if (r->ts.p)
        put_compact(r->ts, stdout);
    else
        fputs("null", stdout);
    fputs(",\"data\":", stdout);
    put_compact(r->data, stdout);
    if (fputs("}\n", stdout) == EOF)
        pg->write_failed = 1;
    return 0;
}

static int top_member(span key, const char **pp, const char *end, void *arg)
{
    hist_page *pg = arg;
    const char *p = *pp;
    if (!key_is(key, "messages") || p >= end || *p != '[') {
        *pp = skip_value(p, end);
        return 0;
    }
    p = skip_ws(p + 1, end);
    if (p < end && *p == ']') {
        *pp = p + 1;
        return 0;
    }
    while (p < end) {
        row r;
        memset(&r, 0, sizeof r);
        if (each_member(&p, end, row_member, &r) < 0 || print_row(pg, &r) < 0)
            return -1;
        p = skip_ws(p, end);
        if (p < end && *p == ',') {
            p = skip_ws(p + 1, end);
            continue;
        }
        if (p < end && *p == ']') {
            *pp = p + 1;
            return 0;
        }
        return -1;
    }
    return -1;
}

int hist_print_page(const char *body, size_t len, hist_page *pg)
{
    const char *p = body;
    return each_member(&p, body + len, top_member, pg);
}
