#include "frame_ref.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "chorus/ws_frame.h"

frame_ref *frame_ref_new(size_t payload_cap)
{
    frame_ref *f = malloc(sizeof *f + FRAME_REF_HEADROOM + payload_cap);

    if (!f)
        return NULL;
    f->refs = 1;
    f->len = 0;
    f->start = FRAME_REF_HEADROOM;
    return f;
}

uint8_t *frame_ref_payload(frame_ref *f)
{
    return f->data + FRAME_REF_HEADROOM;
}

void frame_ref_seal(frame_ref *f, int opcode, size_t payload_len)
{
    uint8_t hdr[CHORUS_WS_MAX_HEADER];
    size_t n = chorus_ws_write_header(hdr, 1, opcode, payload_len, NULL);

    f->start = FRAME_REF_HEADROOM - n;
    for (size_t i = 0; i < n; i++)
        f->data[f->start + i] = hdr[i];
    f->len = n + payload_len;
}

void frame_ref_seal_raw(frame_ref *f, size_t len)
{
    f->start = FRAME_REF_HEADROOM;
    f->len = len;
}

static size_t header_len(size_t payload_len)
{
    return payload_len < 126 ? 2 : payload_len < 65536 ? 4 : 10;
}

size_t frame_write(uint8_t *dst, int opcode, size_t bound,
                   size_t (*fill)(uint8_t *payload, void *arg), void *arg)
{
    /* Guess the header size from the bound; the payload only moves in
     * the rare case where its real length needs a shorter header. */
    size_t guess = header_len(bound), n = fill(dst + guess, arg);
    size_t h = header_len(n);
    uint8_t hdr[CHORUS_WS_MAX_HEADER];

    if (h != guess)
        memmove(dst + h, dst + guess, n);
    chorus_ws_write_header(hdr, 1, opcode, n, NULL);
    memcpy(dst, hdr, h);
    return h + n;
}

/* Atomic: a block of frames is shared by the loops of several threads. */
void frame_ref_incref(frame_ref *f)
{
    __atomic_add_fetch(&f->refs, 1, __ATOMIC_RELAXED);
}

void frame_ref_decref(frame_ref *f)
{
    if (__atomic_sub_fetch(&f->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(f);
}

static void release(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    frame_ref_decref(arg);
}

int frame_ref_attach_range(frame_ref *f, struct evbuffer *buf, size_t off,
                           size_t len)
{
    frame_ref_incref(f);
    if (evbuffer_add_reference(buf, frame_ref_bytes(f) + off, len, release,
                               f)) {
        frame_ref_decref(f);
        return -1;
    }
    return 0;
}

int frame_ref_attach(frame_ref *f, struct evbuffer *buf)
{
    return frame_ref_attach_range(f, buf, 0, f->len);
}
