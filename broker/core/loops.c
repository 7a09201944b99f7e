#include "loops.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "config_ref.h"
#include "frame_ref.h"
#include "log.h"
#include "metrics.h"
#include "server.h"

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
    if (m->type == LMSG_CONFIG)
        config_ref_release(m->token);
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
    if (lost)
        s->b->lost(s);
    for (; m; m = next) {
        next = m->next;
        if (!s->b->handle(s, m))
            lmsg_free(m);
    }
    /* After what was queued before it: acks of loop 0's last commits. */
    if (stop)
        s->b->stop(s);
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

uint64_t loops_new_conn_id(broker *b)
{
    return atomic_fetch_add_explicit(&b->last_conn_id, 1,
                                     memory_order_relaxed) +
           1;
}
