/* Authentication at the handshake, topic permissions and the Origin
 * policy. Nothing here logs: reasons handed back are static strings that
 * never contain a token, a key or the secret. */
#include "auth.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "chorus/jwt.h"

/* Longest token accepted, header or query parameter. */
#define AUTH_MAX_TOKEN 8192

int auth_enabled(const config *cfg)
{
    return (cfg->auth_secret && cfg->auth_secret[0]) ||
           (cfg->api_key && cfg->api_key[0]);
}

/* Equality of two byte strings without leaking where they differ or how
 * long the key is: both are hashed, the digests compared in constant
 * time. */
static int secret_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    unsigned char da[32], db[32];
    unsigned int la = 0, lb = 0;
    if (!EVP_Digest(a, alen, da, &la, EVP_sha256(), NULL) ||
        !EVP_Digest(b, blen, db, &lb, EVP_sha256(), NULL))
        return 0;
    return CRYPTO_memcmp(da, db, sizeof da) == 0 && alen == blen;
}

/* Finds the bearer credentials. Returns 1 with the token in buf, 0 when
 * the request carries none, -1 (reason in *why) when they are malformed. */
static int find_credentials(const chorus_http_request *req, const char *query,
                            size_t query_len, char *buf, size_t bufsize,
                            size_t *len, const char **why)
{
    size_t n = chorus_http_count_header(req->headers, req->num_headers,
                                        "Authorization");
    if (n > 1) {
        *why = "more than one Authorization header";
        return -1;
    }
    if (n == 1) {
        const chorus_http_header *h = chorus_http_find_header(
            req->headers, req->num_headers, "Authorization");
        const char *v = h->value;
        size_t vl = h->value_len, i = 6;
        if (vl < 8 || strncasecmp(v, "Bearer", 6) != 0 ||
            (v[6] != ' ' && v[6] != '\t')) {
            *why = "Authorization must be Bearer";
            return -1;
        }
        while (i < vl && (v[i] == ' ' || v[i] == '\t'))
            i++;
        if (i == vl || vl - i >= bufsize) {
            *why = "malformed token";
            return -1;
        }
        for (size_t j = i; j < vl; j++)
            if (v[j] == ' ' || v[j] == '\t') {
                *why = "malformed token";
                return -1;
            }
        memcpy(buf, v + i, vl - i);
        buf[vl - i] = '\0';
        *len = vl - i;
        return 1;
    }
    if (!query)
        return 0;
    int r = chorus_http_query_param(query, query_len, "token", buf, bufsize);
    if (r == -1)
        return 0;
    if (r <= 0) {
        *why = "malformed token";
        return -1;
    }
    *len = (size_t)r;
    return 1;
}

/* Copies a claim that must be an array of strings, if present. */
static int claim_patterns(const json_t *claims, const char *name, char ***out,
                          size_t *n)
{
    const json_t *arr = json_object_get(claims, name);
    *out = NULL;
    *n = 0;
    if (!arr)
        return 0;
    if (!json_is_array(arr))
        return -1;
    size_t count = json_array_size(arr);
    if (count == 0)
        return 0;
    char **v = calloc(count, sizeof *v);
    if (!v)
        return -1;
    *out = v;
    for (size_t i = 0; i < count; i++) {
        const json_t *s = json_array_get(arr, i);
        if (!json_is_string(s))
            return -1;
        v[i] = strdup(json_string_value(s));
        if (!v[i])
            return -1;
        (*n)++;
    }
    return 0;
}

static int64_t exp_to_ms(const json_t *exp)
{
    double s = json_number_value(exp);
    if (s >= (double)(INT64_MAX / 1000))
        return INT64_MAX / 1000 * 1000;
    return (int64_t)(s * 1000.0);
}

static int identity_from_claims(const json_t *claims, auth_identity *id)
{
    const json_t *sub = json_object_get(claims, "sub");
    if (sub) {
        if (!json_is_string(sub))
            return -1;
        id->sub = strdup(json_string_value(sub));
        if (!id->sub)
            return -1;
    }
    id->expires_ms = exp_to_ms(json_object_get(claims, "exp"));
    if (claim_patterns(claims, "subscribe", &id->subscribe, &id->nsubscribe) <
            0 ||
        claim_patterns(claims, "publish", &id->publish, &id->npublish) < 0)
        return -1;
    id->kind = AUTH_TOKEN;
    return 0;
}

/* Credentials are only looked at when authentication is on: with it off
 * there is nothing to check them against, and every client is allowed. */
int auth_authenticate(const config *cfg, const chorus_http_request *req,
                      const char *query, size_t query_len, int64_t now_ms,
                      auth_identity *id, const char **why)
{
    memset(id, 0, sizeof *id);
    *why = NULL;
    if (!auth_enabled(cfg)) {
        id->kind = AUTH_OPEN;
        return 0;
    }
    char tok[AUTH_MAX_TOKEN + 1];
    size_t len = 0;
    int found =
        find_credentials(req, query, query_len, tok, sizeof tok, &len, why);
    int status = 401;
    if (found < 0)
        goto out;
    if (found == 0) {
        if (cfg->allow_anonymous) {
            id->kind = AUTH_ANONYMOUS;
            status = 0;
        } else {
            *why = "token required";
        }
        goto out;
    }
    if (cfg->api_key && cfg->api_key[0] &&
        secret_equal(tok, len, cfg->api_key, strlen(cfg->api_key))) {
        id->kind = AUTH_API_KEY;
        status = 0;
        goto out;
    }
    if (!cfg->auth_secret || !cfg->auth_secret[0]) {
        *why = "invalid credentials";
        goto out;
    }
    json_t *claims = NULL;
    int64_t now_s = now_ms >= 0 ? now_ms / 1000 : -((-now_ms + 999) / 1000);
    if (chorus_jwt_verify(cfg->auth_secret, strlen(cfg->auth_secret), tok, len,
                          now_s, &claims, why) < 0)
        goto out;
    if (identity_from_claims(claims, id) < 0) {
        auth_identity_free(id);
        *why = "malformed token";
    } else {
        status = 0;
    }
    json_decref(claims);
out:
    OPENSSL_cleanse(tok, sizeof tok);
    return status;
}

static void free_patterns(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void auth_identity_free(auth_identity *id)
{
    free(id->sub);
    /* claim_patterns() may fail half-way: free every filled slot */
    free_patterns(id->subscribe, id->nsubscribe);
    free_patterns(id->publish, id->npublish);
    memset(id, 0, sizeof *id);
}

int auth_pattern_match(const char *pattern, const char *topic, size_t len)
{
    size_t pl = strlen(pattern);
    if (pl == 0)
        return 0;
    if (pattern[pl - 1] == '*')
        return len >= pl - 1 && memcmp(pattern, topic, pl - 1) == 0;
    return len == pl && memcmp(pattern, topic, pl) == 0;
}

static int any_match(char *const *patterns, size_t n, const char *topic,
                     size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (auth_pattern_match(patterns[i], topic, len))
            return 1;
    return 0;
}

int auth_can_subscribe(const config *cfg, const auth_identity *id,
                       const char *topic, size_t len)
{
    (void)cfg;
    switch (id->kind) {
    case AUTH_OPEN:
    case AUTH_API_KEY:
    case AUTH_ANONYMOUS: return 1;
    case AUTH_TOKEN:
        return any_match(id->subscribe, id->nsubscribe, topic, len);
    }
    return 0;
}

int auth_can_publish(const config *cfg, const auth_identity *id,
                     const char *topic, size_t len)
{
    switch (id->kind) {
    case AUTH_OPEN:
    case AUTH_API_KEY: return 1;
    case AUTH_ANONYMOUS: return cfg->anonymous_publish != 0;
    case AUTH_TOKEN: return any_match(id->publish, id->npublish, topic, len);
    }
    return 0;
}

static int is_sep(char c)
{
    return c == ',' || c == ' ' || c == '\t';
}

/* The list is parsed on each call: it is short, and a handshake is rare
 * next to the messages that follow it. */
int auth_check_origin(const config *cfg, const chorus_http_request *req)
{
    const char *list = cfg->allowed_origins;
    if (!list || !list[0])
        return 0;
    size_t n =
        chorus_http_count_header(req->headers, req->num_headers, "Origin");
    if (n == 0)
        return 0;
    if (n > 1)
        return 403;
    const chorus_http_header *h =
        chorus_http_find_header(req->headers, req->num_headers, "Origin");
    if (h->value_len == 4 && memcmp(h->value, "null", 4) == 0)
        return 403;
    for (const char *p = list; *p;) {
        while (*p && is_sep(*p))
            p++;
        const char *start = p;
        while (*p && !is_sep(*p))
            p++;
        size_t len = (size_t)(p - start);
        if (len == 0)
            continue;
        if (len == 1 && *start == '*')
            return 0;
        if (len == h->value_len && memcmp(start, h->value, len) == 0)
            return 0;
    }
    return 403;
}
