/* JSON Web Tokens, HS256 only (RFC 7519 / 7515), for the broker's client
 * tokens and the CLI's `chorus token`. Any other "alg", "none" included,
 * is refused; the signature is compared in constant time. */
#ifndef CHORUS_JWT_H
#define CHORUS_JWT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Signs claims (a JSON object) with secret. Returns a malloc'd token, or
 * NULL on failure. */
char *chorus_jwt_sign(const char *secret, size_t secret_len,
                      const json_t *claims);

/* Verifies token against secret: structure, header {"alg":"HS256"} (and
 * "typ" JWT if present), signature, then time claims: "exp" required and
 * > now_s, "nbf" if present <= now_s (no leeway). On success returns 0 and
 * a new reference to the claims object in *claims. On failure returns -1
 * and a short static reason in *why that never contains the token. */
int chorus_jwt_verify(const char *secret, size_t secret_len, const char *token,
                      size_t token_len, int64_t now_s, json_t **claims,
                      const char **why);

#endif
