#include "sse_position.h"

#include <string.h>

/* The decimal digits text[0..len) as a uint64_t: 0, or -1 when there are
 * none, a byte is not a digit or the value passes UINT64_MAX (refused,
 * never wrapped). */
static int parse_offset(const char *text, size_t len, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned d = (unsigned)(unsigned char)text[i] - '0';

        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int sse_position_parse(const char *text, size_t len,
                       char epoch[CHORUS_EPOCH_LEN + 1], uint64_t *offset)
{
    char e[CHORUS_EPOCH_LEN + 1];
    uint64_t off;

    if (len <= CHORUS_EPOCH_LEN || text[CHORUS_EPOCH_LEN] != ':')
        return -1;
    /* A NUL inside the copy is not hex, so chorus_epoch_valid refuses it. */
    memcpy(e, text, CHORUS_EPOCH_LEN);
    e[CHORUS_EPOCH_LEN] = '\0';
    if (!chorus_epoch_valid(e) ||
        parse_offset(text + CHORUS_EPOCH_LEN + 1, len - CHORUS_EPOCH_LEN - 1,
                     &off))
        return -1;
    memcpy(epoch, e, sizeof e);
    *offset = off;
    return 0;
}
