/* RFC 6455 opening handshake, both sides. Pure apart from OpenSSL's SHA-1
 * and base64: builds and checks the texts, never touches a socket. */
#ifndef CHORUS_HANDSHAKE_H
#define CHORUS_HANDSHAKE_H

#include <stddef.h>

#include "chorus/http_parse.h"

/* base64 of a 20-byte SHA-1, plus NUL */
#define CHORUS_WS_ACCEPT_LEN 28

/* Sec-WebSocket-Accept for a client key: base64(SHA-1(key + GUID)). */
void chorus_ws_accept_key(const char *key, size_t key_len,
                          char out[CHORUS_WS_ACCEPT_LEN + 1]);

/* Checks that req is a valid WebSocket upgrade request. Returns 0 when it
 * is, else the HTTP status to refuse it with: 400 (bad request: method,
 * version, Upgrade, Connection or Sec-WebSocket-Key), 426 (unsupported
 * Sec-WebSocket-Version; send "Sec-WebSocket-Version: 13"). why gets a
 * short static explanation. On success key and key_len point at the key. */
int chorus_ws_check_upgrade(const chorus_http_request *req, const char **key,
                            size_t *key_len, const char **why);

/* 1 if req asks for an upgrade at all (Upgrade: websocket present), so
 * that a plain GET can be told from a broken upgrade. */
int chorus_ws_is_upgrade(const chorus_http_request *req);

/* Writes the "101 Switching Protocols" response head for key into out
 * (NUL-terminated); extra_headers (may be NULL) are complete CRLF-ended
 * lines appended before the blank line. Returns its length, or -1 if it
 * does not fit. */
int chorus_ws_accept_response(const char *key, size_t key_len,
                              const char *extra_headers, char *out,
                              size_t out_size);

/* Client side: writes a random 16-byte key, base64-encoded, to key_out. */
int chorus_ws_client_key(char key_out[25]);

/* Client side: writes the GET upgrade request for host and path (path may
 * carry a query). extra_headers as above. Returns length or -1. */
int chorus_ws_client_request(const char *host, const char *path,
                             const char *key, const char *extra_headers,
                             char *out, size_t out_size);

/* Client side: checks a parsed response: 101, Upgrade, Connection and the
 * Sec-WebSocket-Accept matching key. Returns 0 or -1 with *why set. */
int chorus_ws_check_accept(const chorus_http_response *res, const char *key,
                           const char **why);

#endif
