/* Shared by the files of the configuration module only (config*.c); the
 * rest of the broker uses config.h. The module's files, one job each:
 *   config.c          the config object: defaults, copy, free, per-key
 *                     compare and copy
 *   config_keys.c     the key table and config_set()
 *   config_values.c   the value parsers (text -> number, enum, address)
 *   config_validate.c the cross-key rules
 *   config_file.c     the "key = value" text reader */
#ifndef CHORUS_CONFIG_INTERNAL_H
#define CHORUS_CONFIG_INTERNAL_H

#include "config.h"

#define KIB 1024ULL
#define MIB (1024ULL * KIB)
#define GIB (1024ULL * MIB)

/* Longest accepted duration: ten years, so that callers can add any
 * duration to a millisecond clock or turn it into a timeval safely. */
#define DURATION_MAX_MS (3650ULL * 24 * 3600 * 1000)

typedef enum {
    T_BOOL,
    T_SIZE,
    T_DURATION,
    T_COUNT,
    T_LOG_LEVEL,
    T_LOG_FORMAT,
    T_DURABILITY,
    T_LISTEN,
    T_PATH,
    T_STRING,
    T_ENGINE,
    T_REDIS_URL, /* repeatable: each line adds one */
    T_TCP_CC,    /* a congestion control the kernel accepts */
} key_type;

/* How a key's value is stored in struct config. */
typedef enum {
    STORE_INT,    /* int */
    STORE_U64,    /* uint64_t */
    STORE_STRING, /* char *, heap copy or NULL */
    STORE_URLS,   /* redis_urls / redis_url_count */
} key_storage;

/* One configuration key. For sizes, durations and counts, min and max bound
 * the parsed value (max 0 = the type's own limit). */
typedef struct key_def {
    const char *name;
    key_type type;
    size_t offset;
    uint64_t min, max;
    const char *bound_msg; /* shown when min/max is violated */
} key_def;

/* The key table (config_keys.c), in the order config_key_name walks. */
extern const key_def config_keys[];
extern const size_t config_nkeys;

/* The key called name, or NULL. */
const key_def *config_find_key(const char *name);

key_storage config_key_storage(const key_def *k);

/* Formats into err when err is not NULL and errlen > 0. */
void config_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A heap copy of s, or NULL (out of memory). */
char *config_strdup(const char *s);

/* Value parsers that config.h does not expose. Each returns 0 or -1. */
int config_parse_digits(const char **s, uint64_t *out); /* advances *s */
int config_parse_count(const char *s, uint64_t *out);
int config_parse_engine(const char *s, int *out);     /* sqlite redis */
int config_parse_durability(const char *s, int *out); /* normal full */

/* Keys of one engine set, away from their default, while the other
 * engine is in use, and an engine = redis without an instance: the
 * offending key's name, with the message in err; NULL when consistent. */
const char *config_engine_conflict(const config *c, char *err, size_t errlen);

#endif
