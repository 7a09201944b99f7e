/* Private to the WebSocket client (lib/ws_client*.c): its state, and the
 * functions its files share. ws_client.c owns the client's life and
 * sending, ws_client_connect.c getting connected, ws_client_read.c the
 * upgrade and reading frames. */
#ifndef CHORUS_WS_CLIENT_INTERNAL_H
#define CHORUS_WS_CLIENT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <event2/util.h>
#include <openssl/ssl.h>

#include "chorus/ws_client.h"
#include "chorus/ws_frame.h"

#define CLOSE_WAIT_MS 5000u /* close handshake bound */

typedef enum {
    ST_START,      /* step event pending */
    ST_RESOLVING,  /* evdns lookup in flight */
    ST_CONNECTING, /* TCP connect and TLS handshake */
    ST_HANDSHAKE,  /* upgrade request sent, waiting for 101 */
    ST_OPEN,
    ST_CLOSING,  /* our close frame sent, waiting for the peer's */
    ST_DRAINING, /* last frame queued; on_close when it is written */
    ST_DONE,     /* on_close called */
} client_state;

struct chorus_ws_client {
    struct event_base *base;
    chorus_ws_client_cbs cbs;
    void *arg;
    chorus_url url;
    char *bearer;
    uint64_t max_message;
    unsigned connect_timeout_ms;

    SSL_CTX *ssl_ctx;
    struct evdns_base *dns;
    struct evdns_getaddrinfo_request *dns_req;
    int dns_result;
    struct evutil_addrinfo *addrs, *next_addr;
    struct bufferevent *bev;
    struct event *step_ev;
    struct event *timer;

    client_state state;
    char key[25];
    chorus_ws_decoder dec;
    uint8_t *msg; /* reassembly of a fragmented message */
    size_t msg_len, msg_cap;
    uint64_t prng; /* mask keys: xorshift64* seeded by RAND_bytes */

    int done_code; /* code reported by on_close (ST_DRAINING) */
    char reason[320];
    char last_err[320]; /* last connect failure, for the final report */

    int depth;        /* callbacks on the stack */
    int free_pending; /* chorus_ws_client_free called inside one */
};

void wsc_destroy(chorus_ws_client *c);

static inline void enter(chorus_ws_client *c)
{
    c->depth++;
}

static inline void leave(chorus_ws_client *c)
{
    if (--c->depth == 0 && c->free_pending)
        wsc_destroy(c);
}

/* Stop processing input: the client is finished or being freed. */
static inline int stopped(const chorus_ws_client *c)
{
    return c->free_pending || c->state == ST_DONE;
}

/* ws_client.c */
void wsc_errno_text(int err, char *out, size_t n);
void wsc_timer_start(chorus_ws_client *c, unsigned ms);
void wsc_finish(chorus_ws_client *c, int code, const char *reason);
int wsc_send_frame(chorus_ws_client *c, int opcode, const void *data,
                   size_t len);
void wsc_close_and_drain(chorus_ws_client *c, uint16_t send_code,
                         int report_code, const char *reason);

/* ws_client_read.c */
int wsc_send_upgrade(chorus_ws_client *c);
void wsc_read_cb(struct bufferevent *bev, void *arg);
void wsc_write_cb(struct bufferevent *bev, void *arg);

/* ws_client_connect.c */
void wsc_step_cb(evutil_socket_t fd, short what, void *arg);
void wsc_timer_cb(evutil_socket_t fd, short what, void *arg);
SSL_CTX *wsc_make_ssl_ctx(const char *cacert, char *err, size_t errlen);

#endif
