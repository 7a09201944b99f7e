/* sendcost: what one small send to a loopback TCP socket costs on this
 * machine, written the two ways chorusd can write its end-of-turn output:
 * one writev per socket, or all sockets' sends issued with one
 * io_uring_enter. Also the cost of an empty system call, for scale.
 *
 *   sendcost [-n sockets] [-r rounds] [-s bytes]
 *
 * Senders run on CPU 0, a reader thread that drains every socket on CPU 1
 * (as in bench/compare.sh: broker on 0, bench on 1). Each round sends one
 * message to every socket, which is what a fan-out of one message to N
 * subscribers does; the figure is CPU-bound wall time per send. Only
 * 127.0.0.1 is used. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_setaffinity */
#endif
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifdef CHORUS_HAVE_LIBURING
#include <liburing.h>
#endif

typedef struct pair {
    int tx, rx;
} pair;

static pair *pairs;
static int npairs;
static volatile int stop_reader;

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pin(int cpu)
{
    cpu_set_t set;

    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

static void *reader(void *arg)
{
    static char buf[65536];

    (void)arg;
    pin(1);
    while (!stop_reader)
        for (int i = 0; i < npairs; i++)
            while (recv(pairs[i].rx, buf, sizeof buf, MSG_DONTWAIT) > 0)
                ;
    return NULL;
}

static int connect_pairs(int n)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);

    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) ||
        getsockname(l, (struct sockaddr *)&a, &alen) || listen(l, 4096))
        return -1;
    pairs = calloc((size_t)n, sizeof *pairs);
    for (npairs = 0; pairs && npairs < n; npairs++) {
        pair *p = &pairs[npairs];
        p->tx = socket(AF_INET, SOCK_STREAM, 0);
        if (p->tx < 0 || connect(p->tx, (struct sockaddr *)&a, sizeof a))
            return -1;
        p->rx = accept(l, NULL, NULL);
        if (p->rx < 0)
            return -1;
        setsockopt(p->tx, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    close(l);
    return pairs ? 0 : -1;
}

static double time_syscall(void)
{
    const int n = 200000;
    double t0 = now_s();

    for (int i = 0; i < n; i++)
        syscall(SYS_getppid);
    return (now_s() - t0) / n * 1e6;
}

static double time_writev(int rounds, struct iovec *iov)
{
    double t0 = now_s();

    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < npairs; i++)
            if (writev(pairs[i].tx, iov, 1) < 0 && errno != EAGAIN)
                return -1;
    return (now_s() - t0) / ((double)rounds * npairs) * 1e6;
}

#ifdef CHORUS_HAVE_LIBURING
static double time_uring(int rounds, struct iovec *iov)
{
    struct io_uring ring;
    struct msghdr *msg = calloc((size_t)npairs, sizeof *msg);
    double t0;

    if (!msg || io_uring_queue_init((unsigned)npairs, &ring, 0) < 0) {
        free(msg);
        return -1;
    }
    t0 = now_s();
    for (int r = 0; r < rounds; r++) {
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        for (int i = 0; i < npairs; i++) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
            msg[i].msg_iov = iov;
            msg[i].msg_iovlen = 1;
            io_uring_prep_sendmsg(sqe, pairs[i].tx, &msg[i],
                                  MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        io_uring_submit_and_wait(&ring, (unsigned)npairs);
        io_uring_for_each_cqe(&ring, head, cqe) seen++;
        io_uring_cq_advance(&ring, seen);
    }
    t0 = (now_s() - t0) / ((double)rounds * npairs) * 1e6;
    io_uring_queue_exit(&ring);
    free(msg);
    return t0;
}
#endif

int main(int argc, char **argv)
{
    int n = 1000, rounds = 200, size = 130, opt;
    struct rlimit rl;
    pthread_t th;
    char *msg;
    struct iovec iov;

    while ((opt = getopt(argc, argv, "n:r:s:")) != -1) {
        if (opt == 'n')
            n = atoi(optarg);
        else if (opt == 'r')
            rounds = atoi(optarg);
        else if (opt == 's')
            size = atoi(optarg);
        else {
            fprintf(stderr, "usage: sendcost [-n sockets] [-r rounds] "
                            "[-s bytes]\n");
            return 2;
        }
    }
    if (n < 1 || rounds < 1 || size < 1 || !(msg = malloc((size_t)size)))
        return 2;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if ((rlim_t)n * 2 + 16 > rl.rlim_cur)
        n = (int)((rl.rlim_cur - 16) / 2);
    memset(msg, 'x', (size_t)size);
    iov.iov_base = msg;
    iov.iov_len = (size_t)size;
    pin(0);
    if (connect_pairs(n)) {
        perror("sendcost: sockets");
        return 1;
    }
    pthread_create(&th, NULL, reader, NULL);
    printf("empty system call: %.3f us\n", time_syscall());
    for (int k = 0; k < 2; k++) { /* twice: the first warms up */
        double w = time_writev(rounds, &iov);
        printf("%d sockets x %d rounds, %d B: writev %.3f us/send", npairs,
               rounds, size, w);
#ifdef CHORUS_HAVE_LIBURING
        double u = time_uring(rounds, &iov);
        printf(", io_uring batch %.3f us/send (%.2fx)", u, u / w);
#endif
        printf("\n");
    }
    stop_reader = 1;
    pthread_join(th, NULL);
    return 0;
}
