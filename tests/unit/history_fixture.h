/* Shared by the history unit tests: a temporary directory, opening a
 * store, and collecting what history_read returns. The tests write each
 * message as {"n":OFFSET} with ts = OFFSET * 10, so collect() can check
 * every row it is given. */
#ifndef CHORUS_TEST_HISTORY_FIXTURE_H
#define CHORUS_TEST_HISTORY_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "history.h"

static char dir[64]; /* the test's temporary directory */

static inline void path_in_dir(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", dir, name);
}

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline history *open_ok(const char *path, const history_opts *o)
{
    history *h = NULL;
    char err[256];
    int rc = history_open(&h, path, o, err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    if (rc != 0)
        fprintf(stderr, "open: %s\n", err);
    return h;
}

#define ROWS_KEPT 512

struct rows {
    uint64_t off[ROWS_KEPT]; /* the first ROWS_KEPT offsets read */
    int n;
    int stop_at; /* return non-zero after this many rows; 0 = never */
    int bad;     /* rows whose data or ts is not what the tests wrote */
};

static inline int collect(uint64_t offset, int64_t ts_ms, const char *data,
                          size_t len, void *arg)
{
    struct rows *r = arg;
    char want[64];
    int n =
        snprintf(want, sizeof want, "{\"n\":%llu}", (unsigned long long)offset);
    if ((size_t)n != len || memcmp(want, data, len) != 0 ||
        ts_ms != (int64_t)offset * 10)
        r->bad++;
    if (r->n < ROWS_KEPT)
        r->off[r->n] = offset;
    r->n++;
    return r->stop_at && r->n >= r->stop_at;
}

static inline int read_all(history *h, int64_t topic, uint64_t after,
                           size_t limit, struct rows *r)
{
    memset(r, 0, sizeof *r);
    return history_read(h, topic, after, limit, collect, r);
}

#endif
