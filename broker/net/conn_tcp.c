/* The plain TCP transport: one event on the socket, the connection's own
 * input buffer and output queue, recv and writev by the broker itself.
 *
 * A readable socket is read into all the room libevent reserves for
 * READ_CHUNK (128 KiB less its header, in a new block), each read handed
 * up at once, until CONN_TURN_READ is reached in a loop turn: a
 * pipelining publisher gets ~4,000 small publishes into one turn. At
 * saturation one turn's read becomes one group commit, and its messages
 * per topic the frames per send of the fan-out (B in docs/BENCHMARKS.md:
 * at 256 KiB a turn, read 64 KiB at a time, the broker made 1.5x the sends
 * per delivery of the code before it); others get their turn after that.
 *
 * Deadlines are one timer per connection, re-armed lazily: input only
 * notes its time, and the timer, when it fires, checks whether its
 * deadline really passed (as nginx and Redis do), so that a busy
 * connection costs no timer operation per read. */
#include "conn_io.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "server.h"

#define READ_CHUNK (64 * 1024)
#define CONN_TURN_READ (512 * 1024)

static void socket_cb(evutil_socket_t fd, short what, void *arg);

/* Registers the socket's event for what is wanted now. */
static void arm_socket(conn *c)
{
    short want =
        (short)((c->read_on ? EV_READ : 0) | (c->write_waiting ? EV_WRITE : 0));

    if (want == c->io_events)
        return;
    event_del(c->ev);
    event_assign(c->ev, c->srv->base, c->fd, (short)(want | EV_PERSIST),
                 socket_cb, c);
    if (want)
        event_add(c->ev, NULL);
    c->io_events = want;
}

/* The nearest deadline, 0 if none. */
static int64_t deadline(const conn *c)
{
    int64_t at = 0;

    if (c->read_ms && c->read_on)
        at = c->read_at_ms + (int64_t)c->read_ms;
    if (c->write_ms && c->write_waiting) {
        int64_t w = c->write_at_ms + (int64_t)c->write_ms;
        if (!at || w < at)
            at = w;
    }
    return at;
}

static void arm_timer(conn *c)
{
    int64_t at = deadline(c), left;
    struct timeval tv;

    if (!at) {
        evtimer_del(c->timer);
        return;
    }
    left = at - server_now_ms(c->srv);
    if (left < 1)
        left = 1;
    tv.tv_sec = (time_t)(left / 1000);
    tv.tv_usec = (suseconds_t)(left % 1000) * 1000;
    evtimer_add(c->timer, &tv);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;
    int64_t now = server_now_ms(c->srv);

    (void)fd;
    (void)what;
    if (c->write_ms && c->write_waiting &&
        now - c->write_at_ms >= (int64_t)c->write_ms) {
        c->write_at_ms = now;
        conn_io_report(c, CONN_IO_WRITE_TIMEOUT, 0);
        return;
    }
    if (c->read_ms && c->read_on &&
        now - c->read_at_ms >= (int64_t)c->read_ms) {
        c->read_at_ms = now; /* once per read_ms, until the owner acts */
        conn_io_report(c, CONN_IO_READ_TIMEOUT, 0);
        if (c->state != CONN_DEAD)
            arm_timer(c);
        return;
    }
    arm_timer(c); /* there was activity: the deadline moved */
}

static ssize_t tcp_read(conn *c, size_t max)
{
    struct evbuffer_iovec v;
    ssize_t n;

    if (evbuffer_reserve_space(c->in, (ev_ssize_t)max, &v, 1) != 1)
        return -ENOMEM;
    n = recv(c->fd, v.iov_base, v.iov_len, 0);
    if (n < 0) {
        n = -errno;
        v.iov_len = 0;
    } else {
        v.iov_len = (size_t)n;
    }
    evbuffer_commit_space(c->in, &v, 1);
    return n;
}

static void on_readable(conn *c)
{
    for (size_t got = 0; got < CONN_TURN_READ;) {
        ssize_t n = tcp_read(c, READ_CHUNK);

        if (n == -EAGAIN || n == -EINTR)
            return;
        if (n <= 0) {
            conn_io_report(c, n == 0 ? CONN_IO_EOF : CONN_IO_ERROR, (int)-n);
            return;
        }
        got += (size_t)n;
        c->read_at_ms = server_now_ms(c->srv);
        conn_io_readable(c);
        if (c->state == CONN_DEAD || !c->read_on || (size_t)n < READ_CHUNK)
            return;
    }
}

/* Writes what c->out holds. 0, or -1 on a socket error (errno set). */
static int write_out(conn *c)
{
    int n;

    if (evbuffer_get_length(c->out) == 0)
        return 0;
    n = evbuffer_write(c->out, c->fd);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    if (n > 0)
        c->write_at_ms = server_now_ms(c->srv);
    return 0;
}

/* Writes now; what the socket does not take waits for EV_WRITE. */
static void write_now(conn *c)
{
    size_t left;

    if (write_out(c) < 0) {
        c->write_waiting = 0;
        arm_socket(c);
        conn_io_report(c, CONN_IO_ERROR, errno);
        return;
    }
    left = evbuffer_get_length(c->out);
    if (left && !c->write_waiting) {
        c->write_waiting = 1;
        c->write_at_ms = server_now_ms(c->srv);
        arm_socket(c);
        arm_timer(c);
    } else if (!left && c->write_waiting) {
        c->write_waiting = 0;
        arm_socket(c);
    }
    if (left <= CONN_LOW_WATER)
        conn_io_drained(c);
}

static void socket_cb(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;

    (void)fd;
    if (c->state == CONN_DEAD) { /* aborted: only freeing is left */
        c->read_on = c->write_waiting = 0;
        arm_socket(c);
        return;
    }
    if (what & EV_WRITE)
        write_now(c);
    if ((what & EV_READ) && c->state != CONN_DEAD && c->read_on)
        on_readable(c);
}

static int tcp_start(conn *c, evutil_socket_t fd, struct ssl_st *ssl)
{
    (void)ssl;
    c->fd = fd;
    c->in = evbuffer_new();
    c->out = evbuffer_new();
    c->ev = event_new(c->srv->base, fd, EV_PERSIST, socket_cb, c);
    c->timer = evtimer_new(c->srv->base, timer_cb, c);
    if (!c->in || !c->out || !c->ev || !c->timer) {
        if (c->in)
            evbuffer_free(c->in);
        if (c->out)
            evbuffer_free(c->out);
        if (c->ev)
            event_free(c->ev);
        if (c->timer)
            event_free(c->timer);
        c->in = c->out = NULL;
        c->ev = c->timer = NULL;
        return -1;
    }
    c->read_on = 1;
    arm_socket(c);
    return 0;
}

static void tcp_want_read(conn *c, int on)
{
    if (c->read_on == on)
        return;
    c->read_on = on;
    if (on)
        c->read_at_ms = server_now_ms(c->srv);
    arm_socket(c);
    arm_timer(c);
}

static void tcp_want_write(conn *c)
{
    if (!c->write_waiting)
        write_now(c);
}

static ssize_t tcp_writev(conn *c, const struct iovec *iov, int iovcnt)
{
    ssize_t n = writev(c->fd, iov, iovcnt);

    if (n > 0)
        c->write_at_ms = server_now_ms(c->srv);
    return n < 0 ? -errno : n;
}

static void tcp_set_timeouts(conn *c, uint64_t read_ms, uint64_t write_ms)
{
    int64_t now = server_now_ms(c->srv);

    c->read_ms = read_ms;
    c->write_ms = write_ms;
    c->read_at_ms = now;
    c->write_at_ms = now;
    arm_timer(c);
}

static int tcp_shutdown(conn *c)
{
    return shutdown(c->fd, SHUT_WR);
}

static void tcp_close(conn *c)
{
    event_free(c->ev);
    event_free(c->timer);
    evutil_closesocket(c->fd);
    evbuffer_free(c->in);
    evbuffer_free(c->out);
}

const conn_io conn_io_tcp = {
    tcp_start, tcp_want_read,    tcp_want_write, tcp_writev,
    tcp_read,  tcp_set_timeouts, tcp_shutdown,   tcp_close,
};
