/* libFuzzer target for lib/http_parse.c. Checks invariants, not just
 * crashes: results in range, fields inside the head, header values
 * trimmed, and incremental consistency (a prefix of a complete head is
 * INCOMPLETE, an error never turns into success when more bytes arrive).
 *
 * Built and run by scripts/fuzz.sh (see tests/fuzz/CMakeLists.txt).
 *
 * Input layout: byte 0 picks the limits (small ones, so that every limit
 * is reached), byte 1 a prefix length to re-check, the rest is the head.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chorus/http_parse.h"

#define INVARIANT(c)                                                           \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "invariant failed: %s (line %d)\n", #c, __LINE__); \
            abort();                                                           \
        }                                                                      \
    } while (0)

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static int is_error(int r)
{
    return r == CHORUS_HTTP_MALFORMED || r == CHORUS_HTTP_TOO_LARGE;
}

static void check_inside(const char *p, size_t n, const char *buf, int r)
{
    INVARIANT(p >= buf && p + n <= buf + r);
}

static void check_headers(const chorus_http_header *h, size_t num,
                          const char *buf, int r, const chorus_http_limits *lim)
{
    INVARIANT(num <= CHORUS_HTTP_MAX_HEADERS && num <= lim->max_headers);
    for (size_t i = 0; i < num; i++) {
        INVARIANT(h[i].name_len > 0);
        check_inside(h[i].name, h[i].name_len, buf, r);
        check_inside(h[i].value, h[i].value_len, buf, r);
        INVARIANT(memchr(h[i].name, ':', h[i].name_len) == NULL);
        for (size_t k = 0; k < h[i].value_len; k++)
            INVARIANT(h[i].value[k] != '\r' && h[i].value[k] != '\n' &&
                      h[i].value[k] != '\0');
        if (h[i].value_len > 0) {
            INVARIANT(!is_ows(h[i].value[0]));
            INVARIANT(!is_ows(h[i].value[h[i].value_len - 1]));
        }
        INVARIANT(chorus_http_find_header(h, num, "x") == NULL ||
                  chorus_http_count_header(h, num, "x") > 0);
    }
}

static void check_head_end(const char *buf, int r)
{
    INVARIANT(r >= 2 && buf[r - 1] == '\n');
    INVARIANT(buf[r - 2] == '\n' ||
              (r >= 3 && buf[r - 2] == '\r' && buf[r - 3] == '\n'));
}

static void check_query(const chorus_http_request *req)
{
    const char *path, *query;
    size_t path_len, query_len;
    char out[32];
    int n;

    chorus_http_split_target(req->target, req->target_len, &path, &path_len,
                             &query, &query_len);
    INVARIANT(path == req->target && path_len <= req->target_len);
    if (!query)
        return;
    INVARIANT(path_len + 1 + query_len == req->target_len);
    n = chorus_http_query_param(query, query_len, "t", out, sizeof out);
    INVARIANT(n >= -2 && n < (int)sizeof out);
    if (n >= 0)
        INVARIANT(strlen(out) == (size_t)n);
    n = chorus_http_percent_decode(query, query_len, out, sizeof out);
    INVARIANT(n >= -1 && n < (int)sizeof out);
    if (n >= 0)
        INVARIANT(strlen(out) == (size_t)n && (size_t)n <= query_len);
}

static void check_request(const char *buf, size_t len,
                          const chorus_http_limits *lim, size_t prefix)
{
    chorus_http_request req;
    int r = chorus_http_parse_request(buf, len, lim, &req), p;

    INVARIANT(r > 0 || r == CHORUS_HTTP_INCOMPLETE || is_error(r));
    if (r == CHORUS_HTTP_INCOMPLETE)
        INVARIANT(len < lim->max_head);
    if (r > 0) {
        INVARIANT((size_t)r <= len && (size_t)r <= lim->max_head);
        check_head_end(buf, r);
        INVARIANT(req.method_len > 0 && req.target_len > 0);
        check_inside(req.method, req.method_len, buf, r);
        check_inside(req.target, req.target_len, buf, r);
        INVARIANT(req.target[0] == '/');
        INVARIANT(req.minor_version == 0 || req.minor_version == 1);
        check_headers(req.headers, req.num_headers, buf, r, lim);
        for (size_t i = 0; i < req.num_headers; i++)
            chorus_http_has_token(req.headers[i].value,
                                  req.headers[i].value_len, "upgrade");
        check_query(&req);
        /* the same head alone, and one byte short of it */
        INVARIANT(chorus_http_parse_request(buf, (size_t)r, lim, &req) == r);
        INVARIANT(chorus_http_parse_request(buf, (size_t)r - 1, lim, &req) ==
                  CHORUS_HTTP_INCOMPLETE);
    }
    if (prefix >= len)
        return;
    p = chorus_http_parse_request(buf, prefix, lim, &req);
    if (r > 0 && prefix < (size_t)r)
        INVARIANT(p == CHORUS_HTTP_INCOMPLETE);
    if (r > 0 && prefix >= (size_t)r)
        INVARIANT(p == r);
    if (r == CHORUS_HTTP_INCOMPLETE)
        INVARIANT(p == CHORUS_HTTP_INCOMPLETE);
    if (is_error(p))
        INVARIANT(is_error(r));
}

static void check_response(const char *buf, size_t len,
                           const chorus_http_limits *lim)
{
    chorus_http_response res;
    int r = chorus_http_parse_response(buf, len, lim, &res);

    INVARIANT(r > 0 || r == CHORUS_HTTP_INCOMPLETE || is_error(r));
    if (r <= 0)
        return;
    INVARIANT((size_t)r <= len && (size_t)r <= lim->max_head);
    check_head_end(buf, r);
    INVARIANT(res.status >= 0 && res.status <= 999);
    INVARIANT(res.reason_len == 0 ||
              (res.reason >= buf && res.reason + res.reason_len <= buf + r));
    check_headers(res.headers, res.num_headers, buf, r, lim);
    INVARIANT(chorus_http_parse_response(buf, (size_t)r - 1, lim, &res) ==
              CHORUS_HTTP_INCOMPLETE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t lines[] = {8, 16, 40, 8192};
    static const size_t counts[] = {0, 1, 3, 100};
    static const size_t heads[] = {24, 64, 256, 16384};
    chorus_http_limits lim;
    const char *buf;
    size_t len, prefix;

    if (size < 2)
        return 0;
    lim.max_line = lines[data[0] & 3];
    lim.max_headers = counts[(data[0] >> 2) & 3];
    lim.max_head = heads[(data[0] >> 4) & 3];
    prefix = data[1];
    buf = (const char *)data + 2;
    len = size - 2;
    check_request(buf, len, &lim, prefix);
    if (data[0] & 0x40)
        check_response(buf, len, &lim);
    return 0;
}
