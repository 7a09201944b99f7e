/* RFC 6455 section 4 opening handshake (see chorus/handshake.h). Builds and
 * checks texts only; OpenSSL supplies SHA-1, base64 and random bytes. */
#include "chorus/handshake.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* On an OpenSSL failure (out of memory) out is left empty, which matches
 * no client's expectation, so the handshake fails closed. */
void chorus_ws_accept_key(const char *key, size_t key_len,
                          char out[CHORUS_WS_ACCEPT_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) &&
             EVP_DigestUpdate(ctx, key, key_len) &&
             EVP_DigestUpdate(ctx, ws_guid, sizeof ws_guid - 1) &&
             EVP_DigestFinal_ex(ctx, md, &md_len) && md_len == 20;

    EVP_MD_CTX_free(ctx);
    out[0] = '\0';
    if (ok)
        EVP_EncodeBlock((unsigned char *)out, md, 20);
}

/* Sets *why and returns status: keeps each refusal on one line. */
static int fail(const char **why, const char *msg, int status)
{
    *why = msg;
    return status;
}

static const chorus_http_header *find(const chorus_http_request *req,
                                      const char *name)
{
    return chorus_http_find_header(req->headers, req->num_headers, name);
}

static size_t count(const chorus_http_request *req, const char *name)
{
    return chorus_http_count_header(req->headers, req->num_headers, name);
}

static int is_base64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* A Sec-WebSocket-Key is base64 of exactly 16 bytes: 22 alphabet
 * characters and "==". */
static int key_valid(const char *key, size_t len)
{
    unsigned char raw[18];

    if (len != 24 || key[22] != '=' || key[23] != '=')
        return 0;
    for (size_t i = 0; i < 22; i++)
        if (!is_base64_char((unsigned char)key[i]))
            return 0;
    /* EVP_DecodeBlock ignores padding in its count: 24 chars -> 18. */
    return EVP_DecodeBlock(raw, (const unsigned char *)key, 24) == 18;
}

int chorus_ws_is_upgrade(const chorus_http_request *req)
{
    for (size_t i = 0; i < req->num_headers; i++) {
        const chorus_http_header *h = &req->headers[i];
        if (chorus_http_count_header(h, 1, "Upgrade") == 1 &&
            chorus_http_has_token(h->value, h->value_len, "websocket"))
            return 1;
    }
    return 0;
}

/* Checks in the order of RFC 6455 section 4.2.1; all refusals are 400
 * except an absent or unsupported version (426). A duplicated
 * Sec-WebSocket-Version is a malformed request (400), not a version we
 * might support. Several Connection headers are one list (RFC 7230 3.2.2),
 * so any of them may carry "upgrade". */
int chorus_ws_check_upgrade(const chorus_http_request *req, const char **key,
                            size_t *key_len, const char **why)
{
    const chorus_http_header *h;
    int has_upgrade = 0;

    *key = NULL;
    *key_len = 0;
    if (req->method_len != 3 || memcmp(req->method, "GET", 3) != 0)
        return fail(why, "upgrade requires GET", 400);
    if (req->minor_version != 1)
        return fail(why, "upgrade requires HTTP/1.1", 400);
    if (count(req, "Host") != 1)
        return fail(why, "exactly one Host header required", 400);
    h = find(req, "Upgrade");
    if (count(req, "Upgrade") != 1 ||
        !chorus_http_has_token(h->value, h->value_len, "websocket"))
        return fail(why, "Upgrade: websocket required", 400);
    for (size_t i = 0; i < req->num_headers; i++) {
        const chorus_http_header *c = &req->headers[i];
        if (chorus_http_count_header(c, 1, "Connection") == 1 &&
            chorus_http_has_token(c->value, c->value_len, "upgrade"))
            has_upgrade = 1;
    }
    if (!has_upgrade)
        return fail(why, "Connection: Upgrade required", 400);
    if (count(req, "Sec-WebSocket-Version") > 1)
        return fail(why, "duplicate Sec-WebSocket-Version", 400);
    h = find(req, "Sec-WebSocket-Version");
    if (!h || h->value_len != 2 || memcmp(h->value, "13", 2) != 0)
        return fail(why, "unsupported Sec-WebSocket-Version", 426);
    h = find(req, "Sec-WebSocket-Key");
    if (count(req, "Sec-WebSocket-Key") != 1 ||
        !key_valid(h->value, h->value_len))
        return fail(why, "bad Sec-WebSocket-Key", 400);
    *key = h->value;
    *key_len = h->value_len;
    *why = "ok";
    return 0;
}

int chorus_ws_accept_response(const char *key, size_t key_len,
                              const char *extra_headers, char *out,
                              size_t out_size)
{
    char accept[CHORUS_WS_ACCEPT_LEN + 1];
    int n;

    chorus_ws_accept_key(key, key_len, accept);
    if (accept[0] == '\0')
        return -1;
    n = snprintf(out, out_size,
                 "HTTP/1.1 101 Switching Protocols\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: %s\r\n"
                 "%s\r\n",
                 accept, extra_headers ? extra_headers : "");
    return (n < 0 || (size_t)n >= out_size) ? -1 : n;
}

int chorus_ws_client_key(char key_out[25])
{
    unsigned char raw[16];

    if (RAND_bytes(raw, sizeof raw) != 1)
        return -1;
    EVP_EncodeBlock((unsigned char *)key_out, raw, sizeof raw);
    return 0;
}

/* 1 if s holds only visible ASCII (no SP, CR, LF or other CTL), so that
 * it cannot break the request line or inject a header. */
static int is_visible(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

/* host is written as given: an IPv6 literal must already be bracketed
 * ("[::1]"), and a non-default port appended ("[::1]:8080"). */
int chorus_ws_client_request(const char *host, const char *path,
                             const char *key, const char *extra_headers,
                             char *out, size_t out_size)
{
    int n;

    if (!is_visible(host) || !is_visible(path) || path[0] != '/' ||
        !is_visible(key))
        return -1;
    n = snprintf(out, out_size,
                 "GET %s HTTP/1.1\r\n"
                 "Host: %s\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n"
                 "%s\r\n",
                 path, host, key, extra_headers ? extra_headers : "");
    return (n < 0 || (size_t)n >= out_size) ? -1 : n;
}

/* RFC 6455 section 4.1, client side. We never offer an extension, so a
 * server that names one fails the handshake. */
int chorus_ws_check_accept(const chorus_http_response *res, const char *key,
                           const char **why)
{
    const chorus_http_header *h, *hs = res->headers;
    size_t n = res->num_headers;
    char expect[CHORUS_WS_ACCEPT_LEN + 1];
    int has_upgrade = 0;

    if (res->status != 101 || res->minor_version != 1)
        return fail(why, "status is not HTTP/1.1 101", -1);
    h = chorus_http_find_header(hs, n, "Upgrade");
    if (chorus_http_count_header(hs, n, "Upgrade") != 1 ||
        !chorus_http_has_token(h->value, h->value_len, "websocket"))
        return fail(why, "Upgrade: websocket missing", -1);
    for (size_t i = 0; i < n; i++)
        if (chorus_http_count_header(&hs[i], 1, "Connection") == 1 &&
            chorus_http_has_token(hs[i].value, hs[i].value_len, "upgrade"))
            has_upgrade = 1;
    if (!has_upgrade)
        return fail(why, "Connection: Upgrade missing", -1);
    if (chorus_http_count_header(hs, n, "Sec-WebSocket-Extensions") != 0)
        return fail(why, "server chose an extension we did not offer", -1);
    chorus_ws_accept_key(key, strlen(key), expect);
    h = chorus_http_find_header(hs, n, "Sec-WebSocket-Accept");
    if (expect[0] == '\0' ||
        chorus_http_count_header(hs, n, "Sec-WebSocket-Accept") != 1 ||
        h->value_len != CHORUS_WS_ACCEPT_LEN ||
        memcmp(h->value, expect, CHORUS_WS_ACCEPT_LEN) != 0)
        return fail(why, "Sec-WebSocket-Accept mismatch", -1);
    *why = "ok";
    return 0;
}
