/* The engine's server-side Lua scripts. Each runs atomically in Redis,
 * which is what makes one topic's offsets a single sequence however many
 * nodes publish to it.
 *
 * Keys of a topic T (the {T} hash tag keeps them together):
 *   chorus:{T}:m  hash  e = epoch, o = newest offset, r = the run_id the
 *                       epoch is valid under ("" with redis_durable = on),
 *                       c = last age-retention check (ms)
 *   chorus:{T}:s  stream, one entry per publish call: id "<last offset>-0",
 *                 fields t = ts (ms), n = message count, d = the messages
 *                 as in the channel's payload body (redis_payload.h), so
 *                 the entry holds offsets last - n + 1 .. last
 * Per instance, the fence key (KEYS[3] of every script):
 *   chorus:run_id  redis_durable = off: the run_id nodes have checked
 *   chorus:seed    redis_durable = on: random, set once (SET NX)
 * Channel: chorus:<db>:T carries each publish call's messages (payload in
 * redis_payload.h).
 *
 * Fencing (redis_durable = off): a node reads the instance's run_id on
 * every connect and SETs chorus:run_id to it before anything else on that
 * connection. Every script is given the run_id its node believes in and
 * refuses to run (error "FENCED") when chorus:run_id differs, so no node
 * acts on an instance it has not checked since that instance's last
 * restart. A topic whose r is not the current run_id was last written by
 * an earlier incarnation, which may have lost acknowledged messages: it
 * reads as a fresh topic, and its first publish drops the old stream and
 * starts offsets again at 1, so an old epoch is never extended by a Redis
 * that may have forgotten part of it.
 *
 * Epochs: a fresh topic's epoch is the first 32 hex digits of
 * SHA1(seed ":" T), seed being the current run_id (or chorus:seed with
 * redis_durable = on). Reading a topic therefore needs to create nothing:
 * a subscriber told (epoch, 0) for a topic never published to gets the
 * epoch its first message will be stored under. A restart (new run_id)
 * gives every topic a new epoch. */
#ifndef CHORUS_REDIS_SCRIPTS_H
#define CHORUS_REDIS_SCRIPTS_H

typedef struct redis_script {
    const char *name;
    const char *body;
    char sha[41];
} redis_script;

/* The arguments the one-topic scripts (meta, read) start with: KEYS
 * meta, stream, fence key; ARGV run_id ("" with redis_durable = on),
 * history_size (0 = no count limit). */
#define REDIS_SCRIPT_FIXED_ARGS                   \
    8 /* EVALSHA sha 3 meta stream fence rid size \
       */

/* publish, for any number of topics of one instance: KEYS fence key, then
 * per topic meta, stream; ARGV run_id, history_size, history_ttl_ms
 * (0 = none), then per topic channel, message count, the messages (a
 * payload body, redis_payload.h). Returns {ts, then per topic epoch,
 * first offset}, or an error when a topic would pass offset 2^53 (the
 * scripts count in Lua's doubles; topics before it in the call are
 * published). */
extern redis_script redis_script_publish;

/* meta: returns {epoch, newest offset, oldest readable offset (0 when
 * none)}. Writes nothing. */
extern redis_script redis_script_meta;

/* read: then ARGV after, limit. Returns {from, entries}: from is the
 * first offset readable after `after` (beyond the count limit, entries
 * may hold older ones), entries the XRANGE of the entries that hold
 * offsets from..from + limit - 1 (and perhaps more). Empty for a fresh
 * topic. Writes nothing. */
extern redis_script redis_script_read;

/* Computes the SHA1s (once, before any loop starts). */
void redis_scripts_init(void);

#endif
