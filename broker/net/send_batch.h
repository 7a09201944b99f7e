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
 * writes with writev as before. */
#ifndef CHORUS_SEND_BATCH_H
#define CHORUS_SEND_BATCH_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct send_batch send_batch;

/* Up to `entries` writes of up to `max_iov` buffers each per run; NULL
 * (and why in err) when io_uring cannot be used. */
send_batch *send_batch_new(unsigned entries, int max_iov, char *err,
                           size_t errlen);
void send_batch_free(send_batch *b);

/* Queues a write of iov[0..iovcnt) (copied: only the bytes must stay put
 * until send_batch_run) to fd. Returns 0, or -1 when the batch is full
 * (run it and add again) or the ring has failed (if adding to an empty
 * batch fails, write some other way). */
int send_batch_add(send_batch *b, int fd, const struct iovec *iov, int iovcnt,
                   void *owner);

/* Issues the queued writes and reports each: done(owner, result, arg),
 * where result is the byte count or -errno, in the order they were
 * added. Empties the batch. Should the ring fail, the writes it did not
 * complete report -EAGAIN (nothing written) and the batch takes no more. */
void send_batch_run(send_batch *b,
                    void (*done)(void *owner, ssize_t result, void *arg),
                    void *arg);

#endif
