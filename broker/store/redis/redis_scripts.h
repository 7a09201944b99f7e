/* The engine's server-side Lua scripts. Each runs atomically in Redis,
 * which is what makes one topic's offsets a single sequence however many
 * nodes publish to it.
 *
 * Keys of a topic T (the {T} hash tag keeps them together):
 *   chorus:{T}:m  hash  e = epoch, o = newest offset, r = the run_id the
 *                       epoch is valid under ("" with redis_durable = on),
 *                       c = last age-retention check (ms)
 *   chorus:{T}:s  stream, entry id "<offset>-0", fields t = ts (ms), d = data
 * Per instance: chorus:run_id, the run_id nodes have checked (fencing).
 * Channel: chorus:<db>:T carries each publish call's messages (payload in
 * redis_payload.h).
 *
 * Fencing (redis_durable = off): a node reads the instance's run_id on
 * every connect and SETs chorus:run_id to it before anything else on that
 * connection. Every script is given the run_id its node believes in and
 * refuses to run (error "FENCED") when chorus:run_id differs, so no node
 * acts on an instance it has not checked since its last restart. A topic
 * whose r is not the current run_id was last written by an earlier
 * incarnation, which may have lost acknowledged messages: before any
 * offset is handed out under it, the topic gets a new epoch (given by the
 * node, 32 random hex), its stream is deleted and offsets start again at
 * 1. The old epoch is therefore never extended by a Redis that may have
 * forgotten part of it. */
#ifndef CHORUS_REDIS_SCRIPTS_H
#define CHORUS_REDIS_SCRIPTS_H

typedef struct redis_script {
    const char *name;
    const char *body;
    char sha[41];
} redis_script;

/* publish: KEYS meta, stream, chorus:run_id. ARGV run_id (or ""),
 * epoch candidate, history_size (0 = no count limit), history_ttl_ms
 * (0 = none), channel, then one data argument per message. Returns
 * {epoch, first offset, ts}. */
extern redis_script redis_script_publish;

/* meta: KEYS meta, stream, chorus:run_id. ARGV run_id (or ""), epoch
 * candidate. Creates or re-epochs as publish would; returns {epoch,
 * newest offset, oldest retained offset (0 when none)}. */
extern redis_script redis_script_meta;

/* Computes the SHA1s (once, before any loop starts). */
void redis_scripts_init(void);

#endif
