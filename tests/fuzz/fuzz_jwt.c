/* libFuzzer target for the JWT parser and verifier (lib/jwt.c).
 *
 * Input: byte 0 picks the clock ("now") and the secret, the rest is a
 * token (bounded like the broker's request head, where tokens arrive).
 * The target checks:
 *   - verify answers 0 with a claims object whose "exp" is after now and
 *     whose "nbf", if any, is not after it; or -1 with a known reason and
 *     no claims;
 *   - a token that verifies under one secret never verifies under another
 *     (the signature really covers header and claims);
 *   - a verified token's claims, signed again, verify to equal claims;
 *   - when the rest of the input is a JSON object, signing it gives a
 *     token that verifies exactly when its times allow, to equal claims. */
#include <string.h>

#include "chorus/jwt.h"
#include "fuzz.h"

#define MAX_TOKEN (16u * 1024)

static const char *const reasons[] = {
    "malformed token", "unsupported alg", "bad signature",
    "exp required",    "token expired",   "token not yet valid",
};

static void check_result(int rc, json_t *claims, const char *why, int64_t now)
{
    if (rc != 0) {
        size_t i;
        FUZZ_ASSERT(rc == -1 && claims == NULL && why != NULL);
        for (i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
            if (strcmp(why, reasons[i]) == 0)
                break;
        FUZZ_ASSERT(i < sizeof reasons / sizeof reasons[0]);
        return;
    }
    json_t *exp = json_object_get(claims, "exp");
    json_t *nbf = json_object_get(claims, "nbf");
    FUZZ_ASSERT(why == NULL && json_is_object(claims));
    FUZZ_ASSERT(json_is_number(exp) && json_number_value(exp) > (double)now);
    FUZZ_ASSERT(!nbf ||
                (json_is_number(nbf) && json_number_value(nbf) <= (double)now));
}

/* Signs claims and verifies the token: it must pass iff expect_ok. */
static void check_sign_verify(const char *secret, json_t *claims, int64_t now,
                              int expect_ok)
{
    char *tok = chorus_jwt_sign(secret, strlen(secret), claims);
    json_t *back = NULL;
    const char *why = NULL;
    int rc;

    FUZZ_ASSERT(tok);
    rc = chorus_jwt_verify(secret, strlen(secret), tok, strlen(tok), now, &back,
                           &why);
    check_result(rc, back, why, now);
    if (expect_ok >= 0)
        FUZZ_ASSERT((rc == 0) == expect_ok);
    if (rc == 0)
        FUZZ_ASSERT(json_equal(back, claims));
    json_decref(back);
    free(tok);
}

/* What check_times in jwt.c should decide for these claims. */
static int times_ok(const json_t *claims, int64_t now)
{
    const json_t *exp = json_object_get(claims, "exp");
    const json_t *nbf = json_object_get(claims, "nbf");

    if (!json_is_number(exp) || !(json_number_value(exp) > (double)now))
        return 0;
    return !nbf ||
           (json_is_number(nbf) && json_number_value(nbf) <= (double)now);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int64_t clocks[4] = {0, 1700000000, INT64_MAX, -1};
    static const char *const secrets[2] = {"k", "a much longer test secret"};
    const char *secret, *other, *tok, *why;
    json_t *claims, *parsed;
    int64_t now;
    size_t len;
    int rc;

    if (size < 1 || size - 1 > MAX_TOKEN)
        return 0;
    now = clocks[data[0] & 3];
    secret = secrets[(data[0] >> 2) & 1];
    other = secrets[!((data[0] >> 2) & 1)];
    tok = (const char *)data + 1;
    len = size - 1;

    rc =
        chorus_jwt_verify(secret, strlen(secret), tok, len, now, &claims, &why);
    check_result(rc, claims, why, now);
    if (rc == 0) {
        json_t *c2 = NULL;
        FUZZ_ASSERT(chorus_jwt_verify(other, strlen(other), tok, len, now, &c2,
                                      &why) == -1 &&
                    c2 == NULL);
        check_sign_verify(secret, claims, now, 1);
        json_decref(claims);
    }

    parsed = json_loadb(tok, len, JSON_REJECT_DUPLICATES, NULL);
    if (json_is_object(parsed))
        check_sign_verify(secret, parsed, now, times_ok(parsed, now));
    json_decref(parsed);
    return 0;
}
