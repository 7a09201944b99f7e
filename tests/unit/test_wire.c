/* Unit tests for lib/wire.c: every request rule of PROTOCOL.md "Client to
 * broker", and the exact bytes of every encoder. */
#include "chorus/wire.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* Parses text (NUL-terminated) and expects success. */
static int parse_ok(const char *text, chorus_request *req)
{
    chorus_wire_error err;
    int rc = chorus_request_parse(text, strlen(text), req, &err);

    if (rc != 0) {
        fprintf(stderr, "unexpected error for %s: %s: %s\n", text,
                err.code ? err.code : "(null)", err.message);
        chorus_wire_error_clear(&err);
    }
    return rc;
}

/* Parses len bytes and expects an error with the given code; returns the
 * echoed id as compact JSON text ("" when none) in idbuf. */
static void expect_err_n(const char *text, size_t len, const char *code,
                         const char *want_id, const char *want_msg, int line)
{
    chorus_request req;
    chorus_wire_error err;
    char idbuf[128] = "";
    int rc = chorus_request_parse(text, len, &req, &err);

    check_count++;
    if (rc != -1 || !err.code || strcmp(err.code, code) != 0) {
        check_failures++;
        fprintf(stderr, "%s:%d: %.*s: rc %d code %s (%s), expected %s\n",
                __FILE__, line, (int)len, text, rc,
                err.code ? err.code : "(null)", err.message, code);
    }
    if (rc == 0) {
        chorus_request_free(&req);
        return;
    }
    CHECK(req.root == NULL);
    CHECK(err.message[0] != '\0');
    if (err.id) {
        char *s = json_dumps(err.id, JSON_COMPACT | JSON_ENCODE_ANY);
        snprintf(idbuf, sizeof idbuf, "%s", s);
        free(s);
    }
    check_count++;
    if (strcmp(idbuf, want_id) != 0) {
        check_failures++;
        fprintf(stderr, "%s:%d: %s: echoed id '%s', expected '%s'\n", __FILE__,
                line, text, idbuf, want_id);
    }
    if (want_msg) {
        check_count++;
        if (strcmp(err.message, want_msg) != 0) {
            check_failures++;
            fprintf(stderr, "%s:%d: message \"%s\", expected \"%s\"\n",
                    __FILE__, line, err.message, want_msg);
        }
    }
    chorus_wire_error_clear(&err);
    CHECK(err.id == NULL);
}

#define EXPECT_ERR(text, code, id) \
    expect_err_n(text, strlen(text), code, id, NULL, __LINE__)
#define EXPECT_ERR_MSG(text, code, id, msg) \
    expect_err_n(text, strlen(text), code, id, msg, __LINE__)

#define BAD CHORUS_ERR_BAD_REQUEST
#define TOPIC_MSG "topic must be 1-200 characters of A-Z a-z 0-9 . _ - : / @"

static void test_topic_valid(void)
{
    char name[202];

    CHECK(chorus_topic_valid("news", 4));
    CHECK(chorus_topic_valid("a", 1));
    CHECK(chorus_topic_valid("A-Z.a_z:0/9@x", 13));
    CHECK(!chorus_topic_valid("", 0));
    CHECK(!chorus_topic_valid(NULL, 3));
    memset(name, 'x', sizeof name);
    CHECK(chorus_topic_valid(name, 200));
    CHECK(!chorus_topic_valid(name, 201));
    const char *bad = " !\"#$%&'()*+,;<=>?[\\]^`{|}~\x7f\x80\xc3\xa9\t\n";
    for (const char *p = bad; *p; p++) {
        char t[3] = {'a', *p, 0};
        CHECK(!chorus_topic_valid(t, 2));
    }
    CHECK(!chorus_topic_valid("a\0b", 3));
    CHECK(chorus_topic_valid("a\0b", 1));
}

static void test_epoch_valid(void)
{
    CHECK(chorus_epoch_valid("0123456789abcdef0123456789abcdef"));
    CHECK(!chorus_epoch_valid("0123456789ABCDEF0123456789abcdef"));
    CHECK(!chorus_epoch_valid("0123456789abcdef0123456789abcde"));
    CHECK(!chorus_epoch_valid("0123456789abcdef0123456789abcdef0"));
    CHECK(!chorus_epoch_valid("0123456789abcdef0123456789abcdeg"));
    CHECK(!chorus_epoch_valid(""));
    CHECK(!chorus_epoch_valid(NULL));
}

static void test_parse_ok(void)
{
    chorus_request req;

    CHECK_EQ_INT(parse_ok("{\"op\":\"ping\"}", &req), 0);
    CHECK_EQ_INT(req.op, CHORUS_OP_PING);
    CHECK(req.id == NULL);
    CHECK(req.topic == NULL);
    chorus_request_free(&req);
    CHECK(req.root == NULL);

    CHECK_EQ_INT(parse_ok("{\"op\":\"ping\",\"id\":10}", &req), 0);
    CHECK(json_is_integer(req.id) && json_integer_value(req.id) == 10);
    chorus_request_free(&req);

    /* ping ignores a topic, even an invalid one (unknown fields). */
    CHECK_EQ_INT(parse_ok("{\"op\":\"ping\",\"topic\":\"b a d\"}", &req), 0);
    chorus_request_free(&req);

    CHECK_EQ_INT(parse_ok(" {\"id\":\"abc\",\"topic\":\"news\","
                          "\"op\":\"subscribe\",\"extra\":[1,2]} ",
                          &req),
                 0);
    CHECK_EQ_INT(req.op, CHORUS_OP_SUBSCRIBE);
    CHECK(json_is_string(req.id));
    CHECK_EQ_STR(json_string_value(req.id), "abc");
    CHECK_EQ_STR(req.topic, "news");
    CHECK_EQ_INT(req.topic_len, 4);
    CHECK_EQ_INT(req.has_since, 0);
    CHECK(req.data == NULL);
    chorus_request_free(&req);

    CHECK_EQ_INT(parse_ok("{\"op\":\"unsubscribe\",\"topic\":\"a/b@c\","
                          "\"since\":5,\"data\":1}",
                          &req),
                 0);
    CHECK_EQ_INT(req.op, CHORUS_OP_UNSUBSCRIBE);
    CHECK_EQ_STR(req.topic, "a/b@c");
    CHECK_EQ_INT(req.has_since, 0);
    chorus_request_free(&req);

    CHECK_EQ_INT(parse_ok("{\"op\":\"publish\",\"topic\":\"t\",\"id\":-3,"
                          "\"data\":{\"text\":\"hi\"}}",
                          &req),
                 0);
    CHECK_EQ_INT(req.op, CHORUS_OP_PUBLISH);
    CHECK(json_integer_value(req.id) == -3);
    CHECK(json_is_object(req.data));
    chorus_request_free(&req);

    /* data null is a valid message; so is a string with \u0000. */
    CHECK_EQ_INT(parse_ok("{\"op\":\"publish\",\"topic\":\"t\","
                          "\"data\":null}",
                          &req),
                 0);
    CHECK(req.data && json_is_null(req.data));
    chorus_request_free(&req);
    CHECK_EQ_INT(parse_ok("{\"op\":\"publish\",\"topic\":\"t\","
                          "\"data\":\"a\\u0000b\"}",
                          &req),
                 0);
    CHECK_EQ_INT(json_string_length(req.data), 3);
    chorus_request_free(&req);
    CHECK_EQ_INT(parse_ok("{\"op\":\"publish\",\"topic\":\"t\","
                          "\"data\":[1,2.5,false,\"\\u00e9\"]}",
                          &req),
                 0);
    chorus_request_free(&req);

    /* Topic edge: exactly 200 bytes. */
    {
        char text[400], name[201];
        memset(name, 'q', 200);
        name[200] = '\0';
        snprintf(text, sizeof text, "{\"op\":\"subscribe\",\"topic\":\"%s\"}",
                 name);
        CHECK_EQ_INT(parse_ok(text, &req), 0);
        CHECK_EQ_INT(req.topic_len, 200);
        chorus_request_free(&req);
    }
    /* Every allowed character. */
    CHECK_EQ_INT(parse_ok("{\"op\":\"subscribe\",\"topic\":\"ABCXYZabcxyz"
                          "0123456789._-:/@\"}",
                          &req),
                 0);
    chorus_request_free(&req);

    /* id: a string of exactly 64 bytes, the empty string, big integers. */
    {
        char text[200], id[65];
        memset(id, 'i', 64);
        id[64] = '\0';
        snprintf(text, sizeof text, "{\"op\":\"ping\",\"id\":\"%s\"}", id);
        CHECK_EQ_INT(parse_ok(text, &req), 0);
        CHECK_EQ_INT(json_string_length(req.id), 64);
        chorus_request_free(&req);
        /* 64 bytes as 32 two-byte characters. */
        char *p = id;
        for (int i = 0; i < 32; i++)
            p = memcpy(p, "\xc3\xa9", 2), p += 2;
        *p = '\0';
        snprintf(text, sizeof text, "{\"op\":\"ping\",\"id\":\"%s\"}", id);
        CHECK_EQ_INT(parse_ok(text, &req), 0);
        chorus_request_free(&req);
    }
    CHECK_EQ_INT(parse_ok("{\"op\":\"ping\",\"id\":\"\"}", &req), 0);
    chorus_request_free(&req);
    CHECK_EQ_INT(parse_ok("{\"op\":\"ping\",\"id\":9223372036854775807}", &req),
                 0);
    CHECK(json_integer_value(req.id) == INT64_MAX);
    chorus_request_free(&req);
    CHECK_EQ_INT(parse_ok("{\"op\":\"ping\",\"id\":0}", &req), 0);
    chorus_request_free(&req);
}

static void test_parse_since(void)
{
    chorus_request req;
    const char *e = "0123456789abcdef0123456789abcdef";
    char text[256];

    snprintf(text, sizeof text,
             "{\"op\":\"subscribe\",\"topic\":\"n\","
             "\"since\":{\"epoch\":\"%s\",\"offset\":42}}",
             e);
    CHECK_EQ_INT(parse_ok(text, &req), 0);
    CHECK_EQ_INT(req.has_since, 1);
    CHECK_EQ_STR(req.since_epoch, e);
    CHECK(req.since_offset == 42);
    chorus_request_free(&req);

    /* offset 0, any epoch string (shape is the caller's business), extra
     * fields inside since. */
    CHECK_EQ_INT(parse_ok("{\"op\":\"subscribe\",\"topic\":\"n\",\"since\":"
                          "{\"offset\":0,\"epoch\":\"\",\"x\":1}}",
                          &req),
                 0);
    CHECK_EQ_INT(req.has_since, 1);
    CHECK_EQ_STR(req.since_epoch, "");
    CHECK(req.since_offset == 0);
    chorus_request_free(&req);
    CHECK_EQ_INT(parse_ok("{\"op\":\"subscribe\",\"topic\":\"n\",\"since\":"
                          "{\"epoch\":\"old\",\"offset\":"
                          "9223372036854775807}}",
                          &req),
                 0);
    CHECK_EQ_STR(req.since_epoch, "old");
    CHECK(req.since_offset == INT64_MAX);
    chorus_request_free(&req);

    /* An epoch with an embedded NUL never passes for a real one. */
    snprintf(text, sizeof text,
             "{\"op\":\"subscribe\",\"topic\":\"n\","
             "\"since\":{\"epoch\":\"%s\\u0000x\",\"offset\":1}}",
             e);
    CHECK_EQ_INT(parse_ok(text, &req), 0);
    CHECK_EQ_INT(req.has_since, 1);
    CHECK(!chorus_epoch_valid(req.since_epoch));
    chorus_request_free(&req);

    const char *smsg = "\"since\" must be an object {\"epoch\": \"...\", "
                       "\"offset\": N}";
    const char *emsg = "\"since.epoch\" must be a string";
    const char *omsg = "\"since.offset\" must be a non-negative integer";
#define SUB "{\"op\":\"subscribe\",\"topic\":\"n\",\"id\":1,\"since\":"
    EXPECT_ERR_MSG(SUB "null}", BAD, "1", smsg);
    EXPECT_ERR_MSG(SUB "5}", BAD, "1", smsg);
    EXPECT_ERR_MSG(SUB "\"e:5\"}", BAD, "1", smsg);
    EXPECT_ERR_MSG(SUB "[\"e\",5]}", BAD, "1", smsg);
    EXPECT_ERR_MSG(SUB "{}}", BAD, "1", emsg);
    EXPECT_ERR_MSG(SUB "{\"offset\":5}}", BAD, "1", emsg);
    EXPECT_ERR_MSG(SUB "{\"epoch\":5,\"offset\":5}}", BAD, "1", emsg);
    EXPECT_ERR_MSG(SUB "{\"epoch\":null,\"offset\":5}}", BAD, "1", emsg);
    EXPECT_ERR_MSG(SUB "{\"epoch\":\"e\"}}", BAD, "1", omsg);
    EXPECT_ERR_MSG(SUB "{\"epoch\":\"e\",\"offset\":-1}}", BAD, "1", omsg);
    EXPECT_ERR_MSG(SUB "{\"epoch\":\"e\",\"offset\":1.0}}", BAD, "1", omsg);
    EXPECT_ERR_MSG(SUB "{\"epoch\":\"e\",\"offset\":1e2}}", BAD, "1", omsg);
    EXPECT_ERR_MSG(SUB "{\"epoch\":\"e\",\"offset\":\"5\"}}", BAD, "1", omsg);
    EXPECT_ERR_MSG(SUB "{\"epoch\":\"e\",\"offset\":null}}", BAD, "1", omsg);
    EXPECT_ERR_MSG(SUB "{\"epoch\":\"e\",\"offset\":true}}", BAD, "1", omsg);
#undef SUB
    /* Topic is checked before since. */
    EXPECT_ERR("{\"op\":\"subscribe\",\"topic\":\"a b\",\"since\":5}",
               CHORUS_ERR_INVALID_TOPIC, "");
}

static void test_parse_errors(void)
{
    /* Not JSON, not an object: no id to echo. */
    EXPECT_ERR("", BAD, "");
    EXPECT_ERR("{", BAD, "");
    EXPECT_ERR("{\"op\":\"ping\"", BAD, "");
    EXPECT_ERR("{\"op\":\"ping\"} x", BAD, "");
    EXPECT_ERR("{'op':'ping'}", BAD, "");
    EXPECT_ERR("nope", BAD, "");
    EXPECT_ERR_MSG("42", BAD, "", "a request must be a JSON object");
    EXPECT_ERR_MSG("\"ping\"", BAD, "", "a request must be a JSON object");
    EXPECT_ERR_MSG("null", BAD, "", "a request must be a JSON object");
    EXPECT_ERR_MSG("[{\"op\":\"ping\",\"id\":1}]", BAD, "",
                   "a request must be a JSON object");
    EXPECT_ERR("{\"op\":\"ping\",\"id\":99999999999999999999}", BAD, "");
    {
        chorus_request req;
        chorus_wire_error err;
        CHECK_EQ_INT(chorus_request_parse("{\"op\":1}x", 8, &req, &err), -1);
        CHECK_EQ_STR(err.code, BAD); /* len respected: the 'x' not seen */
        CHECK_EQ_STR(err.message, "\"op\" must be a string");
        chorus_wire_error_clear(&err);
        CHECK_EQ_INT(chorus_request_parse("{\"op\":\"ping\"}", 5, &req, &err),
                     -1);
        CHECK(strncmp(err.message, "not valid JSON: ", 16) == 0);
        chorus_wire_error_clear(&err);
    }

    /* id: wrong types and lengths get bad_request with no id echoed. */
    const char *idmsg = "\"id\" must be an integer or a string of at most "
                        "64 bytes";
    EXPECT_ERR_MSG("{\"op\":\"ping\",\"id\":1.5}", BAD, "", idmsg);
    EXPECT_ERR_MSG("{\"op\":\"ping\",\"id\":1.0}", BAD, "", idmsg);
    EXPECT_ERR_MSG("{\"op\":\"ping\",\"id\":1e3}", BAD, "", idmsg);
    EXPECT_ERR_MSG("{\"op\":\"ping\",\"id\":true}", BAD, "", idmsg);
    EXPECT_ERR_MSG("{\"op\":\"ping\",\"id\":false}", BAD, "", idmsg);
    EXPECT_ERR_MSG("{\"op\":\"ping\",\"id\":null}", BAD, "", idmsg);
    EXPECT_ERR_MSG("{\"op\":\"ping\",\"id\":{}}", BAD, "", idmsg);
    EXPECT_ERR_MSG("{\"op\":\"ping\",\"id\":[1]}", BAD, "", idmsg);
    /* Bad id wins over a bad op. */
    EXPECT_ERR_MSG("{\"op\":\"nope\",\"id\":[1]}", BAD, "", idmsg);
    EXPECT_ERR_MSG("{\"id\":null}", BAD, "", idmsg);
    {
        char text[200], id[66];
        memset(id, 'i', 65);
        id[65] = '\0';
        snprintf(text, sizeof text, "{\"op\":\"ping\",\"id\":\"%s\"}", id);
        EXPECT_ERR_MSG(text, BAD, "", idmsg);
        /* 65 bytes made of 33 characters: the limit is in bytes. */
        char *p = id;
        for (int i = 0; i < 32; i++)
            p = memcpy(p, "\xc3\xa9", 2), p += 2;
        *p++ = 'x';
        *p = '\0';
        snprintf(text, sizeof text, "{\"op\":\"ping\",\"id\":\"%s\"}", id);
        EXPECT_ERR_MSG(text, BAD, "", idmsg);
    }

    /* op: missing or not a string -> bad_request; unknown -> unknown_op.
     * From here on a valid id is echoed, with its JSON type. */
    EXPECT_ERR_MSG("{}", BAD, "", "missing \"op\"");
    EXPECT_ERR_MSG("{\"id\":7}", BAD, "7", "missing \"op\"");
    EXPECT_ERR_MSG("{\"id\":\"7\",\"op\":7}", BAD, "\"7\"",
                   "\"op\" must be a string");
    EXPECT_ERR("{\"id\":7,\"op\":null}", BAD, "7");
    EXPECT_ERR("{\"id\":7,\"op\":[\"ping\"]}", BAD, "7");
    EXPECT_ERR_MSG("{\"id\":7,\"op\":\"pong\"}", CHORUS_ERR_UNKNOWN_OP, "7",
                   "unknown op \"pong\" (expected subscribe, unsubscribe, "
                   "publish or ping)");
    EXPECT_ERR("{\"id\":-7,\"op\":\"PING\"}", CHORUS_ERR_UNKNOWN_OP, "-7");
    EXPECT_ERR("{\"id\":\"x\",\"op\":\"\"}", CHORUS_ERR_UNKNOWN_OP, "\"x\"");
    EXPECT_ERR("{\"op\":\"ping \"}", CHORUS_ERR_UNKNOWN_OP, "");
    EXPECT_ERR_MSG("{\"op\":\"ping\\u0000x\"}", CHORUS_ERR_UNKNOWN_OP, "",
                   "unknown op \"ping\" (expected subscribe, unsubscribe, "
                   "publish or ping)");
    EXPECT_ERR_MSG("{\"op\":\"abcdefghijklmnopqrstuvwxyz0123456789\"}",
                   CHORUS_ERR_UNKNOWN_OP, "",
                   "unknown op \"abcdefghijklmnopqrstuvwxyz012345...\" "
                   "(expected subscribe, unsubscribe, publish or ping)");
    /* A long op is cut on a character boundary: 31 ASCII bytes, then
     * two-byte characters. */
    EXPECT_ERR_MSG("{\"op\":\"abcdefghijklmnopqrstuvwxyz01234\xc3\xa9\xc3\xa9"
                   "\"}",
                   CHORUS_ERR_UNKNOWN_OP, "",
                   "unknown op \"abcdefghijklmnopqrstuvwxyz01234...\" "
                   "(expected subscribe, unsubscribe, publish or ping)");

    /* topic: missing / non-string -> bad_request; invalid -> invalid_topic */
    EXPECT_ERR_MSG("{\"id\":1,\"op\":\"subscribe\"}", BAD, "1",
                   "missing \"topic\"");
    EXPECT_ERR_MSG("{\"id\":1,\"op\":\"unsubscribe\",\"topic\":5}", BAD, "1",
                   "\"topic\" must be a string");
    EXPECT_ERR("{\"id\":1,\"op\":\"publish\",\"topic\":null,\"data\":1}", BAD,
               "1");
    EXPECT_ERR("{\"id\":1,\"op\":\"publish\",\"topic\":[\"a\"],\"data\":1}",
               BAD, "1");
    EXPECT_ERR("{\"op\":\"publish\",\"data\":1}", BAD, "");
    EXPECT_ERR_MSG("{\"id\":\"s\",\"op\":\"subscribe\",\"topic\":\"\"}",
                   CHORUS_ERR_INVALID_TOPIC, "\"s\"", TOPIC_MSG);
    const char *badtopics[] = {
        "a b",   "a#b",    "a+b", "a*", "caf\xc3\xa9", "a\\u0000b",
        "a\\tb", "a\\\"b", "a,b", "a?", "\\u0000",     "x\\u007f"};
    for (size_t i = 0; i < sizeof badtopics / sizeof badtopics[0]; i++) {
        char text[128];
        snprintf(text, sizeof text,
                 "{\"id\":2,\"op\":\"publish\",\"topic\":\"%s\",\"data\":1}",
                 badtopics[i]);
        EXPECT_ERR_MSG(text, CHORUS_ERR_INVALID_TOPIC, "2", TOPIC_MSG);
    }
    {
        char text[400], name[202];
        memset(name, 'q', 201);
        name[201] = '\0';
        snprintf(text, sizeof text,
                 "{\"op\":\"unsubscribe\",\"id\":3,\"topic\":\"%s\"}", name);
        EXPECT_ERR_MSG(text, CHORUS_ERR_INVALID_TOPIC, "3", TOPIC_MSG);
    }
    /* Bad op wins over a bad topic. */
    EXPECT_ERR("{\"op\":\"sub\",\"topic\":\"a b\"}", CHORUS_ERR_UNKNOWN_OP, "");

    /* publish needs data; topic is checked first. */
    EXPECT_ERR_MSG("{\"id\":4,\"op\":\"publish\",\"topic\":\"t\"}", BAD, "4",
                   "publish needs \"data\" (any JSON value, null included)");
    EXPECT_ERR("{\"id\":4,\"op\":\"publish\",\"topic\":\"a b\"}",
               CHORUS_ERR_INVALID_TOPIC, "4");
    EXPECT_ERR("{\"id\":4,\"op\":\"publish\",\"topic\":\"t\",\"Data\":1}", BAD,
               "4");

    /* Invalid UTF-8 is not JSON. */
    EXPECT_ERR("{\"op\":\"publish\",\"topic\":\"t\",\"data\":\"\xff\"}", BAD,
               "");
}

/* The echoed id keeps its JSON type and exact value in every encoder. */
static void test_id_echo(void)
{
    chorus_request req;
    size_t len;
    char *s;

    CHECK_EQ_INT(parse_ok("{\"op\":\"ping\",\"id\":123456789012}", &req), 0);
    s = chorus_encode_pong(req.id, &len);
    CHECK_EQ_STR(s, "{\"op\":\"pong\",\"id\":123456789012}");
    free(s);
    chorus_request_free(&req);

    CHECK_EQ_INT(parse_ok("{\"op\":\"ping\",\"id\":\"123\"}", &req), 0);
    s = chorus_encode_pong(req.id, &len);
    CHECK_EQ_STR(s, "{\"op\":\"pong\",\"id\":\"123\"}");
    free(s);
    chorus_request_free(&req);

    CHECK_EQ_INT(parse_ok("{\"op\":\"ping\",\"id\":\"\\u00e9\\\"\\n"
                          "\\u0000\"}",
                          &req),
                 0);
    s = chorus_encode_pong(req.id, &len);
    CHECK_EQ_STR(s, "{\"op\":\"pong\",\"id\":\"\xc3\xa9\\\"\\n\\u0000\"}");
    free(s);
    chorus_request_free(&req);

    /* An error after a valid id: the id outlives the request. */
    chorus_wire_error err;
    const char *t = "{\"op\":\"nope\",\"id\":\"abc\"}";
    CHECK_EQ_INT(chorus_request_parse(t, strlen(t), &req, &err), -1);
    s = chorus_encode_error(err.id, err.code, err.message, &len);
    CHECK_EQ_STR(s, "{\"op\":\"error\",\"id\":\"abc\",\"code\":\"unknown_op\","
                    "\"message\":\"unknown op \\\"nope\\\" (expected "
                    "subscribe, unsubscribe, publish or ping)\"}");
    CHECK_EQ_INT(len, strlen(s));
    free(s);
    chorus_wire_error_clear(&err);
}

static void test_encoders(void)
{
    json_t *id = json_integer(7), *sid = json_string("q-1");
    size_t len = 0;
    char *s;

    s = chorus_encode_subscribed(id, "news", "9f2c0000000000000000000000000000",
                                 50, 1, &len);
    CHECK_EQ_STR(s, "{\"op\":\"subscribed\",\"id\":7,\"topic\":\"news\","
                    "\"epoch\":\"9f2c0000000000000000000000000000\","
                    "\"offset\":50,\"recovered\":true}");
    CHECK_EQ_INT(len, strlen(s));
    free(s);
    s = chorus_encode_subscribed(NULL, "a/b", "e", 0, 0, &len);
    CHECK_EQ_STR(s, "{\"op\":\"subscribed\",\"topic\":\"a/b\",\"epoch\":"
                    "\"e\",\"offset\":0,\"recovered\":false}");
    free(s);
    s = chorus_encode_subscribed(sid, "t", "e", 9223372036854775807ULL, 5,
                                 NULL);
    CHECK_EQ_STR(s, "{\"op\":\"subscribed\",\"id\":\"q-1\",\"topic\":\"t\","
                    "\"epoch\":\"e\",\"offset\":9223372036854775807,"
                    "\"recovered\":true}");
    free(s);

    s = chorus_encode_unsubscribed(json_integer_value(id) ? id : NULL, "news",
                                   &len);
    CHECK_EQ_STR(s, "{\"op\":\"unsubscribed\",\"id\":7,\"topic\":\"news\"}");
    CHECK_EQ_INT(len, strlen(s));
    free(s);
    s = chorus_encode_unsubscribed(NULL, "news", &len);
    CHECK_EQ_STR(s, "{\"op\":\"unsubscribed\",\"topic\":\"news\"}");
    free(s);

    s = chorus_encode_published(id, "news", 51, &len);
    CHECK_EQ_STR(s, "{\"op\":\"published\",\"id\":7,\"topic\":\"news\","
                    "\"offset\":51}");
    CHECK_EQ_INT(len, strlen(s));
    free(s);
    s = chorus_encode_published(NULL, "news", 1, &len);
    CHECK_EQ_STR(s, "{\"op\":\"published\",\"topic\":\"news\",\"offset\":1}");
    free(s);

    s = chorus_encode_pong(id, &len);
    CHECK_EQ_STR(s, "{\"op\":\"pong\",\"id\":7}");
    CHECK_EQ_INT(len, 20);
    free(s);
    s = chorus_encode_pong(NULL, &len);
    CHECK_EQ_STR(s, "{\"op\":\"pong\"}");
    CHECK_EQ_INT(len, 13);
    free(s);

    s = chorus_encode_error(id, CHORUS_ERR_FORBIDDEN,
                            "no publish permission for news", &len);
    CHECK_EQ_STR(s, "{\"op\":\"error\",\"id\":7,\"code\":\"forbidden\","
                    "\"message\":\"no publish permission for news\"}");
    CHECK_EQ_INT(len, strlen(s));
    free(s);
    s = chorus_encode_error(NULL, CHORUS_ERR_BAD_REQUEST,
                            "quote \" backslash \\ tab \t caf\xc3\xa9", &len);
    CHECK_EQ_STR(s, "{\"op\":\"error\",\"code\":\"bad_request\",\"message\":"
                    "\"quote \\\" backslash \\\\ tab \\t caf\xc3\xa9\"}");
    free(s);
    /* Invalid UTF-8 in a message is replaced, never makes the reply fail. */
    s = chorus_encode_error(NULL, CHORUS_ERR_BAD_REQUEST,
                            "a\xff"
                            "b\xc3"
                            "c\xed\xa0\x80"
                            "d\xe2\x82",
                            &len);
    CHECK_EQ_STR(s, "{\"op\":\"error\",\"code\":\"bad_request\",\"message\":"
                    "\"a?b?c???d??\"}");
    free(s);
    s = chorus_encode_error(sid, CHORUS_ERR_INTERNAL, NULL, &len);
    CHECK_EQ_STR(s, "{\"op\":\"error\",\"id\":\"q-1\",\"code\":\"internal\","
                    "\"message\":\"\"}");
    free(s);

    /* The encoders take their own reference to id. */
    CHECK_EQ_INT(id->refcount, 1);
    CHECK_EQ_INT(sid->refcount, 1);
    json_decref(id);
    json_decref(sid);
}

static void check_message(const char *topic, uint64_t offset, int64_t ts,
                          const char *data, const char *want, int line)
{
    size_t tl = strlen(topic), dl = strlen(data);
    size_t bound = chorus_message_bound(tl, dl);
    char *out = malloc(bound);
    size_t n = chorus_encode_message(out, topic, tl, offset, ts, data, dl);

    check_count += 3;
    if (n != strlen(want) || memcmp(out, want, n) != 0) {
        check_failures++;
        fprintf(stderr, "%s:%d: message \"%.*s\", expected \"%s\"\n", __FILE__,
                line, (int)n, out, want);
    }
    if (n >= bound) {
        check_failures++;
        fprintf(stderr, "%s:%d: %zu bytes, bound %zu\n", __FILE__, line, n,
                bound);
    }
    if (out[n] != '\0') {
        check_failures++;
        fprintf(stderr, "%s:%d: not NUL-terminated\n", __FILE__, line);
    }
    /* The result is valid JSON with the same fields. */
    json_t *v = json_loadb(out, n, 0, NULL);
    CHECK(v != NULL);
    if (v) {
        CHECK_EQ_STR(json_string_value(json_object_get(v, "op")), "message");
        CHECK_EQ_STR(json_string_value(json_object_get(v, "topic")), topic);
        json_decref(v);
    }
    free(out);
}

static void test_encode_message(void)
{
    check_message("news", 42, 1764000000123LL, "{\"text\":\"hi\"}",
                  "{\"op\":\"message\",\"topic\":\"news\",\"offset\":42,"
                  "\"ts\":1764000000123,\"data\":{\"text\":\"hi\"}}",
                  __LINE__);
    check_message("a", 0, 0, "null",
                  "{\"op\":\"message\",\"topic\":\"a\",\"offset\":0,\"ts\":0,"
                  "\"data\":null}",
                  __LINE__);
    check_message("t", 1, 9, "\"x\"",
                  "{\"op\":\"message\",\"topic\":\"t\",\"offset\":1,\"ts\":9,"
                  "\"data\":\"x\"}",
                  __LINE__);
    check_message("t", 10, -1, "[1,2]",
                  "{\"op\":\"message\",\"topic\":\"t\",\"offset\":10,"
                  "\"ts\":-1,\"data\":[1,2]}",
                  __LINE__);
    check_message("t", 9223372036854775807ULL, INT64_MAX, "1",
                  "{\"op\":\"message\",\"topic\":\"t\",\"offset\":"
                  "9223372036854775807,\"ts\":9223372036854775807,"
                  "\"data\":1}",
                  __LINE__);
    /* Extremes of the integer formatting (not valid JSON offsets, but the
     * bound must hold). */
    {
        const char *want = "{\"op\":\"message\",\"topic\":\"t\",\"offset\":"
                           "18446744073709551615,\"ts\":-9223372036854775808,"
                           "\"data\":1}";
        size_t bound = chorus_message_bound(1, 1);
        char *out = malloc(bound);
        size_t n =
            chorus_encode_message(out, "t", 1, UINT64_MAX, INT64_MIN, "1", 1);
        CHECK_EQ_INT(n, strlen(want));
        CHECK_EQ_INT(memcmp(out, want, n), 0);
        CHECK_EQ_INT(bound, n + 1); /* the bound is tight here */
        free(out);
    }
    /* A 200-byte topic and a large payload; topic_len is honoured. */
    {
        char topic[201], want[2048];
        memset(topic, 'z', 200);
        topic[200] = '\0';
        snprintf(want, sizeof want,
                 "{\"op\":\"message\",\"topic\":\"%s\","
                 "\"offset\":100,\"ts\":1000,\"data\":{}}",
                 topic);
        check_message(topic, 100, 1000, "{}", want, __LINE__);
        char out[512];
        CHECK(chorus_message_bound(3, 2) <= sizeof out);
        size_t n = chorus_encode_message(out, "abcdef", 3, 5, 6, "{}xx", 2);
        CHECK_EQ_STR(out, "{\"op\":\"message\",\"topic\":\"abc\",\"offset\":5,"
                          "\"ts\":6,\"data\":{}}");
        CHECK_EQ_INT(n, strlen(out));
    }
    /* Every power of ten formats correctly. */
    uint64_t p = 1;
    for (int i = 0; i < 20; i++, p *= 10) {
        char out[256], want[256];
        chorus_encode_message(out, "t", 1, p, -(int64_t)(p / 10), "0", 1);
        snprintf(want, sizeof want,
                 "{\"op\":\"message\",\"topic\":\"t\","
                 "\"offset\":%llu,\"ts\":%lld,\"data\":0}",
                 (unsigned long long)p, -(long long)(p / 10));
        CHECK_EQ_STR(out, want);
        chorus_encode_message(out, "t", 1, p - 1, (int64_t)(p - 1), "0", 1);
        snprintf(want, sizeof want,
                 "{\"op\":\"message\",\"topic\":\"t\","
                 "\"offset\":%llu,\"ts\":%lld,\"data\":0}",
                 (unsigned long long)(p - 1), (long long)(p - 1));
        CHECK_EQ_STR(out, want);
    }
}

int main(void)
{
    test_topic_valid();
    test_epoch_valid();
    test_parse_ok();
    test_parse_since();
    test_parse_errors();
    test_id_echo();
    test_encoders();
    test_encode_message();
    return check_report("test_wire");
}
