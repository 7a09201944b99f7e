/* One client connection: a bufferevent that speaks HTTP first, then
 * WebSocket after an upgrade. Owns the frame decoder, the reassembly
 * buffer and the list of its subscriptions. Connections are never freed
 * inside their own callbacks: conn_close()/conn_abort() only unlink and
 * queue them, and the server frees them after the loop turn. */
#ifndef CHORUS_CONN_H
#define CHORUS_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <event2/util.h>

#include "auth.h"
#include "chorus/ws_frame.h"
#include "frame_ref.h"
#include "topics.h"

typedef struct server server;
struct bufferevent;
struct evbuffer;
struct ssl_st;

typedef enum {
    CONN_HTTP,    /* reading request heads */
    CONN_WS,      /* upgraded */
    CONN_CLOSING, /* flushing what is queued, then lingering to EOF */
    CONN_DEAD,    /* queued for freeing */
} conn_state;

typedef enum { WS_PUBSUB, WS_ECHO } ws_kind;

/* Shared frames queued for a direct-write connection whose buffer was
 * empty: written straight from the shared blocks with one writev at the
 * end of the turn, so the common delivery allocates nothing. Whatever
 * does not fit goes into the bufferevent's output as references. */
#define CONN_PEND_MAX 4

typedef struct pend_ref {
    frame_ref *f; /* a reference we hold */
    size_t off, len;
} pend_ref;

typedef struct conn {
    server *srv;
    struct bufferevent *bev;
    struct conn *prev, *next; /* server's list of connections */
    uint32_t refs;            /* holders besides the server (batch items) */
    conn_state state;
    ws_kind kind;
    int awaiting_pong;
    int tls;
    int tls_ok;         /* the TLS handshake completed */
    int pmd;            /* permessage-deflate was negotiated */
    int msg_compressed; /* the message being reassembled is */
    int direct_write;   /* WS over TCP: we write, not the bufferevent */
    int flush_pending;  /* on the server's flush list */
    size_t turn_bytes;  /* queued since the last flush */
    pend_ref pend[CONN_PEND_MAX];
    int npend;
    int write_errno; /* a write failed: abort at the flush */
    size_t pend_bytes;
    struct conn *flush_next;
    int http_busy;           /* an HTTP reply is pending (publish) */
    int http_keepalive;      /* keep the connection after that reply */
    int64_t head_started_ms; /* deadline base for the request head */
    int64_t msg_started_ms;  /* ... for the WebSocket message; 0: none */
    chorus_ws_decoder dec;
    struct evbuffer *msg; /* reassembly of a fragmented message */
    int msg_opcode;
    sub *subs; /* this connection's subscriptions */
    size_t nsubs;
    sub *replay_head; /* subscriptions streaming history */
    sub *replay_tail;
    auth_identity auth;      /* who this is, set at the handshake */
    struct event *expiry_ev; /* closes the socket when its token expires */
    size_t unacked_bytes;    /* published data awaiting its ack */
    uint32_t unacked;        /* ... in publishes */
    int read_paused;         /* ... reached max_unacked_bytes */
    int close_deferred;      /* a close waits for those acks */
    uint16_t close_code;     /* ... then sent with this code */
    char close_reason[124];  /* ... and reason */
    int peer_eof;            /* the peer half-closed: finish, no frame */
    double publish_tokens;   /* publish_rate token bucket */
    int64_t publish_refill_ms;
    struct ip_slot *ip; /* per-address connection count */
    uint64_t id;
    char peer[64];
} conn;

/* Takes ownership of fd. NULL (fd closed) on failure. */
conn *conn_new(server *srv, evutil_socket_t fd, const struct sockaddr *sa,
               int salen, struct ssl_st *ssl);

/* Closes with 1008 when the identity's token expires (if it does). */
void conn_arm_expiry(conn *c);

/* Decodes what arrived on an upgraded connection (conn_ws.c). */
void conn_ws_read(conn *c);

/* Within conn*.c: queues a frame built from payload (copied); leaves
 * direct-write mode for bufferevent writes when the socket is ready. */
int conn_queue_frame(conn *c, int opcode, const void *payload, size_t len);
void conn_write_when_ready(conn *c);

/* Switches to WebSocket after the 101 response has been queued. */
void conn_upgrade(conn *c, ws_kind kind);

/* Queues one unfragmented frame, copying payload. Returns 0, or -1 when the
 * connection is closing or was just closed as a slow consumer. */
int conn_send(conn *c, int opcode, const void *payload, size_t len);

/* Queues the reply to a request (an ack above all) even past the
 * outbound bound; a connection then over it is closed with 1013 after
 * this reply and the acks still due. Returns 0, or -1 (not open). */
int conn_send_reply(conn *c, int opcode, const void *payload, size_t len);

/* Queues a shared frame without copying it; same result as conn_send. */
int conn_send_shared(conn *c, frame_ref *f);

/* Queues len bytes of a shared block of frames from off. */
int conn_send_shared_range(conn *c, frame_ref *f, size_t off, size_t len);

/* Bytes queued and not yet written to the socket. */
size_t conn_queued(const conn *c);

/* Starts the WebSocket close handshake: drops subscriptions, queues a
 * close frame, flushes, then closes after the peer's EOF or a timeout.
 * With publishes awaiting their acks, stops reading and sends the close
 * frame after the last ack. */
void conn_close(conn *c, uint16_t code, const char *reason);

/* Flushes what is queued (an HTTP error reply, say) and closes. */
void conn_finish(conn *c);

/* The peer sent EOF: answers what is pending, flushes, then closes. */
void conn_peer_eof(conn *c);

/* Drops the connection at once. */
void conn_abort(conn *c);

void conn_ref(conn *c);
void conn_unref(conn *c);

/* Writes what was queued this turn straight to each socket (one writev,
 * no epoll change when it all fits); only what does not fit waits for
 * the socket to become writable. Run at the end of each loop turn. */
void conn_flush_pending(server *srv);

/* Flow control for publishers: a WebSocket connection with
 * max_unacked_bytes of publishes awaiting their acks is not read from
 * until acks bring it under half of that. A close frame from the peer is
 * answered once every publish before it has its ack. */
void conn_publish_taken(conn *c, size_t len);
void conn_publish_answered(conn *c, size_t len);

/* Frees every connection queued by conn_abort() whose refs are zero. */
void conn_reap(server *srv);

/* Closes every WebSocket with code and reason (1001 at shutdown) and
 * drops connections still in HTTP. */
void conn_close_all(server *srv, uint16_t code, const char *reason);

#endif
