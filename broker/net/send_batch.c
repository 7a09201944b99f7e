#include "send_batch.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"

#ifdef CHORUS_HAVE_LIBURING
#include <liburing.h>

/* Times io_uring_enter may answer -EAGAIN or -EBUSY (the kernel is short of
 * memory, or its completion queue overflowed) in one run before the ring
 * is given up: each retry first reaps what completed. */
#define SUBMIT_RETRIES 8

typedef struct entry {
    int fd;
    int reaped; /* result holds the kernel's answer */
    struct msghdr msg;
    size_t len; /* bytes asked for */
    void *owner;
    ssize_t result;
} entry;

struct send_batch {
    struct io_uring ring;
    unsigned cap, n;
    unsigned prepped; /* ent[0..prepped) have their SQE in the ring */
    int max_iov;
    entry *ent;
    struct iovec *iov; /* cap * max_iov */
    int broken;        /* the ring failed and is closed; atomic */
    uint64_t partial;  /* atomic: read by the metrics of other loops */
    unsigned long fault_at, big_runs; /* CHORUS_FAULT_URING_SUBMIT */
};

int send_batch_built_in(void)
{
    return 1;
}

send_batch *send_batch_new(unsigned entries, int max_iov, char *err,
                           size_t errlen)
{
    send_batch *b = calloc(1, sizeof *b);
    const char *fault = getenv("CHORUS_FAULT_URING_SUBMIT");
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
    b->fault_at = fault ? strtoul(fault, NULL, 10) : 0;
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
    if (!b->broken)
        io_uring_queue_exit(&b->ring);
    free(b->ent);
    free(b->iov);
    free(b);
}

int send_batch_active(const send_batch *b)
{
    return b && !__atomic_load_n(&b->broken, __ATOMIC_RELAXED);
}

uint64_t send_batch_partial_writes(const send_batch *b)
{
    return b ? __atomic_load_n(&b->partial, __ATOMIC_RELAXED) : 0;
}

int send_batch_add(send_batch *b, int fd, const struct iovec *iov, int iovcnt,
                   void *owner)
{
    entry *e;
    struct iovec *v;

    if (b->broken || b->n == b->cap || iovcnt > b->max_iov)
        return -1;
    e = &b->ent[b->n];
    v = &b->iov[(size_t)b->n * (size_t)b->max_iov];
    memcpy(v, iov, (size_t)iovcnt * sizeof *iov);
    memset(e, 0, sizeof *e);
    e->fd = fd;
    e->msg.msg_iov = v;
    e->msg.msg_iovlen = (size_t)iovcnt;
    e->len = 0;
    for (int i = 0; i < iovcnt; i++)
        e->len += iov[i].iov_len;
    e->owner = owner;
    e->result = -EAGAIN;
    b->n++;
    return 0;
}

/* Puts the SQEs of ent[prepped..upto) into the ring (not yet submitted).
 * The ring has room: it has cap entries and is empty at the start of a
 * run. */
static void prep(send_batch *b, unsigned upto)
{
    for (; b->prepped < upto; b->prepped++) {
        entry *e = &b->ent[b->prepped];
        struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);

        assert(sqe != NULL);
        io_uring_prep_sendmsg(sqe, e->fd, &e->msg, MSG_DONTWAIT | MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, b->prepped);
    }
}

/* Takes every completion the ring holds. Returns how many. */
static unsigned reap(send_batch *b)
{
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;

    io_uring_for_each_cqe(&b->ring, head, cqe)
    {
        if (cqe->user_data < b->n && !b->ent[cqe->user_data].reaped) {
            b->ent[cqe->user_data].result = cqe->res;
            b->ent[cqe->user_data].reaped = 1;
        }
        seen++;
    }
    io_uring_cq_advance(&b->ring, seen);
    return seen;
}

/* The injected failure (see send_batch.h): submits the first two thirds
 * for real, loses the completions of the second third, leaves the rest in
 * the ring untaken. */
static int submit_failing(send_batch *b)
{
    unsigned third = b->n / 3, taken = b->n - third;
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;

    prep(b, taken);
    io_uring_submit(&b->ring);
    io_uring_for_each_cqe(&b->ring, head, cqe)
    {
        if (cqe->user_data < third) {
            b->ent[cqe->user_data].result = cqe->res;
            b->ent[cqe->user_data].reaped = 1;
        }
        seen++;
    }
    io_uring_cq_advance(&b->ring, seen);
    prep(b, b->n);
    return -ENOMEM;
}

static int submit(send_batch *b, int *injected)
{
    if (b->fault_at && b->prepped == 0 && b->n >= 3 &&
        ++b->big_runs == b->fault_at) {
        *injected = 1;
        return submit_failing(b);
    }
    prep(b, b->n);
    return io_uring_submit_and_wait(&b->ring, 1);
}

/* The ring failed with rc. Settles every write that has no result yet:
 * the kernel never took the ones still in the submission queue, so they
 * stay -EAGAIN (nothing written) and are safe to write again, once the
 * ring is closed so that nothing can submit them any more; those the
 * kernel took whose completion cannot be found are SEND_BATCH_UNKNOWN. */
static void give_up(send_batch *b, int rc, int injected)
{
    unsigned untaken = io_uring_sq_ready(&b->ring);
    unsigned unknown = 0;

    io_uring_get_events(&b->ring); /* flush completions the kernel holds */
    reap(b);
    for (unsigned i = 0; i + untaken < b->prepped; i++)
        if (!b->ent[i].reaped) {
            b->ent[i].result = SEND_BATCH_UNKNOWN;
            unknown++;
        }
    io_uring_queue_exit(&b->ring);
    __atomic_store_n(&b->broken, 1, __ATOMIC_RELAXED);
    log_error("io_uring_enter: %s%s; %u of %u writes with no known outcome "
              "(their connections are dropped), %u not taken (written "
              "later); this loop writes with writev from now on",
              strerror(-rc), injected ? " (injected)" : "", unknown, b->n,
              untaken + (b->n - b->prepped));
}

/* Submits the batch and reaps until every write has its result (they
 * complete at once: MSG_DONTWAIT never waits for the socket). */
static void issue(send_batch *b)
{
    unsigned completed = 0;
    int retries = 0, injected = 0;

    b->prepped = 0;
    while (completed < b->n) {
        int rc = submit(b, &injected);

        completed += reap(b);
        if (rc >= 0 || rc == -EINTR)
            continue;
        if ((rc == -EAGAIN || rc == -EBUSY) && !injected &&
            ++retries < SUBMIT_RETRIES)
            continue;
        give_up(b, rc, injected);
        return;
    }
}

void send_batch_run(send_batch *b,
                    void (*done)(void *owner, ssize_t result, void *arg),
                    void *arg)
{
    if (b->n == 0)
        return;
    issue(b);
    for (unsigned i = 0; i < b->n; i++) {
        entry *e = &b->ent[i];
        if (e->result > 0 && (size_t)e->result < e->len)
            __atomic_store_n(&b->partial, b->partial + 1, __ATOMIC_RELAXED);
        done(e->owner, e->result, arg);
    }
    b->n = 0;
}

#else /* no liburing at build time */

int send_batch_built_in(void)
{
    return 0;
}

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

int send_batch_active(const send_batch *b)
{
    (void)b;
    return 0;
}

uint64_t send_batch_partial_writes(const send_batch *b)
{
    (void)b;
    return 0;
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
