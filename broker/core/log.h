/* Leveled logging to stderr. The level is set once at start-up, before
 * any event loop runs, and is read-only afterwards. */
#ifndef CHORUS_LOG_H
#define CHORUS_LOG_H

#include "config.h" /* LOG_ERROR .. LOG_DEBUG */

void log_set_level(int level);
int log_enabled(int level);

void log_msg(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                       \
    do {                                     \
        if (log_enabled(LOG_DEBUG))          \
            log_msg(LOG_DEBUG, __VA_ARGS__); \
    } while (0)

#endif
