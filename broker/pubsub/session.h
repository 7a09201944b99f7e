/* The /ws pub/sub protocol for one connection: decode a request, act on
 * it, reply. Every protocol error becomes an `error` reply here; none
 * closes the connection. */
#ifndef CHORUS_SESSION_H
#define CHORUS_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "store.h"

typedef struct conn conn;
typedef struct sub sub;

/* The handler of /ws connections (conn.h): messages to session_message,
 * output room to the replay, and subscriptions dropped at the close. */
extern const struct conn_handler session_handler;

/* A publish of data_len bytes from c is stored at offset, or failed with
 * error: replies `published` or `error`, then releases its flow control
 * (publish.h, publish_answer_fn). */
void session_publish_answered(conn *c, json_t *id, size_t data_len,
                              const char *topic_name, const char *epoch,
                              uint64_t offset, const char *error);

/* Handles one whole text message received on /ws. */
void session_message(conn *c, const char *data, size_t len);

/* Sends an `error` reply (id may be NULL). */
void session_error(conn *c, json_t *id, const char *code, const char *message);

/* Sends `published` for an acknowledged publish. */
void session_published(conn *c, json_t *id, const char *topic_name,
                       uint64_t offset);

/* The topic of s changed epoch under it (a store's live feed): sends the
 * unsolicited `subscribed` (no id, recovered false) and replays the new
 * epoch's retained messages before live ones. */
void session_epoch_changed(conn *c, sub *s, const store_topic_info *info);

#endif
