/* The write side of a connection. On plain TCP, what is queued for it
 * this turn goes out at the end of the turn, straight from the shared
 * blocks (pend[]), all connections' writes issued together through the
 * loop's send batch when there is one; what a socket does not take waits
 * in the output queue, by reference, until the socket is writable. On TLS
 * the bufferevent writes the queue itself. */
#include "conn.h"

#include <errno.h>
#include <string.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "conn_io.h"
#include "frame_ref.h"
#include "log.h"
#include "send_batch.h"
#include "server.h"

static void schedule_write(conn *c, size_t len);

size_t conn_queued(const conn *c)
{
    return evbuffer_get_length(c->out) + c->pend_bytes;
}

struct evbuffer *conn_output(conn *c)
{
    schedule_write(c, 0); /* the caller appends before the turn ends */
    return c->out;
}

/* Moves the pending frames into the output buffer (as references), so
 * that what is queued next goes after them. Returns 0 or -1. */
static int spill(conn *c)
{
    struct evbuffer *out = c->out;
    int rc = 0;

    for (int i = 0; i < c->npend; i++) {
        pend_ref *p = &c->pend[i];
        if (rc == 0 && frame_ref_attach_range(p->f, out, p->off, p->len))
            rc = -1;
        frame_ref_decref(p->f);
    }
    c->npend = 0;
    c->pend_bytes = 0;
    return rc;
}

static int pend_iov(const conn *c, struct iovec *iov)
{
    for (int i = 0; i < c->npend; i++) {
        iov[i].iov_base =
            (void *)(frame_ref_bytes(c->pend[i].f) + c->pend[i].off);
        iov[i].iov_len = c->pend[i].len;
    }
    return c->npend;
}

/* Drops the n bytes of pending frames the socket took (n < 0: -errno, of
 * which -EAGAIN and -EINTR mean none) and spills the rest into the output
 * buffer. Returns 0, or -1 on a socket error (errno set). */
static int pend_written(conn *c, ssize_t n)
{
    int k = 0;

    if (n < 0 && n != -EAGAIN && n != -EINTR) {
        errno = (int)-n;
        return -1;
    }
    for (; n > 0 && k < c->npend; k++) {
        pend_ref *p = &c->pend[k];
        if ((size_t)n < p->len) { /* partly written */
            p->off += (size_t)n;
            p->len -= (size_t)n;
            c->pend_bytes -= (size_t)n;
            break;
        }
        n -= (ssize_t)p->len;
        c->pend_bytes -= p->len;
        frame_ref_decref(p->f);
    }
    memmove(c->pend, c->pend + k, (size_t)(c->npend - k) * sizeof *c->pend);
    c->npend -= k;
    return spill(c);
}

/* Writes the pending frames with one writev. Returns 0, or -1 on a socket
 * error. */
static int write_pending(conn *c)
{
    struct iovec iov[CONN_PEND_MAX];
    ssize_t w = c->io->writev(c, iov, pend_iov(c, iov));

    if (w > 0 && (size_t)w < c->pend_bytes)
        stat_inc(&c->srv->stats.partial_writes);
    return pend_written(c, w);
}

static void pend_sent(void *owner, ssize_t result, void *arg)
{
    conn *c = owner;

    (void)arg;
    if (pend_written(c, result) < 0)
        c->write_errno = errno;
}

/* Issues the pending frames of every listed connection through the
 * server's send batch (one system call for many), where there is one.
 * What a connection could not get into the batch it writes itself. */
static void send_pending(server *srv, conn *list)
{
    struct iovec iov[CONN_PEND_MAX];

    for (conn *c = list; c; c = c->flush_next) {
        int n;
        if (c->state == CONN_DEAD || !c->npend)
            continue;
        n = pend_iov(c, iov);
        if (send_batch_add(srv->sends, c->fd, iov, n, c) == 0)
            continue;
        send_batch_run(srv->sends, pend_sent, NULL); /* full: issue it */
        if (send_batch_add(srv->sends, c->fd, iov, n, c) == 0)
            continue;
        if (write_pending(c) < 0) /* the ring failed */
            c->write_errno = errno;
    }
    send_batch_run(srv->sends, pend_sent, NULL);
}

static void slow_consumer(conn *c)
{
    stat_inc(&c->srv->stats.slow_consumer_closes);
    server_log_limited(c->srv, LOG_CAUSE_SLOW_CONSUMER, LOG_INFO,
                       &(log_fields){.conn = c->id, .peer = c->peer},
                       "slow consumer, %zu bytes queued; %s", conn_queued(c),
                       c->h->stream ? "ending the stream"
                                    : "closing with 1013");
    conn_close(c, CHORUS_WS_CLOSE_TRY_AGAIN, "slow consumer");
}

/* Output queued on a plain TCP connection goes out at the end of the
 * turn, together with everything else queued for it meanwhile; unless
 * the socket is full, and it goes when the socket is writable. */
static void schedule_write(conn *c, size_t len)
{
    server *srv = c->srv;

    if (!c->io->writev || c->write_waiting)
        return;
    c->turn_bytes += len;
    if (c->flush_pending)
        return;
    c->flush_pending = 1;
    c->flush_next = NULL;
    if (srv->flush_tail)
        srv->flush_tail->flush_next = c;
    else
        srv->flush_head = c;
    srv->flush_tail = c;
    event_active(srv->flush_ev, EV_TIMEOUT, 0);
}

void conn_flush_pending(server *srv)
{
    conn *c = srv->flush_head, *next;

    /* Only the connections listed now: one that queues more while being
     * flushed (a replay page) waits for the next turn, behind others. */
    srv->flush_head = srv->flush_tail = NULL;
    if (send_batch_active(srv->sends))
        send_pending(srv, c);
    for (; c; c = next) {
        next = c->flush_next;
        c->flush_pending = 0;
        c->turn_bytes = 0;
        if (c->state == CONN_DEAD) { /* kept for us by conn_reap */
            server_reap_soon(srv);
            continue;
        }
        if (c->npend && !c->write_errno && write_pending(c) < 0)
            c->write_errno = errno;
        if (c->write_errno) {
            log_conn(LOG_DEBUG, c->id, c->peer, "write: %s",
                     strerror(c->write_errno));
            conn_abort(c);
            continue;
        }
        if (evbuffer_get_length(c->out))
            c->io->want_write(c); /* what the socket does not take waits */
        else
            conn_io_drained(c);
    }
}

int conn_queue_frame(conn *c, int opcode, const void *payload, size_t len)
{
    uint8_t hdr[CHORUS_WS_MAX_HEADER];
    size_t n = chorus_ws_write_header(hdr, 1, opcode, len, NULL);
    struct evbuffer *out = c->out;

    if ((c->npend && spill(c)) || evbuffer_add(out, hdr, n) ||
        evbuffer_add(out, payload, len))
        return -1;
    stat_add(&c->srv->stats.bytes_out, n + len);
    schedule_write(c, n + len);
    return 0;
}

/* The bound is on the backlog: a connection that has written everything
 * queued before this turn keeps up, and takes all of this turn's output
 * even past the bound (it is written at the end of the turn); one that
 * still holds earlier output may not grow past max_outbound_bytes. */
static int over_bound(const conn *c, size_t len)
{
    size_t queued = conn_queued(c);
    size_t backlog = queued - c->turn_bytes;

    return backlog > 0 && queued + len > c->srv->cfg->max_outbound_bytes;
}

int conn_send(conn *c, int opcode, const void *payload, size_t len)
{
    if (c->state != CONN_WS)
        return -1;
    if (over_bound(c, len)) {
        slow_consumer(c);
        return -1;
    }
    if (conn_queue_frame(c, opcode, payload, len)) {
        conn_abort(c);
        return -1;
    }
    return 0;
}

int conn_queue_bytes(conn *c, const void *data, size_t len)
{
    if ((c->npend && spill(c)) || evbuffer_add(c->out, data, len))
        return -1;
    stat_add(&c->srv->stats.bytes_out, len);
    schedule_write(c, len);
    return 0;
}

int conn_send_bytes(conn *c, const void *data, size_t len)
{
    if (c->state != CONN_WS)
        return -1;
    if (over_bound(c, len)) {
        slow_consumer(c);
        return -1;
    }
    if (conn_queue_bytes(c, data, len)) {
        conn_abort(c);
        return -1;
    }
    return 0;
}

int conn_send_reply(conn *c, int opcode, const void *payload, size_t len)
{
    if (c->state != CONN_WS)
        return -1;
    if (conn_queue_frame(c, opcode, payload, len)) {
        conn_abort(c);
        return -1;
    }
    if (!c->close_deferred && over_bound(c, 0))
        slow_consumer(c); /* after the reply; and after any other acks */
    return 0;
}

int conn_send_shared(conn *c, frame_ref *f)
{
    return conn_send_shared_range(c, f, 0, f->len);
}

int conn_send_shared_range(conn *c, frame_ref *f, size_t off, size_t len)
{
    if (c->state != CONN_WS)
        return -1;
    if (over_bound(c, len)) {
        slow_consumer(c);
        return -1;
    }
    if (c->io->writev && !c->write_waiting && c->npend < CONN_PEND_MAX &&
        evbuffer_get_length(c->out) == 0) {
        pend_ref *p = &c->pend[c->npend++];
        frame_ref_incref(f);
        p->f = f;
        p->off = off;
        p->len = len;
        c->pend_bytes += len;
    } else if ((c->npend && spill(c)) ||
               frame_ref_attach_range(f, c->out, off, len)) {
        conn_abort(c);
        return -1;
    }
    stat_add(&c->srv->stats.bytes_out, len);
    schedule_write(c, len);
    return 0;
}
