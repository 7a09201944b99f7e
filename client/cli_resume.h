/* Shared by the two files of chorus sub: cli_resume.c drives the
 * subscriptions, cli_resume_state.c loads and saves the --resume FILE. */
#ifndef CHORUS_CLI_RESUME_H
#define CHORUS_CLI_RESUME_H

#include <stdint.h>
#include <sys/time.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "chorus/ws_client.h"
#include "cli.h"

#define SAVE_EVERY_MS 100u

typedef struct sub_topic {
    const char *name;
    char *epoch;    /* NULL until known */
    uint64_t last;  /* position: last printed offset (or the start) */
    int contiguous; /* the next message must be last + 1 */
    int sent_since; /* the current subscribe carried since */
    int confirmed;  /* `subscribed` seen on the current connection */
} sub_topic;

typedef struct sub_ctx {
    const cli_args *a;
    struct event_base *base;
    chorus_ws_client *ws;
    int opened;    /* the current connection is open */
    int reconnect; /* --reconnect or --resume */
    int stopping;  /* signal, fatal error or stdout gone */
    int status;

    sub_topic *topics;
    int ntopics;

    const char *state_path; /* --resume FILE */
    json_t *state;          /* FILE's object, other topics included */
    int dirty;
    int save_failed;
    struct event *save_timer;

    struct event *retry_timer;
    unsigned attempt; /* failed connections in a row */
    uint64_t rng;

    struct event *live_timer;
    uint64_t last_rx_ms;
    int ping_out;

    struct event *sigint, *sigterm;
} sub_ctx;

static inline struct timeval sub_tv_ms(unsigned ms)
{
    struct timeval tv = {(time_t)(ms / 1000u),
                         (suseconds_t)((ms % 1000u) * 1000u)};
    return tv;
}

/* Replaces the topic's epoch; -1 when out of memory. */
int sub_set_epoch(sub_topic *t, const char *epoch);
/* Reads s->state_path into s->state; -1 (reported) when unusable. */
int sub_state_load(sub_ctx *s);
/* Saves the positions if they changed; -1 (reported) on failure. */
int sub_state_save(sub_ctx *s);
/* Timer callback of s->save_timer. */
void sub_save_cb(evutil_socket_t fd, short what, void *arg);
/* Positions changed: save within SAVE_EVERY_MS. */
void sub_mark_dirty(sub_ctx *s);

#endif
