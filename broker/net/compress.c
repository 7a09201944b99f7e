#include "compress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chorus/deflate.h"
#include "chorus/ws_frame.h"
#include "conn.h"
#include "frame_ref.h"
#include "server.h"

void compress_negotiate(conn *c, const chorus_http_request *req, char *line,
                        size_t line_size)
{
    char resp[CHORUS_PMD_RESPONSE_MAX];
    chorus_pmd_params params;

    line[0] = '\0';
    if (!c->srv->cfg->compression)
        return;
    for (size_t i = 0; i < req->num_headers; i++) {
        const chorus_http_header *h = &req->headers[i];
        if (h->name_len != 24 ||
            strncasecmp(h->name, "Sec-WebSocket-Extensions", 24) != 0)
            continue;
        if (chorus_pmd_negotiate(h->value, h->value_len, &params, resp,
                                 sizeof resp) != 1)
            continue;
        /* Blocks are shared by every subscriber, so they are compressed
         * with the full window; a client that wants a smaller one goes
         * without compression. */
        if (params.server_max_window_bits && params.server_max_window_bits < 15)
            return;
        c->pmd = 1;
        snprintf(line, line_size, "Sec-WebSocket-Extensions: %s\r\n", resp);
        return;
    }
}

uint16_t compress_inflate(conn *c, const uint8_t *in, size_t len, uint8_t **out,
                          size_t *out_len)
{
    server *s = c->srv;
    int rc;

    if (!s->inflater) {
        s->inflater = malloc(sizeof *s->inflater);
        if (!s->inflater || chorus_pmd_inflater_init(s->inflater, 1)) {
            free(s->inflater);
            s->inflater = NULL;
            return CHORUS_WS_CLOSE_INTERNAL;
        }
    }
    rc = chorus_pmd_inflate(s->inflater, in, len,
                            (size_t)s->cfg->max_message_size, out, out_len);
    return rc == CHORUS_PMD_OK ? 0 : chorus_pmd_close_code(rc);
}

static chorus_pmd_compressor *deflater(server *s)
{
    if (!s->deflater) {
        s->deflater = malloc(sizeof *s->deflater);
        if (!s->deflater ||
            chorus_pmd_compressor_init(s->deflater, COMPRESS_LEVEL, 15)) {
            free(s->deflater);
            s->deflater = NULL;
        }
    }
    return s->deflater;
}

/* Payload of the unmasked server frame at p (header parsed here). */
static const uint8_t *frame_payload(const uint8_t *p, size_t *len)
{
    size_t n = p[1] & 0x7f, h = 2;

    if (n == 126) {
        n = (size_t)p[2] << 8 | p[3];
        h = 4;
    } else if (n == 127) {
        n = 0;
        for (int i = 2; i < 10; i++)
            n = n << 8 | p[i];
        h = 10;
    }
    *len = n;
    return p + h;
}

frame_ref *compress_block(server *s, const frame_ref *f, size_t count,
                          const size_t *pos, size_t **cpos)
{
    chorus_pmd_compressor *z = deflater(s);
    uint8_t **parts = calloc(count, sizeof *parts);
    size_t *lens = calloc(count, sizeof *lens), total = 0, off = 0;
    frame_ref *out = NULL;

    *cpos = malloc((count + 1) * sizeof **cpos);
    if (!z || !parts || !lens || !*cpos)
        goto done;
    for (size_t i = 0; i < count; i++) {
        size_t n;
        const uint8_t *p = frame_payload(frame_ref_bytes(f) + pos[i], &n);
        if (chorus_pmd_compress(z, p, n, &parts[i], &lens[i]))
            goto done;
        total += lens[i] + CHORUS_WS_MAX_HEADER;
    }
    out = frame_ref_new(total);
    if (!out)
        goto done;
    for (size_t i = 0; i < count; i++) {
        uint8_t *dst = frame_ref_payload(out) + off;
        size_t h = chorus_ws_write_header_rsv1(dst, 1, CHORUS_WS_OP_TEXT,
                                               lens[i], NULL);
        (*cpos)[i] = off;
        memcpy(dst + h, parts[i], lens[i]);
        off += h + lens[i];
    }
    (*cpos)[count] = off;
    frame_ref_seal_raw(out, off);
done:
    for (size_t i = 0; parts && i < count; i++)
        free(parts[i]);
    free(parts);
    free(lens);
    if (!out) {
        free(*cpos);
        *cpos = NULL;
    }
    return out;
}

void compress_free(server *s)
{
    if (s->deflater) {
        chorus_pmd_compressor_free(s->deflater);
        free(s->deflater);
    }
    if (s->inflater) {
        chorus_pmd_inflater_free(s->inflater);
        free(s->inflater);
    }
    s->deflater = NULL;
    s->inflater = NULL;
}
