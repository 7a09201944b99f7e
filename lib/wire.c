/* The Chorus wire protocol (PROTOCOL.md): requests parsed with jansson into
 * chorus_request, replies encoded as compact JSON. The "message" event, sent
 * to every subscriber, is built by hand without jansson or snprintf. */
#include "chorus/wire.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bytes allowed in topic names: A-Z a-z 0-9 . _ - : / @ */
static int topic_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-' ||
           ch == ':' || ch == '/' || ch == '@';
}

int chorus_topic_valid(const char *name, size_t len)
{
    if (!name || len == 0 || len > CHORUS_TOPIC_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!topic_char((unsigned char)name[i]))
            return 0;
    return 1;
}

int chorus_epoch_valid(const char *s)
{
    if (!s)
        return 0;
    for (int i = 0; i < CHORUS_EPOCH_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return s[CHORUS_EPOCH_LEN] == '\0';
}

/* ---- requests --------------------------------------------------------- */

static int fail(chorus_wire_error *err, const char *code, const char *fmt, ...)
{
    va_list ap;

    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* Copies at most max bytes of a client's string for quoting in a message,
 * stopping early rather than splitting a UTF-8 sequence, and adding "..."
 * when cut. */
static const char *excerpt(const char *s, size_t len, size_t max, char *buf)
{
    size_t n = len;

    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--; /* s[n] continues a sequence: cut before its lead byte */
    }
    memcpy(buf, s, n);
    strcpy(buf + n, n < len ? "..." : "");
    return buf;
}

static const struct {
    const char *name;
    chorus_op op;
} ops[] = {
    {"subscribe", CHORUS_OP_SUBSCRIBE},
    {"unsubscribe", CHORUS_OP_UNSUBSCRIBE},
    {"publish", CHORUS_OP_PUBLISH},
    {"ping", CHORUS_OP_PING},
};

static int parse_op(json_t *root, chorus_request *req, chorus_wire_error *err)
{
    json_t *op = json_object_get(root, "op");
    const char *s;
    size_t len;
    char buf[40];

    if (!op)
        return fail(err, CHORUS_ERR_BAD_REQUEST, "missing \"op\"");
    if (!json_is_string(op))
        return fail(err, CHORUS_ERR_BAD_REQUEST, "\"op\" must be a string");
    s = json_string_value(op);
    len = json_string_length(op);
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        if (strlen(ops[i].name) == len && memcmp(ops[i].name, s, len) == 0) {
            req->op = ops[i].op;
            return 0;
        }
    }
    /* strnlen: an embedded NUL ends the quoted excerpt. */
    return fail(err, CHORUS_ERR_UNKNOWN_OP,
                "unknown op \"%s\" (expected subscribe, unsubscribe, "
                "publish or ping)",
                excerpt(s, strnlen(s, len), 32, buf));
}

static int parse_topic(json_t *root, chorus_request *req,
                       chorus_wire_error *err)
{
    json_t *topic = json_object_get(root, "topic");

    if (!topic)
        return fail(err, CHORUS_ERR_BAD_REQUEST, "missing \"topic\"");
    if (!json_is_string(topic))
        return fail(err, CHORUS_ERR_BAD_REQUEST, "\"topic\" must be a string");
    req->topic = json_string_value(topic);
    req->topic_len = json_string_length(topic);
    if (!chorus_topic_valid(req->topic, req->topic_len))
        return fail(err, CHORUS_ERR_INVALID_TOPIC,
                    "topic must be 1-200 characters of A-Z a-z 0-9 . _ - : "
                    "/ @");
    return 0;
}

static int parse_since(json_t *root, chorus_request *req,
                       chorus_wire_error *err)
{
    json_t *since = json_object_get(root, "since"), *epoch, *offset;

    if (!since)
        return 0;
    if (!json_is_object(since))
        return fail(err, CHORUS_ERR_BAD_REQUEST,
                    "\"since\" must be an object {\"epoch\": \"...\", "
                    "\"offset\": N}");
    epoch = json_object_get(since, "epoch");
    if (!json_is_string(epoch))
        return fail(err, CHORUS_ERR_BAD_REQUEST,
                    "\"since.epoch\" must be a string");
    offset = json_object_get(since, "offset");
    if (!json_is_integer(offset) || json_integer_value(offset) < 0)
        return fail(err, CHORUS_ERR_BAD_REQUEST,
                    "\"since.offset\" must be a non-negative integer");
    req->has_since = 1;
    req->since_epoch = json_string_value(epoch);
    /* An epoch with an embedded NUL is no broker's epoch; make sure its
     * C-string prefix cannot pass for one. */
    if (strlen(req->since_epoch) != json_string_length(epoch))
        req->since_epoch = "";
    req->since_offset = (uint64_t)json_integer_value(offset);
    return 0;
}

/* Checks the fields in the order documented in wire.h. */
static int parse_fields(json_t *root, chorus_request *req,
                        chorus_wire_error *err)
{
    json_t *id = json_object_get(root, "id");

    if (id) {
        if (!json_is_integer(id) &&
            !(json_is_string(id) && json_string_length(id) <= CHORUS_ID_MAX))
            return fail(err, CHORUS_ERR_BAD_REQUEST,
                        "\"id\" must be an integer or a string of at most "
                        "64 bytes");
        req->id = id;
    }
    if (parse_op(root, req, err) < 0)
        return -1;
    if (req->op == CHORUS_OP_PING)
        return 0;
    if (parse_topic(root, req, err) < 0)
        return -1;
    if (req->op == CHORUS_OP_PUBLISH) {
        req->data = json_object_get(root, "data");
        if (!req->data)
            return fail(err, CHORUS_ERR_BAD_REQUEST,
                        "publish needs \"data\" (any JSON value, null "
                        "included)");
    } else if (req->op == CHORUS_OP_SUBSCRIBE) {
        return parse_since(root, req, err);
    }
    return 0;
}

int chorus_request_parse(const char *buf, size_t len, chorus_request *req,
                         chorus_wire_error *err)
{
    json_error_t jerr;
    json_t *root;

    memset(req, 0, sizeof *req);
    err->code = NULL;
    err->message[0] = '\0';
    err->id = NULL;
    /* DECODE_ANY so that a bare 42 is "not an object" rather than "not
     * JSON"; ALLOW_NUL because "\u0000" is valid in data (topics are
     * checked by length, so it cannot sneak into one). */
    root = json_loadb(buf, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!root)
        return fail(err, CHORUS_ERR_BAD_REQUEST,
                    "not valid JSON: %s at position %d", jerr.text,
                    jerr.position);
    if (!json_is_object(root)) {
        json_decref(root);
        return fail(err, CHORUS_ERR_BAD_REQUEST,
                    "a request must be a JSON object");
    }
    req->root = root;
    if (parse_fields(root, req, err) < 0) {
        err->id = json_incref(req->id); /* NULL stays NULL */
        chorus_request_free(req);
        return -1;
    }
    return 0;
}

void chorus_request_free(chorus_request *req)
{
    json_decref(req->root);
    memset(req, 0, sizeof *req);
}

void chorus_wire_error_clear(chorus_wire_error *err)
{
    json_decref(err->id);
    err->id = NULL;
}

/* ---- replies ---------------------------------------------------------- */

/* Serializes and frees v. */
static char *dump(json_t *v, size_t *len)
{
    char *s;

    if (!v)
        return NULL;
    s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    json_decref(v);
    if (s && len)
        *len = strlen(s);
    return s;
}

/* "O*" leaves the "id" pair out when id is NULL. */
char *chorus_encode_subscribed(json_t *id, const char *topic, const char *epoch,
                               uint64_t offset, int recovered, size_t *len)
{
    return dump(json_pack("{s:s, s:O*, s:s, s:s, s:I, s:b}", "op", "subscribed",
                          "id", id, "topic", topic, "epoch", epoch, "offset",
                          (json_int_t)offset, "recovered", recovered),
                len);
}

char *chorus_encode_unsubscribed(json_t *id, const char *topic, size_t *len)
{
    return dump(json_pack("{s:s, s:O*, s:s}", "op", "unsubscribed", "id", id,
                          "topic", topic),
                len);
}

char *chorus_encode_published(json_t *id, const char *topic, uint64_t offset,
                              size_t *len)
{
    size_t cap = strlen(topic) + 96;
    char *out;
    int n;

    /* One per publish: build it directly unless the id needs escaping
     * (topics are valid, so they never do). */
    if (id && !json_is_integer(id))
        return dump(json_pack("{s:s, s:O*, s:s, s:I}", "op", "published", "id",
                              id, "topic", topic, "offset", (json_int_t)offset),
                    len);
    out = malloc(cap);
    if (!out)
        return NULL;
    if (id)
        n = snprintf(out, cap,
                     "{\"op\":\"published\",\"id\":%" JSON_INTEGER_FORMAT
                     ",\"topic\":\"%s\",\"offset\":%llu}",
                     json_integer_value(id), topic, (unsigned long long)offset);
    else
        n = snprintf(out, cap,
                     "{\"op\":\"published\",\"topic\":\"%s\",\"offset\":%llu}",
                     topic, (unsigned long long)offset);
    if (len)
        *len = (size_t)n;
    return out;
}

char *chorus_encode_pong(json_t *id, size_t *len)
{
    return dump(json_pack("{s:s, s:O*}", "op", "pong", "id", id), len);
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t need;
    unsigned min, cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        need = 2, min = 0x80, cp = s[0] & 0x1F;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        need = 3, min = 0x800, cp = s[0] & 0x0F;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        need = 4, min = 0x10000, cp = s[0] & 0x07;
    else
        return 0;
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return need;
}

/* A copy of s with each byte that is not valid UTF-8 replaced by '?', so
 * that a message built from client bytes can always be encoded. */
static char *utf8_sanitize(const char *s)
{
    size_t n = strlen(s), i = 0;
    char *out = malloc(n + 1);

    if (!out)
        return NULL;
    while (i < n) {
        size_t k = utf8_seq((const unsigned char *)s + i, n - i);
        if (k == 0) {
            out[i++] = '?';
        } else {
            memcpy(out + i, s + i, k);
            i += k;
        }
    }
    out[n] = '\0';
    return out;
}

char *chorus_encode_error(json_t *id, const char *code, const char *message,
                          size_t *len)
{
    char *clean = utf8_sanitize(message ? message : "");
    char *out;

    if (!clean)
        return NULL;
    out = dump(json_pack("{s:s, s:O*, s:s, s:s}", "op", "error", "id", id,
                         "code", code, "message", clean),
               len);
    free(clean);
    return out;
}

/* ---- the "message" event ---------------------------------------------- */

#define MSG_HEAD "{\"op\":\"message\",\"topic\":\""
#define MSG_OFFSET "\",\"offset\":"
#define MSG_TS ",\"ts\":"
#define MSG_DATA ",\"data\":"
#define MSG_TAIL "}"
#define LIT_LEN(s) (sizeof(s) - 1)
#define U64_DIGITS 20 /* 18446744073709551615 */
#define I64_CHARS 20  /* -9223372036854775808 */

/* Includes room for a terminating NUL. */
size_t chorus_message_bound(size_t topic_len, size_t data_len)
{
    return LIT_LEN(MSG_HEAD) + topic_len + LIT_LEN(MSG_OFFSET) + U64_DIGITS +
           LIT_LEN(MSG_TS) + I64_CHARS + LIT_LEN(MSG_DATA) + data_len +
           LIT_LEN(MSG_TAIL) + 1;
}

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

static char *put_u64(char *p, uint64_t v)
{
    char tmp[U64_DIGITS];
    size_t n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static char *put_i64(char *p, int64_t v)
{
    if (v >= 0)
        return put_u64(p, (uint64_t)v);
    *p++ = '-';
    return put_u64(p, (uint64_t)0 - (uint64_t)v); /* safe for INT64_MIN */
}

/* Writes the event and a terminating NUL (not counted in the result). */
size_t chorus_encode_message(char *out, const char *topic, size_t topic_len,
                             uint64_t offset, int64_t ts_ms, const char *data,
                             size_t data_len)
{
    char *p = out;

    assert(data_len > 0);
    p = put(p, MSG_HEAD, LIT_LEN(MSG_HEAD));
    p = put(p, topic, topic_len);
    p = put(p, MSG_OFFSET, LIT_LEN(MSG_OFFSET));
    p = put_u64(p, offset);
    p = put(p, MSG_TS, LIT_LEN(MSG_TS));
    p = put_i64(p, ts_ms);
    p = put(p, MSG_DATA, LIT_LEN(MSG_DATA));
    p = put(p, data, data_len);
    p = put(p, MSG_TAIL, LIT_LEN(MSG_TAIL));
    *p = '\0';
    return (size_t)(p - out);
}
