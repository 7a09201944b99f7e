/* Unit tests for lib/handshake.c: RFC 6455 vector, every 400/426 cause,
 * both sides of the handshake end to end through the parser. */
#include "check.h"

#include "chorus/handshake.h"

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static const chorus_http_limits lim = {
    .max_line = 1024, .max_headers = 32, .max_head = 8192};

/* Parses a request built from the request line and header lines. */
static int parse(const char *head, chorus_http_request *req)
{
    int n = chorus_http_parse_request(head, strlen(head), &lim, req);
    CHECK_EQ_INT(n, strlen(head));
    return n;
}

/* Status chorus_ws_check_upgrade gives a request of the given head. */
static int status_of(const char *head, const char **why)
{
    chorus_http_request req;
    const char *key;
    size_t key_len;

    if (parse(head, &req) <= 0)
        return -1;
    return chorus_ws_check_upgrade(&req, &key, &key_len, why);
}

#define LINE "GET /ws HTTP/1.1\r\n"
#define HOST "Host: example.com\r\n"
#define UPG "Upgrade: websocket\r\n"
#define CONN "Connection: Upgrade\r\n"
#define VER "Sec-WebSocket-Version: 13\r\n"
#define SKEY "Sec-WebSocket-Key: " KEY "\r\n"

static void test_accept_key(void)
{
    char out[CHORUS_WS_ACCEPT_LEN + 1];

    chorus_ws_accept_key(KEY, strlen(KEY), out);
    CHECK_EQ_STR(out, ACCEPT);
    CHECK_EQ_INT(strlen(out), CHORUS_WS_ACCEPT_LEN);
    /* only key_len bytes are hashed */
    chorus_ws_accept_key(KEY "garbage", strlen(KEY), out);
    CHECK_EQ_STR(out, ACCEPT);
    /* the key is hashed as sent, not decoded */
    chorus_ws_accept_key("x3JJHMbDL1EzLkh9GBhXDw==", 24, out);
    CHECK_EQ_STR(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

static void test_valid_upgrade(void)
{
    chorus_http_request req;
    const char *key, *why = NULL;
    size_t key_len;

    parse(LINE HOST UPG CONN VER SKEY "\r\n", &req);
    CHECK_EQ_INT(chorus_ws_check_upgrade(&req, &key, &key_len, &why), 0);
    CHECK(key_len == 24 && memcmp(key, KEY, 24) == 0);
    CHECK(why != NULL);
    CHECK_EQ_INT(chorus_ws_is_upgrade(&req), 1);

    /* header names and token values in any case, token lists, spacing */
    CHECK_EQ_INT(status_of(LINE "host: h\r\n"
                                "UPGRADE: WebSocket\r\n"
                                "connection: keep-alive, Upgrade\r\n"
                                "sec-websocket-version:13\r\n"
                                "sec-websocket-key:   " KEY "  \r\n\r\n",
                           &why),
                 0);
    CHECK_EQ_INT(status_of(LINE HOST
                           "Upgrade: h2c, websocket\r\n"
                           "Connection: keep-alive,upgrade\r\n" VER SKEY "\r\n",
                           &why),
                 0);
    /* Connection split over two headers is one list */
    CHECK_EQ_INT(status_of(LINE HOST UPG "Connection: keep-alive\r\n"
                                         "Connection: Upgrade\r\n" VER SKEY
                                         "\r\n",
                           &why),
                 0);
    /* any valid 16-byte key, in any order of headers, with a query */
    CHECK_EQ_INT(status_of("GET /ws?topic=a HTTP/1.1\r\n" SKEY VER CONN UPG HOST
                           "Origin: http://x\r\n\r\n",
                           &why),
                 0);
    CHECK_EQ_INT(status_of(LINE HOST UPG CONN VER
                           "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"
                           "\r\n",
                           &why),
                 0);
    CHECK_EQ_INT(status_of(LINE HOST UPG CONN VER
                           "Sec-WebSocket-Key: ++++//////++++//////+w==\r\n"
                           "\r\n",
                           &why),
                 0);
}

struct bad_case {
    const char *head;
    int status;
};

static void test_refusals(void)
{
    static const struct bad_case cases[] = {
        /* method */
        {"POST /ws HTTP/1.1\r\n" HOST UPG CONN VER SKEY "\r\n", 400},
        {"get /ws HTTP/1.1\r\n" HOST UPG CONN VER SKEY "\r\n", 400},
        {"HEAD /ws HTTP/1.1\r\n" HOST UPG CONN VER SKEY "\r\n", 400},
        /* version */
        {"GET /ws HTTP/1.0\r\n" HOST UPG CONN VER SKEY "\r\n", 400},
        /* Host */
        {LINE UPG CONN VER SKEY "\r\n", 400},
        {LINE HOST HOST UPG CONN VER SKEY "\r\n", 400},
        /* Upgrade */
        {LINE HOST CONN VER SKEY "\r\n", 400},
        {LINE HOST "Upgrade: h2c\r\n" CONN VER SKEY "\r\n", 400},
        {LINE HOST "Upgrade: websockets\r\n" CONN VER SKEY "\r\n", 400},
        {LINE HOST "Upgrade: web socket\r\n" CONN VER SKEY "\r\n", 400},
        {LINE HOST "Upgrade:\r\n" CONN VER SKEY "\r\n", 400},
        {LINE HOST UPG UPG CONN VER SKEY "\r\n", 400},
        {LINE HOST UPG "Upgrade: h2c\r\n" CONN VER SKEY "\r\n", 400},
        /* Connection */
        {LINE HOST UPG VER SKEY "\r\n", 400},
        {LINE HOST UPG "Connection: keep-alive\r\n" VER SKEY "\r\n", 400},
        {LINE HOST UPG "Connection: upgraded\r\n" VER SKEY "\r\n", 400},
        {LINE HOST UPG "Connection: keep-alive upgrade\r\n" VER SKEY "\r\n",
         400},
        {LINE HOST UPG "Connection:\r\n" VER SKEY "\r\n", 400},
        /* Sec-WebSocket-Version */
        {LINE HOST UPG CONN SKEY "\r\n", 426},
        {LINE HOST UPG CONN "Sec-WebSocket-Version: 8\r\n" SKEY "\r\n", 426},
        {LINE HOST UPG CONN "Sec-WebSocket-Version: 12\r\n" SKEY "\r\n", 426},
        {LINE HOST UPG CONN "Sec-WebSocket-Version: 013\r\n" SKEY "\r\n", 426},
        {LINE HOST UPG CONN "Sec-WebSocket-Version: 13, 8\r\n" SKEY "\r\n",
         426},
        {LINE HOST UPG CONN "Sec-WebSocket-Version:\r\n" SKEY "\r\n", 426},
        {LINE HOST UPG CONN VER VER SKEY "\r\n", 400},
        /* Sec-WebSocket-Key */
        {LINE HOST UPG CONN VER "\r\n", 400},
        {LINE HOST UPG CONN VER SKEY SKEY "\r\n", 400},
        {LINE HOST UPG CONN VER "Sec-WebSocket-Key:\r\n\r\n", 400},
        /* 15 bytes */
        {LINE HOST UPG CONN VER "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\n"
                                "\r\n",
         400},
        /* 17 bytes */
        {LINE HOST UPG CONN VER
         "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
         400},
        /* 16 bytes, unpadded */
        {LINE HOST UPG CONN VER
         "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA\r\n\r\n",
         400},
        /* 18 bytes */
        {LINE HOST UPG CONN VER
         "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAA\r\n\r\n",
         400},
        /* bad alphabet, padding in the middle, base64url, space */
        {LINE HOST UPG CONN VER
         "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAA*==\r\n\r\n",
         400},
        {LINE HOST UPG CONN VER
         "Sec-WebSocket-Key: AAAAAAAAAA=AAAAAAAAAAA==\r\n\r\n",
         400},
        {LINE HOST UPG CONN VER
         "Sec-WebSocket-Key: AAAAAAAAAA-AAAAAAAAAA_==\r\n\r\n",
         400},
        {LINE HOST UPG CONN VER
         "Sec-WebSocket-Key: AAAAAAAAAA AAAAAAAAAAA==\r\n\r\n",
         400},
        {LINE HOST UPG CONN VER
         "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA===\r\n\r\n",
         400},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *why = NULL;
        int st = status_of(cases[i].head, &why);
        if (st != cases[i].status)
            fprintf(stderr, "refusal case %zu: got %d (%s)\n", i, st,
                    why ? why : "-");
        CHECK_EQ_INT(st, cases[i].status);
        CHECK(why != NULL && why[0] != '\0');
    }
}

static void test_is_upgrade(void)
{
    chorus_http_request req;

    parse("GET / HTTP/1.1\r\n" HOST "\r\n", &req);
    CHECK_EQ_INT(chorus_ws_is_upgrade(&req), 0);
    parse("GET / HTTP/1.1\r\n" HOST "Upgrade: h2c\r\n\r\n", &req);
    CHECK_EQ_INT(chorus_ws_is_upgrade(&req), 0);
    parse("POST / HTTP/1.1\r\nupgrade: WEBSOCKET\r\n\r\n", &req);
    CHECK_EQ_INT(chorus_ws_is_upgrade(&req), 1);
    parse("GET / HTTP/1.1\r\nUpgrade: h2c\r\nUpgrade: websocket\r\n\r\n", &req);
    CHECK_EQ_INT(chorus_ws_is_upgrade(&req), 1);
    /* a broken upgrade is still an upgrade: the caller answers 400 */
    parse("GET / HTTP/1.0\r\nUpgrade: websocket\r\n\r\n", &req);
    CHECK_EQ_INT(chorus_ws_is_upgrade(&req), 1);
}

static void test_accept_response(void)
{
    char out[512];
    int n;

    n = chorus_ws_accept_response(KEY, 24, NULL, out, sizeof out);
    CHECK_EQ_STR(out, "HTTP/1.1 101 Switching Protocols\r\n"
                      "Upgrade: websocket\r\n"
                      "Connection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: " ACCEPT "\r\n"
                      "\r\n");
    CHECK_EQ_INT(n, strlen(out));
    n = chorus_ws_accept_response(KEY, 24, "X-A: 1\r\nX-B: 2\r\n", out,
                                  sizeof out);
    CHECK_EQ_STR(out, "HTTP/1.1 101 Switching Protocols\r\n"
                      "Upgrade: websocket\r\n"
                      "Connection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: " ACCEPT "\r\n"
                      "X-A: 1\r\nX-B: 2\r\n"
                      "\r\n");
    CHECK_EQ_INT(n, strlen(out));
    /* exact fit needs room for the NUL */
    n = chorus_ws_accept_response(KEY, 24, NULL, out, sizeof out);
    CHECK_EQ_INT(chorus_ws_accept_response(KEY, 24, NULL, out, (size_t)n + 1),
                 n);
    CHECK_EQ_INT(chorus_ws_accept_response(KEY, 24, NULL, out, (size_t)n), -1);
    CHECK_EQ_INT(chorus_ws_accept_response(KEY, 24, NULL, out, 0), -1);
}

static void test_client_key(void)
{
    char k1[25], k2[25];
    memset(k1, '!', sizeof k1);
    CHECK_EQ_INT(chorus_ws_client_key(k1), 0);
    CHECK_EQ_INT(chorus_ws_client_key(k2), 0);
    CHECK_EQ_INT(strlen(k1), 24);
    CHECK(k1[22] == '=' && k1[23] == '=');
    CHECK(strcmp(k1, k2) != 0);
}

/* The client's request passes the server's checks; the server's response
 * passes the client's. */
static void test_round_trip(void)
{
    char key[25], reqbuf[1024], resbuf[512];
    chorus_http_request req;
    chorus_http_response res;
    const char *skey, *why = NULL;
    size_t skey_len;
    const chorus_http_header *h;
    int n;

    CHECK_EQ_INT(chorus_ws_client_key(key), 0);
    n = chorus_ws_client_request("[::1]:8080", "/ws?topic=a%2Fb", key,
                                 "Authorization: Bearer t\r\n", reqbuf,
                                 sizeof reqbuf);
    CHECK(n > 0);
    CHECK_EQ_INT(chorus_http_parse_request(reqbuf, (size_t)n, &lim, &req), n);
    CHECK_EQ_INT(chorus_ws_check_upgrade(&req, &skey, &skey_len, &why), 0);
    CHECK(skey_len == 24 && memcmp(skey, key, 24) == 0);
    CHECK(req.target_len == 15 &&
          memcmp(req.target, "/ws?topic=a%2Fb", 15) == 0);
    h = chorus_http_find_header(req.headers, req.num_headers, "Host");
    CHECK(h && h->value_len == 10 && memcmp(h->value, "[::1]:8080", 10) == 0);
    CHECK(chorus_http_find_header(req.headers, req.num_headers,
                                  "Authorization") != NULL);
    CHECK_EQ_INT(n, strlen(reqbuf));
    CHECK(n >= 4 && memcmp(reqbuf + n - 4, "\r\n\r\n", 4) == 0);

    n = chorus_ws_accept_response(skey, skey_len, NULL, resbuf, sizeof resbuf);
    CHECK(n > 0);
    CHECK_EQ_INT(chorus_http_parse_response(resbuf, (size_t)n, &lim, &res), n);
    CHECK_EQ_INT(chorus_ws_check_accept(&res, key, &why), 0);
    /* a response for another key is refused */
    CHECK_EQ_INT(chorus_ws_check_accept(&res, KEY, &why), -1);
}

static void test_client_request(void)
{
    char out[512];
    int n;

    n = chorus_ws_client_request("example.com", "/chat", KEY, NULL, out,
                                 sizeof out);
    CHECK_EQ_STR(out, "GET /chat HTTP/1.1\r\n"
                      "Host: example.com\r\n"
                      "Upgrade: websocket\r\n"
                      "Connection: Upgrade\r\n"
                      "Sec-WebSocket-Key: " KEY "\r\n"
                      "Sec-WebSocket-Version: 13\r\n"
                      "\r\n");
    CHECK_EQ_INT(n, strlen(out));
    CHECK_EQ_INT(chorus_ws_client_request("example.com", "/chat", KEY, NULL,
                                          out, (size_t)n),
                 -1);
    CHECK_EQ_INT(chorus_ws_client_request("example.com", "/chat", KEY, NULL,
                                          out, (size_t)n + 1),
                 n);
    /* no header injection or broken request line */
    CHECK_EQ_INT(
        chorus_ws_client_request("h\r\nX: y", "/", KEY, NULL, out, sizeof out),
        -1);
    CHECK_EQ_INT(
        chorus_ws_client_request("h", "/a b", KEY, NULL, out, sizeof out), -1);
    CHECK_EQ_INT(
        chorus_ws_client_request("h", "/a\n", KEY, NULL, out, sizeof out), -1);
    CHECK_EQ_INT(
        chorus_ws_client_request("h", "chat", KEY, NULL, out, sizeof out), -1);
    CHECK_EQ_INT(chorus_ws_client_request("", "/", KEY, NULL, out, sizeof out),
                 -1);
}

static int accept_of(const char *head, const char **why)
{
    chorus_http_response res;
    int n = chorus_http_parse_response(head, strlen(head), &lim, &res);

    CHECK_EQ_INT(n, strlen(head));
    if (n <= 0)
        return -2;
    return chorus_ws_check_accept(&res, KEY, why);
}

#define S101 "HTTP/1.1 101 Switching Protocols\r\n"
#define RACC "Sec-WebSocket-Accept: " ACCEPT "\r\n"

static void test_check_accept(void)
{
    const char *why = NULL;

    CHECK_EQ_INT(accept_of(S101 UPG CONN RACC "\r\n", &why), 0);
    CHECK_EQ_INT(accept_of("HTTP/1.1 101 OK\r\nupgrade: WebSocket\r\n"
                           "connection: keep-alive, UPGRADE\r\n"
                           "sec-websocket-accept: " ACCEPT "\r\n\r\n",
                           &why),
                 0);
    why = NULL;
    CHECK_EQ_INT(accept_of("HTTP/1.1 200 OK\r\n" UPG CONN RACC "\r\n", &why),
                 -1);
    CHECK(why != NULL);
    CHECK_EQ_INT(accept_of("HTTP/1.0 101 OK\r\n" UPG CONN RACC "\r\n", &why),
                 -1);
    CHECK_EQ_INT(accept_of(S101 CONN RACC "\r\n", &why), -1);
    CHECK_EQ_INT(accept_of(S101 "Upgrade: h2c\r\n" CONN RACC "\r\n", &why), -1);
    CHECK_EQ_INT(accept_of(S101 UPG RACC "\r\n", &why), -1);
    CHECK_EQ_INT(accept_of(S101 UPG "Connection: close\r\n" RACC "\r\n", &why),
                 -1);
    CHECK_EQ_INT(accept_of(S101 UPG CONN "\r\n", &why), -1);
    CHECK_EQ_INT(accept_of(S101 UPG CONN RACC RACC "\r\n", &why), -1);
    CHECK_EQ_INT(accept_of(S101 UPG CONN "Sec-WebSocket-Accept: "
                                         "s3pPLMBiTxaQ9kYGzzhZRbK+xOo\r\n\r\n",
                           &why),
                 -1);
    CHECK_EQ_INT(accept_of(S101 UPG CONN "Sec-WebSocket-Accept: "
                                         "S3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
                           &why),
                 -1);
    CHECK_EQ_INT(accept_of(S101 UPG CONN RACC
                           "Sec-WebSocket-Extensions: permessage-deflate\r\n"
                           "\r\n",
                           &why),
                 -1);
}

int main(void)
{
    test_accept_key();
    test_valid_upgrade();
    test_refusals();
    test_is_upgrade();
    test_accept_response();
    test_client_key();
    test_client_request();
    test_round_trip();
    test_check_accept();
    return check_report("test_handshake");
}
