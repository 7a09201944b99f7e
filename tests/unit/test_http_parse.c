/* Unit tests for lib/http_parse.c: one test per rule and per limit. */
#include "check.h"

#include <stdlib.h>

#include "chorus/http_parse.h"

static const chorus_http_limits lim = {
    .max_line = 256, .max_headers = 8, .max_head = 1024};

static int req_s(const char *s, chorus_http_request *req)
{
    return chorus_http_parse_request(s, strlen(s), &lim, req);
}

static int req_l(const char *s, const chorus_http_limits *l)
{
    chorus_http_request req;
    return chorus_http_parse_request(s, strlen(s), l, &req);
}

static int res_s(const char *s, chorus_http_response *res)
{
    return chorus_http_parse_response(s, strlen(s), &lim, res);
}

/* Heap copy of exactly n bytes so ASan catches any read past the end. */
static int req_exact(const char *s, size_t n, const chorus_http_limits *l)
{
    chorus_http_request req;
    char *copy = malloc(n ? n : 1);
    int r;

    memcpy(copy, s, n);
    r = chorus_http_parse_request(copy, n, l, &req);
    free(copy);
    return r;
}

static int str_eq(const char *p, size_t n, const char *s)
{
    return n == strlen(s) && memcmp(p, s, n) == 0;
}

static void test_valid_request(void)
{
    chorus_http_request req;
    const char *s = "GET /ws?topic=a HTTP/1.1\r\n"
                    "Host: example.com\r\n"
                    "Upgrade:websocket\r\n"
                    "X-Pad: \t  spaced value \t \r\n"
                    "Empty:\r\n"
                    "X-Obs: caf\xc3\xa9\r\n"
                    "\r\n";
    CHECK_EQ_INT(req_s(s, &req), strlen(s));
    CHECK(str_eq(req.method, req.method_len, "GET"));
    CHECK(str_eq(req.target, req.target_len, "/ws?topic=a"));
    CHECK_EQ_INT(req.minor_version, 1);
    CHECK_EQ_INT(req.num_headers, 5);
    CHECK(str_eq(req.headers[0].name, req.headers[0].name_len, "Host"));
    CHECK(
        str_eq(req.headers[0].value, req.headers[0].value_len, "example.com"));
    CHECK(str_eq(req.headers[1].value, req.headers[1].value_len, "websocket"));
    CHECK(
        str_eq(req.headers[2].value, req.headers[2].value_len, "spaced value"));
    CHECK_EQ_INT(req.headers[3].value_len, 0);
    CHECK(
        str_eq(req.headers[4].value, req.headers[4].value_len, "caf\xc3\xa9"));

    CHECK_EQ_INT(req_s("GET / HTTP/1.0\r\n\r\n", &req), 18);
    CHECK_EQ_INT(req.minor_version, 0);
    CHECK_EQ_INT(req.num_headers, 0);
    /* method is any token */
    CHECK_EQ_INT(req_s("M-SEARCH!~ / HTTP/1.1\r\n\r\n", &req), 25);
    CHECK(str_eq(req.method, req.method_len, "M-SEARCH!~"));
    /* target: any visible ASCII after the leading '/' */
    CHECK(req_s("GET /a%20b?x=\"{}\"#f HTTP/1.1\r\n\r\n", &req) > 0);
    /* NULL limits select the defaults */
    CHECK_EQ_INT(
        chorus_http_parse_request("GET / HTTP/1.1\r\n\r\n", 18, NULL, &req),
        18);
}

static void test_line_ends(void)
{
    chorus_http_request req;

    /* bare LF accepted everywhere, mixed with CRLF */
    CHECK_EQ_INT(req_s("GET / HTTP/1.1\nHost: a\n\n", &req), 24);
    CHECK_EQ_INT(req.num_headers, 1);
    CHECK(str_eq(req.headers[0].value, req.headers[0].value_len, "a"));
    CHECK_EQ_INT(req_s("GET / HTTP/1.1\r\nHost: a\n\r\n", &req), 26);
    /* CR not followed by LF */
    CHECK_EQ_INT(req_s("GET / HTTP/1.1\rHost: a\r\n\r\n", &req),
                 CHORUS_HTTP_MALFORMED);
    CHECK_EQ_INT(req_s("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", &req),
                 CHORUS_HTTP_MALFORMED);
    CHECK_EQ_INT(req_s("GET / HTTP/1.1\r\nHost: a\r\n\rX", &req),
                 CHORUS_HTTP_MALFORMED);
    /* ... detected before the line ends */
    CHECK_EQ_INT(req_s("GET / HTTP/1.1\rX", &req), CHORUS_HTTP_MALFORMED);
    /* a trailing CR may still be followed by LF */
    CHECK_EQ_INT(req_s("GET / HTTP/1.1\r", &req), CHORUS_HTTP_INCOMPLETE);
    CHECK_EQ_INT(req_s("GET / HTTP/1.1\r\n\r", &req), CHORUS_HTTP_INCOMPLETE);
}

static void test_bad_request_line(void)
{
    static const char *bad[] = {
        "\r\n\r\n",                   /* empty request line */
        "\r\nGET / HTTP/1.1\r\n\r\n", /* leading blank line */
        " GET / HTTP/1.1\r\n\r\n",    /* leading space */
        "GET  / HTTP/1.1\r\n\r\n",    /* two spaces */
        "GET / HTTP/1.1 \r\n\r\n",    /* trailing space */
        "GET /  HTTP/1.1\r\n\r\n",
        "GET\t/ HTTP/1.1\r\n\r\n",       /* HTAB separator */
        "G(T / HTTP/1.1\r\n\r\n",        /* non-token method */
        "G\xc3\x89T / HTTP/1.1\r\n\r\n", /* non-ASCII method */
        "GET HTTP/1.1\r\n\r\n",          /* no target */
        "GET x HTTP/1.1\r\n\r\n",        /* target without '/' */
        "GET * HTTP/1.1\r\n\r\n",
        "GET http://h/ HTTP/1.1\r\n\r\n",
        "GET /\x7f HTTP/1.1\r\n\r\n",     /* DEL in target */
        "GET /\xc3\xa9 HTTP/1.1\r\n\r\n", /* non-ASCII target */
        "GET /\x01 HTTP/1.1\r\n\r\n",
        "GET /\r\n\r\n", /* HTTP/0.9 */
        "GET / \r\n\r\n",
        "GET / HTTP/1.2\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/1.10\r\n\r\n",
        "GET / HTTP/1.\r\n\r\n",
        "GET / HTTP/1\r\n\r\n",
        "GET / http/1.1\r\n\r\n",
        "GET / HTTPS/1.1\r\n\r\n",
        "GET / HTTP/1.1x\r\n\r\n",
    };
    chorus_http_request req;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int r = req_s(bad[i], &req);
        if (r != CHORUS_HTTP_MALFORMED)
            fprintf(stderr, "bad request line %zu accepted\n", i);
        CHECK_EQ_INT(r, CHORUS_HTTP_MALFORMED);
    }
    /* a NUL byte counts as a CTL, not as the end of the buffer */
    CHECK_EQ_INT(
        chorus_http_parse_request("GET /\0 HTTP/1.1\r\n\r\n", 20, &lim, &req),
        CHORUS_HTTP_MALFORMED);
}

static void test_bad_headers(void)
{
    static const char *bad[] = {
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",  /* space before colon */
        "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", /* HTAB before colon */
        "GET / HTTP/1.1\r\nHost a\r\n\r\n",    /* no colon */
        "GET / HTTP/1.1\r\nHost\r\n\r\n",
        "GET / HTTP/1.1\r\n: a\r\n\r\n",    /* empty name */
        "GET / HTTP/1.1\r\nX(y: a\r\n\r\n", /* non-token name */
        "GET / HTTP/1.1\r\nX\xc3\xa9: a\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\x01z\r\n\r\n", /* CTL in value */
        "GET / HTTP/1.1\r\nX: a\x7fz\r\n\r\n", /* DEL in value */
        "GET / HTTP/1.1\r\nX: \x1b[0m\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",  /* obs-fold SP */
        "GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", /* obs-fold HTAB */
        "GET / HTTP/1.1\r\n X: a\r\n\r\n",       /* fold on first header */
        "GET / HTTP/1.1\r\n \r\n\r\n",           /* whitespace-only line */
    };
    chorus_http_request req;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int r = req_s(bad[i], &req);
        if (r != CHORUS_HTTP_MALFORMED)
            fprintf(stderr, "bad header case %zu accepted\n", i);
        CHECK_EQ_INT(r, CHORUS_HTTP_MALFORMED);
    }
    CHECK_EQ_INT(chorus_http_parse_request("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n",
                                           26, &lim, &req),
                 CHORUS_HTTP_MALFORMED);
    /* obs-fold refused as soon as its first byte is seen */
    CHECK_EQ_INT(req_s("GET / HTTP/1.1\r\nX: a\r\n ", &req),
                 CHORUS_HTTP_MALFORMED);
    /* every token char is fine in a name; ':' inside a value is fine */
    CHECK(req_s("GET / HTTP/1.1\r\n!#$%&'*+-.^_`|~09aZ: a:b\r\n\r\n", &req) >
          0);
    CHECK(str_eq(req.headers[0].value, req.headers[0].value_len, "a:b"));
    /* HTAB and obs-text inside a value are fine */
    CHECK(req_s("GET / HTTP/1.1\r\nX: a\tb\xff\x80\r\n\r\n", &req) > 0);
    CHECK_EQ_INT(req.headers[0].value_len, 5);
}

/* Every proper prefix of a valid head is INCOMPLETE; the whole, and the
 * whole followed by anything, returns the head length. */
static void check_incremental(const char *head)
{
    size_t n = strlen(head);
    int bad = 0;

    for (size_t k = 0; k < n; k++)
        if (req_exact(head, k, &lim) != CHORUS_HTTP_INCOMPLETE)
            bad++;
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(req_exact(head, n, &lim), n);
}

static void test_incremental(void)
{
    check_incremental("GET /chat?x=1 HTTP/1.1\r\n"
                      "Host: server.example.com\r\n"
                      "Upgrade: websocket\r\n"
                      "Connection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n"
                      "\r\n");
    check_incremental("GET / HTTP/1.0\n\n");
    check_incremental("GET / HTTP/1.1\r\nA:\r\nB: \t\r\n\r\n");

    /* the same for responses */
    {
        const char *s = "HTTP/1.1 101 Switching Protocols\r\n"
                        "Upgrade: websocket\r\n\r\n";
        size_t n = strlen(s);
        chorus_http_response res;
        int bad = 0;
        for (size_t k = 0; k < n; k++)
            if (chorus_http_parse_response(s, k, &lim, &res) !=
                CHORUS_HTTP_INCOMPLETE)
                bad++;
        CHECK_EQ_INT(bad, 0);
        CHECK_EQ_INT(chorus_http_parse_response(s, n, &lim, &res), n);
    }
}

static void test_pipelined(void)
{
    chorus_http_request req;
    const char *first = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
    const char *both = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
                       "GET /b HTTP/1.1\r\nHost: h\r\n\r\n";
    int n = req_s(both, &req);

    CHECK_EQ_INT(n, strlen(first));
    CHECK(str_eq(req.target, req.target_len, "/a"));
    CHECK_EQ_INT(
        chorus_http_parse_request(both + n, strlen(both) - n, &lim, &req),
        strlen(first));
    CHECK(str_eq(req.target, req.target_len, "/b"));
    /* trailing bytes are not looked at: garbage, or WebSocket frames */
    CHECK_EQ_INT(req_s("GET / HTTP/1.1\r\n\r\n\x81\x85\r\x01\x02", &req), 18);
    /* nor limited: the head fits even if the buffer does not */
    {
        chorus_http_limits l = {
            .max_line = 64, .max_headers = 1, .max_head = 20};
        char buf[200];
        memset(buf, 'x', sizeof buf);
        memcpy(buf, "GET / HTTP/1.1\r\n\r\n", 18);
        CHECK_EQ_INT(chorus_http_parse_request(buf, sizeof buf, &l, &req), 18);
    }
}

static void test_limit_line(void)
{
    chorus_http_limits l = {.max_line = 20, .max_headers = 8, .max_head = 1024};
    /* request line of exactly 20 bytes ("GET /" + 7 + " HTTP/1.1") */
    CHECK_EQ_INT(req_l("GET /123456 HTTP/1.1\r\n\r\n", &l), 24);
    CHECK_EQ_INT(req_l("GET /123456 HTTP/1.1\n\n", &l), 22);
    CHECK_EQ_INT(req_l("GET /1234567 HTTP/1.1\r\n\r\n", &l),
                 CHORUS_HTTP_TOO_LARGE);
    /* before the end of the line arrives: 20 then 21 bytes, no LF */
    CHECK_EQ_INT(req_l("GET /1234567 HTTP/1.", &l), CHORUS_HTTP_INCOMPLETE);
    CHECK_EQ_INT(req_l("GET /1234567 HTTP/1.1", &l), CHORUS_HTTP_TOO_LARGE);
    /* 20 content bytes + CR: still waiting for LF */
    CHECK_EQ_INT(req_l("GET /123456 HTTP/1.1\r", &l), CHORUS_HTTP_INCOMPLETE);
    /* header line of exactly 20, then 21 bytes */
    CHECK_EQ_INT(req_l("GET / HTTP/1.1\r\nX: 34567890123456789\r\n\r\n", &l),
                 40);
    CHECK_EQ_INT(req_l("GET / HTTP/1.1\r\nX: 345678901234567890\r\n\r\n", &l),
                 CHORUS_HTTP_TOO_LARGE);
    CHECK_EQ_INT(req_l("GET / HTTP/1.1\r\nX: 345678901234567890", &l),
                 CHORUS_HTTP_TOO_LARGE);
    /* trailing blanks still count towards the line */
    CHECK_EQ_INT(req_l("GET / HTTP/1.1\r\nX: 3456789012345678   \r\n\r\n", &l),
                 CHORUS_HTTP_TOO_LARGE);
    /* a huge line without any LF fails without reading it all */
    {
        static char big[100000];
        chorus_http_request req;
        memset(big, 'a', sizeof big);
        memcpy(big, "GET /", 5);
        CHECK_EQ_INT(chorus_http_parse_request(big, sizeof big, &l, &req),
                     CHORUS_HTTP_TOO_LARGE);
    }
}

static void test_limit_headers(void)
{
    chorus_http_limits l = {
        .max_line = 100, .max_headers = 2, .max_head = 1024};
    chorus_http_request req;

    CHECK_EQ_INT(req_l("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n", &l), 30);
    CHECK_EQ_INT(req_l("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", &l),
                 CHORUS_HTTP_TOO_LARGE);
    /* refused once a third header starts, before it ends */
    CHECK_EQ_INT(req_l("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC", &l),
                 CHORUS_HTTP_TOO_LARGE);
    CHECK_EQ_INT(req_l("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n", &l),
                 CHORUS_HTTP_INCOMPLETE);
    CHECK_EQ_INT(req_l("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r", &l),
                 CHORUS_HTTP_INCOMPLETE);
    /* zero headers allowed */
    l.max_headers = 0;
    CHECK_EQ_INT(req_l("GET / HTTP/1.1\r\n\r\n", &l), 18);
    CHECK_EQ_INT(req_l("GET / HTTP/1.1\r\nA: 1\r\n\r\n", &l),
                 CHORUS_HTTP_TOO_LARGE);
    /* max_headers above the array size is capped at the array size */
    {
        char buf[4096];
        size_t n = 0;
        chorus_http_limits big = {
            .max_line = 100, .max_headers = 1000, .max_head = sizeof buf};
        n += (size_t)sprintf(buf + n, "GET / HTTP/1.1\r\n");
        for (int i = 0; i < CHORUS_HTTP_MAX_HEADERS; i++)
            n += (size_t)sprintf(buf + n, "H%d: v\r\n", i);
        memcpy(buf + n, "\r\n", 3);
        CHECK_EQ_INT(chorus_http_parse_request(buf, n + 2, &big, &req), n + 2);
        CHECK_EQ_INT(req.num_headers, CHORUS_HTTP_MAX_HEADERS);
        memcpy(buf + n, "X: y\r\n\r\n", 9);
        CHECK_EQ_INT(chorus_http_parse_request(buf, n + 8, &big, &req),
                     CHORUS_HTTP_TOO_LARGE);
    }
}

static void test_limit_head(void)
{
    const char *s = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n"; /* 30 */
    chorus_http_limits l = {.max_line = 100, .max_headers = 8, .max_head = 30};

    CHECK_EQ_INT(req_l(s, &l), 30);
    l.max_head = 29;
    CHECK_EQ_INT(req_l(s, &l), CHORUS_HTTP_TOO_LARGE);
    /* while incomplete: 29 bytes received, head is at least 30 */
    CHECK_EQ_INT(req_exact(s, 29, &l), CHORUS_HTTP_TOO_LARGE);
    CHECK_EQ_INT(req_exact(s, 28, &l), CHORUS_HTTP_INCOMPLETE);
    l.max_head = 20;
    CHECK_EQ_INT(req_exact(s, 20, &l), CHORUS_HTTP_TOO_LARGE);
    CHECK_EQ_INT(req_exact(s, 19, &l), CHORUS_HTTP_INCOMPLETE);
    /* a complete line already past the limit */
    CHECK_EQ_INT(req_exact(s, 25, &l), CHORUS_HTTP_TOO_LARGE);
}

static void test_response(void)
{
    chorus_http_response res;
    const char *s = "HTTP/1.1 101 Switching Protocols\r\n"
                    "Upgrade: websocket\r\n"
                    "Connection: Upgrade\r\n"
                    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                    "\r\n";

    CHECK_EQ_INT(res_s(s, &res), strlen(s));
    CHECK_EQ_INT(res.minor_version, 1);
    CHECK_EQ_INT(res.status, 101);
    CHECK(str_eq(res.reason, res.reason_len, "Switching Protocols"));
    CHECK_EQ_INT(res.num_headers, 3);
    CHECK(str_eq(res.headers[2].value, res.headers[2].value_len,
                 "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    CHECK_EQ_INT(res_s("HTTP/1.0 404 Not Found\n\n", &res), 24);
    CHECK_EQ_INT(res.status, 404);
    CHECK_EQ_INT(res.minor_version, 0);
    /* empty reason, with or without its SP */
    CHECK_EQ_INT(res_s("HTTP/1.1 101 \r\n\r\n", &res), 17);
    CHECK_EQ_INT(res.reason_len, 0);
    CHECK_EQ_INT(res_s("HTTP/1.1 101\r\n\r\n", &res), 16);
    CHECK_EQ_INT(res.reason_len, 0);

    CHECK_EQ_INT(res_s("HTTP/1.1 10 OK\r\n\r\n", &res), CHORUS_HTTP_MALFORMED);
    CHECK_EQ_INT(res_s("HTTP/1.1 1011 OK\r\n\r\n", &res),
                 CHORUS_HTTP_MALFORMED);
    CHECK_EQ_INT(res_s("HTTP/1.1 1x1 OK\r\n\r\n", &res), CHORUS_HTTP_MALFORMED);
    CHECK_EQ_INT(res_s("HTTP/1.1  101 OK\r\n\r\n", &res),
                 CHORUS_HTTP_MALFORMED);
    CHECK_EQ_INT(res_s("HTTP/2.0 101 OK\r\n\r\n", &res), CHORUS_HTTP_MALFORMED);
    CHECK_EQ_INT(res_s("HTTP/1.1 101 O\x01K\r\n\r\n", &res),
                 CHORUS_HTTP_MALFORMED);
    CHECK_EQ_INT(res_s("HTTP/1.1 101 OK\r\nA : b\r\n\r\n", &res),
                 CHORUS_HTTP_MALFORMED);
    CHECK_EQ_INT(res_s("HTTP/1.1 101 OK\r\nA: b\r\n c\r\n\r\n", &res),
                 CHORUS_HTTP_MALFORMED);
    CHECK_EQ_INT(res_s("ICY 200 OK\r\n\r\n", &res), CHORUS_HTTP_MALFORMED);
    CHECK_EQ_INT(res_s("HTTP/1.1 101 OK\r\n", &res), CHORUS_HTTP_INCOMPLETE);
    /* limits apply too */
    {
        chorus_http_limits l = {
            .max_line = 10, .max_headers = 1, .max_head = 100};
        CHECK_EQ_INT(chorus_http_parse_response(s, strlen(s), &l, &res),
                     CHORUS_HTTP_TOO_LARGE);
    }
}

static void test_find_count(void)
{
    chorus_http_request req;
    const char *s = "GET / HTTP/1.1\r\n"
                    "host: a\r\n"
                    "Sec-WebSocket-Key: k1\r\n"
                    "SEC-WEBSOCKET-KEY: k2\r\n"
                    "Hostname: x\r\n\r\n";
    const chorus_http_header *h;

    CHECK(req_s(s, &req) > 0);
    h = chorus_http_find_header(req.headers, req.num_headers, "HOST");
    CHECK(h && str_eq(h->value, h->value_len, "a"));
    h = chorus_http_find_header(req.headers, req.num_headers,
                                "sec-websocket-key");
    CHECK(h && str_eq(h->value, h->value_len, "k1"));
    CHECK(chorus_http_find_header(req.headers, req.num_headers, "Hos") == NULL);
    CHECK(chorus_http_find_header(req.headers, req.num_headers, "Upgrade") ==
          NULL);
    CHECK_EQ_INT(chorus_http_count_header(req.headers, req.num_headers,
                                          "Sec-Websocket-Key"),
                 2);
    CHECK_EQ_INT(chorus_http_count_header(req.headers, req.num_headers, "Host"),
                 1);
    CHECK_EQ_INT(chorus_http_count_header(req.headers, req.num_headers, "X"),
                 0);
    CHECK_EQ_INT(chorus_http_count_header(req.headers, 0, "Host"), 0);
}

static int tok(const char *v, const char *t)
{
    return chorus_http_has_token(v, strlen(v), t);
}

static void test_has_token(void)
{
    CHECK(tok("Upgrade", "upgrade"));
    CHECK(tok("keep-alive, Upgrade", "upgrade"));
    CHECK(tok("keep-alive,Upgrade", "upgrade"));
    CHECK(tok("keep-alive ,\tUPGRADE\t , close", "upgrade"));
    CHECK(tok("upgrade,keep-alive", "Upgrade"));
    CHECK(tok(",,upgrade,,", "upgrade"));
    CHECK(tok("  upgrade  ", "upgrade"));
    CHECK(tok("websocket", "WebSocket"));
    CHECK(!tok("", "upgrade"));
    CHECK(!tok(",", "upgrade"));
    CHECK(!tok("keep-alive", "upgrade"));
    CHECK(!tok("upgraded", "upgrade"));
    CHECK(!tok("xupgrade", "upgrade"));
    CHECK(!tok("upgrade2, keep-alive", "upgrade"));
    CHECK(!tok("up grade", "upgrade"));
    CHECK(!tok("keep-alive upgrade", "upgrade"));
    CHECK(!tok("upgrade", ""));
    /* the value is bounded by len, not by a NUL */
    CHECK(!chorus_http_has_token("upgrade", 6, "upgrade"));
    CHECK(chorus_http_has_token("upgrade, x", 7, "upgrade"));
}

static void test_split_target(void)
{
    const char *p, *q;
    size_t pl, ql;
    const char *t = "/ws?topic=a&b=2";

    chorus_http_split_target(t, strlen(t), &p, &pl, &q, &ql);
    CHECK(str_eq(p, pl, "/ws"));
    CHECK(q && str_eq(q, ql, "topic=a&b=2"));
    chorus_http_split_target("/ws", 3, &p, &pl, &q, &ql);
    CHECK(str_eq(p, pl, "/ws"));
    CHECK(q == NULL);
    CHECK_EQ_INT(ql, 0);
    chorus_http_split_target("/ws?", 4, &p, &pl, &q, &ql);
    CHECK(str_eq(p, pl, "/ws"));
    CHECK(q != NULL);
    CHECK_EQ_INT(ql, 0);
    chorus_http_split_target("/a?b?c", 6, &p, &pl, &q, &ql);
    CHECK(str_eq(p, pl, "/a"));
    CHECK(q && str_eq(q, ql, "b?c"));
    /* bounded by len */
    chorus_http_split_target("/a?b", 2, &p, &pl, &q, &ql);
    CHECK(str_eq(p, pl, "/a"));
    CHECK(q == NULL);
}

static int qp(const char *query, const char *name, char *out, size_t size)
{
    return chorus_http_query_param(query, strlen(query), name, out, size);
}

static void test_query_param(void)
{
    char out[16];

    CHECK_EQ_INT(qp("topic=news&token=abc", "token", out, sizeof out), 3);
    CHECK_EQ_STR(out, "abc");
    CHECK_EQ_INT(qp("topic=news&token=abc", "topic", out, sizeof out), 4);
    CHECK_EQ_STR(out, "news");
    CHECK_EQ_INT(qp("topic=news", "token", out, sizeof out), -1);
    CHECK_EQ_INT(qp("", "token", out, sizeof out), -1);
    CHECK_EQ_INT(chorus_http_query_param(NULL, 0, "t", out, sizeof out), -1);
    /* no prefix matches */
    CHECK_EQ_INT(qp("tokens=1&tok=2", "token", out, sizeof out), -1);
    /* decoding, '+' as space */
    CHECK_EQ_INT(qp("t=a%2Fb+c%2bd", "t", out, sizeof out), 7);
    CHECK_EQ_STR(out, "a/b c+d");
    CHECK_EQ_INT(qp("t=%c3%A9", "t", out, sizeof out), 2);
    CHECK_EQ_STR(out, "\xc3\xa9");
    /* '=' inside the value is kept */
    CHECK_EQ_INT(qp("t=a=b", "t", out, sizeof out), 3);
    CHECK_EQ_STR(out, "a=b");
    /* empty and valueless parameters */
    CHECK_EQ_INT(qp("t=&u=1", "t", out, sizeof out), 0);
    CHECK_EQ_STR(out, "");
    CHECK_EQ_INT(qp("a&t&u=1", "t", out, sizeof out), 0);
    CHECK_EQ_INT(qp("&&t=1&&", "t", out, sizeof out), 1);
    CHECK_EQ_INT(qp("=x&t=1", "t", out, sizeof out), 1);
    /* first occurrence wins */
    CHECK_EQ_INT(qp("t=1&t=22", "t", out, sizeof out), 1);
    CHECK_EQ_STR(out, "1");
    /* names are decoded before comparing */
    CHECK_EQ_INT(qp("%74oken=x", "token", out, sizeof out), 1);
    CHECK_EQ_INT(qp("my+key=x", "my key", out, sizeof out), 1);
    /* malformed: bad escape, encoded NUL, too long */
    CHECK_EQ_INT(qp("t=%zz", "t", out, sizeof out), -2);
    CHECK_EQ_INT(qp("t=%4", "t", out, sizeof out), -2);
    CHECK_EQ_INT(qp("t=%", "t", out, sizeof out), -2);
    CHECK_EQ_INT(qp("t=a%00b", "t", out, sizeof out), -2);
    CHECK_EQ_INT(qp("t=0123456789abcdef", "t", out, sizeof out), -2);
    CHECK_EQ_INT(qp("t=0123456789abcde", "t", out, sizeof out), 15);
    CHECK_EQ_INT(qp("t=1", "t", out, 0), -2);
    /* a malformed name is a malformed query; a bad value elsewhere is not
     * looked at */
    CHECK_EQ_INT(qp("%zz=1&t=2", "t", out, sizeof out), -2);
    CHECK_EQ_INT(qp("u=%zz&t=2", "t", out, sizeof out), 1);
    /* bounded by len */
    CHECK_EQ_INT(chorus_http_query_param("t=12345", 4, "t", out, sizeof out),
                 2);
    CHECK_EQ_STR(out, "12");
}

static void test_percent_decode(void)
{
    char out[8];

    CHECK_EQ_INT(chorus_http_percent_decode("a%41+%7e", 8, out, sizeof out), 4);
    CHECK_EQ_STR(out, "aA+~");
    CHECK_EQ_INT(chorus_http_percent_decode("", 0, out, sizeof out), 0);
    CHECK_EQ_STR(out, "");
    CHECK_EQ_INT(chorus_http_percent_decode("%ff", 3, out, sizeof out), 1);
    CHECK_EQ_INT((unsigned char)out[0], 0xff);
    CHECK_EQ_INT(chorus_http_percent_decode("%00", 3, out, sizeof out), -1);
    CHECK_EQ_INT(chorus_http_percent_decode("a\0b", 3, out, sizeof out), -1);
    CHECK_EQ_INT(chorus_http_percent_decode("%g0", 3, out, sizeof out), -1);
    CHECK_EQ_INT(chorus_http_percent_decode("%0g", 3, out, sizeof out), -1);
    CHECK_EQ_INT(chorus_http_percent_decode("%0", 2, out, sizeof out), -1);
    CHECK_EQ_INT(chorus_http_percent_decode("ab%", 3, out, sizeof out), -1);
    /* "%4" then "1" beyond len: the escape is cut off */
    CHECK_EQ_INT(chorus_http_percent_decode("%41", 2, out, sizeof out), -1);
    /* overflow: 7 bytes fit in 8, 8 do not */
    CHECK_EQ_INT(chorus_http_percent_decode("1234567", 7, out, sizeof out), 7);
    CHECK_EQ_INT(chorus_http_percent_decode("12345678", 8, out, sizeof out),
                 -1);
    CHECK_EQ_INT(chorus_http_percent_decode("%31%32%33%34%35%36%37", 21, out,
                                            sizeof out),
                 7);
    CHECK_EQ_STR(out, "1234567");
    CHECK_EQ_INT(chorus_http_percent_decode("a", 1, out, 1), -1);
    CHECK_EQ_INT(chorus_http_percent_decode("", 0, out, 1), 0);
    CHECK_EQ_INT(chorus_http_percent_decode("", 0, out, 0), -1);
}

int main(void)
{
    test_valid_request();
    test_line_ends();
    test_bad_request_line();
    test_bad_headers();
    test_incremental();
    test_pipelined();
    test_limit_line();
    test_limit_headers();
    test_limit_head();
    test_response();
    test_find_count();
    test_has_token();
    test_split_target();
    test_query_param();
    test_percent_decode();
    return check_report("test_http_parse");
}
