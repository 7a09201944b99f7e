/* Unit tests for broker/core/frame_ref.c: the header written by seal for every
 * length encoding, zero-copy attachment to several evbuffers with
 * reference counting, and the frame being freed only when the last holder
 * lets go (ASan reports a leak or use-after-free otherwise). */
#include "frame_ref.h"

#include "check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "chorus/ws_frame.h"

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 31u + seed);
}

static int check_fill(const uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (uint8_t)(i * 31u + seed))
            return 0;
    return 1;
}

/* Builds the expected RFC 6455 server header independently. */
static size_t expected_header(uint8_t *h, int opcode, uint64_t len)
{
    h[0] = (uint8_t)(0x80 | opcode);
    if (len <= 125) {
        h[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xffff) {
        h[1] = 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++)
        h[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

static void check_sealed(size_t cap, size_t len, int opcode,
                         size_t want_hdr_len)
{
    frame_ref *f = frame_ref_new(cap);
    uint8_t want[10];
    size_t hl;

    CHECK(f != NULL);
    if (!f)
        return;
    CHECK_EQ_INT(f->refs, 1);
    fill(frame_ref_payload(f), len, (unsigned)len);
    frame_ref_seal(f, opcode, len);
    hl = expected_header(want, opcode, len);
    CHECK_EQ_INT(hl, want_hdr_len);
    CHECK_EQ_INT(f->len, hl + len);
    CHECK_EQ_INT(f->start, FRAME_REF_HEADROOM - hl);
    /* The header sits right before the payload. */
    CHECK(frame_ref_bytes(f) + hl == frame_ref_payload(f));
    if (memcmp(frame_ref_bytes(f), want, hl) != 0) {
        fprintf(stderr, "seal(len %zu): header", len);
        for (size_t i = 0; i < hl; i++)
            fprintf(stderr, " %02x", frame_ref_bytes(f)[i]);
        fprintf(stderr, ", expected");
        for (size_t i = 0; i < hl; i++)
            fprintf(stderr, " %02x", want[i]);
        fprintf(stderr, "\n");
    }
    CHECK(memcmp(frame_ref_bytes(f), want, hl) == 0);
    /* Unmasked: the MASK bit is clear. */
    CHECK((frame_ref_bytes(f)[1] & 0x80) == 0);
    /* The payload is untouched by seal. */
    CHECK(check_fill(frame_ref_payload(f), len, (unsigned)len));
    CHECK_EQ_INT(f->refs, 1);
    frame_ref_decref(f);
}

static void test_seal(void)
{
    check_sealed(0, 0, CHORUS_WS_OP_TEXT, 2);
    check_sealed(1, 1, CHORUS_WS_OP_TEXT, 2);
    check_sealed(125, 125, CHORUS_WS_OP_TEXT, 2);
    check_sealed(126, 126, CHORUS_WS_OP_TEXT, 4);
    check_sealed(65535, 65535, CHORUS_WS_OP_BINARY, 4);
    check_sealed(65536, 65536, CHORUS_WS_OP_BINARY, 10);
    check_sealed(70000, 70000, CHORUS_WS_OP_TEXT, 10);
    /* Capacity larger than what is finally written (fan_out uses a
     * bound): the header still lands right before the payload. */
    check_sealed(4096, 125, CHORUS_WS_OP_TEXT, 2);
    check_sealed(4096, 126, CHORUS_WS_OP_TEXT, 4);
    check_sealed(100000, 65536, CHORUS_WS_OP_TEXT, 10);
    check_sealed(300, 0, CHORUS_WS_OP_TEXT, 2);
}

/* The exact 4-byte header for 126 and 8-byte length for 65536. */
static void test_seal_literal_bytes(void)
{
    frame_ref *f = frame_ref_new(65536);
    static const uint8_t h126[] = {0x81, 0x7e, 0x00, 0x7e};
    static const uint8_t h64k[] = {0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0};
    static const uint8_t h0[] = {0x81, 0x00};
    static const uint8_t h125[] = {0x81, 0x7d};
    static const uint8_t h65535[] = {0x81, 0x7e, 0xff, 0xff};

    if (!f) {
        CHECK(f != NULL);
        return;
    }
    frame_ref_seal(f, CHORUS_WS_OP_TEXT, 126);
    CHECK(memcmp(frame_ref_bytes(f), h126, sizeof h126) == 0);
    frame_ref_decref(f);

    f = frame_ref_new(65536);
    frame_ref_seal(f, CHORUS_WS_OP_BINARY, 65536);
    CHECK(memcmp(frame_ref_bytes(f), h64k, sizeof h64k) == 0);
    CHECK_EQ_INT(f->start, 0);
    CHECK_EQ_INT(f->len, 65546);
    frame_ref_decref(f);

    f = frame_ref_new(0);
    frame_ref_seal(f, CHORUS_WS_OP_TEXT, 0);
    CHECK(memcmp(frame_ref_bytes(f), h0, sizeof h0) == 0);
    CHECK_EQ_INT(f->len, 2);
    frame_ref_decref(f);

    f = frame_ref_new(125);
    frame_ref_seal(f, CHORUS_WS_OP_TEXT, 125);
    CHECK(memcmp(frame_ref_bytes(f), h125, sizeof h125) == 0);
    frame_ref_decref(f);

    f = frame_ref_new(65535);
    frame_ref_seal(f, CHORUS_WS_OP_TEXT, 65535);
    CHECK(memcmp(frame_ref_bytes(f), h65535, sizeof h65535) == 0);
    CHECK_EQ_INT(f->len, 65539);
    frame_ref_decref(f);
}

static void test_refcount(void)
{
    frame_ref *f = frame_ref_new(10);

    if (!f) {
        CHECK(f != NULL);
        return;
    }
    CHECK_EQ_INT(f->refs, 1);
    frame_ref_incref(f);
    frame_ref_incref(f);
    CHECK_EQ_INT(f->refs, 3);
    frame_ref_decref(f);
    CHECK_EQ_INT(f->refs, 2);
    frame_ref_decref(f);
    CHECK_EQ_INT(f->refs, 1);
    frame_ref_decref(f); /* freed here; ASan would flag a leak otherwise */
}

/* Attach to several buffers; an extra observer reference lets the test
 * read refs until every buffer has let go. */
static void test_attach_observed(void)
{
    enum { NBUF = 4, LEN = 300 };
    struct evbuffer *b[NBUF];
    frame_ref *f = frame_ref_new(LEN);
    uint8_t out[LEN + 10];

    if (!f) {
        CHECK(f != NULL);
        return;
    }
    fill(frame_ref_payload(f), LEN, 7);
    frame_ref_seal(f, CHORUS_WS_OP_TEXT, LEN);
    CHECK_EQ_INT(f->len, LEN + 4);

    for (int i = 0; i < NBUF; i++) {
        b[i] = evbuffer_new();
        CHECK(b[i] != NULL);
        CHECK_EQ_INT(frame_ref_attach(f, b[i]), 0);
        CHECK_EQ_INT(f->refs, 2 + i);
        CHECK_EQ_INT(evbuffer_get_length(b[i]), f->len);
    }
    /* Zero copy: each buffer points at the frame's own bytes. */
    for (int i = 0; i < NBUF; i++) {
        struct evbuffer_iovec v;
        int n = evbuffer_peek(b[i], -1, NULL, &v, 1);
        CHECK_EQ_INT(n, 1);
        CHECK(v.iov_base == (const void *)frame_ref_bytes(f));
        CHECK_EQ_INT(v.iov_len, f->len);
    }
    /* Copying out yields header + payload. */
    CHECK_EQ_INT(evbuffer_copyout(b[0], out, sizeof out), LEN + 4);
    CHECK(out[0] == 0x81 && out[1] == 126 && out[2] == (LEN >> 8) &&
          out[3] == (LEN & 0xff));
    CHECK(check_fill(out + 4, LEN, 7));
    CHECK_EQ_INT(f->refs, 1 + NBUF); /* copyout does not release */

    /* Attaching the same frame twice to one buffer takes two refs. */
    CHECK_EQ_INT(frame_ref_attach(f, b[3]), 0);
    CHECK_EQ_INT(f->refs, 2 + NBUF);
    CHECK_EQ_INT(evbuffer_get_length(b[3]), 2 * f->len);

    /* b[0] freed with data still queued: its reference goes. */
    evbuffer_free(b[0]);
    CHECK_EQ_INT(f->refs, 1 + NBUF);

    /* b[1] partially drained: the chain is still referenced. */
    CHECK_EQ_INT(evbuffer_drain(b[1], 100), 0);
    CHECK_EQ_INT(f->refs, 1 + NBUF);
    CHECK_EQ_INT(evbuffer_get_length(b[1]), f->len - 100);
    CHECK_EQ_INT(evbuffer_drain(b[1], f->len - 101), 0);
    CHECK_EQ_INT(f->refs, 1 + NBUF);
    CHECK_EQ_INT(evbuffer_drain(b[1], 1), 0); /* last byte */
    CHECK_EQ_INT(f->refs, NBUF);
    evbuffer_free(b[1]); /* empty: no further release */
    CHECK_EQ_INT(f->refs, NBUF);

    /* b[2] moved into another buffer (as a bufferevent does): the
     * reference travels with the chain. */
    {
        struct evbuffer *dst = evbuffer_new();
        CHECK_EQ_INT(evbuffer_add_buffer(dst, b[2]), 0);
        CHECK_EQ_INT(evbuffer_get_length(b[2]), 0);
        evbuffer_free(b[2]);
        CHECK_EQ_INT(f->refs, NBUF);
        CHECK_EQ_INT(evbuffer_remove(dst, out, sizeof out), LEN + 4);
        CHECK(check_fill(out + 4, LEN, 7));
        CHECK_EQ_INT(f->refs, NBUF - 1);
        evbuffer_free(dst);
    }

    /* b[3] holds two references: draining one frame's worth releases
     * one, freeing the buffer the other. */
    CHECK_EQ_INT(evbuffer_drain(b[3], f->len), 0);
    CHECK_EQ_INT(f->refs, NBUF - 2);
    evbuffer_free(b[3]);
    CHECK_EQ_INT(f->refs, 1);
    frame_ref_decref(f);
}

/* The usual fan-out shape: the creator drops its reference right after
 * attaching; the last buffer to go frees the frame (ASan: no leak, no
 * use-after-free while the remaining buffers are read). */
static void test_attach_last_buffer_frees(void)
{
    enum { NBUF = 3, LEN = 65536 };
    struct evbuffer *b[NBUF];
    frame_ref *f = frame_ref_new(LEN);
    uint8_t *out = malloc(LEN + 10);

    if (!f || !out) {
        CHECK(f != NULL && out != NULL);
        free(out);
        if (f)
            frame_ref_decref(f);
        return;
    }
    fill(frame_ref_payload(f), LEN, 3);
    frame_ref_seal(f, CHORUS_WS_OP_BINARY, LEN);
    for (int i = 0; i < NBUF; i++) {
        b[i] = evbuffer_new();
        CHECK_EQ_INT(frame_ref_attach(f, b[i]), 0);
    }
    CHECK_EQ_INT(f->refs, 1 + NBUF);
    frame_ref_decref(f);
    CHECK_EQ_INT(f->refs, NBUF);

    evbuffer_free(b[0]);
    CHECK_EQ_INT(f->refs, NBUF - 1);
    /* The frame is still alive and readable from the others. */
    CHECK_EQ_INT(evbuffer_remove(b[1], out, LEN + 10), LEN + 10);
    CHECK(out[0] == 0x82 && out[1] == 127);
    CHECK(check_fill(out + 10, LEN, 3));
    CHECK_EQ_INT(f->refs, 1); /* b[1] fully drained */
    CHECK_EQ_INT(evbuffer_copyout(b[2], out, LEN + 10), LEN + 10);
    CHECK(check_fill(out + 10, LEN, 3));
    evbuffer_free(b[1]);
    evbuffer_free(b[2]); /* frees the frame */
    free(out);
}

/* A failed attach takes no reference (and evbuffer does not call the
 * cleanup either): refs stay as they were. */
static void test_attach_failure(void)
{
    struct evbuffer *b = evbuffer_new();
    frame_ref *f = frame_ref_new(5);

    if (!f || !b) {
        CHECK(f != NULL && b != NULL);
        return;
    }
    memcpy(frame_ref_payload(f), "hello", 5);
    frame_ref_seal(f, CHORUS_WS_OP_TEXT, 5);
    CHECK_EQ_INT(evbuffer_freeze(b, 0), 0); /* no adding at the end */
    CHECK_EQ_INT(frame_ref_attach(f, b), -1);
    CHECK_EQ_INT(f->refs, 1);
    CHECK_EQ_INT(evbuffer_get_length(b), 0);
    CHECK_EQ_INT(evbuffer_unfreeze(b, 0), 0);
    CHECK_EQ_INT(frame_ref_attach(f, b), 0);
    CHECK_EQ_INT(f->refs, 2);
    frame_ref_decref(f);
    evbuffer_free(b); /* frees the frame */
}

int main(void)
{
    test_seal();
    test_seal_literal_bytes();
    test_refcount();
    test_attach_observed();
    test_attach_last_buffer_frees();
    test_attach_failure();
    return check_report("test_frame_ref");
}
