/* Many non-blocking socket writes in one system call.
 *
 * At the end of a loop turn the broker writes to every connection that has
 * output; with io_uring those writes are queued here and issued with one
 * io_uring_enter instead of one writev each (on the VM we measure on, a
 * system call costs about 1 us and a small loopback send about 5 us, so
 * this saves a fifth to a third of the CPU of a fan-out). Each write is
 * sent with MSG_DONTWAIT, so it is attempted at once and a full socket
 * answers -EAGAIN instead of waiting: the same semantics as writev on a
 * non-blocking socket.
 *
 * Where io_uring is not available (not built in, an old kernel, a
 * container that forbids it) send_batch_new returns NULL and the caller
 * writes with writev as before. Should the ring fail later, it is closed,
 * the failure is logged once, and from then on send_batch_add refuses
 * every write, so the caller writes with writev again. */
#ifndef CHORUS_SEND_BATCH_H
#define CHORUS_SEND_BATCH_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct send_batch send_batch;

/* The result of a write whose fate is unknown: the kernel took it but its
 * completion was lost when the ring failed. Some, all or none of its bytes
 * may have gone out, so the stream can be neither resumed nor closed
 * cleanly: the connection must be dropped without writing another byte. */
#define SEND_BATCH_UNKNOWN (-EIO)

/* 1 if chorusd was built with liburing. */
int send_batch_built_in(void);

/* Up to `entries` writes of up to `max_iov` buffers each per run; NULL
 * (and why in err) when io_uring cannot be used.
 *
 * Fault injection for tests (tests/integration/test_io_uring_fault.py):
 * with CHORUS_FAULT_URING_SUBMIT=<n> in the environment, the n-th run of
 * three or more writes fails as a broken ring could: the kernel has taken
 * the first two thirds of the writes, the completions of the second third
 * are lost, and io_uring_enter answers -ENOMEM. */
send_batch *send_batch_new(unsigned entries, int max_iov, char *err,
                           size_t errlen);
void send_batch_free(send_batch *b);

/* 1 while the ring works (b not NULL and not failed). Any thread. */
int send_batch_active(const send_batch *b);

/* Writes through b that the socket took only part of (0 < result <
 * length); any thread. */
uint64_t send_batch_partial_writes(const send_batch *b);

/* Queues a write of iov[0..iovcnt) (copied: only the bytes must stay put
 * until send_batch_run) to fd. Returns 0, or -1 when the batch is full
 * (run it and add again) or the ring has failed (if adding to an empty
 * batch fails, write some other way). */
int send_batch_add(send_batch *b, int fd, const struct iovec *iov, int iovcnt,
                   void *owner);

/* Issues the queued writes and reports each: done(owner, result, arg),
 * in the order they were added, where result is
 *   >= 0                the bytes the socket took (maybe fewer than asked),
 *   -EAGAIN             nothing was written (a full socket, or the ring
 *                       failed before the kernel took this write): write
 *                       the same bytes later,
 *   SEND_BATCH_UNKNOWN  see above: drop the connection,
 *   other -errno        the socket's error.
 * Every byte a result reports as written was written exactly once, and a
 * write reported as -EAGAIN never reaches the socket. Empties the batch. */
void send_batch_run(send_batch *b,
                    void (*done)(void *owner, ssize_t result, void *arg),
                    void *arg);

#endif
