/* Sockets: connect, WebSocket handshake (or the GET of an SSE
 * subscriber), reads and writes. One libevent loop, raw non-blocking
 * sockets. Received bytes are decoded in place in one shared read buffer
 * (B.rbuf); a connection keeps only the few undecoded bytes of a split
 * frame header between reads. */
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "chorus/handshake.h"
#include "chorus/http_parse.h"
#include "bench.h"

static void on_event(evutil_socket_t fd, short what, void *arg);

static const chorus_http_limits http_lim = {8192, CHORUS_HTTP_MAX_HEADERS,
                                            16384};

/* EV_READ unless io_uring does c's reads. */
static short rd(const conn *c)
{
    return c->uring ? 0 : EV_READ;
}

static void set_ev(conn *c, short flags)
{
    if (c->ev_flags == flags)
        return;
    if (c->ev_flags)
        event_del(c->ev);
    c->ev_flags = flags;
    event_assign(c->ev, B.base, c->fd, (short)(flags | EV_PERSIST), on_event,
                 c);
    if (flags)
        event_add(c->ev, NULL);
}

/* Room for n more bytes of output; the caller adds to c->out_len. */
char *net_reserve(conn *c, size_t n)
{
    if (c->out_off && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + n > c->out_cap) {
        if (c->out_off) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        if (c->out_len + n > c->out_cap) {
            size_t cap = c->out_cap ? c->out_cap : 256;
            while (cap < c->out_len + n)
                cap *= 2;
            c->out = realloc(c->out, cap);
            if (!c->out)
                die("out of memory");
            c->out_cap = cap;
        }
    }
    return c->out + c->out_len;
}

/* Writes what is pending; watches for writability while some remains. */
void net_flush(conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            net_dead(c, 1006, strerror(errno));
            return;
        }
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        if (c->kind == K_SUB && c->out_cap > 4096) {
            free(c->out);
            c->out = NULL;
            c->out_cap = 0;
        }
        set_ev(c, rd(c));
    } else {
        set_ev(c, (short)(rd(c) | EV_WRITE));
    }
}

/* Queues one masked WebSocket frame. */
void net_ws_queue(conn *c, int opcode, const void *data, size_t len)
{
    uint8_t key[4];
    uint32_t r = rng32();
    char *p = net_reserve(c, len + CHORUS_WS_MAX_HEADER);
    size_t h;

    memcpy(key, &r, 4);
    h = chorus_ws_write_header((uint8_t *)p, 1, opcode, len, key);
    memcpy(p + h, data, len);
    chorus_ws_mask((uint8_t *)p + h, len, key, 0);
    c->out_len += h + len;
}

void net_ws_send_text(conn *c, const char *s, size_t len)
{
    net_ws_queue(c, CHORUS_WS_OP_TEXT, s, len);
    net_flush(c);
}

void net_start(conn *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;

    if (fd < 0) {
        net_dead(c, 1006, strerror(errno));
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (c->kind == K_SUB && B.rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &B.rcvbuf, sizeof B.rcvbuf);
    c->fd = fd;
    if (!c->ev)
        c->ev = event_new(B.base, -1, 0, on_event, c);
    c->ev_flags = 0;
    c->state = S_CONNECTING;
    B.connecting++;
    const struct sockaddr_in *to = &B.addr;
    if (c->kind == K_SUB && B.nsub_ports)
        to = &B.sub_addr[(c - B.subs) % B.nsub_ports];
    if (connect(fd, (const struct sockaddr *)to, sizeof *to) < 0 &&
        errno != EINPROGRESS) {
        net_dead(c, 1006, strerror(errno));
        return;
    }
    set_ev(c, EV_WRITE);
}

void net_start_more(void)
{
    while (B.phase == PH_SETUP && B.next_connect < B.nsubs &&
           B.connecting < B.connect_par)
        net_start(&B.subs[B.next_connect++]);
}

static void sub_path(const conn *c, char *path, size_t n)
{
    switch (B.proto) {
    case PROTO_CHORUS: snprintf(path, n, "/ws"); break;
    case PROTO_NCHAN: snprintf(path, n, "/sub/%s", B.tname[c->topic]); break;
    default: snprintf(path, n, "/");
    }
}

/* The WebSocket is up: subscribe (or say hello, NATS publisher). */
static void on_open(conn *c)
{
    char buf[512];
    int n;

    B.connecting--;
    c->state = S_OPEN;
    if (c->kind == K_SUB) {
        if (c->sse) {
            sse_opened(c);
        } else if (B.proto == PROTO_CHORUS) {
            n = snprintf(buf, sizeof buf,
                         "{\"op\":\"subscribe\",\"topic\":\"%s\"}",
                         B.tname[c->topic]);
            net_ws_send_text(c, buf, (size_t)n);
        } else if (B.proto == PROTO_NCHAN) {
            c->subscribed = 1;
            B.subs_ok++;
        } else {
            n = snprintf(buf, sizeof buf,
                         "CONNECT {\"verbose\":false,\"pedantic\":false}\r\n"
                         "SUB %s 1\r\nPING\r\n",
                         B.tname[c->topic]);
            net_ws_send_text(c, buf, (size_t)n);
        }
        net_start_more();
    } else if (c->kind == K_PUB_WS && B.proto == PROTO_NATS) {
        static const char hello[] =
            "CONNECT {\"verbose\":false,\"pedantic\":false}\r\n";
        net_ws_send_text(c, hello, sizeof hello - 1);
    }
}

static void sub_dead(conn *c, int code, const char *why)
{
    if (c->subscribed) {
        B.subs_closed++;
        if (code == 1013)
            B.close_1013++;
        if (B.subs_closed <= 5)
            note("subscriber %u closed: %d %s", c->idx, code, why ? why : "");
        if (B.fanout[c->topic])
            B.fanout[c->topic]--;
    } else {
        B.subs_failed++;
        if (B.subs_failed <= 5)
            note("subscriber %u failed: %d %s", c->idx, code, why ? why : "");
    }
    if (B.phase == PH_SETUP)
        net_start_more();
}

void net_dead(conn *c, int code, const char *why)
{
    if (c->state == S_DEAD)
        return;
    if (c->state == S_CONNECTING || c->state == S_HANDSHAKE)
        B.connecting--;
    if (c->ev_flags)
        event_del(c->ev);
    c->ev_flags = 0;
    uring_release(c);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->in);
    c->in = NULL;
    if (c->kind == K_SUB) {
        sub_dead(c, code, why);
    } else {
        note("publisher %u closed: %d %s", c->idx, code, why ? why : "");
        B.pub_errors++;
    }
    c->state = S_DEAD;
}

/* Checks a complete handshake (or SSE) response; 0 if the upgrade
 * succeeded (the event stream is open). */
static int check_response(conn *c, int h, const chorus_http_response *res)
{
    const char *why;

    if (h < 0) {
        net_dead(c, 1006, "malformed handshake response");
        return -1;
    }
    if (c->sse)
        return sse_check_response(c, res);
    if (res->status != 101) {
        char msg[64];
        snprintf(msg, sizeof msg, "handshake answered HTTP %d", res->status);
        net_dead(c, 1006, msg);
        return -1;
    }
    if (chorus_ws_check_accept(res, c->key, &why) != 0) {
        net_dead(c, 1006, why);
        return -1;
    }
    return 0;
}

static void handshake_read(conn *c)
{
    chorus_http_response res;
    ssize_t n;
    size_t rest;
    int h;

    if (!c->in) {
        c->in = malloc(HS_BUF);
        if (!c->in)
            die("out of memory");
        c->in_len = 0;
    }
    n = read(c->fd, c->in + c->in_len, HS_BUF - c->in_len);
    if (n == 0) {
        net_dead(c, 1006, "closed during handshake");
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR)
            net_dead(c, 1006, strerror(errno));
        return;
    }
    c->in_len += (size_t)n;
    h = chorus_http_parse_response(c->in, c->in_len, &http_lim, &res);
    if (h == CHORUS_HTTP_INCOMPLETE) {
        if (c->in_len == HS_BUF)
            net_dead(c, 1006, "handshake response too large");
        return;
    }
    if (check_response(c, h, &res) != 0)
        return;
    ws_dec_init(&c->dec);
    rest = c->in_len - (size_t)h;
    memcpy(B.rbuf, c->in + h, rest);
    free(c->in);
    c->in = NULL;
    c->in_len = 0;
    on_open(c);
    if (rest && c->state == S_OPEN)
        proto_feed(c, B.rbuf, rest, now_ns());
    if (B.uring && c->kind == K_SUB && c->state == S_OPEN && uring_arm(c) == 0)
        set_ev(c, (short)(c->ev_flags & ~EV_READ));
}

/* The WebSocket handshake request, or an SSE subscriber's GET. */
static void send_handshake(conn *c)
{
    char path[300], req[1024];
    int n;

    if (c->sse) {
        n = sse_request(c, req, sizeof req);
    } else {
        if (c->kind == K_SUB)
            sub_path(c, path, sizeof path);
        else
            snprintf(path, sizeof path, B.proto == PROTO_CHORUS ? "/ws" : "/");
        chorus_ws_client_key(c->key);
        n = chorus_ws_client_request(B.hostport, path, c->key, NULL, req,
                                     sizeof req);
    }
    if (n < 0) {
        net_dead(c, 1006, "cannot build request");
        return;
    }
    memcpy(net_reserve(c, (size_t)n), req, (size_t)n);
    c->out_len += (size_t)n;
    c->state = S_HANDSHAKE;
    net_flush(c);
}

/* An open WebSocket's or SSE stream's bytes. */
static void stream_read(conn *c)
{
    size_t carry = c->carry_len;
    ssize_t n;

    memcpy(B.rbuf, c->carry, carry);
    n = read(c->fd, B.rbuf + carry, RBUF_SIZE);
    if (n <= 0) {
        if (n == 0)
            net_dead(c, 1006, "connection closed without close frame");
        else if (errno != EAGAIN && errno != EINTR)
            net_dead(c, 1006, strerror(errno));
        return;
    }
    B.rx_bytes += (uint64_t)n;
    B.reads++;
    c->carry_len = 0;
    proto_feed(c, B.rbuf, carry + (size_t)n, now_ns());
}

/* Length of the complete HTTP response at the start of c->in, 0 if
 * incomplete, -1 if it cannot be read; *status and *hl set when > 0. */
static long http_response_len(conn *c, int *status, size_t *hl)
{
    chorus_http_response res;
    const chorus_http_header *h;
    size_t body = 0;
    int n = chorus_http_parse_response(c->in, c->in_len, &http_lim, &res);

    if (n == CHORUS_HTTP_INCOMPLETE)
        return 0;
    if (n < 0)
        return -1;
    h = chorus_http_find_header(res.headers, res.num_headers, "Content-Length");
    if (h) {
        body = (size_t)strtoull(h->value, NULL, 10);
    } else if (chorus_http_find_header(res.headers, res.num_headers,
                                       "Transfer-Encoding")) {
        const char *end =
            memmem(c->in + n, c->in_len - (size_t)n, "0\r\n\r\n", 5);
        if (!end)
            return 0;
        body = (size_t)(end + 5 - (c->in + n));
    }
    if ((size_t)n + body > HTTP_BUF)
        return -1;
    *status = res.status;
    *hl = (size_t)n;
    return c->in_len < (size_t)n + body ? 0 : (long)((size_t)n + body);
}

/* HTTP publisher: one request in flight per connection. */
static void http_read(conn *c)
{
    ssize_t n;

    if (!c->in && !(c->in = malloc(HTTP_BUF)))
        die("out of memory");
    n = read(c->fd, c->in + c->in_len, HTTP_BUF - c->in_len);
    if (n <= 0) {
        if (n == 0)
            net_dead(c, 1006, "HTTP connection closed");
        else if (errno != EAGAIN && errno != EINTR)
            net_dead(c, 1006, strerror(errno));
        return;
    }
    c->in_len += (size_t)n;
    for (;;) {
        int status = 0;
        size_t hl = 0;
        long total = http_response_len(c, &status, &hl);
        if (total < 0) {
            net_dead(c, 1006, "malformed or too large HTTP response");
            return;
        }
        if (total == 0)
            return;
        if ((status < 200 || status > 299) && B.errors++ < 5)
            note("publish answered HTTP %d: %.*s", status,
                 (int)((size_t)total - hl > 120 ? 120 : (size_t)total - hl),
                 c->in + hl);
        memmove(c->in, c->in + total, c->in_len - (size_t)total);
        c->in_len -= (size_t)total;
        c->http_busy = 0;
        proto_on_ack(c);
    }
}

static void on_connected(conn *c)
{
    int err = 0;
    socklen_t sl = sizeof err;

    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl);
    if (err) {
        net_dead(c, 1006, strerror(err));
        return;
    }
    set_ev(c, EV_READ);
    if (c->kind == K_PUB_HTTP) {
        c->state = S_OPEN;
        B.connecting--;
    } else {
        send_handshake(c);
    }
}

static void on_event(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;
    (void)fd;

    switch (c->state) {
    case S_CONNECTING:
        if (what & EV_WRITE)
            on_connected(c);
        return;
    case S_HANDSHAKE:
        if (what & EV_WRITE)
            net_flush(c);
        if ((what & EV_READ) && c->state == S_HANDSHAKE)
            handshake_read(c);
        return;
    case S_OPEN:
        if (what & EV_READ) {
            if (c->kind == K_PUB_HTTP)
                http_read(c);
            else
                stream_read(c);
        }
        if ((what & EV_WRITE) && c->state == S_OPEN)
            net_flush(c);
        return;
    default: return;
    }
}
