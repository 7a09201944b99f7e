/* The TLS transport: an OpenSSL bufferevent does the reading, writing,
 * timeouts and close_notify; its input and output buffers are the
 * connection's. */
#include "conn_io.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "server.h"

static void read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    conn_io_readable(arg);
}

/* The output fell to the low watermark (CONN_LOW_WATER). */
static void write_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    conn_io_drained(arg);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    conn *c = arg;

    if (what & BEV_EVENT_CONNECTED) {
        conn_io_report(c, CONN_IO_CONNECTED, 0);
    } else if (what & BEV_EVENT_TIMEOUT) {
        /* The bufferevent stopped that direction: the owner decides. */
        if ((what & BEV_EVENT_READING) && c->read_on)
            bufferevent_enable(bev, EV_READ);
        conn_io_report(c,
                       what & BEV_EVENT_READING ? CONN_IO_READ_TIMEOUT
                                                : CONN_IO_WRITE_TIMEOUT,
                       0);
    } else if (what & BEV_EVENT_ERROR) {
        conn_io_report(c, CONN_IO_ERROR, EVUTIL_SOCKET_ERROR());
    } else if (what & BEV_EVENT_EOF) {
        conn_io_report(c, CONN_IO_EOF, 0);
    }
}

static int tls_start(conn *c, evutil_socket_t fd, SSL *ssl)
{
    c->fd = fd;
    c->bev = bufferevent_openssl_socket_new(c->srv->base, fd, ssl,
                                            BUFFEREVENT_SSL_ACCEPTING,
                                            BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev)
        return -1;
    /* A peer that just drops the TCP connection is fine. */
    bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    c->in = bufferevent_get_input(c->bev);
    c->out = bufferevent_get_output(c->bev);
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, CONN_LOW_WATER, 0);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->read_on = 1;
    return 0;
}

static void tls_want_read(conn *c, int on)
{
    c->read_on = on;
    if (on)
        bufferevent_enable(c->bev, EV_READ);
    else
        bufferevent_disable(c->bev, EV_READ);
}

static void tls_want_write(conn *c)
{
    (void)c; /* the bufferevent writes whatever its output holds */
}

static void tls_set_timeouts(conn *c, uint64_t read_ms, uint64_t write_ms)
{
    struct timeval r = {(time_t)(read_ms / 1000),
                        (suseconds_t)(read_ms % 1000) * 1000};
    struct timeval w = {(time_t)(write_ms / 1000),
                        (suseconds_t)(write_ms % 1000) * 1000};

    bufferevent_set_timeouts(c->bev, read_ms ? &r : NULL, write_ms ? &w : NULL);
}

static int tls_shutdown(conn *c)
{
    (void)c;
    return -1; /* freeing the bufferevent sends close_notify */
}

static void tls_close(conn *c)
{
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    bufferevent_free(c->bev); /* closes fd, frees the SSL */
}

const conn_io conn_io_tls = {
    tls_start, tls_want_read,    tls_want_write, NULL,
    NULL,      tls_set_timeouts, tls_shutdown,   tls_close,
};
