#include "redis_payload.h"

#include <stdio.h>
#include <string.h>

/* Reads decimal digits at p[*i..len) up to the stop byte. */
static int read_u64(const char *p, size_t len, size_t *i, char stop,
                    uint64_t *out)
{
    uint64_t v = 0;
    size_t start = *i;

    while (*i < len && p[*i] >= '0' && p[*i] <= '9') {
        unsigned d = (unsigned)(p[*i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
        (*i)++;
    }
    if (*i == start || *i >= len || p[*i] != stop)
        return -1;
    (*i)++;
    *out = v;
    return 0;
}

int redis_payload_parse(const char *p, size_t len, redis_payload *out)
{
    size_t i = 32;
    uint64_t ts, count;

    if (len < 33 || p[32] != ' ')
        return -1;
    for (size_t k = 0; k < 32; k++)
        if (!((p[k] >= '0' && p[k] <= '9') || (p[k] >= 'a' && p[k] <= 'f')))
            return -1;
    memcpy(out->epoch, p, 32);
    out->epoch[32] = '\0';
    i++;
    if (read_u64(p, len, &i, ' ', &out->first) || out->first == 0 ||
        read_u64(p, len, &i, ' ', &ts) || ts > INT64_MAX ||
        read_u64(p, len, &i, '\n', &count) || count == 0 ||
        count > UINT64_MAX - out->first)
        return -1;
    out->ts_ms = (int64_t)ts;
    out->count = (size_t)count;
    out->body = p + i;
    out->body_len = len - i;
    return 0;
}

int redis_payload_next(const redis_payload *pl, size_t *pos, const char **data,
                       size_t *len)
{
    uint64_t n;

    if (*pos == pl->body_len)
        return 1;
    if (read_u64(pl->body, pl->body_len, pos, ':', &n) ||
        n > pl->body_len - *pos)
        return -1;
    *data = pl->body + *pos;
    *len = (size_t)n;
    *pos += (size_t)n;
    return 0;
}

size_t redis_payload_entry_size(size_t len)
{
    size_t digits = 1;

    for (size_t v = len; v >= 10; v /= 10)
        digits++;
    return digits + 1 + len;
}

char *redis_payload_put(char *p, const char *data, size_t len)
{
    char digits[24];
    int n = snprintf(digits, sizeof digits, "%zu:", len);

    memcpy(p, digits, (size_t)n);
    memcpy(p + n, data, len);
    return p + n + len;
}

void redis_payload_of_body(redis_payload *pl, uint64_t first, int64_t ts_ms,
                           size_t count, const char *body, size_t len)
{
    memset(pl->epoch, 0, sizeof pl->epoch);
    pl->first = first;
    pl->ts_ms = ts_ms;
    pl->count = count;
    pl->body = body;
    pl->body_len = len;
}
