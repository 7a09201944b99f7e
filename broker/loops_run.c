/* Runs the broker: starts the loops (loop 0 on the calling thread), and
 * tells each what to do with the messages the others send it. */
#include "loops_run.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <event2/thread.h>

#include "config_ref.h"
#include "conn.h"
#include "fanout.h"
#include "log.h"
#include "loops.h"
#include "publish.h"
#include "server.h"
#include "store.h"

static void adopt_conn(server *s, lmsg *m)
{
    conn *c =
        conn_new(s, m->fd, (struct sockaddr *)&m->addr, m->addrlen, m->ssl);

    m->fd = -1; /* conn_new owns (or closed) it now */
    if (c)
        c->ip = m->token;
    else
        loops_release(s->b, m->token);
}

/* Returns 1 when it took m, 0 when m is done with. */
static int handle(server *s, lmsg *m)
{
    switch (m->type) {
    case LMSG_CONN:
        if (s->stopping) {
            loops_release(s->b, m->token);
            break; /* lmsg_free closes the socket */
        }
        adopt_conn(s, m);
        break;
    case LMSG_PUBLISH: publish_receive_forwarded(s, m); return 1;
    case LMSG_COMMITTED:
        publish_deliver_block(s, m->name, m->name_len, m->block, m->offset,
                              m->count, m->pos);
        break;
    case LMSG_ACK: publish_forwarded_ack(s, m); break;
    case LMSG_CONFIG:
        server_use_config(s, m->token);
        m->token = NULL; /* s holds the reference now */
        break;
    case LMSG_CUTOFF: server_cut_off(s); break;
    }
    return 0;
}

/* A committed block meant for this loop was lost: its subscribers
 * resume, so that none sees a gap. */
static void lost(server *s)
{
    log_error("a committed block was lost (out of memory): closing "
              "this loop's subscribers so that they resume");
    fanout_lost_all(s);
}

static void *loop_main(void *arg)
{
    server *s = arg;

    s->exit_code = server_run(s);
    return NULL;
}

/* Signals go to loop 0 (the main thread) only. */
static int start_threads(broker *b)
{
    sigset_t all, old;
    int rc = 0;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (int i = 1; i < b->n && rc == 0; i++) {
        char name[32];
        rc = pthread_create(&b->threads[i], NULL, loop_main, &b->loops[i]);
        if (rc) {
            b->n = i; /* run with the loops that started */
            break;
        }
        snprintf(name, sizeof name, "chorus-loop%d", i); /* for top -H */
        name[15] = '\0'; /* the kernel's limit */
        pthread_setname_np(b->threads[i], name);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* Runs loop 0 on this thread and the others on their own until all have
 * stopped. Returns the exit code: loop 0's, or that of a loop that failed. */
static int run_loops(broker *b)
{
    int wanted = b->n, rc;

    if (start_threads(b))
        log_warn("could only start %d of %d loops", b->n, wanted);
    rc = server_run(&b->loops[0]);
    for (int i = 1; i < b->n; i++) {
        pthread_join(b->threads[i], NULL);
        if (b->loops[i].exit_code)
            rc = b->loops[i].exit_code;
    }
    log_info("stopped");
    return rc;
}

/* Destroys the first inited loops, then the store and the rest of b. */
static void destroy_broker(broker *b, int inited)
{
    /* Loop 0 first: what it commits last is acked to loops still there,
     * which take it from their inboxes as they go. */
    for (int i = 0; i < inited; i++)
        server_destroy(&b->loops[i]);
    store_close(b->store); /* after its last loop has detached */
    pthread_mutex_destroy(&b->mu);
    if (b->ips.slots.buckets)
        ip_table_destroy(&b->ips);
    free(b->loops);
    free(b->threads);
    free(b->log_limits);
    config_ref_release(b->cfg);
}

int loops_run(const config *cfg, const config_source *src)
{
    broker b = {0};
    char err[512];
    int n = (int)cfg->threads, rc = 1, inited = 0;

    if (evthread_use_pthreads()) {
        log_error("libevent has no thread support");
        config_ref_release(cfg);
        return 1;
    }
    if (pthread_mutex_init(&b.mu, NULL)) {
        log_error("cannot create a mutex");
        config_ref_release(cfg);
        return 1;
    }
    b.cfg = cfg;
    b.src = src;
    b.n = n;
    b.handle = handle;
    b.lost = lost;
    b.stop = server_stop;
    b.loops = calloc((size_t)n, sizeof *b.loops);
    b.threads = calloc((size_t)n, sizeof *b.threads);
    b.log_limits = calloc(LOG_CAUSE__COUNT, sizeof *b.log_limits);
    if (!b.loops || !b.threads || !b.log_limits || ip_table_init(&b.ips)) {
        log_error("out of memory");
        goto out;
    }
    if (cfg->history && store_open(&b.store, cfg, err, sizeof err)) {
        log_error("%s", err);
        goto out;
    }
    for (; inited < n; inited++) {
        if (server_init(&b.loops[inited], &b, inited, err, sizeof err)) {
            log_error("%s", err);
            inited++;
            goto out;
        }
    }
    rc = run_loops(&b);
out:
    destroy_broker(&b, inited);
    return rc;
}
