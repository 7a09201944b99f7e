/* libFuzzer target for the /ws request parser (lib/wire.c) and the replies
 * built from what it returns.
 *
 * The input is one text message, as the broker hands it to
 * chorus_request_parse (at most max_message_size, 1 MiB by default). The
 * target checks:
 *   - a parsed request keeps the documented shape: object root, id an
 *     integer or a string of <= 64 bytes, a valid topic whose C string has
 *     its full length, data present on publish, since only on subscribe;
 *   - parsing is stable: the root dumped back to JSON parses to the same
 *     request;
 *   - every reply the broker would send (subscribed, unsubscribed,
 *     published, pong, error, message) is JSON that parses back with the
 *     same id, topic, data and error text;
 *   - an error has a known code and a non-empty message, and echoes the id
 *     only when it was valid. */
#include <string.h>

#include "chorus/wire.h"
#include "fuzz.h"

#define MAX_MESSAGE (1u << 20)

static const char *const codes[] = {
    CHORUS_ERR_BAD_REQUEST,   CHORUS_ERR_UNKNOWN_OP,
    CHORUS_ERR_INVALID_TOPIC, CHORUS_ERR_UNAUTHORIZED,
    CHORUS_ERR_FORBIDDEN,     CHORUS_ERR_TOO_LARGE,
    CHORUS_ERR_RATE_LIMITED,  CHORUS_ERR_NOT_SUBSCRIBED,
    CHORUS_ERR_INTERNAL,
};

/* Parses a reply of len bytes (from *len_p, set by the encoder that
 * produced text) and checks its "op" and "id". Returns it (decref it). */
static json_t *reply(char *text, const size_t *len_p, const char *op,
                     json_t *id)
{
    json_t *r, *rid;

    FUZZ_ASSERT(text && strlen(text) == *len_p);
    r = json_loadb(text, *len_p, JSON_ALLOW_NUL, NULL);
    free(text);
    FUZZ_ASSERT(json_is_object(r));
    FUZZ_ASSERT(strcmp(json_string_value(json_object_get(r, "op")), op) == 0);
    rid = json_object_get(r, "id");
    FUZZ_ASSERT(id ? json_equal(rid, id) : rid == NULL);
    return r;
}

static void check_topic_field(json_t *r, const chorus_request *req)
{
    json_t *t = json_object_get(r, "topic");

    FUZZ_ASSERT(json_string_length(t) == req->topic_len);
    FUZZ_ASSERT(memcmp(json_string_value(t), req->topic, req->topic_len) == 0);
    json_decref(r);
}

/* The "message" event built by hand around the data's serialization, as
 * the broker's publish path does (session.c, fanout.c). */
static void check_message(const chorus_request *req)
{
    char *data = json_dumps(req->data, JSON_COMPACT | JSON_ENCODE_ANY);
    size_t dlen, bound, n;
    char *out;
    json_t *r;

    FUZZ_ASSERT(data);
    dlen = strlen(data);
    bound = chorus_message_bound(req->topic_len, dlen);
    out = malloc(bound);
    FUZZ_ASSERT(out);
    n = chorus_encode_message(out, req->topic, req->topic_len, INT64_MAX,
                              INT64_MIN, data, dlen);
    FUZZ_ASSERT(n < bound && out[n] == '\0');
    r = json_loadb(out, n, JSON_ALLOW_NUL, NULL);
    FUZZ_ASSERT(json_is_object(r));
    FUZZ_ASSERT(json_equal(json_object_get(r, "data"), req->data));
    FUZZ_ASSERT(json_integer_value(json_object_get(r, "ts")) == INT64_MIN);
    check_topic_field(r, req);
    free(out);
    free(data);
}

static void check_replies(const chorus_request *req)
{
    static const char epoch[] = "0123456789abcdef0123456789abcdef";
    size_t len = 0;

    if (req->op == CHORUS_OP_PING) {
        json_decref(
            reply(chorus_encode_pong(req->id, &len), &len, "pong", req->id));
        return;
    }
    check_topic_field(reply(chorus_encode_subscribed(req->id, req->topic, epoch,
                                                     INT64_MAX, 1, &len),
                            &len, "subscribed", req->id),
                      req);
    check_topic_field(
        reply(chorus_encode_unsubscribed(req->id, req->topic, &len), &len,
              "unsubscribed", req->id),
        req);
    check_topic_field(
        reply(chorus_encode_published(req->id, req->topic, 42, &len), &len,
              "published", req->id),
        req);
    if (req->op == CHORUS_OP_PUBLISH)
        check_message(req);
}

static void check_request(const chorus_request *req)
{
    FUZZ_ASSERT(json_is_object(req->root));
    if (req->id)
        FUZZ_ASSERT(json_is_integer(req->id) ||
                    (json_is_string(req->id) &&
                     json_string_length(req->id) <= CHORUS_ID_MAX));
    FUZZ_ASSERT(req->op >= CHORUS_OP_SUBSCRIBE && req->op <= CHORUS_OP_PING);
    if (req->op == CHORUS_OP_PING) {
        FUZZ_ASSERT(!req->topic && !req->data && !req->has_since);
        return;
    }
    FUZZ_ASSERT(chorus_topic_valid(req->topic, req->topic_len));
    FUZZ_ASSERT(strlen(req->topic) == req->topic_len);
    FUZZ_ASSERT((req->data != NULL) == (req->op == CHORUS_OP_PUBLISH));
    FUZZ_ASSERT(!req->has_since || req->op == CHORUS_OP_SUBSCRIBE);
    if (req->has_since)
        FUZZ_ASSERT(req->since_epoch &&
                    req->since_offset <= (uint64_t)INT64_MAX);
}

/* Dumping the parsed root and parsing it again gives the same request. */
static void check_stable(const chorus_request *req)
{
    char *text = json_dumps(req->root, JSON_COMPACT | JSON_ENCODE_ANY);
    chorus_request again;
    chorus_wire_error err;

    FUZZ_ASSERT(text);
    FUZZ_ASSERT(chorus_request_parse(text, strlen(text), &again, &err) == 0);
    FUZZ_ASSERT(again.op == req->op && again.has_since == req->has_since);
    FUZZ_ASSERT(json_equal(again.root, req->root));
    FUZZ_ASSERT(again.topic_len == req->topic_len);
    FUZZ_ASSERT(again.since_offset == req->since_offset);
    chorus_request_free(&again);
    free(text);
}

static void check_error(const chorus_wire_error *err)
{
    size_t len = 0, i;
    json_t *r;

    for (i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (err->code && strcmp(err->code, codes[i]) == 0)
            break;
    FUZZ_ASSERT(i < sizeof codes / sizeof codes[0]);
    FUZZ_ASSERT(err->message[0] != '\0');
    FUZZ_ASSERT(memchr(err->message, '\0', sizeof err->message));
    if (err->id)
        FUZZ_ASSERT(json_is_integer(err->id) ||
                    (json_is_string(err->id) &&
                     json_string_length(err->id) <= CHORUS_ID_MAX));
    r = reply(chorus_encode_error(err->id, err->code, err->message, &len), &len,
              "error", err->id);
    FUZZ_ASSERT(
        strcmp(json_string_value(json_object_get(r, "code")), err->code) == 0);
    FUZZ_ASSERT(json_is_string(json_object_get(r, "message")));
    json_decref(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    chorus_request req;
    chorus_wire_error err;

    if (size > MAX_MESSAGE)
        return 0;
    if (chorus_request_parse((const char *)data, size, &req, &err) == 0) {
        FUZZ_ASSERT(err.code == NULL && err.id == NULL);
        check_request(&req);
        check_stable(&req);
        check_replies(&req);
        chorus_request_free(&req);
    } else {
        FUZZ_ASSERT(req.root == NULL);
        check_error(&err);
        chorus_wire_error_clear(&err);
    }
    return 0;
}
