/* broker/core/auth.c: topic patterns, credentials from header and query,
 * API key, anonymous access, permissions per kind, Origin policy. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "auth.h"
#include "check.h"
#include "chorus/jwt.h"
#include "config.h"

#define SECRET "auth-test-secret-of-at-least-32-bytes"
#define APIKEY "k3y-for-the-http-api"
#define NOW_MS 1700000000000LL

static int match(const char *pattern, const char *topic)
{
    return auth_pattern_match(pattern, topic, strlen(topic));
}

static void test_patterns(void)
{
    CHECK(match("*", "chat"));
    CHECK(match("*", "a.b.c"));
    CHECK(match("chat.*", "chat.x"));
    CHECK(match("chat.*", "chat.x.y"));
    CHECK(match("chat.*", "chat."));
    CHECK(!match("chat.*", "chat"));
    CHECK(!match("chat.*", "chatx"));
    CHECK(!match("chat.*", "cha"));
    CHECK(match("chat", "chat"));
    CHECK(!match("chat", "chat.x"));
    CHECK(!match("chat", "cha"));
    CHECK(!match("chat", "Chat"));
    CHECK(!match("", "chat"));
    CHECK(!match("", ""));
    CHECK(match("a*b", "a*b")); /* '*' not at the end is literal */
    CHECK(!match("a*b", "axb"));
    CHECK(!match("a*b", "ab"));
    CHECK(match("a*b*", "a*bzz"));
    CHECK(!match("a*b*", "axbzz"));
    /* the topic length bounds the match, not a NUL */
    CHECK(!auth_pattern_match("chat", "chatter", 3));
    CHECK(auth_pattern_match("chat", "chatter", 4));
}

static char *make_token(const char *secret, const char *claims_json)
{
    json_t *c = json_loads(claims_json, 0, NULL);
    char *tok = chorus_jwt_sign(secret, strlen(secret), c);
    json_decref(c);
    return tok;
}

typedef struct req_builder {
    chorus_http_request req;
    char vals[4][9000];
} req_builder;

static void req_init(req_builder *b)
{
    memset(b, 0, sizeof *b);
    b->req.method = "GET";
    b->req.method_len = 3;
    b->req.target = "/ws";
    b->req.target_len = 3;
    b->req.minor_version = 1;
}

static void req_add(req_builder *b, const char *name, const char *fmt,
                    const char *arg)
{
    size_t i = b->req.num_headers++;
    snprintf(b->vals[i], sizeof b->vals[i], fmt, arg);
    b->req.headers[i].name = name;
    b->req.headers[i].name_len = strlen(name);
    b->req.headers[i].value = b->vals[i];
    b->req.headers[i].value_len = strlen(b->vals[i]);
}

static int auth(const config *cfg, const req_builder *b, const char *query,
                auth_identity *id, const char **why)
{
    return auth_authenticate(cfg, &b->req, query, query ? strlen(query) : 0,
                             NOW_MS, id, why);
}

static void set(config *c, const char *key, const char *value)
{
    char err[256];
    int r = config_set(c, key, value, err, sizeof err);
    CHECK_EQ_INT(r, 0);
}

static void test_open(void)
{
    config c;
    config_init(&c);
    CHECK_EQ_INT(auth_enabled(&c), 0);
    req_builder b;
    req_init(&b);
    auth_identity id;
    const char *why;
    CHECK_EQ_INT(auth(&c, &b, NULL, &id, &why), 0);
    CHECK_EQ_INT(id.kind, AUTH_OPEN);
    CHECK(auth_can_subscribe(&c, &id, "x", 1));
    CHECK(auth_can_publish(&c, &id, "x", 1));
    /* with auth off, credentials are not looked at */
    req_add(&b, "Authorization", "Bearer %s", "garbage");
    CHECK_EQ_INT(auth(&c, &b, NULL, &id, &why), 0);
    CHECK_EQ_INT(id.kind, AUTH_OPEN);
    auth_identity_free(&id);
    config_free(&c);
}

static void test_token(void)
{
    config c;
    config_init(&c);
    set(&c, "auth_secret", SECRET);
    CHECK_EQ_INT(auth_enabled(&c), 1);
    char *tok = make_token(SECRET, "{\"sub\":\"alice\",\"exp\":1700000100,"
                                   "\"subscribe\":[\"chat.*\",\"news\"],"
                                   "\"publish\":[\"chat.alice\"]}");
    char *other = make_token(SECRET, "{\"sub\":\"bob\",\"exp\":1700000200}");
    char *expired = make_token(SECRET, "{\"sub\":\"x\",\"exp\":1699999999}");
    char *wrong = make_token("not-the-secret", "{\"exp\":1700000100}");
    auth_identity id;
    const char *why;
    req_builder b;

    /* header, scheme case-insensitive */
    req_init(&b);
    req_add(&b, "Authorization", "Bearer %s", tok);
    CHECK_EQ_INT(auth(&c, &b, NULL, &id, &why), 0);
    CHECK_EQ_INT(id.kind, AUTH_TOKEN);
    CHECK_EQ_STR(id.sub, "alice");
    CHECK_EQ_INT(id.expires_ms, 1700000100000LL);
    CHECK_EQ_INT(id.nsubscribe, 2);
    CHECK_EQ_INT(id.npublish, 1);
    CHECK(auth_can_subscribe(&c, &id, "chat.room", 9));
    CHECK(auth_can_subscribe(&c, &id, "news", 4));
    CHECK(!auth_can_subscribe(&c, &id, "newsx", 5));
    CHECK(auth_can_publish(&c, &id, "chat.alice", 10));
    CHECK(!auth_can_publish(&c, &id, "chat.bob", 8));
    auth_identity_free(&id);
    CHECK(id.sub == NULL && id.subscribe == NULL);

    req_init(&b);
    req_add(&b, "authorization", "bEARER   %s", tok);
    CHECK_EQ_INT(auth(&c, &b, NULL, &id, &why), 0);
    CHECK_EQ_STR(id.sub, "alice");
    auth_identity_free(&id);

    /* query parameter, percent-encoded */
    req_init(&b);
    char q[9100];
    snprintf(q, sizeof q, "since=3&token=%s&x=1", other);
    CHECK_EQ_INT(auth(&c, &b, q, &id, &why), 0);
    CHECK_EQ_STR(id.sub, "bob");
    CHECK_EQ_INT(id.nsubscribe, 0); /* missing claims grant nothing */
    CHECK(!auth_can_subscribe(&c, &id, "chat.x", 6));
    CHECK(!auth_can_publish(&c, &id, "chat.x", 6));
    auth_identity_free(&id);
    char enc[4096];
    snprintf(enc, sizeof enc, "%s", other);
    char *dot = strchr(enc, '.');
    memmove(dot + 3, dot + 1, strlen(dot + 1) + 1);
    memcpy(dot, "%2E", 3);
    snprintf(q, sizeof q, "token=%s", enc);
    CHECK_EQ_INT(auth(&c, &b, q, &id, &why), 0);
    CHECK_EQ_STR(id.sub, "bob");
    auth_identity_free(&id);

    /* both: the header wins, even over a bad query token */
    req_add(&b, "Authorization", "Bearer %s", tok);
    snprintf(q, sizeof q, "token=%s", other);
    CHECK_EQ_INT(auth(&c, &b, q, &id, &why), 0);
    CHECK_EQ_STR(id.sub, "alice");
    auth_identity_free(&id);
    CHECK_EQ_INT(auth(&c, &b, "token=%zz", &id, &why), 0);
    CHECK_EQ_STR(id.sub, "alice");
    auth_identity_free(&id);

    /* refusals */
    req_init(&b);
    CHECK_EQ_INT(auth(&c, &b, NULL, &id, &why), 401);
    CHECK_EQ_STR(why, "token required");
    CHECK_EQ_INT(auth(&c, &b, "since=1", &id, &why), 401);
    CHECK_EQ_INT(auth(&c, &b, "token=", &id, &why), 401);
    CHECK_EQ_INT(auth(&c, &b, "token=%zz", &id, &why), 401);
    snprintf(q, sizeof q, "token=%s", expired);
    CHECK_EQ_INT(auth(&c, &b, q, &id, &why), 401);
    CHECK_EQ_STR(why, "token expired");
    snprintf(q, sizeof q, "token=%s", wrong);
    CHECK_EQ_INT(auth(&c, &b, q, &id, &why), 401);
    CHECK_EQ_STR(why, "bad signature");
    CHECK(strstr(why, "eyJ") == NULL);
    CHECK_EQ_INT(id.kind, AUTH_OPEN); /* zeroed on failure */
    CHECK(id.sub == NULL);

    req_init(&b);
    req_add(&b, "Authorization", "Basic %s", "dXNlcjpwYXNz");
    CHECK_EQ_INT(auth(&c, &b, NULL, &id, &why), 401);
    req_init(&b);
    req_add(&b, "Authorization", "Bearer%s", "");
    CHECK_EQ_INT(auth(&c, &b, NULL, &id, &why), 401);
    req_init(&b);
    req_add(&b, "Authorization", "Bearer%s", tok);
    CHECK_EQ_INT(auth(&c, &b, NULL, &id, &why), 401);
    req_init(&b);
    req_add(&b, "Authorization", "Bearer %s x", tok);
    CHECK_EQ_INT(auth(&c, &b, NULL, &id, &why), 401);
    req_init(&b);
    req_add(&b, "Authorization", "Bearer %s", tok);
    req_add(&b, "Authorization", "Bearer %s", tok);
    CHECK_EQ_INT(auth(&c, &b, NULL, &id, &why), 401);

    /* tokens up to 8 KiB; longer ones refused */
    char big[9000];
    memset(big, 'A', 8193);
    big[8193] = '\0';
    req_init(&b);
    req_add(&b, "Authorization", "Bearer %s", big);
    CHECK_EQ_INT(auth(&c, &b, NULL, &id, &why), 401);
    CHECK_EQ_STR(why, "malformed token");
    snprintf(q, sizeof q, "token=%s", big);
    req_init(&b);
    CHECK_EQ_INT(auth(&c, &b, q, &id, &why), 401);

    /* claims of the wrong type */
    const char *bad_claims[] = {
        "{\"exp\":1700000100,\"subscribe\":\"chat.*\"}",
        "{\"exp\":1700000100,\"subscribe\":[\"a\",1]}",
        "{\"exp\":1700000100,\"publish\":{}}",
        "{\"exp\":1700000100,\"sub\":42}",
    };
    for (size_t i = 0; i < sizeof bad_claims / sizeof *bad_claims; i++) {
        char *t = make_token(SECRET, bad_claims[i]);
        req_init(&b);
        req_add(&b, "Authorization", "Bearer %s", t);
        CHECK_EQ_INT(auth(&c, &b, NULL, &id, &why), 401);
        CHECK_EQ_STR(why, "malformed token");
        CHECK(id.subscribe == NULL && id.publish == NULL);
        free(t);
    }

    free(tok);
    free(other);
    free(expired);
    free(wrong);
    config_free(&c);
}

static void test_api_key_and_anonymous(void)
{
    config c;
    config_init(&c);
    set(&c, "api_key", APIKEY);
    CHECK_EQ_INT(auth_enabled(&c), 1);
    auth_identity id;
    const char *why;
    req_builder b;

    req_init(&b);
    req_add(&b, "Authorization", "Bearer %s", APIKEY);
    CHECK_EQ_INT(auth(&c, &b, NULL, &id, &why), 0);
    CHECK_EQ_INT(id.kind, AUTH_API_KEY);
    CHECK(auth_can_subscribe(&c, &id, "any", 3));
    CHECK(auth_can_publish(&c, &id, "any", 3));
    auth_identity_free(&id);
    req_init(&b);
    CHECK_EQ_INT(auth(&c, &b, "token=" APIKEY, &id, &why), 0);
    CHECK_EQ_INT(id.kind, AUTH_API_KEY);
    /* a prefix or extension of the key is not the key; no secret set, so
     * nothing else can be checked */
    CHECK_EQ_INT(auth(&c, &b, "token=k3y-for-the-http-ap", &id, &why), 401);
    CHECK_EQ_INT(auth(&c, &b, "token=" APIKEY "x", &id, &why), 401);
    CHECK_EQ_INT(auth(&c, &b, NULL, &id, &why), 401);
    CHECK_EQ_STR(why, "token required");

    /* anonymous on: no credentials -> ANONYMOUS; bad ones still 401 */
    set(&c, "auth_secret", SECRET);
    set(&c, "allow_anonymous", "on");
    CHECK_EQ_INT(auth(&c, &b, NULL, &id, &why), 0);
    CHECK_EQ_INT(id.kind, AUTH_ANONYMOUS);
    CHECK(auth_can_subscribe(&c, &id, "t", 1));
    CHECK(!auth_can_publish(&c, &id, "t", 1));
    set(&c, "anonymous_publish", "on");
    CHECK(auth_can_publish(&c, &id, "t", 1));
    auth_identity_free(&id);
    CHECK_EQ_INT(auth(&c, &b, "token=not.a.token", &id, &why), 401);
    CHECK_EQ_INT(auth(&c, &b, "token=" APIKEY "x", &id, &why), 401);
    char *wrong = make_token("other", "{\"exp\":1700000100}");
    req_add(&b, "Authorization", "Bearer %s", wrong);
    CHECK_EQ_INT(auth(&c, &b, NULL, &id, &why), 401);
    CHECK_EQ_STR(why, "bad signature");
    free(wrong);
    /* the API key still works with a secret set */
    req_init(&b);
    req_add(&b, "Authorization", "Bearer %s", APIKEY);
    CHECK_EQ_INT(auth(&c, &b, NULL, &id, &why), 0);
    CHECK_EQ_INT(id.kind, AUTH_API_KEY);
    config_free(&c);
}

static int origin(const char *list, const char *value, int twice)
{
    config c;
    config_init(&c);
    if (list)
        set(&c, "allowed_origins", list);
    req_builder b;
    req_init(&b);
    if (value)
        req_add(&b, "Origin", "%s", value);
    if (value && twice)
        req_add(&b, "Origin", "%s", value);
    int r = auth_check_origin(&c, &b.req);
    config_free(&c);
    return r;
}

static void test_origin(void)
{
    const char *list = "https://app.example.com, http://localhost:3000 "
                       "https://b.example";
    CHECK_EQ_INT(origin(list, "https://app.example.com", 0), 0);
    CHECK_EQ_INT(origin(list, "http://localhost:3000", 0), 0);
    CHECK_EQ_INT(origin(list, "https://b.example", 0), 0);
    CHECK_EQ_INT(origin(list, "https://evil.example", 0), 403);
    CHECK_EQ_INT(origin(list, "http://app.example.com", 0), 403);
    CHECK_EQ_INT(origin(list, "https://app.example.com:443", 0), 403);
    CHECK_EQ_INT(origin(list, "http://localhost:3001", 0), 403);
    CHECK_EQ_INT(origin(list, "http://localhost", 0), 403);
    CHECK_EQ_INT(origin(list, "https://app.example.co", 0), 403);
    CHECK_EQ_INT(origin(list, "https://app.example.com.evil", 0), 403);
    CHECK_EQ_INT(origin(list, "https://APP.example.com", 0), 403);
    CHECK_EQ_INT(origin(list, "", 0), 403);
    CHECK_EQ_INT(origin(list, NULL, 0), 0); /* absent: not a browser */
    CHECK_EQ_INT(origin(list, "null", 0), 403);
    CHECK_EQ_INT(origin(list, "https://app.example.com", 1), 403);
    CHECK_EQ_INT(origin("*", "https://anything.example", 0), 0);
    CHECK_EQ_INT(origin("https://a.example,*", "https://x.example", 0), 0);
    CHECK_EQ_INT(origin("*", "null", 0), 403); /* a list is set */
    CHECK_EQ_INT(origin(NULL, "https://anything.example", 0), 0);
    CHECK_EQ_INT(origin(NULL, "null", 0), 0);
}

int main(void)
{
    test_patterns();
    test_open();
    test_token();
    test_api_key_and_anonymous();
    test_origin();
    return check_report("test_auth");
}
