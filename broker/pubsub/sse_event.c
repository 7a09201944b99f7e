#include "sse_event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chorus/wire.h"
#include "frame_ref.h"
#include "topics.h"

/* What chorus_encode_message starts with; the SSE data keeps the '{'. */
#define OP_PREFIX "{\"op\":\"message\","
#define OP_PREFIX_LEN (sizeof OP_PREFIX - 1)
#define DATA_LINE "data: "
#define DATA_LINE_LEN (sizeof DATA_LINE - 1)
/* "id: " epoch ":" offset "\nevent: message\n" "data: " ... "\n\n" */
#define EVENT_FIXED_MAX (4 + 32 + 1 + 20 + 16 + DATA_LINE_LEN + 2)

static size_t line_breaks(const char *s, size_t len)
{
    size_t n = 0;

    for (const char *p = s, *end = s + len;
         (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
        n++;
    for (const char *p = s, *end = s + len;
         (p = memchr(p, '\r', (size_t)(end - p))) != NULL; p++)
        n++;
    return n;
}

/* Bytes an event for a /ws message JSON of len bytes with breaks line
 * breaks may take. */
static size_t event_bound(size_t len, size_t breaks)
{
    return EVENT_FIXED_MAX + len + breaks * (DATA_LINE_LEN + 1);
}

/* Writes the event for the /ws message JSON (json, len) to dst; returns
 * its length. CR, LF and CRLF each end a data line. */
static size_t write_event(char *dst, const char *epoch, uint64_t offset,
                          const char *json, size_t len)
{
    char *p = dst;
    const char *in = json + OP_PREFIX_LEN, *end = json + len;

    p += sprintf(p, "id: %s:%llu\nevent: message\n" DATA_LINE "{", epoch,
                 (unsigned long long)offset);
    while (in < end) {
        const char *lf = memchr(in, '\n', (size_t)(end - in));
        const char *cr = memchr(in, '\r', (size_t)(end - in));
        const char *brk = !cr ? lf : !lf ? cr : cr < lf ? cr : lf;
        size_t n = brk ? (size_t)(brk - in) : (size_t)(end - in);

        memcpy(p, in, n);
        p += n;
        in += n;
        if (!brk)
            break;
        in += (*in == '\r' && in + 1 < end && in[1] == '\n') ? 2 : 1;
        memcpy(p, "\n" DATA_LINE, DATA_LINE_LEN + 1);
        p += DATA_LINE_LEN + 1;
    }
    memcpy(p, "\n\n", 2);
    return (size_t)(p + 2 - dst);
}

/* The payload of the unmasked server frame at frame (len bytes). */
static const char *frame_payload(const uint8_t *frame, size_t len,
                                 size_t *payload_len)
{
    uint8_t n = frame[1] & 0x7f;
    size_t header = n < 126 ? 2 : n == 126 ? 4 : 10;

    *payload_len = len - header;
    return (const char *)frame + header;
}

frame_ref *sse_event_block(const topic *t, frame_ref *ws, uint64_t first,
                           size_t count, const size_t *pos, size_t **spos)
{
    const uint8_t *block = frame_ref_bytes(ws);
    size_t total = 0, len = 0;
    frame_ref *f;

    for (size_t i = 0; i < count; i++) {
        size_t n;
        const char *json =
            frame_payload(block + pos[i], pos[i + 1] - pos[i], &n);
        total += event_bound(n, line_breaks(json, n));
    }
    f = frame_ref_new(total);
    *spos = malloc((count + 1) * sizeof **spos);
    if (!f || !*spos) {
        if (f)
            frame_ref_decref(f);
        free(*spos);
        *spos = NULL;
        return NULL;
    }
    for (size_t i = 0; i < count; i++) {
        size_t n;
        const char *json =
            frame_payload(block + pos[i], pos[i + 1] - pos[i], &n);
        (*spos)[i] = len;
        len += write_event((char *)frame_ref_payload(f) + len, t->epoch,
                           first + i, json, n);
    }
    (*spos)[count] = len;
    frame_ref_seal_raw(f, len);
    return f;
}

frame_ref *sse_event_message(const topic *t, uint64_t offset, int64_t ts_ms,
                             const char *data, size_t data_len)
{
    size_t json_cap = chorus_message_bound(t->name_len, data_len);
    size_t cap = event_bound(json_cap, line_breaks(data, data_len));
    frame_ref *f = frame_ref_new(cap + json_cap);
    char *out, *json;
    size_t n;

    if (!f)
        return NULL;
    /* The JSON goes after the room for the event, which is written from
     * it at the start: the two never overlap. */
    out = (char *)frame_ref_payload(f);
    json = out + cap;
    n = chorus_encode_message(json, t->name, t->name_len, offset, ts_ms, data,
                              data_len);
    frame_ref_seal_raw(f, write_event(out, t->epoch, offset, json, n));
    return f;
}
