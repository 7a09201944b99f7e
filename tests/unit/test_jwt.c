/* lib/jwt.c: HS256 signing and the strict verifier. Tokens with a chosen
 * header and payload are built here (own base64url and HMAC) so that each
 * rule is hit with an otherwise valid signature. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "check.h"
#include "chorus/jwt.h"

#define SECRET "chorus-test-secret"
#define NOW 1700000000

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void b64url(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = b64chars[v >> 18];
        out[o++] = b64chars[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = b64chars[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = b64chars[v & 63];
    }
    out[o] = '\0';
}

/* header.payload.signature over raw header and payload text. */
static char *make(const char *header, const char *payload, const char *key)
{
    static char tok[4096];
    unsigned char mac[32];
    unsigned int maclen;
    b64url((const unsigned char *)header, strlen(header), tok);
    strcat(tok, ".");
    size_t n = strlen(tok);
    b64url((const unsigned char *)payload, strlen(payload), tok + n);
    HMAC(EVP_sha256(), key, (int)strlen(key), (unsigned char *)tok, strlen(tok),
         mac, &maclen);
    strcat(tok, ".");
    b64url(mac, maclen, tok + strlen(tok));
    return tok;
}

/* Re-signs header.payload text as given (for hand-made segments). */
static char *resign(const char *signing_input, const char *key)
{
    static char tok[4096];
    unsigned char mac[32];
    unsigned int maclen;
    snprintf(tok, sizeof tok, "%s.", signing_input);
    HMAC(EVP_sha256(), key, (int)strlen(key),
         (const unsigned char *)signing_input, strlen(signing_input), mac,
         &maclen);
    b64url(mac, maclen, tok + strlen(tok));
    return tok;
}

static const char *why_of(const char *tok, const char *key)
{
    json_t *claims = NULL;
    const char *why = NULL;
    int r = chorus_jwt_verify(key, strlen(key), tok, strlen(tok), NOW, &claims,
                              &why);
    json_decref(claims);
    return r == 0 ? "ok" : why;
}

#define H "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define P "{\"sub\":\"alice\",\"exp\":1700000100}"

static void test_valid(void)
{
    json_t *claims = NULL;
    const char *why = "x";
    const char *tok = make(H, P, SECRET);
    CHECK_EQ_INT(chorus_jwt_verify(SECRET, strlen(SECRET), tok, strlen(tok),
                                   NOW, &claims, &why),
                 0);
    CHECK(why == NULL);
    CHECK(json_is_object(claims));
    CHECK_EQ_STR(json_string_value(json_object_get(claims, "sub")), "alice");
    json_decref(claims);
    /* no typ, float exp, nbf in the past and exactly now */
    CHECK_EQ_STR(
        why_of(make("{\"alg\":\"HS256\"}", "{\"exp\":1700000000.5}", SECRET),
               SECRET),
        "ok");
    CHECK_EQ_STR(
        why_of(make(H, "{\"exp\":1700000100,\"nbf\":1700000000}", SECRET),
               SECRET),
        "ok");
}

/* A token made with Python's standard library (hmac, hashlib, base64,
 * json.dumps with its default ", " and ": " separators):
 *   {"alg": "HS256", "typ": "JWT"}
 *   {"sub": "alice", "exp": 2000000000, "nbf": 1500000000,
 *    "subscribe": ["chat.*"], "publish": ["chat.alice"]}
 * key "chorus-test-secret". */
static const char python_token[] =
    "eyJhbGciOiAiSFMyNTYiLCAidHlwIjogIkpXVCJ9."
    "eyJzdWIiOiAiYWxpY2UiLCAiZXhwIjogMjAwMDAwMDAwMCwgIm5iZiI6IDE1MDAwMDAwMDAs"
    "ICJzdWJzY3JpYmUiOiBbImNoYXQuKiJdLCAicHVibGlzaCI6IFsiY2hhdC5hbGljZSJdfQ."
    "G7yizKsRsOxD_5hfsbTSDozjZlK6EqYVXGuyunOrZ58";

static void test_python_vector(void)
{
    json_t *claims = NULL;
    const char *why = NULL;
    CHECK_EQ_INT(chorus_jwt_verify(SECRET, strlen(SECRET), python_token,
                                   strlen(python_token), NOW, &claims, &why),
                 0);
    json_t *sub = json_object_get(claims, "subscribe");
    CHECK_EQ_STR(json_string_value(json_array_get(sub, 0)), "chat.*");
    CHECK_EQ_INT(json_integer_value(json_object_get(claims, "exp")),
                 2000000000);
    json_decref(claims);
    CHECK_EQ_STR(why_of(python_token, "chorus-test-secreT"), "bad signature");
}

static void test_sign_roundtrip(void)
{
    json_t *c = json_pack("{s:s, s:I, s:[s]}", "sub", "bob", "exp",
                          (json_int_t)NOW + 60, "publish", "x.*");
    char *tok = chorus_jwt_sign(SECRET, strlen(SECRET), c);
    CHECK(tok != NULL);
    /* the fixed header every signed token starts with */
    CHECK(tok &&
          strncmp(tok, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.", 37) == 0);
    CHECK_EQ_STR(why_of(tok, SECRET), "ok");
    CHECK_EQ_STR(why_of(tok, "other"), "bad signature");
    free(tok);
    json_t *arr = json_array();
    CHECK(chorus_jwt_sign(SECRET, strlen(SECRET), arr) == NULL);
    CHECK(chorus_jwt_sign(SECRET, 0, c) == NULL);
    json_decref(arr);
    json_decref(c);
}

static void test_time(void)
{
    CHECK_EQ_STR(why_of(make(H, "{\"exp\":1700000000}", SECRET), SECRET),
                 "token expired");
    CHECK_EQ_STR(why_of(make(H, "{\"exp\":1600000000}", SECRET), SECRET),
                 "token expired");
    CHECK_EQ_STR(
        why_of(make(H, "{\"exp\":1700000100,\"nbf\":1700000001}", SECRET),
               SECRET),
        "token not yet valid");
    CHECK_EQ_STR(why_of(make(H, "{\"sub\":\"a\"}", SECRET), SECRET),
                 "exp required");
    CHECK_EQ_STR(why_of(make(H, "{\"exp\":\"1700000100\"}", SECRET), SECRET),
                 "malformed token");
    CHECK_EQ_STR(why_of(make(H, "{\"exp\":null}", SECRET), SECRET),
                 "malformed token");
    CHECK_EQ_STR(
        why_of(make(H, "{\"exp\":1700000100,\"nbf\":\"0\"}", SECRET), SECRET),
        "malformed token");
}

static void test_alg(void)
{
    CHECK_EQ_STR(why_of(make("{\"alg\":\"none\"}", P, SECRET), SECRET),
                 "unsupported alg");
    CHECK_EQ_STR(why_of(make("{\"alg\":\"RS256\"}", P, SECRET), SECRET),
                 "unsupported alg");
    CHECK_EQ_STR(why_of(make("{\"alg\":\"HS512\"}", P, SECRET), SECRET),
                 "unsupported alg");
    CHECK_EQ_STR(why_of(make("{\"alg\":\"hs256\"}", P, SECRET), SECRET),
                 "unsupported alg");
    CHECK_EQ_STR(why_of(make("{\"typ\":\"JWT\"}", P, SECRET), SECRET),
                 "unsupported alg");
    CHECK_EQ_STR(why_of(make("{\"alg\":[\"HS256\"]}", P, SECRET), SECRET),
                 "unsupported alg");
    CHECK_EQ_STR(
        why_of(make("{\"alg\":\"HS256\",\"typ\":\"JWE\"}", P, SECRET), SECRET),
        "malformed token");
    CHECK_EQ_STR(
        why_of(make("{\"alg\":\"HS256\",\"crit\":[\"b64\"]}", P, SECRET),
               SECRET),
        "malformed token");
    CHECK_EQ_STR(
        why_of(make("{\"alg\":\"HS256\",\"alg\":\"none\"}", P, SECRET), SECRET),
        "malformed token");
    /* alg none with an empty signature, the classic forgery */
    char tok[512];
    b64url((const unsigned char *)"{\"alg\":\"none\"}", 14, tok);
    strcat(tok, ".");
    b64url((const unsigned char *)P, strlen(P), tok + strlen(tok));
    strcat(tok, ".");
    CHECK(strcmp(why_of(tok, SECRET), "ok") != 0);
}

static void test_structure(void)
{
    char buf[4096];
    const char *good = make(H, P, SECRET);
    CHECK_EQ_STR(why_of(good, SECRET), "ok");
    const char *dot1 = strchr(good, '.');
    const char *dot2 = strchr(dot1 + 1, '.');

    /* two segments, four segments, empty ones */
    snprintf(buf, sizeof buf, "%.*s", (int)(dot2 - good), good);
    CHECK_EQ_STR(why_of(buf, SECRET), "malformed token");
    snprintf(buf, sizeof buf, "%s.%s", good, dot2 + 1);
    CHECK_EQ_STR(why_of(buf, SECRET), "malformed token");
    snprintf(buf, sizeof buf, "%s.", good);
    CHECK_EQ_STR(why_of(buf, SECRET), "malformed token");
    CHECK_EQ_STR(why_of("", SECRET), "malformed token");
    CHECK_EQ_STR(why_of("..", SECRET), "malformed token");
    CHECK_EQ_STR(why_of(resign(".", SECRET), SECRET), "malformed token");

    /* padding on the payload, then on the signature */
    char payload[512];
    snprintf(payload, sizeof payload, "%.*s", (int)(dot2 - dot1 - 1), dot1 + 1);
    size_t plen = strlen(payload);
    CHECK(plen % 4 != 0);
    snprintf(buf, sizeof buf, "%.*s.%s%.*s", (int)(dot1 - good), good, payload,
             (int)((4 - plen % 4) % 4), "===");
    CHECK_EQ_STR(why_of(resign(buf, SECRET), SECRET), "malformed token");
    snprintf(buf, sizeof buf, "%s=", good);
    CHECK_EQ_STR(why_of(buf, SECRET), "malformed token");

    /* characters outside base64url (same length), in the payload and the
     * signature */
    const char bad[] = {'!', '+', '/', '=', ' ', '.'};
    for (size_t i = 0; i < sizeof bad; i++) {
        char p2[512];
        snprintf(p2, sizeof p2, "%s", payload);
        p2[4] = bad[i];
        snprintf(buf, sizeof buf, "%.*s.%s", (int)(dot1 - good), good, p2);
        CHECK_EQ_STR(why_of(resign(buf, SECRET), SECRET), "malformed token");
    }
    snprintf(buf, sizeof buf, "%s", good);
    buf[strlen(buf) - 3] = '/';
    CHECK_EQ_STR(why_of(buf, SECRET), "malformed token");
    /* non-canonical trailing bits: last signature char 'x' -> 'y' keeps
     * the decoded bytes' top bits but sets unused ones */
    snprintf(buf, sizeof buf, "%s", good);
    char *last = buf + strlen(buf) - 1;
    const char *pos = strchr(b64chars, *last);
    *last = b64chars[((pos - b64chars) & ~3) | 1];
    CHECK_EQ_STR(why_of(buf, SECRET), "malformed token");

    /* header or claims that are JSON but not objects, or not JSON */
    CHECK_EQ_STR(why_of(make("[\"HS256\"]", P, SECRET), SECRET),
                 "malformed token");
    CHECK_EQ_STR(why_of(make("\"HS256\"", P, SECRET), SECRET),
                 "malformed token");
    CHECK_EQ_STR(why_of(make(H, "[1,2]", SECRET), SECRET), "malformed token");
    CHECK_EQ_STR(why_of(make(H, "{\"exp\":1700000100", SECRET), SECRET),
                 "malformed token");
    CHECK_EQ_STR(
        why_of(make(H, "{\"exp\":1,\"exp\":1700000100}", SECRET), SECRET),
        "malformed token");
}

static void test_tampered(void)
{
    char buf[4096];
    const char *good = make(H, P, SECRET);
    const char *dot1 = strchr(good, '.');
    const char *dot2 = strchr(dot1 + 1, '.');
    /* payload from another token, signature of the first */
    char other[4096];
    snprintf(other, sizeof other, "%s",
             make(H, "{\"sub\":\"mallory\",\"exp\":1700000100}", SECRET));
    const char *o1 = strchr(other, '.');
    const char *o2 = strchr(o1 + 1, '.');
    snprintf(buf, sizeof buf, "%.*s%.*s%s", (int)(dot1 - good), good,
             (int)(o2 - o1), o1, dot2);
    CHECK_EQ_STR(why_of(buf, SECRET), "bad signature");
    /* one signature bit flipped */
    snprintf(buf, sizeof buf, "%s", good);
    buf[dot2 - good + 5] = buf[dot2 - good + 5] == 'A' ? 'B' : 'A';
    CHECK_EQ_STR(why_of(buf, SECRET), "bad signature");
    CHECK_EQ_STR(why_of(good, "wrong-secret"), "bad signature");
    /* the token length bounds the parse: a prefix is not the token */
    json_t *claims = NULL;
    const char *why = NULL;
    CHECK_EQ_INT(chorus_jwt_verify(SECRET, strlen(SECRET), good,
                                   strlen(good) - 1, NOW, &claims, &why),
                 -1);
    CHECK(claims == NULL);
    CHECK(chorus_jwt_verify(SECRET, 0, good, strlen(good), NOW, &claims,
                            &why) == -1);
}

int main(void)
{
    test_valid();
    test_python_vector();
    test_sign_roundtrip();
    test_time();
    test_alg();
    test_structure();
    test_tampered();
    return check_report("test_jwt");
}
