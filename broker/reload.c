#include "reload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <openssl/ssl.h>

#include "config_ref.h"
#include "log.h"
#include "loops.h"
#include "server.h"
#include "tls.h"
#include "store.h"

/* Keys read only at start-up: what they set up (sockets, the database,
 * the loops, the writer) lives as long as the process. */
static const char *const restart_keys[] = {
    "listen",    "tls_listen",    "db_path",       "history",
    "threads",   "durability",    "io_uring",      "engine",
    "redis_url", "redis_durable", "redis_timeout", "tcp_congestion",
};

/* Descriptors the broker keeps for itself whatever the connections:
 * stdio, the listeners and the spare one, the writer's and the
 * checkpointer's SQLite files, and per loop its event base, wakeup,
 * io_uring and SQLite files (database, -wal, -shm). */
#define FDS_RESERVED_BASE 32
#define FDS_RESERVED_PER_LOOP 8

/* Raises the soft open-file limit to the hard one, and keeps
 * max_connections within what the limit allows (one descriptor per
 * connection). With max_connections = 0 (no limit of its own) the
 * open-file limit is the limit: connections past it get 503 (listener.c,
 * cause fd_limit). */
void config_fit_fd_limit(config *cfg)
{
    uint64_t reserved =
        FDS_RESERVED_BASE + FDS_RESERVED_PER_LOOP * cfg->threads;
    struct rlimit rl;
    uint64_t allowed;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            log_info("open-file limit raised from %llu to %llu",
                     (unsigned long long)was, (unsigned long long)rl.rlim_max);
        else
            rl.rlim_cur = was;
    }
    if (rl.rlim_cur == RLIM_INFINITY)
        return;
    allowed = rl.rlim_cur > reserved + 1 ? rl.rlim_cur - reserved : 1;
    if (cfg->max_connections == 0) {
        log_info("max_connections = 0: the open-file limit (%llu) allows "
                 "about %llu connections; past it they are refused with 503",
                 (unsigned long long)rl.rlim_cur, (unsigned long long)allowed);
    } else if (cfg->max_connections > allowed) {
        log_warn("max_connections (%llu) exceeds what the open-file limit "
                 "(%llu) allows, %llu descriptors being kept for the "
                 "broker's own files: lowered to %llu",
                 (unsigned long long)cfg->max_connections,
                 (unsigned long long)rl.rlim_cur, (unsigned long long)reserved,
                 (unsigned long long)allowed);
        cfg->max_connections = allowed;
    }
}

config *config_build(const config_source *src, char *err, size_t errlen)
{
    config *c = config_ref_new();

    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if ((src->path && config_load_file(c, src->path, err, errlen)) ||
        (src->listen && config_set(c, "listen", src->listen, err, errlen)) ||
        (src->log_level &&
         config_set(c, "log_level", src->log_level, err, errlen)) ||
        config_validate(c, err, errlen)) {
        config_ref_release(c);
        return NULL;
    }
    config_resolve_threads(c);
    return c;
}

static int is_restart_key(const char *key)
{
    for (size_t i = 0; i < sizeof restart_keys / sizeof restart_keys[0]; i++)
        if (strcmp(restart_keys[i], key) == 0)
            return 1;
    return 0;
}

static void append_name(char *list, size_t cap, const char *name)
{
    size_t len = strlen(list);

    snprintf(list + len, cap - len, "%s%s", len ? ", " : "", name);
}

/* Names the keys that differ in next, live ones in changed and restart
 * ones in restart; those get their current value back. -1 when out of
 * memory. */
static int compare_keys(config *next, const config *cur, char *changed,
                        size_t changed_cap, char *restart, size_t restart_cap)
{
    const char *key;

    for (size_t i = 0; (key = config_key_name(i)); i++) {
        if (config_key_differs(cur, next, key) != 1)
            continue;
        if (!is_restart_key(key)) {
            append_name(changed, changed_cap, key);
            continue;
        }
        append_name(restart, restart_cap, key);
        if (config_copy_key(next, cur, key))
            return -1;
    }
    return 0;
}

/* One LMSG_CONFIG per other loop, allocated before anything changes. */
static lmsg **new_config_msgs(broker *b)
{
    lmsg **msgs = calloc((size_t)b->n, sizeof *msgs);

    if (!msgs)
        return NULL;
    for (int i = 1; i < b->n; i++) {
        if (!(msgs[i] = lmsg_new(LMSG_CONFIG, NULL, 0))) {
            for (int j = 1; j < i; j++)
                lmsg_free(msgs[j]);
            free(msgs);
            return NULL;
        }
    }
    return msgs;
}

/* Switches every loop to next (taking over its reference) and applies
 * what loop 0 keeps outside the config: TLS context, retention, logging. */
static void apply(server *s, config *next, SSL_CTX *ctx, lmsg **msgs)
{
    broker *b = s->b;

    if (ctx) { /* open TLS connections keep a reference to the old one */
        SSL_CTX_free(s->tls_ctx);
        s->tls_ctx = ctx;
    }
    if (b->store)
        store_set_retention(b->store, next->history_size, next->history_ttl_ms);
    log_set_level(next->log_level);
    log_set_format(next->log_format);
    /* The inboxes are FIFO: a connection loop 0 hands over after this is
     * adopted under the new config. */
    for (int i = 1; i < b->n; i++) {
        msgs[i]->token = (void *)config_ref_hold(next);
        loops_post(b, i, msgs[i]);
    }
    server_use_config(s, config_ref_hold(next));
    config_ref_release(b->cfg);
    b->cfg = next;
}

void reload_config(server *s)
{
    broker *b = s->b;
    const char *path = b->src->path ? b->src->path : "built-in defaults";
    char err[512], changed[1024] = "", restart[256] = "";
    config *next = config_build(b->src, err, sizeof err);
    const char *kept = "the configuration in use";
    SSL_CTX *ctx = NULL;
    lmsg **msgs = NULL;

    if (!next) {
        log_error("SIGHUP: %s; keeping the configuration in use", err);
        return;
    }
    config_fit_fd_limit(next);
    if (compare_keys(next, s->cfg, changed, sizeof changed, restart,
                     sizeof restart) ||
        !(msgs = new_config_msgs(b))) {
        snprintf(err, sizeof err, "out of memory");
        goto fail;
    }
    /* With restart keys put back, the TLS listener may now lack files. */
    if (config_validate(next, err, sizeof err))
        goto fail;
    /* The files are read again even when their names did not change: a
     * renewed certificate is the usual reason for a reload. */
    if (s->tls_ctx && !(ctx = tls_context_new(next->tls_cert, next->tls_key,
                                              err, sizeof err))) {
        kept = "the old certificate and the configuration in use";
        goto fail;
    }
    if (restart[0])
        log_warn("SIGHUP: %s changed in %s: applied only at a restart; "
                 "keeping the value in use",
                 restart, path);
    apply(s, next, ctx, msgs);
    free(msgs);
    log_info("SIGHUP: reloaded %s%s%s%s", path,
             changed[0] ? " (changed: " : "; no live setting changed", changed,
             changed[0] ? ")" : "");
    return;
fail:
    log_error("SIGHUP: %s; keeping %s", err, kept);
    if (msgs) {
        for (int i = 1; i < b->n; i++)
            lmsg_free(msgs[i]);
        free(msgs);
    }
    config_ref_release(next);
}
