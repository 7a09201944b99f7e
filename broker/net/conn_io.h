/* The transports under a connection, as a table of functions in the
 * manner of Redis's connection.h. conn*.c reach the socket only through
 * c->io; a transport reaches the connection only through the conn_io_*
 * events below.
 *
 * Plain TCP (conn_tcp.c): one event on the socket; the input buffer and
 * the output queue are the connection's own evbuffers, read with recv and
 * written with writev (or the loop's io_uring batch) by the broker; read
 * and write deadlines are one timer.
 *
 * TLS (conn_tls.c): OpenSSL's bufferevent does the I/O; its buffers are
 * the connection's input and output, and direct writes are not offered. */
#ifndef CHORUS_CONN_IO_H
#define CHORUS_CONN_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "conn.h"

struct conn_io {
    /* Sets up c->in and c->out around fd (and ssl). 0, or -1 (the caller
     * closes fd and frees ssl). */
    int (*start)(conn *c, evutil_socket_t fd, struct ssl_st *ssl);
    /* Reads when the socket has data (on), or not. */
    void (*want_read)(conn *c, int on);
    /* c->out holds data: write it as the socket takes it. */
    void (*want_write)(conn *c);
    /* Writes iov now, without blocking: bytes written, or -errno
     * (-EAGAIN: none). NULL when the transport writes for itself. */
    ssize_t (*writev)(conn *c, const struct iovec *iov, int iovcnt);
    /* Reads now into c->in, into room for at least max bytes (and all
     * of it): the byte count, 0 at EOF, or -errno. NULL when the
     * transport reads for itself. */
    ssize_t (*read)(conn *c, size_t max);
    /* Read timeout (no input for read_ms while reading) and write timeout
     * (queued output made no progress for write_ms); 0 = none. */
    void (*set_timeouts)(conn *c, uint64_t read_ms, uint64_t write_ms);
    /* Sends our EOF after what is queued; -1 when the transport cannot
     * half-close (TLS: closing sends close_notify). */
    int (*shutdown)(conn *c);
    /* Closes the socket and frees the transport's state. */
    void (*close)(conn *c);
};

extern const conn_io conn_io_tcp;
extern const conn_io conn_io_tls;

/* What a transport reports. */
typedef enum {
    CONN_IO_EOF,          /* the peer sent EOF */
    CONN_IO_ERROR,        /* a socket error, ECONNRESET included (errno) */
    CONN_IO_READ_TIMEOUT, /* no input within read_ms */
    CONN_IO_WRITE_TIMEOUT,
    CONN_IO_CONNECTED, /* the TLS handshake completed */
} conn_io_event;

void conn_io_readable(conn *c); /* new input in c->in */
void conn_io_drained(conn *c);  /* c->out fell to CONN_LOW_WATER */
void conn_io_report(conn *c, conn_io_event what, int err);

/* Within conn*.c: decodes what arrived on an upgraded connection
 * (conn_ws.c); queues a frame built from payload (copied), past the
 * outbound bound (conn_out.c). */
void conn_ws_read(conn *c);
int conn_queue_frame(conn *c, int opcode, const void *payload, size_t len);
/* The same for bytes as they are (a stream's). */
int conn_queue_bytes(conn *c, const void *data, size_t len);

/* A close waiting for publish acks (c->close_deferred, conn.c): (re)starts
 * its wait for the next ack; ends it, after the last ack or when none came
 * in time, by sending the close frame (or, the peer having half-closed,
 * by flushing and closing). */
void conn_ack_wait_arm(conn *c);
void conn_end_deferred_close(conn *c);

#endif
