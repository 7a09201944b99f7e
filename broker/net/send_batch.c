#include "send_batch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#ifdef CHORUS_HAVE_LIBURING
#include <liburing.h>

typedef struct entry {
    struct msghdr msg;
    void *owner;
    ssize_t result;
} entry;

struct send_batch {
    struct io_uring ring;
    unsigned cap, n;
    int max_iov;
    entry *ent;
    struct iovec *iov; /* cap * max_iov */
    int broken;        /* the ring failed: take no more writes */
};

send_batch *send_batch_new(unsigned entries, int max_iov, char *err,
                           size_t errlen)
{
    send_batch *b = calloc(1, sizeof *b);
    int rc;

    if (!b || !(b->ent = calloc(entries, sizeof *b->ent)) ||
        !(b->iov = calloc((size_t)entries * (size_t)max_iov, sizeof *b->iov))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    rc = io_uring_queue_init(entries, &b->ring, 0);
    if (rc < 0) {
        snprintf(err, errlen, "io_uring_queue_init: %s", strerror(-rc));
        goto fail;
    }
    b->cap = entries;
    b->max_iov = max_iov;
    return b;
fail:
    if (b) {
        free(b->ent);
        free(b->iov);
    }
    free(b);
    return NULL;
}

void send_batch_free(send_batch *b)
{
    if (!b)
        return;
    io_uring_queue_exit(&b->ring);
    free(b->ent);
    free(b->iov);
    free(b);
}

int send_batch_add(send_batch *b, int fd, const struct iovec *iov, int iovcnt,
                   void *owner)
{
    struct io_uring_sqe *sqe;
    entry *e;
    struct iovec *v;

    if (b->broken || b->n == b->cap || iovcnt > b->max_iov)
        return -1;
    sqe = io_uring_get_sqe(&b->ring);
    if (!sqe)
        return -1;
    e = &b->ent[b->n];
    v = &b->iov[(size_t)b->n * (size_t)b->max_iov];
    memcpy(v, iov, (size_t)iovcnt * sizeof *iov);
    memset(&e->msg, 0, sizeof e->msg);
    e->msg.msg_iov = v;
    e->msg.msg_iovlen = (size_t)iovcnt;
    e->owner = owner;
    e->result = -EAGAIN;
    io_uring_prep_sendmsg(sqe, fd, &e->msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, b->n);
    b->n++;
    return 0;
}

/* Submits and waits until every queued write has its completion. */
static void issue(send_batch *b)
{
    unsigned completed = 0;

    while (completed < b->n && !b->broken) {
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        int rc = io_uring_submit_and_wait(&b->ring, 1);

        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            /* The unfinished writes stay -EAGAIN: their connections
             * queue the output and write it when the socket is ready. */
            b->broken = 1;
            break;
        }
        io_uring_for_each_cqe(&b->ring, head, cqe)
        {
            if (cqe->user_data < b->n)
                b->ent[cqe->user_data].result = cqe->res;
            seen++;
        }
        io_uring_cq_advance(&b->ring, seen);
        completed += seen;
    }
}

void send_batch_run(send_batch *b,
                    void (*done)(void *owner, ssize_t result, void *arg),
                    void *arg)
{
    if (b->n == 0)
        return;
    issue(b);
    for (unsigned i = 0; i < b->n; i++)
        done(b->ent[i].owner, b->ent[i].result, arg);
    b->n = 0;
}

#else /* no liburing at build time */

send_batch *send_batch_new(unsigned entries, int max_iov, char *err,
                           size_t errlen)
{
    (void)entries;
    (void)max_iov;
    snprintf(err, errlen, "built without liburing");
    return NULL;
}

void send_batch_free(send_batch *b)
{
    (void)b;
}

int send_batch_add(send_batch *b, int fd, const struct iovec *iov, int iovcnt,
                   void *owner)
{
    (void)b;
    (void)fd;
    (void)iov;
    (void)iovcnt;
    (void)owner;
    return -1;
}

void send_batch_run(send_batch *b,
                    void (*done)(void *owner, ssize_t result, void *arg),
                    void *arg)
{
    (void)b;
    (void)done;
    (void)arg;
}

#endif
