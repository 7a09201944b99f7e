/* permessage-deflate (RFC 7692) for /ws connections that offer it when
 * compression = on. The broker always answers server_no_context_takeover
 * and client_no_context_takeover: every message is compressed on its own,
 * so a message is compressed once per event loop and the same bytes are
 * shared by all its compressing subscribers, and one inflater per loop
 * serves every connection. Replies and replayed history go uncompressed
 * (RSV1 clear), which the extension allows message by message. */
#ifndef CHORUS_COMPRESS_H
#define CHORUS_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

#include "chorus/http_parse.h"

typedef struct conn conn;
typedef struct server server;
typedef struct frame_ref frame_ref;

/* zlib level for shared compression: fast, since it runs per message. */
#define COMPRESS_LEVEL 1

/* Looks at the request's Sec-WebSocket-Extensions offers. When one is
 * accepted, sets c->pmd and writes the response header line (CRLF
 * included) to line; else writes "". */
void compress_negotiate(conn *c, const chorus_http_request *req, char *line,
                        size_t line_size);

/* Inflates one compressed message. Returns 0 with a malloc'd *out, or the
 * close code to fail the connection with. */
uint16_t compress_inflate(conn *c, const uint8_t *in, size_t len, uint8_t **out,
                          size_t *out_len);

/* The compressed twin of a block of frames: each frame's payload
 * compressed on its own, with RSV1 set. *cpos as in fanout_build. NULL on
 * failure (subscribers then get the plain block). */
frame_ref *compress_block(server *s, const frame_ref *f, size_t count,
                          const size_t *pos, size_t **cpos);

void compress_free(server *s);

#endif
