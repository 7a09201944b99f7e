/* The small services every layer of a loop uses: its cached clock, log
 * lines at most once a second per cause, and counted refusals. Declared
 * in server.h; they call nothing above core/, so that any layer may call
 * them without a cycle (scripts/check_layers.py). */
#include <event2/event.h>

#include "log.h"
#include "server.h"

int64_t server_now_ms(server *s)
{
    struct timeval tv;

    event_base_gettimeofday_cached(s->base, &tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

int server_log_due(server *s, int cause)
{
    int64_t now = server_now_ms(s);

    if (now - s->logged_ms[cause] < 1000)
        return 0;
    s->logged_ms[cause] = now;
    return 1;
}

void server_too_large(server *s, const char *peer, const char *how)
{
    s->stats.too_large++;
    if (server_log_due(s, LOG_CAUSE_TOO_LARGE))
        log_info("%s: message larger than max_message_size (%llu bytes); "
                 "%s",
                 peer, (unsigned long long)s->cfg->max_message_size, how);
}

int server_reject(server *s, reject_cause cause)
{
    s->stats.rejected[cause]++;
    return server_log_due(s, (int)cause);
}
