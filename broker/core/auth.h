/* Who a connection is and what it may do: token or API key checks at the
 * HTTP/WebSocket handshake, topic permissions, and the Origin policy.
 * Secrets and tokens never reach a log line or an error message. */
#ifndef CHORUS_AUTH_H
#define CHORUS_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "chorus/http_parse.h"
#include "config.h"

typedef enum {
    AUTH_OPEN,      /* authentication is off: everything allowed */
    AUTH_ANONYMOUS, /* no credentials, allowed by allow_anonymous */
    AUTH_TOKEN,     /* a valid client token */
    AUTH_API_KEY,   /* the configured api_key: may do everything */
} auth_kind;

typedef struct auth_identity {
    auth_kind kind;
    char *sub;          /* token "sub", or NULL */
    int64_t expires_ms; /* token "exp" in ms; 0 = never */
    char **subscribe;   /* topic patterns from the token */
    size_t nsubscribe;
    char **publish;
    size_t npublish;
} auth_identity;

/* 1 when auth_secret or api_key is set. */
int auth_enabled(const config *cfg);

/* Authenticates a request from its Authorization: Bearer header or its
 * `token` query parameter (query may be NULL). Returns 0 and fills id, or
 * 401 with a static reason in *why (no token where one is needed, bad
 * signature, expired, malformed). A present but invalid token is refused
 * even where anonymous access is allowed. */
int auth_authenticate(const config *cfg, const chorus_http_request *req,
                      const char *query, size_t query_len, int64_t now_ms,
                      auth_identity *id, const char **why);
void auth_identity_free(auth_identity *id);

int auth_can_subscribe(const config *cfg, const auth_identity *id,
                       const char *topic, size_t len);
int auth_can_publish(const config *cfg, const auth_identity *id,
                     const char *topic, size_t len);

/* Topic pattern: a trailing '*' matches any suffix ("chat.*"), "*" alone
 * matches every topic, anything else matches exactly. */
int auth_pattern_match(const char *pattern, const char *topic, size_t len);

/* 0 when the request's Origin is allowed by allowed_origins (absent Origin
 * always is; "null" never is when a list is set), else 403. */
int auth_check_origin(const config *cfg, const chorus_http_request *req);

#endif
