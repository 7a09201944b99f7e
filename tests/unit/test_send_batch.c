/* broker/net/send_batch.c over real socket pairs: each reported result is
 * exactly what the peer can read, partial writes are counted, and after an
 * injected submit failure (CHORUS_FAULT_URING_SUBMIT) no write reported as
 * -EAGAIN ever reaches its socket and every write the kernel completed
 * reports its real byte count. Exits 77 (skipped) only where the kernel
 * offers no io_uring; without liburing it checks the fallback answers. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "send_batch.h"

#define PAIRS 9
#define SMALL 100

typedef struct {
    int sv[PAIRS][2];
    ssize_t result[PAIRS];
    int calls;
} fixture;

static void record(void *owner, ssize_t result, void *arg)
{
    fixture *fx = arg;
    fx->result[(intptr_t)owner] = result;
    fx->calls++;
}

static void open_pairs(fixture *fx)
{
    memset(fx, 0, sizeof *fx);
    for (int i = 0; i < PAIRS; i++) {
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fx->sv[i]) ==
              0);
        fx->result[i] = 1234567; /* not reported yet */
    }
}

static void close_pairs(fixture *fx)
{
    for (int i = 0; i < PAIRS; i++) {
        close(fx->sv[i][0]);
        close(fx->sv[i][1]);
    }
}

/* Bytes waiting at the peer of pair i (all read). */
static ssize_t drain(fixture *fx, int i)
{
    char buf[65536];
    ssize_t total = 0, n;

    while ((n = recv(fx->sv[i][1], buf, sizeof buf, MSG_DONTWAIT)) > 0)
        total += n;
    return total;
}

static void add_small(send_batch *b, fixture *fx, int i)
{
    static char bytes[SMALL];
    struct iovec iov[2] = {{bytes, SMALL / 2}, {bytes, SMALL - SMALL / 2}};

    CHECK(send_batch_add(b, fx->sv[i][0], iov, 2, (void *)(intptr_t)i) == 0);
}

static void test_results_are_what_the_peer_reads(send_batch *b)
{
    fixture fx;
    size_t big = 4 << 20;
    char *bytes = calloc(1, big);
    struct iovec iov = {bytes, big};
    int sndbuf = 4096;

    open_pairs(&fx);
    setsockopt(fx.sv[0][0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    CHECK(send_batch_add(b, fx.sv[0][0], &iov, 1, (void *)(intptr_t)0) == 0);
    for (int i = 1; i < PAIRS; i++)
        add_small(b, &fx, i);
    send_batch_run(b, record, &fx);
    CHECK_EQ_INT(fx.calls, PAIRS);
    CHECK(fx.result[0] > 0 && (size_t)fx.result[0] < big); /* partial */
    CHECK_EQ_INT(drain(&fx, 0), fx.result[0]);
    for (int i = 1; i < PAIRS; i++) {
        CHECK_EQ_INT(fx.result[i], SMALL);
        CHECK_EQ_INT(drain(&fx, i), SMALL);
    }
    CHECK_EQ_INT(send_batch_partial_writes(b), 1);
    close_pairs(&fx);
    free(bytes);
}

/* With CHORUS_FAULT_URING_SUBMIT=3, the third run of 3+ writes (the
 * first being the test above) fails after the kernel took the first two
 * thirds and lost the completions of the second third. */
static void test_failed_submit(send_batch *b)
{
    fixture fx;

    open_pairs(&fx);
    for (int i = 0; i < 3; i++) /* the second run of 3+: fine */
        add_small(b, &fx, i);
    send_batch_run(b, record, &fx);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(drain(&fx, i), SMALL);
    fx.calls = 0;
    for (int i = 0; i < PAIRS; i++)
        add_small(b, &fx, i);
    send_batch_run(b, record, &fx);
    CHECK_EQ_INT(fx.calls, PAIRS);
    for (int i = 0; i < PAIRS / 3; i++) { /* completed: real results */
        CHECK_EQ_INT(fx.result[i], SMALL);
        CHECK_EQ_INT(drain(&fx, i), SMALL);
    }
    for (int i = PAIRS / 3; i < 2 * PAIRS / 3; i++) { /* taken, outcome lost */
        CHECK_EQ_INT(fx.result[i], SEND_BATCH_UNKNOWN);
        drain(&fx, i);
    }
    for (int i = 2 * PAIRS / 3; i < PAIRS; i++) { /* never taken */
        CHECK_EQ_INT(fx.result[i], -EAGAIN);
        CHECK_EQ_INT(drain(&fx, i), 0);
    }
    CHECK(!send_batch_active(b));
    /* The ring is gone: nothing is taken, and nothing it held goes out. */
    CHECK(send_batch_add(b, fx.sv[0][0], &(struct iovec){"x", 1}, 1, NULL) ==
          -1);
    usleep(20000);
    for (int i = 0; i < PAIRS; i++)
        CHECK_EQ_INT(drain(&fx, i), 0);
    close_pairs(&fx);
}

int main(void)
{
    char err[128];
    send_batch *b;

    setenv("CHORUS_FAULT_URING_SUBMIT", "3", 1);
    b = send_batch_new(16, 4, err, sizeof err);
    if (!send_batch_built_in()) {
        CHECK(b == NULL && strcmp(err, "built without liburing") == 0);
        CHECK(!send_batch_active(NULL));
        return check_report("test_send_batch (without liburing)");
    }
    if (!b) {
        printf("test_send_batch: skipped, no io_uring here: %s\n", err);
        return 77;
    }
    CHECK(send_batch_active(b));
    test_results_are_what_the_peer_reads(b); /* 9 writes: big run 1 */
    test_failed_submit(b);
    send_batch_free(b);
    return check_report("test_send_batch");
}
