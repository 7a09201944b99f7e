/* The small services every layer of a loop uses: its cached clock, log
 * lines at most once a second per cause, counted refusals, freeing closed
 * connections after the turn, and the switch to a reloaded config.
 * Declared in server.h; they call nothing above core/, so that any layer
 * may call them without a cycle (scripts/check_layers.py). */
#include <stdarg.h>

#include <event2/event.h>

#include "chorus/wire.h"
#include "config_ref.h"
#include "log.h"
#include "server.h"

/* Frees the connections closed this turn once the turn is over: after the
 * loop's next epoll_wait, so no event of theirs is still pending. */
void server_reap_soon(server *s)
{
    static const struct timeval now = {0, 0};

    evtimer_add(s->reap_ev, &now);
}

int64_t server_now_ms(server *s)
{
    struct timeval tv;

    event_base_gettimeofday_cached(s->base, &tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

uint64_t server_log_due(server *s, int cause)
{
    return log_due(&s->b->log_limits[cause], server_now_ms(s));
}

void server_too_large(server *s, uint64_t conn_id, const char *peer,
                      const char *how)
{
    stat_inc(&s->stats.too_large);
    server_log_limited(s, LOG_CAUSE_TOO_LARGE, LOG_INFO,
                       &(log_fields){.conn = conn_id,
                                     .peer = peer,
                                     .code = CHORUS_ERR_TOO_LARGE},
                       "message larger than max_message_size (%llu bytes); %s",
                       (unsigned long long)s->cfg->max_message_size, how);
}

void server_log_limited(server *s, int cause, int level, const log_fields *f,
                        const char *fmt, ...)
{
    log_fields with_count = *f;
    uint64_t due;
    va_list ap;

    if (!log_enabled(level) || !(due = server_log_due(s, cause)))
        return;
    with_count.suppressed = due - 1;
    va_start(ap, fmt);
    log_withv(level, &with_count, fmt, ap);
    va_end(ap);
}

uint64_t server_reject(server *s, reject_cause cause)
{
    stat_inc(&s->stats.rejected[cause]);
    return server_log_due(s, (int)cause);
}

void server_use_config(server *s, const config *cfg)
{
    const config *old = s->cfg;

    s->cfg = cfg;
    config_ref_release(old);
}
