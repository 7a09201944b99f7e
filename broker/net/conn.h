/* One client connection: HTTP first, then WebSocket after an upgrade.
 *
 * The socket is driven by a transport (conn_io.h): plain TCP is one event
 * on the socket with an input buffer and an output queue this layer owns;
 * TLS is an OpenSSL bufferevent. Above the transport a connection owns the
 * frame decoder, the reassembly buffer and the output queue with its
 * bound, and calls the layers above only through the handler it was given
 * (conn_handler): the HTTP router until an upgrade, then the WebSocket
 * session or the echo. Connections are never freed inside their own
 * callbacks: conn_close()/conn_abort() only unlink and queue them, and the
 * server frees them after the loop turn. */
#ifndef CHORUS_CONN_H
#define CHORUS_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <event2/util.h>

#include "auth.h"
#include "chorus/ws_frame.h"
#include "frame_ref.h"

typedef struct server server;
typedef struct conn conn;
typedef struct sub sub;
typedef struct conn_io conn_io;
struct bufferevent;
struct event;
struct evbuffer;
struct ssl_st;

typedef enum {
    CONN_HTTP,    /* reading request heads */
    CONN_WS,      /* upgraded, or streaming a response (handler.stream) */
    CONN_CLOSING, /* flushing what is queued, then lingering to EOF */
    CONN_DEAD,    /* queued for freeing */
} conn_state;

/* How a connection calls the layer above it. Set at conn_new (the
 * server's HTTP handler) and replaced at conn_upgrade. */
typedef struct conn_handler {
    /* HTTP: request bytes wait in conn_input(c). */
    void (*on_http)(conn *c);
    /* WebSocket: one whole message (reassembled, inflated, UTF-8 checked
     * when text); data may be modified. */
    void (*on_message)(conn *c, int opcode, uint8_t *data, size_t len);
    /* The output queue went under CONN_LOW_WATER while c->replay_head is
     * set: room to queue more history. May be NULL. */
    void (*on_drain)(conn *c);
    /* Nothing more may be delivered to c (it is closing or gone): drop
     * what refers to it. May be NULL. */
    void (*on_detach)(conn *c);
    int binary_ok;    /* binary messages are taken, else closed with 1003 */
    const char *name; /* for the log */
    /* A response stream (Server-Sent Events) rather than WebSocket: what
     * is queued goes out as it is, input is discarded, and closing sends
     * no frame. */
    int stream;
    /* Streams: called every ping_interval to keep proxies from closing
     * an idle stream. May be NULL. */
    void (*on_ping)(conn *c);
    /* Streams: conn_close is ending the stream with code and reason (as
     * a WebSocket close): writes a last event of at most cap bytes to out
     * and returns its length. It goes out past the outbound bound, like a
     * close frame. May be NULL. */
    size_t (*on_end)(conn *c, uint16_t code, const char *reason, char *out,
                     size_t cap);
    /* c is closed for good (conn_abort, after on_detach): called once
     * per connection, so that a handler can count its open ones (the SSE
     * streams gauge). May be NULL. */
    void (*on_gone)(conn *c);
} conn_handler;

/* on_drain is called when the queue falls to this. */
#define CONN_LOW_WATER (64 * 1024)

/* Shared frames queued for a connection whose queue was empty: written
 * straight from the shared blocks with one writev at the end of the turn,
 * so the common delivery allocates nothing. Whatever does not fit goes
 * into the output queue as references. */
#define CONN_PEND_MAX 4

typedef struct pend_ref {
    frame_ref *f; /* a reference we hold */
    size_t off, len;
} pend_ref;

struct conn {
    /* Touched for every delivery and every flush: kept together at the
     * start, in the first cache lines. */
    server *srv;
    const conn_io *io;    /* the transport */
    struct evbuffer *out; /* what waits for the socket, after pend[] */
    conn_state state;
    int flush_pending; /* on the server's flush list */
    int write_waiting; /* output waits for the socket to be writable */
    int npend;
    int pmd;           /* permessage-deflate was negotiated */
    int write_errno;   /* a write failed: abort at the flush */
    size_t turn_bytes; /* queued since the last flush */
    size_t pend_bytes;
    struct conn *flush_next;
    pend_ref pend[CONN_PEND_MAX];
    evutil_socket_t fd;         /* plain TCP: the socket */
    sub *replay_head;           /* subscriptions streaming history */
    const conn_handler *h;      /* the layer above */
    struct evbuffer *in;        /* what was read and not yet consumed */
    struct event *ev;           /* plain TCP: the socket's one event */
    struct event *timer;        /* ... read and write deadlines */
    struct bufferevent *bev;    /* TLS: the OpenSSL bufferevent */
    short io_events;            /* plain TCP: EV_READ/EV_WRITE wanted */
    uint64_t read_ms, write_ms; /* timeouts; 0 = none */
    int64_t read_at_ms;         /* last read (or its arming) */
    int64_t write_at_ms;        /* last progress of a pending write */
    struct conn *prev, *next;   /* server's list of connections */
    uint32_t refs;              /* holders besides the server (batch items) */
    int awaiting_pong;
    int tls;
    int tls_ok;              /* the TLS handshake completed */
    int read_on;             /* the transport reads */
    int http_busy;           /* an HTTP reply is pending (publish) */
    int http_keepalive;      /* keep the connection after that reply */
    char *http_origin;       /* the request's admitted Origin, for CORS */
    int64_t head_started_ms; /* deadline base for the request head */
    int64_t msg_started_ms;  /* ... for the WebSocket message; 0: none */
    chorus_ws_decoder dec;
    struct evbuffer *msg; /* reassembly of a fragmented message */
    int msg_opcode;
    sub *subs; /* this connection's subscriptions */
    size_t nsubs;
    sub *replay_tail;
    int replay_reading;      /* a page is being read from the store */
    uint64_t replay_gen;     /* changes when the replay list does: a page
                                read before that is dropped */
    auth_identity auth;      /* who this is, set at the handshake */
    struct event *expiry_ev; /* closes the socket when its token expires */
    size_t unacked_bytes;    /* published data awaiting its ack */
    uint32_t unacked;        /* ... in publishes */
    int read_paused;         /* ... reached max_unacked_bytes */
    int close_deferred;      /* a close waits for those acks */
    struct event *ack_timer; /* ... for CLOSE_ACK_WAIT_MS each (conn.c) */
    uint16_t close_code;     /* ... then sent with this code */
    char close_reason[124];  /* ... and reason */
    int peer_eof;            /* the peer half-closed: finish, no frame */
    double publish_tokens;   /* publish_rate token bucket */
    int64_t publish_refill_ms;
    struct ip_slot *ip; /* per-address connection count */
    uint64_t id;
    char peer[64];
};

/* Takes ownership of fd (and ssl: a TLS connection). Talks HTTP through
 * the server's handler (srv->http). NULL (fd closed) on failure. */
conn *conn_new(server *srv, evutil_socket_t fd, const struct sockaddr *sa,
               int salen, struct ssl_st *ssl);

/* Closes with 1008 when the identity's token expires (if it does). */
void conn_arm_expiry(conn *c);

/* What was read and not yet consumed; the caller drains what it uses. */
struct evbuffer *conn_input(conn *c);

/* The output queue, to append a reply to (HTTP); what is appended goes
 * out at the end of the loop turn. */
struct evbuffer *conn_output(conn *c);

/* An HTTP reply that was pending has been queued: serves the requests
 * that were waiting behind it, and finishes a half-closed connection. */
void conn_http_resume(conn *c);

/* Switches to WebSocket after the 101 response has been queued; from now
 * on messages go to ws. */
void conn_upgrade(conn *c, const conn_handler *ws);

/* The head of a streamed response (200 text/event-stream) has been
 * queued: from now on c belongs to the stream handler h (h->stream set),
 * takes bytes with conn_send_bytes and conn_send_shared*, and ends at the
 * peer's EOF or at conn_close. */
void conn_start_stream(conn *c, const conn_handler *h);

/* The echo endpoint's handler (/echo). */
extern const conn_handler conn_echo_handler;

/* Queues one unfragmented frame, copying payload. Returns 0, or -1 when the
 * connection is closing or was just closed as a slow consumer. */
int conn_send(conn *c, int opcode, const void *payload, size_t len);

/* A stream: queues len bytes as they are (copied), under the outbound
 * bound; same result as conn_send. */
int conn_send_bytes(conn *c, const void *data, size_t len);

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
 * A stream gets no close frame: it is flushed and ended.
 * With publishes awaiting their acks, stops reading and sends the close
 * frame after the last ack, or once none has come for 5 s. */
void conn_close(conn *c, uint16_t code, const char *reason);

/* Flushes what is queued (an HTTP error reply, say) and closes. */
void conn_finish(conn *c);

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
 * until acks bring it under half of that. A close (the peer's or ours)
 * waits until every publish before it has its ack, or until none has
 * come for 5 s (see conn_close). */
void conn_publish_taken(conn *c, size_t len);
void conn_publish_answered(conn *c, size_t len);

/* Frees every connection queued by conn_abort() whose refs are zero. */
void conn_reap(server *srv);

/* Closes every WebSocket with code and reason (1001 at shutdown) and
 * drops connections still in HTTP. */
void conn_close_all(server *srv, uint16_t code, const char *reason);

#endif
