/* The Chorus wire protocol (docs/PROTOCOL.md): client requests parsed into
 * structs, broker replies encoded as compact JSON. Uses jansson; knows
 * nothing of sockets or topics' state. */
#ifndef CHORUS_WIRE_H
#define CHORUS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define CHORUS_TOPIC_MAX 200
#define CHORUS_ID_MAX 64
#define CHORUS_EPOCH_LEN 32

typedef enum {
    CHORUS_OP_SUBSCRIBE,
    CHORUS_OP_UNSUBSCRIBE,
    CHORUS_OP_PUBLISH,
    CHORUS_OP_PING,
} chorus_op;

/* Error codes of PROTOCOL.md, as sent in "code". */
#define CHORUS_ERR_BAD_REQUEST "bad_request"
#define CHORUS_ERR_UNKNOWN_OP "unknown_op"
#define CHORUS_ERR_INVALID_TOPIC "invalid_topic"
#define CHORUS_ERR_UNAUTHORIZED "unauthorized"
#define CHORUS_ERR_FORBIDDEN "forbidden"
#define CHORUS_ERR_TOO_LARGE "too_large"
#define CHORUS_ERR_RATE_LIMITED "rate_limited"
#define CHORUS_ERR_NOT_SUBSCRIBED "not_subscribed"
#define CHORUS_ERR_INTERNAL "internal"

typedef struct chorus_request {
    chorus_op op;
    json_t *root;      /* owns all borrowed fields; chorus_request_free */
    json_t *id;        /* borrowed; NULL when absent */
    const char *topic; /* borrowed, NUL-terminated, validated */
    size_t topic_len;
    json_t *data; /* publish only; borrowed (may be JSON null) */
    int has_since;
    const char *since_epoch; /* borrowed; any string (shape checked by
                                the caller against CHORUS_EPOCH_LEN hex) */
    uint64_t since_offset;
} chorus_request;

typedef struct chorus_wire_error {
    const char *code; /* one of CHORUS_ERR_* */
    char message[192];
    json_t *id; /* new reference to echo, or NULL */
} chorus_wire_error;

/* 1 if name is a valid topic: 1..200 bytes of A-Z a-z 0-9 . _ - : / @ */
int chorus_topic_valid(const char *name, size_t len);

/* 1 if s is 32 lowercase hex characters. */
int chorus_epoch_valid(const char *s);

/* Parses one text message. On success returns 0 and fills req (free with
 * chorus_request_free). On failure returns -1 and fills err (free its id
 * with chorus_wire_error_clear); the id is echoed whenever the message was
 * an object with a valid id. Checks, in order: JSON object, id type and
 * length, op present and a string, op known, topic present and a string
 * and valid, op-specific fields (publish data present; since shape). */
int chorus_request_parse(const char *buf, size_t len, chorus_request *req,
                         chorus_wire_error *err);
void chorus_request_free(chorus_request *req);
void chorus_wire_error_clear(chorus_wire_error *err);

/* Reply encoders. Each returns a malloc'd NUL-terminated compact JSON text
 * (caller frees) and its length in *len, or NULL on allocation failure.
 * id may be NULL (then no "id" field). */
char *chorus_encode_subscribed(json_t *id, const char *topic, const char *epoch,
                               uint64_t offset, int recovered, size_t *len);
char *chorus_encode_unsubscribed(json_t *id, const char *topic, size_t *len);
char *chorus_encode_published(json_t *id, const char *topic, uint64_t offset,
                              size_t *len);
char *chorus_encode_pong(json_t *id, size_t *len);
char *chorus_encode_error(json_t *id, const char *code, const char *message,
                          size_t *len);

/* The hot path: a "message" event built without jansson from the data's
 * already-serialized JSON text. Writes into out (at least
 * chorus_message_bound() bytes) and returns the length written. topic must
 * be valid (it then needs no escaping). */
size_t chorus_message_bound(size_t topic_len, size_t data_len);
size_t chorus_encode_message(char *out, const char *topic, size_t topic_len,
                             uint64_t offset, int64_t ts_ms, const char *data,
                             size_t data_len);

#endif
