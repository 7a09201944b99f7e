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
