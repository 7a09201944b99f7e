/* TLS server context. The files are checked with stat() first so that the
 * common mistakes (missing, unreadable, a directory) get a plain message;
 * what OpenSSL then refuses is reported with its own reason string. */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* TLS 1.2: forward-secret AEAD suites only (Mozilla "intermediate" minus
 * DHE). TLS 1.3 keeps OpenSSL's default suites, which are all AEAD. */
#define TLS12_CIPHERS                                            \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

static int check_file(const char *what, const char *path, char *err,
                      size_t errlen)
{
    struct stat st;
    const char *why = NULL;
    if (!path || !path[0]) {
        snprintf(err, errlen, "%s is not set", what);
        return -1;
    }
    if (stat(path, &st) < 0)
        why = errno == ENOENT ? "no such file" : strerror(errno);
    else if (!S_ISREG(st.st_mode))
        why = "not a regular file";
    else if (access(path, R_OK) < 0)
        why = errno == EACCES ? "permission denied" : strerror(errno);
    if (!why)
        return 0;
    snprintf(err, errlen, "%s %s: %s", what, path, why);
    return -1;
}

/* "what path: problem (reason)", the reason being OpenSSL's for the
 * oldest queued error; then clears the queue so that no stale error
 * reaches a later connection. */
static void ssl_error(const char *what, const char *path, const char *problem,
                      unsigned long e, char *err, size_t errlen)
{
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    if (reason)
        snprintf(err, errlen, "%s %s: %s (%s)", what, path, problem, reason);
    else
        snprintf(err, errlen, "%s %s: %s", what, path, problem);
    ERR_clear_error();
}

/* Consumes the error queue looking for a key/certificate mismatch. */
static int key_mismatch(void)
{
    unsigned long e;
    while ((e = ERR_peek_error()) != 0) {
        if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
            ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
            return 1;
        if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
            ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH)
            return 1;
        ERR_get_error(); /* look at the next one */
    }
    return 0;
}

/* An encrypted key would make OpenSSL prompt on the terminal; there is no
 * one to answer, so refuse it instead. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

SSL_CTX *tls_context_new(const char *cert_path, const char *key_path, char *err,
                         size_t errlen)
{
    if (check_file("tls_cert", cert_path, err, errlen) < 0 ||
        check_file("tls_key", key_path, err, errlen) < 0)
        return NULL;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "tls: cannot create a context");
        ERR_clear_error();
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (!SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS)) {
        snprintf(err, errlen, "tls: cipher list refused");
        goto fail;
    }
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
        ssl_error("tls_cert", cert_path, "not a PEM certificate chain",
                  ERR_peek_error(), err, errlen);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
        unsigned long first = ERR_peek_error();
        if (key_mismatch())
            snprintf(err, errlen, "tls_key %s: does not match tls_cert",
                     key_path);
        else
            ssl_error("tls_key", key_path, "not an unencrypted PEM private key",
                      first, err, errlen);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "tls_key %s: does not match tls_cert", key_path);
        goto fail;
    }
    ERR_clear_error();
    return ctx;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}
