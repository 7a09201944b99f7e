/* A refcounted, immutable WebSocket frame: a published message is encoded
 * once and the same bytes are attached to every subscriber's output buffer
 * with evbuffer_add_reference(); the last buffer to drop it frees it. */
#ifndef CHORUS_FRAME_REF_H
#define CHORUS_FRAME_REF_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

typedef struct frame_ref {
    uint32_t refs; /* atomic: blocks are shared across loops */
    size_t len;    /* bytes of frame in data[] from start */
    size_t start;  /* the header is written right-aligned before payload */
    uint8_t data[];
} frame_ref;

/* Room for a server frame header before the payload. */
#define FRAME_REF_HEADROOM 10

/* Allocates a frame with room for payload_cap payload bytes; the caller
 * writes the payload at frame_ref_payload() and then seals it. Starts with
 * one reference, owned by the caller. NULL on allocation failure. */
frame_ref *frame_ref_new(size_t payload_cap);
uint8_t *frame_ref_payload(frame_ref *f);

/* Writes an unmasked FIN header of opcode for payload_len bytes. */
void frame_ref_seal(frame_ref *f, int opcode, size_t payload_len);

/* For a block of several complete frames written by the caller at
 * frame_ref_payload(): marks len bytes of it as the block to send. */
void frame_ref_seal_raw(frame_ref *f, size_t len);

/* Writes one whole unmasked FIN frame into dst: fill(payload, arg) writes
 * at most bound payload bytes and returns how many it wrote. Returns the
 * frame's length; dst needs bound + FRAME_REF_HEADROOM bytes. */
size_t frame_write(uint8_t *dst, int opcode, size_t bound,
                   size_t (*fill)(uint8_t *payload, void *arg), void *arg);

void frame_ref_incref(frame_ref *f);
void frame_ref_decref(frame_ref *f);

/* Attaches the frame to buf without copying; takes its own reference.
 * Returns 0 or -1. */
int frame_ref_attach(frame_ref *f, struct evbuffer *buf);

/* The same for len bytes from off (whole frames of a block). */
int frame_ref_attach_range(frame_ref *f, struct evbuffer *buf, size_t off,
                           size_t len);

static inline const uint8_t *frame_ref_bytes(const frame_ref *f)
{
    return f->data + f->start;
}

#endif
