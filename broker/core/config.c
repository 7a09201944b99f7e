/* The config object: its defaults, copy and free, and the per-key compare
 * and copy a reload uses. Every walk over the fields goes through the key
 * table (config_keys.c), so a new key needs no change here beyond its
 * default. Depends on libc only. */
#include "config_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void config_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

char *config_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);

    if (p)
        memcpy(p, s, n);
    return p;
}

void config_init(config *c)
{
    memset(c, 0, sizeof *c);
    c->listen = config_strdup("127.0.0.1:8080");
    c->echo_endpoint = 0;
    c->max_message_size = 1 * MIB;
    c->max_outbound_bytes = 16 * MIB;
    c->max_unacked_bytes = 16 * MIB;
    c->ping_interval_ms = 30 * 1000;
    c->idle_timeout_ms = 90 * 1000;
    c->handshake_timeout_ms = 10 * 1000;
    c->message_timeout_ms = 30 * 1000;
    c->log_level = LOG_INFO;
    c->db_path = config_strdup("./chorus.db");
    c->history_size = 1000;
    c->history_ttl_ms = 24ULL * 3600 * 1000;
    c->durability = DURABILITY_NORMAL;
    c->max_connections = 10000;
    c->max_subscriptions_per_connection = 1000;
    c->history = 1;
    c->io_uring = 1;
    c->engine = ENGINE_SQLITE;
    c->redis_timeout_ms = 2000;
}

static void free_urls(config *c)
{
    for (size_t i = 0; i < c->redis_url_count; i++)
        free(c->redis_urls[i]);
    free(c->redis_urls);
    c->redis_urls = NULL;
    c->redis_url_count = 0;
}

/* Replaces dst's redis_url list with a copy of src's. -1 out of memory
 * (dst's list is then empty). */
static int copy_urls(config *dst, const config *src)
{
    char **copy = NULL;

    free_urls(dst);
    if (src->redis_url_count == 0)
        return 0;
    copy = calloc(src->redis_url_count, sizeof *copy);
    if (!copy)
        return -1;
    for (size_t i = 0; i < src->redis_url_count; i++) {
        copy[i] = config_strdup(src->redis_urls[i]);
        if (!copy[i]) {
            while (i--)
                free(copy[i]);
            free(copy);
            return -1;
        }
    }
    dst->redis_urls = copy;
    dst->redis_url_count = src->redis_url_count;
    return 0;
}

static int is_string_key(const key_def *k)
{
    return config_key_storage(k) == STORE_STRING;
}

void config_free(config *c)
{
    for (size_t i = 0; i < config_nkeys; i++) {
        if (is_string_key(&config_keys[i])) {
            char **field = (char **)((char *)c + config_keys[i].offset);
            free(*field);
            *field = NULL;
        }
    }
    free_urls(c);
}

int config_copy(config *dst, const config *src)
{
    *dst = *src;
    for (size_t i = 0; i < config_nkeys; i++)
        if (is_string_key(&config_keys[i]))
            *(char **)((char *)dst + config_keys[i].offset) = NULL;
    dst->redis_urls = NULL; /* copied below, as the strings are */
    dst->redis_url_count = 0;
    for (size_t i = 0; i < config_nkeys; i++) {
        if (config_copy_key(dst, src, config_keys[i].name)) {
            config_free(dst);
            return -1;
        }
    }
    return 0;
}

void config_resolve_threads(config *c)
{
    if (c->threads == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        c->threads = cores > 0 ? (uint64_t)cores : 1;
    }
    /* Without a shared store the loops could not agree on epochs. */
    if (!c->history)
        c->threads = 1;
}

static int same_string(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

int config_key_differs(const config *a, const config *b, const char *key)
{
    const key_def *k = config_find_key(key);
    const char *fa, *fb;

    if (!k)
        return -1;
    if (config_key_storage(k) == STORE_URLS) {
        if (a->redis_url_count != b->redis_url_count)
            return 1;
        for (size_t i = 0; i < a->redis_url_count; i++)
            if (strcmp(a->redis_urls[i], b->redis_urls[i]) != 0)
                return 1;
        return 0;
    }
    fa = (const char *)a + k->offset;
    fb = (const char *)b + k->offset;
    if (is_string_key(k))
        return !same_string(*(char *const *)fa, *(char *const *)fb);
    if (config_key_storage(k) == STORE_INT)
        return *(const int *)fa != *(const int *)fb;
    return *(const uint64_t *)fa != *(const uint64_t *)fb;
}

int config_copy_key(config *dst, const config *src, const char *key)
{
    const key_def *k = config_find_key(key);
    char *dfield, *copy;
    const char *sfield;

    if (!k)
        return -1;
    if (config_key_storage(k) == STORE_URLS)
        return copy_urls(dst, src);
    dfield = (char *)dst + k->offset;
    sfield = (const char *)src + k->offset;
    if (is_string_key(k)) {
        const char *v = *(char *const *)sfield;
        copy = v ? config_strdup(v) : NULL;
        if (v && !copy)
            return -1;
        free(*(char **)dfield);
        *(char **)dfield = copy;
    } else if (config_key_storage(k) == STORE_INT) {
        *(int *)dfield = *(const int *)sfield;
    } else {
        *(uint64_t *)dfield = *(const uint64_t *)sfield;
    }
    return 0;
}
