/* Leveled logging to stderr, one line per call, as text or as one JSON
 * object per line (log_format). Level and format may change at any time
 * (a reload): they are atomics, read by every thread.
 *
 * A line may carry structured fields (log_fields): in text they become
 * the "conn N (peer): " prefix and the "(N similar suppressed)" suffix; in
 * JSON each is a member of its own. Secrets never go into a line. */
#ifndef CHORUS_LOG_H
#define CHORUS_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h" /* LOG_ERROR .. LOG_DEBUG, LOG_FORMAT_* */

void log_set_level(int level);
void log_set_format(int format);
int log_enabled(int level);

/* What a line is about, each optional (0 / NULL = absent). */
typedef struct log_fields {
    uint64_t conn;       /* connection id, as in every line about it */
    const char *peer;    /* client address:port */
    const char *topic;   /* topic_len bytes, or NUL-terminated if 0 */
    size_t topic_len;    /* 0 = strlen(topic) */
    const char *code;    /* error code sent to the client (PROTOCOL.md) */
    uint64_t suppressed; /* similar lines left out before this one */
} log_fields;

void log_msg(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_with(int level, const log_fields *f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_withv(int level, const log_fields *f, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                       \
    do {                                     \
        if (log_enabled(LOG_DEBUG))          \
            log_msg(LOG_DEBUG, __VA_ARGS__); \
    } while (0)

/* A line about one connection. */
#define log_conn(level, id, peer_, ...)                                   \
    do {                                                                  \
        if (log_enabled(level))                                           \
            log_with(level, &(log_fields){.conn = (id), .peer = (peer_)}, \
                     __VA_ARGS__);                                        \
    } while (0)

/* At most one line a second per cause (a log_limit each, zeroed to
 * start). log_due() returns 0 when this line is to be left out (and
 * counts it), else 1 + the number left out since the last line shown:
 * put that minus one in log_fields.suppressed. Thread-safe. */
typedef struct log_limit {
    _Atomic int64_t last_ms;
    _Atomic uint64_t suppressed;
} log_limit;

uint64_t log_due(log_limit *l, int64_t now_ms);

/* Milliseconds since the Unix epoch (wall clock). */
int64_t log_now_ms(void);

/* Writes s (len bytes) into out as the inside of a JSON string: quotes,
 * backslashes and control characters escaped, and each byte that is not
 * part of valid UTF-8 replaced by U+FFFD, so the output is valid JSON for
 * any input. Stops before a character that would not fit. Returns the
 * bytes written (out is NUL-terminated; cap must be at least 1). */
size_t log_json_escape(char *out, size_t cap, const char *s, size_t len);

#endif
