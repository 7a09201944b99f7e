/* TLS server context from PEM files: TLS 1.2 minimum, no compression, no
 * renegotiation, modern ciphers. Reloaded on SIGHUP by building a new
 * context; connections keep the one they started with. */
#ifndef CHORUS_TLS_H
#define CHORUS_TLS_H

#include <stddef.h>

typedef struct ssl_ctx_st SSL_CTX;

/* Loads cert (chain) and key and checks that they match. Returns NULL
 * with a message naming the file in err. */
SSL_CTX *tls_context_new(const char *cert_path, const char *key_path, char *err,
                         size_t errlen);

#endif
