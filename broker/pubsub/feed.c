#include "feed.h"

#include <stdlib.h>
#include <string.h>

#include "fanout.h"
#include "frame_ref.h"
#include "log.h"
#include "server.h"
#include "session.h"
#include "sse_stream.h"
#include "topics.h"

/* Messages of one topic, consecutive offsets: encoded once and shared
 * with the topic's live subscribers here, like a committed block. */
static void feed_messages(void *arg, const char *name, size_t len,
                          const store_msg *msgs, size_t n)
{
    server *s = arg;
    topic *t = topics_find(&s->topics, name, len);
    size_t count, *pos;
    frame_ref *f;

    if (!t || !t->subs || n == 0)
        return;
    topics_pin(t); /* a send may close the last subscriber */
    f = fanout_build_run(t, msgs, n, &count, &pos);
    if (f) {
        fanout_deliver(s, t, f, msgs[0].offset, count, pos);
        free(pos);
        frame_ref_decref(f);
    } else {
        log_error("out of memory fanning out %s", t->name);
        fanout_lost(t);
    }
    topics_unpin(&s->topics, t);
}

/* PROTOCOL.md "When the epoch changes under a live subscription": every
 * subscriber here gets the unsolicited `subscribed` and the new epoch's
 * retained messages, then live ones. */
static void feed_epoch_changed(void *arg, const char *name, size_t len,
                               const store_topic_info *info)
{
    server *s = arg;
    topic *t = topics_find(&s->topics, name, len);

    if (!t)
        return;
    topics_pin(t);
    memcpy(t->epoch, info->epoch, sizeof t->epoch);
    t->last_offset = info->newest;
    for (sub *sb = t->subs, *next; sb; sb = next) {
        next = sb->t_next; /* a send closes only its own subscriber */
        if (sb->sse)
            sse_stream_epoch_changed(sb->owner, sb, info);
        else
            session_epoch_changed(sb->owner, sb, info);
    }
    topics_unpin(&s->topics, t);
}

void feed_init(server *s, store_feed *feed)
{
    feed->messages = feed_messages;
    feed->epoch_changed = feed_epoch_changed;
    feed->arg = s;
}
