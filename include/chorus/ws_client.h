/* WebSocket client on libevent (ws:// and wss://), used by the chorus CLI
 * and the bench. Uses the same frame codec as the broker: masked writes,
 * unmasked reads. */
#ifndef CHORUS_WS_CLIENT_H
#define CHORUS_WS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

typedef struct chorus_ws_client chorus_ws_client;

typedef struct chorus_ws_client_opts {
    const char *cacert;   /* PEM file to verify wss:// (NULL: system) */
    const char *bearer;   /* sent as Authorization: Bearer (NULL: none) */
    uint64_t max_message; /* reassembly cap; 0 = 64 MiB */
    unsigned connect_timeout_ms; /* 0 = 10000 */
} chorus_ws_client_opts;

typedef struct chorus_ws_client_cbs {
    void (*on_open)(chorus_ws_client *c, void *arg);
    /* A whole (reassembled) text or binary message. */
    void (*on_message)(chorus_ws_client *c, int opcode, const uint8_t *data,
                       size_t len, void *arg);
    /* Called once when the connection ends: the peer's close code, or
     * 1006 when the TCP/TLS connection failed or dropped without a close
     * frame. The client must not be used afterwards except to free it. */
    void (*on_close)(chorus_ws_client *c, int code, const char *reason,
                     void *arg);
} chorus_ws_client_cbs;

typedef struct chorus_url {
    int tls;        /* wss/https */
    char host[256]; /* without brackets for IPv6 */
    int port;
    char path[2048]; /* with query; "/" when absent */
} chorus_url;

/* Parses ws://, wss://, http:// and https:// URLs. Returns 0 or -1. */
int chorus_url_parse(const char *url, chorus_url *out);

/* Starts connecting; callbacks fire from base's loop. Returns NULL with a
 * message in err when the URL or TLS set-up is bad. */
chorus_ws_client *chorus_ws_client_connect(struct event_base *base,
                                           const char *url,
                                           const chorus_ws_client_opts *opts,
                                           const chorus_ws_client_cbs *cbs,
                                           void *arg, char *err, size_t errlen);

/* Queues one whole text message (masked). Returns 0 or -1 if not open. */
int chorus_ws_client_send_text(chorus_ws_client *c, const char *data,
                               size_t len);

/* Bytes queued for sending and not yet written to the socket. */
size_t chorus_ws_client_pending(const chorus_ws_client *c);

/* Starts the close handshake; on_close fires when it completes. */
void chorus_ws_client_close(chorus_ws_client *c, uint16_t code,
                            const char *reason);

void chorus_ws_client_free(chorus_ws_client *c);

#endif
