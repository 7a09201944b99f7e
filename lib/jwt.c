/* JSON Web Tokens, HS256 only, on OpenSSL's HMAC and jansson.
 *
 * Written here rather than on libjwt 1.10 (see docs/AUTH.md): every rule
 * below is checked in this file, in this order: exactly three segments of
 * strict base64url (alphabet A-Z a-z 0-9 - _, no padding, canonical
 * trailing bits), a header object with "alg":"HS256" (and "typ":"JWT" if
 * present, no "crit"), the signature compared with CRYPTO_memcmp, then a
 * claims object with a numeric "exp" and an optional numeric "nbf". */
#include "chorus/jwt.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define SIG_LEN 32     /* HMAC-SHA256 */
#define SIG_B64_LEN 43 /* base64url of 32 bytes, unpadded */

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Length of the unpadded base64url text of n bytes. */
static size_t b64url_len(size_t n)
{
    return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

/* Writes b64url_len(n) characters and a NUL to out. */
static void b64url_encode(const unsigned char *in, size_t n, char *out)
{
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v =
            (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *out++ = b64url_alphabet[v >> 18];
        *out++ = b64url_alphabet[(v >> 12) & 63];
        *out++ = b64url_alphabet[(v >> 6) & 63];
        *out++ = b64url_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *out++ = b64url_alphabet[v >> 18];
        *out++ = b64url_alphabet[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *out++ = b64url_alphabet[v >> 18];
        *out++ = b64url_alphabet[(v >> 12) & 63];
        *out++ = b64url_alphabet[(v >> 6) & 63];
    }
    *out = '\0';
}

/* Strict decoder: refuses any character outside the alphabet (padding
 * included), a length of 1 mod 4, and non-zero unused trailing bits, so
 * that each byte string has exactly one accepted encoding. out must hold
 * len * 3 / 4 bytes. Returns the decoded length, or -1. */
static long b64url_decode(const char *in, size_t len, unsigned char *out)
{
    if (len % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) /* leftover bits must be zero */
        return -1;
    return (long)o;
}

/* Decodes one segment and parses it as a JSON object (duplicate keys
 * refused). NULL if either step fails. */
static json_t *decode_object(const char *seg, size_t len)
{
    if (len == 0)
        return NULL;
    unsigned char *buf = malloc(len * 3 / 4 + 1);
    if (!buf)
        return NULL;
    long n = b64url_decode(seg, len, buf);
    json_t *obj = NULL;
    if (n > 0)
        obj = json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES,
                         NULL);
    free(buf);
    if (obj && !json_is_object(obj)) {
        json_decref(obj);
        obj = NULL;
    }
    return obj;
}

static int hs256(const char *secret, size_t secret_len, const char *data,
                 size_t len, unsigned char mac[SIG_LEN])
{
    unsigned int mac_len = 0;
    if (secret_len > INT_MAX)
        return -1;
    if (!HMAC(EVP_sha256(), secret, (int)secret_len,
              (const unsigned char *)data, len, mac, &mac_len) ||
        mac_len != SIG_LEN)
        return -1;
    return 0;
}

static const char header_json[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

char *chorus_jwt_sign(const char *secret, size_t secret_len,
                      const json_t *claims)
{
    if (!secret || secret_len == 0 || !json_is_object(claims))
        return NULL;
    char *payload = json_dumps(claims, JSON_COMPACT);
    if (!payload)
        return NULL;
    size_t hlen = sizeof header_json - 1, plen = strlen(payload);
    size_t hb = b64url_len(hlen), pb = b64url_len(plen);
    size_t total = hb + 1 + pb + 1 + SIG_B64_LEN;
    char *tok = malloc(total + 1);
    unsigned char mac[SIG_LEN];
    if (!tok)
        goto fail;
    b64url_encode((const unsigned char *)header_json, hlen, tok);
    tok[hb] = '.';
    b64url_encode((const unsigned char *)payload, plen, tok + hb + 1);
    tok[hb + 1 + pb] = '.';
    if (hs256(secret, secret_len, tok, hb + 1 + pb, mac) < 0)
        goto fail;
    b64url_encode(mac, SIG_LEN, tok + hb + 1 + pb + 1);
    OPENSSL_cleanse(mac, sizeof mac);
    free(payload);
    return tok;
fail:
    free(tok);
    free(payload);
    return NULL;
}

/* Header rules: "alg" exactly "HS256"; "typ" if present is "JWT"; a
 * "crit" header names extensions we do not implement, so it is refused. */
static const char *check_header(const json_t *h)
{
    const json_t *alg = json_object_get(h, "alg");
    if (!json_is_string(alg) || strcmp(json_string_value(alg), "HS256") != 0 ||
        json_string_length(alg) != 5)
        return "unsupported alg";
    const json_t *typ = json_object_get(h, "typ");
    if (typ &&
        (!json_is_string(typ) || strcmp(json_string_value(typ), "JWT") != 0))
        return "malformed token";
    if (json_object_get(h, "crit"))
        return "malformed token";
    return NULL;
}

static const char *check_times(const json_t *claims, int64_t now_s)
{
    const json_t *exp = json_object_get(claims, "exp");
    if (!exp)
        return "exp required";
    if (!json_is_number(exp))
        return "malformed token";
    if (!(json_number_value(exp) > (double)now_s))
        return "token expired";
    const json_t *nbf = json_object_get(claims, "nbf");
    if (nbf) {
        if (!json_is_number(nbf))
            return "malformed token";
        if (json_number_value(nbf) > (double)now_s)
            return "token not yet valid";
    }
    return NULL;
}

/* Finds the two dots of a token of exactly three segments: 0, or -1 when
 * it has fewer or more. */
static int split_token(const char *token, size_t len, const char **d1,
                       const char **d2)
{
    *d1 = token ? memchr(token, '.', len) : NULL;
    if (!*d1)
        return -1;
    *d2 = memchr(*d1 + 1, '.', len - (size_t)(*d1 + 1 - token));
    if (!*d2)
        return -1;
    if (memchr(*d2 + 1, '.', len - (size_t)(*d2 + 1 - token))) /* a fourth */
        return -1;
    return 0;
}

/* Checks the signature segment sig against the HS256 of the signed part
 * (header "." claims): NULL when it matches, else what is wrong. */
static const char *check_signature(const char *secret, size_t secret_len,
                                   const char *signed_part, size_t signed_len,
                                   const char *sig, size_t sig_len)
{
    unsigned char got[SIG_LEN + 2], want[SIG_LEN];

    if (sig_len != SIG_B64_LEN || b64url_decode(sig, sig_len, got) != SIG_LEN)
        return "malformed token";
    if (hs256(secret, secret_len, signed_part, signed_len, want) < 0)
        return "internal error";
    int mismatch = CRYPTO_memcmp(got, want, SIG_LEN);
    OPENSSL_cleanse(want, sizeof want);
    return mismatch ? "bad signature" : NULL;
}

int chorus_jwt_verify(const char *secret, size_t secret_len, const char *token,
                      size_t token_len, int64_t now_s, json_t **claims,
                      const char **why)
{
    const char *d1, *d2, *bad;

    *claims = NULL;
    *why = "malformed token";
    if (!secret || secret_len == 0) {
        *why = "no secret";
        return -1;
    }
    if (split_token(token, token_len, &d1, &d2) != 0)
        return -1;

    json_t *header = decode_object(token, (size_t)(d1 - token));
    if (!header)
        return -1;
    bad = check_header(header);
    json_decref(header);
    if (!bad)
        bad = check_signature(secret, secret_len, token, (size_t)(d2 - token),
                              d2 + 1, token_len - (size_t)(d2 + 1 - token));
    if (bad) {
        *why = bad;
        return -1;
    }

    json_t *c = decode_object(d1 + 1, (size_t)(d2 - d1 - 1));
    if (!c)
        return -1;
    bad = check_times(c, now_s);
    if (bad) {
        json_decref(c);
        *why = bad;
        return -1;
    }
    *claims = c;
    *why = NULL;
    return 0;
}
