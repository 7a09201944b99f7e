#include "loops.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/ssl.h>

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
    if (m->block)
        frame_ref_decref(m->block);
    free(m->data);
    free(m->pos);
    free(m);
}

void loops_post(broker *b, int to, lmsg *m)
{
    inbox *in;
    int wake;

    if (!m) {
        log_error("out of memory passing a message between loops");
        return;
    }
    in = &b->loops[to].in;
    if (!in->ev) { /* that loop never started or is gone */
        lmsg_free(m);
        return;
    }
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
}

void loops_post_lost(broker *b, int to)
{
    inbox *in = &b->loops[to].in;

    if (!in->ev)
        return;
    pthread_mutex_lock(&in->mu);
    in->lost = 1;
    pthread_mutex_unlock(&in->mu);
    event_active(in->ev, EV_READ, 0);
}

void loops_drain_inbox(server *s)
{
    lmsg *m, *next;
    int lost;

    pthread_mutex_lock(&s->in.mu);
    m = s->in.head;
    s->in.head = s->in.tail = NULL;
    lost = s->in.lost;
    s->in.lost = 0;
    pthread_mutex_unlock(&s->in.mu);
    /* The flag was set before any block queued after the lost one: close
     * first, so that no subscriber here sees a later offset. */
    if (lost) {
        log_error("a committed block was lost (out of memory): closing "
                  "this loop's subscribers so that they resume");
        s->b->lost(s);
    }
    for (; m; m = next) {
        next = m->next;
        if (!s->b->handle(s, m))
            lmsg_free(m);
    }
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
