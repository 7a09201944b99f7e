/* Subscriber reads by io_uring multishot receive. A subscriber whose
 * WebSocket is open gets one IORING_OP_RECV with IORING_RECV_MULTISHOT
 * and buffer selection from a ring of provided buffers; the kernel then
 * posts one completion per arrival with no system call per socket, and
 * libevent only watches the io_uring fd (readable when completions wait).
 * On this VM a small loopback read() costs ~5 us of kernel time plus the
 * epoll round, so at 200k arrivals/s the read path alone filled the
 * bench's core (scenario C). The handshake, publishers and all writes
 * stay on plain read()/write(); without liburing, when the ring cannot be
 * set up, or with --no-uring, subscribers use read() as before.
 *
 * Each buffer has CARRY_MAX bytes of headroom so that a connection's
 * undecoded bytes from the last arrival are put in front of the new ones
 * and the lot is decoded in place, as ws_read() does in B.rbuf. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "bench.h"

#ifdef CHORUS_HAVE_LIBURING
#include <sys/mman.h>

#include <liburing.h>

#define NBUF 2048                  /* provided buffers (power of two) */
#define BUF_LEN 16384              /* bytes the kernel may put in one */
#define BUF_STRIDE (BUF_LEN + 256) /* >= BUF_LEN + CARRY_MAX */
#define BGID 7
#define CQ_ENTRIES 16384

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static uint8_t *bufs;
static struct event *ring_ev;
static int want_submit;

static uint8_t *buf_at(unsigned bid)
{
    return bufs + (size_t)bid * BUF_STRIDE + (BUF_STRIDE - BUF_LEN);
}

/* Hands buffer bid back to the kernel: the off-th of this batch. */
static void buf_give(unsigned bid, int off)
{
    io_uring_buf_ring_add(br, buf_at(bid), BUF_LEN, (unsigned short)bid,
                          io_uring_buf_ring_mask(NBUF), off);
}

static int setup_bufs(void)
{
    struct io_uring_buf_reg reg;
    size_t rlen = NBUF * sizeof(struct io_uring_buf);
    void *m = mmap(NULL, rlen, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (m == MAP_FAILED)
        return -errno;
    br = m;
    bufs = mmap(NULL, (size_t)NBUF * BUF_STRIDE, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (bufs == MAP_FAILED)
        return -errno;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)br;
    reg.ring_entries = NBUF;
    reg.bgid = BGID;
    int r = io_uring_register_buf_ring(&ring, &reg, 0);
    if (r < 0)
        return r;
    io_uring_buf_ring_init(br);
    for (unsigned i = 0; i < NBUF; i++)
        buf_give(i, (int)i);
    io_uring_buf_ring_advance(br, NBUF);
    return 0;
}

/* Queues c's multishot receive (submitted by the caller). */
static int queue_recv(conn *c)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

    if (!sqe) {
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
        if (!sqe)
            return -1;
    }
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data(sqe, c);
    want_submit = 1;
    return 0;
}

static void feed(conn *c, uint8_t *data, size_t n)
{
    size_t carry = c->carry_len;

    memcpy(data - carry, c->carry, carry);
    c->carry_len = 0;
    B.rx_bytes += (uint64_t)n;
    B.reads++;
    proto_feed(c, data - carry, carry + n, now_ns());
}

static int live(const conn *c)
{
    return c->state == S_OPEN && c->uring;
}

/* One completion; *given counts the buffers handed back this batch. */
static void on_cqe(const struct io_uring_cqe *cqe, int *given)
{
    conn *c = io_uring_cqe_get_data(cqe);
    int res = cqe->res;

    if (cqe->flags & IORING_CQE_F_BUFFER) {
        unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        if (res > 0 && live(c))
            feed(c, buf_at(bid), (size_t)res);
        buf_give(bid, (*given)++);
    }
    if (!live(c) || (cqe->flags & IORING_CQE_F_MORE))
        return;
    if (res == 0)
        net_dead(c, 1006, "connection closed without close frame");
    else if (res < 0 && res != -ENOBUFS && res != -EINTR && res != -EAGAIN)
        net_dead(c, 1006, strerror(-res));
    else if (queue_recv(c) != 0)
        net_dead(c, 1006, "cannot re-arm io_uring receive");
}

static void on_ring(evutil_socket_t fd, short what, void *arg)
{
    struct io_uring_cqe *cqe;
    unsigned head, seen;
    int given;
    (void)fd;
    (void)what;
    (void)arg;

    do {
        seen = 0;
        given = 0;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            on_cqe(cqe, &given);
            seen++;
        }
        io_uring_cq_advance(&ring, seen);
        io_uring_buf_ring_advance(br, given);
        if (want_submit) {
            want_submit = 0;
            io_uring_submit(&ring);
        }
        if (io_uring_cq_has_overflow(&ring))
            io_uring_get_events(&ring);
    } while (seen && io_uring_cq_ready(&ring));
}

int uring_init(void)
{
    struct io_uring_params p;
    int r;

    /* COOP_TASKRUN: completions are run at the bench's next system call
     * (epoll_wait at the latest) rather than by an interrupt (in two
     * noisy runs of scenario A it kept up with read() where the default
     * did not). Kernels before 6.0 lack SINGLE_ISSUER: retry without. */
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN |
              IORING_SETUP_SINGLE_ISSUER;
    p.cq_entries = CQ_ENTRIES;
    r = io_uring_queue_init_params(256, &ring, &p);
    if (r == -EINVAL) {
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = CQ_ENTRIES;
        r = io_uring_queue_init_params(256, &ring, &p);
    }
    if (r < 0) {
        fprintf(stderr, "io_uring unavailable (%s): subscribers use read()\n",
                strerror(-r));
        return -1;
    }
    r = setup_bufs();
    if (r < 0) {
        fprintf(stderr,
                "io_uring buffer ring failed (%s): subscribers use"
                " read()\n",
                strerror(-r));
        io_uring_queue_exit(&ring);
        return -1;
    }
    ring_ev =
        event_new(B.base, ring.ring_fd, EV_READ | EV_PERSIST, on_ring, NULL);
    if (!ring_ev || event_add(ring_ev, NULL) != 0)
        die("cannot watch the io_uring fd");
    fprintf(stderr,
            "subscriber reads: io_uring multishot receive, %d"
            " buffers of %d B\n",
            NBUF, BUF_LEN);
    return 0;
}

int uring_arm(conn *c)
{
    if (queue_recv(c) != 0)
        return -1;
    c->uring = 1;
    want_submit = 0;
    if (io_uring_submit(&ring) < 0) {
        c->uring = 0;
        return -1;
    }
    return 0;
}

#else /* no liburing */

int uring_init(void)
{
    fprintf(stderr, "built without liburing: subscribers use read()\n");
    return -1;
}

int uring_arm(conn *c)
{
    (void)c;
    return -1;
}

#endif

/* Before close(): the pending receive holds a reference to the socket,
 * so close() alone would leave it open; shutdown ends the receive (its
 * last completion is then ignored, the connection being dead). */
void uring_release(conn *c)
{
    if (c->uring && c->fd >= 0)
        shutdown(c->fd, SHUT_RDWR);
    c->uring = 0;
}
