#include "loops.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/ssl.h>

#include "conn.h"
#include "fanout.h"
#include "frame_ref.h"
#include "log.h"
#include "metrics.h"
#include "publish.h"
#include "server.h"
#include "store.h"

lmsg *lmsg_new(lmsg_type type, const char *name, size_t name_len)
{
    lmsg *m = calloc(1, sizeof *m + name_len + 1);

    if (!m)
        return NULL;
    m->type = type;
    m->fd = -1;
    m->name_len = name_len;
    if (name_len)
        memcpy(m->name, name, name_len);
    return m;
}

void lmsg_free(lmsg *m)
{
    if (m->type == LMSG_CONN && m->fd >= 0) { /* never adopted */
        if (m->ssl)
            SSL_free(m->ssl);
        close(m->fd);
    }
    if (m->block)
        frame_ref_decref(m->block);
    free(m->data);
    free(m->pos);
    free(m);
}

int loops_try_post(broker *b, int to, lmsg *m)
{
    inbox *in = &b->loops[to].in;
    int wake;

    /* Gone only after every loop thread has returned (loops_run), so this
     * read needs no lock. */
    if (!in->ev)
        return -1;
    m->next = NULL;
    pthread_mutex_lock(&in->mu);
    wake = in->head == NULL;
    if (in->tail)
        in->tail->next = m;
    else
        in->head = m;
    in->tail = m;
    pthread_mutex_unlock(&in->mu);
    if (wake) /* thread-safe: the bases are created with locking on */
        event_active(in->ev, EV_READ, 0);
    return 0;
}

void loops_post(broker *b, int to, lmsg *m)
{
    if (!m)
        log_error("out of memory passing a message between loops");
    else if (loops_try_post(b, to, m) != 0)
        lmsg_free(m); /* that loop never started or is gone */
}

/* Raises flags of loop `to`'s inbox and wakes it: no allocation. */
static void raise_flags(broker *b, int to, int lost, int stop)
{
    inbox *in = &b->loops[to].in;

    if (!in->ev)
        return;
    pthread_mutex_lock(&in->mu);
    in->lost |= lost;
    in->stop |= stop;
    pthread_mutex_unlock(&in->mu);
    event_active(in->ev, EV_READ, 0);
}

void loops_post_lost(broker *b, int to)
{
    raise_flags(b, to, 1, 0);
}

void loops_post_stop(broker *b, int to)
{
    raise_flags(b, to, 0, 1);
}

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
    }
    return 0;
}

void loops_drain_inbox(server *s)
{
    lmsg *m, *next;
    int lost, stop;

    pthread_mutex_lock(&s->in.mu);
    m = s->in.head;
    s->in.head = s->in.tail = NULL;
    lost = s->in.lost;
    s->in.lost = 0;
    stop = s->in.stop;
    s->in.stop = 0;
    pthread_mutex_unlock(&s->in.mu);
    /* The flag was set before any block queued after the lost one: close
     * first, so that no subscriber here sees a later offset. */
    if (lost) {
        log_error("a committed block was lost (out of memory): closing "
                  "this loop's subscribers so that they resume");
        fanout_lost_all(s);
    }
    for (; m; m = next) {
        next = m->next;
        if (!handle(s, m))
            lmsg_free(m);
    }
    /* After what was queued before it: acks of loop 0's last commits. */
    if (stop)
        server_stop(s);
}

static void inbox_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    loops_drain_inbox(arg);
}

int loops_inbox_init(server *s)
{
    if (pthread_mutex_init(&s->in.mu, NULL))
        return -1;
    s->in.ev = event_new(s->base, -1, 0, inbox_cb, s);
    return s->in.ev ? 0 : -1;
}

void loops_inbox_destroy(server *s)
{
    lmsg *m = s->in.head, *next;

    if (!s->in.ev)
        return;
    for (; m; m = next) {
        next = m->next;
        if (m->type == LMSG_CONN)
            loops_release(s->b, m->token);
        lmsg_free(m);
    }
    s->in.head = s->in.tail = NULL;
    event_free(s->in.ev);
    s->in.ev = NULL;
    pthread_mutex_destroy(&s->in.mu);
}

int loops_admit(broker *b, const struct sockaddr *sa, ip_slot **slot,
                int *cause)
{
    uint64_t max = b->cfg->max_connections;
    int ok = 1;

    *slot = NULL;
    pthread_mutex_lock(&b->mu);
    if (max && b->nconns >= max) {
        *cause = REJECT_MAX_CONNECTIONS;
        ok = 0;
    } else if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
        *slot = ip_table_acquire(&b->ips, sa, b->cfg->max_connections_per_ip);
        if (!*slot) {
            *cause = REJECT_PER_IP;
            ok = 0;
        }
    }
    if (ok)
        b->nconns++;
    pthread_mutex_unlock(&b->mu);
    return ok;
}

void loops_release(broker *b, ip_slot *slot)
{
    pthread_mutex_lock(&b->mu);
    if (slot)
        ip_table_release(&b->ips, slot);
    b->nconns--;
    pthread_mutex_unlock(&b->mu);
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

int loops_run(const config *cfg)
{
    broker b = {0};
    char err[512];
    int n = (int)cfg->threads, rc = 1, inited = 0;

    if (evthread_use_pthreads()) {
        log_error("libevent has no thread support");
        return 1;
    }
    if (pthread_mutex_init(&b.mu, NULL)) {
        log_error("cannot create a mutex");
        return 1;
    }
    b.cfg = cfg;
    b.n = n;
    b.loops = calloc((size_t)n, sizeof *b.loops);
    b.threads = calloc((size_t)n, sizeof *b.threads);
    if (!b.loops || !b.threads || ip_table_init(&b.ips)) {
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
    if (start_threads(&b))
        log_warn("could only start %d of %d loops", b.n, n);
    rc = server_run(&b.loops[0]);
    for (int i = 1; i < b.n; i++) {
        pthread_join(b.threads[i], NULL);
        if (b.loops[i].exit_code)
            rc = b.loops[i].exit_code;
    }
    log_info("stopped");
out:
    /* Loop 0 first: what it commits last is acked to loops still there,
     * which take it from their inboxes as they go. */
    for (int i = 0; i < inited; i++)
        server_destroy(&b.loops[i]);
    store_close(b.store); /* after its last loop has detached */
    pthread_mutex_destroy(&b.mu);
    if (b.ips.slots.buckets)
        ip_table_destroy(&b.ips);
    free(b.loops);
    free(b.threads);
    return rc;
}
