/* Unit tests for lib/ws_frame.c: every decoder rule byte by byte, the
 * encoder, and encode/decode round trips in both roles. */
#include "chorus/ws_frame.h"

#include "check.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const uint8_t KEY[4] = {0x37, 0xFA, 0x21, 0x3D};

/* ---- frame builder ------------------------------------------------------ */

/* Appends a frame to out (returns its length). rsv goes into bits 4-6 of
 * the first byte; key NULL for an unmasked frame. */
static size_t frame_rsv(uint8_t *out, int fin, int rsv, int opcode,
                        const void *payload, size_t n, const uint8_t *key)
{
    size_t h = chorus_ws_write_header(out, fin, opcode, n, key);

    out[0] |= (uint8_t)(rsv << 4);
    if (n)
        memcpy(out + h, payload, n);
    if (key)
        chorus_ws_mask(out + h, n, key, 0);
    return h + n;
}

static size_t frame(uint8_t *out, int fin, int opcode, const void *payload,
                    size_t n, const uint8_t *key)
{
    return frame_rsv(out, fin, 0, opcode, payload, n, key);
}

/* ---- stream harness ----------------------------------------------------- */

/* Feeds bytes in chunks of `step` through a pending buffer, the way a
 * connection would, and records what comes out as a compact log:
 * "M<op>:<len>;" per completed message, "C<op>:<code>;" per control frame
 * (code only for CLOSE), "E<code>;" for an error. */
typedef struct harness {
    chorus_ws_decoder d;
    uint8_t pend[70000 + 200];
    size_t plen;
    uint8_t msg[70000]; /* payload of all messages, concatenated */
    size_t msglen;
    size_t cur_len; /* payload of the open message so far */
    int msg_opcode; /* opcode of the open message, else 0 */
    char log[512];
    const char *reason;
    uint8_t ctl[125];
    size_t ctl_len;
    int failed;
    int bad_invariant;
} harness;

static harness H;

static void h_init(chorus_ws_role role, uint64_t max)
{
    memset(&H, 0, sizeof(H));
    chorus_ws_decoder_init(&H.d, role, max);
}

static void h_log(const char *fmt, long a, long b)
{
    size_t used = strlen(H.log);
    snprintf(H.log + used, sizeof(H.log) - used, fmt, a, b);
}

static void h_event(const chorus_ws_event *ev)
{
    switch (ev->type) {
    case CHORUS_WS_EV_DATA:
        if (H.msg_opcode == 0)
            H.msg_opcode = ev->opcode;
        if (ev->opcode != H.msg_opcode)
            H.bad_invariant++;
        if (H.msglen + ev->len > sizeof(H.msg)) {
            H.bad_invariant++;
            break;
        }
        if (ev->len)
            memcpy(H.msg + H.msglen, ev->data, ev->len);
        H.msglen += ev->len;
        H.cur_len += ev->len;
        if (ev->fin) {
            h_log("M%ld:%ld;", ev->opcode, (long)H.cur_len);
            H.msg_opcode = 0;
            H.cur_len = 0;
        }
        break;
    case CHORUS_WS_EV_CONTROL:
        if (ev->opcode == CHORUS_WS_OP_CLOSE)
            h_log("C%ld:%ld;", ev->opcode, ev->close_code);
        else
            h_log("C%ld;", ev->opcode, 0);
        memcpy(H.ctl, ev->data, ev->len);
        H.ctl_len = ev->len;
        break;
    case CHORUS_WS_EV_ERROR:
        h_log("E%ld;", ev->close_code, 0);
        H.reason = ev->reason;
        H.failed = 1;
        if (!ev->reason || !ev->reason[0])
            H.bad_invariant++;
        break;
    default: break;
    }
}

/* Feeds n bytes in chunks of step (0 = all at once). Returns once all is
 * fed or an error was reported. */
static void h_feed(const uint8_t *p, size_t n, size_t step)
{
    size_t off = 0;

    if (step == 0)
        step = n ? n : 1;
    while (off < n && !H.failed) {
        size_t chunk = n - off < step ? n - off : step;
        memcpy(H.pend + H.plen, p + off, chunk);
        H.plen += chunk;
        off += chunk;
        for (;;) {
            chorus_ws_event ev;
            size_t used = 12345;
            chorus_ws_decode(&H.d, H.pend, H.plen, &used, &ev);
            if (used > H.plen)
                H.bad_invariant++;
            h_event(&ev);
            if (ev.type == CHORUS_WS_EV_ERROR)
                return;
            memmove(H.pend, H.pend + used, H.plen - used);
            H.plen -= used;
            if (ev.type == CHORUS_WS_EV_NEED_MORE)
                break;
        }
    }
}

/* Runs a byte stream through a fresh decoder at several chunk sizes and
 * checks that the log is the same each time. */
static void expect_log(chorus_ws_role role, uint64_t max, const uint8_t *p,
                       size_t n, const char *want, int line)
{
    static const size_t steps[] = {0, 1, 2, 3, 7, 64};

    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        static uint8_t copy[70000 + 200];
        memcpy(copy, p, n); /* the decoder unmasks in place */
        h_init(role, max);
        h_feed(copy, n, steps[i]);
        CHECK_EQ_STR(H.log, want);
        CHECK_EQ_INT(H.bad_invariant, 0);
        if (strcmp(H.log, want) != 0)
            fprintf(stderr, "  (line %d, step %zu)\n", line, steps[i]);
    }
}
#define EXPECT(role, max, p, n, want) \
    expect_log(role, max, p, n, want, __LINE__)

/* ---- decoder rules ------------------------------------------------------ */

static void test_single_frames(void)
{
    uint8_t b[300];
    size_t n;

    n = frame(b, 1, CHORUS_WS_OP_TEXT, "Hello", 5, KEY);
    EXPECT(CHORUS_WS_SERVER, 0, b, n, "M1:5;");
    CHECK(memcmp(H.msg, "Hello", 5) == 0);
    n = frame(b, 1, CHORUS_WS_OP_BINARY, "\xFF\x00\x80", 3, NULL);
    EXPECT(CHORUS_WS_CLIENT, 0, b, n, "M2:3;");
    CHECK(memcmp(H.msg, "\xFF\x00\x80", 3) == 0);
    /* Empty data frames still produce a DATA event. */
    n = frame(b, 1, CHORUS_WS_OP_TEXT, "", 0, KEY);
    EXPECT(CHORUS_WS_SERVER, 0, b, n, "M1:0;");
    n = frame(b, 1, CHORUS_WS_OP_BINARY, "", 0, NULL);
    EXPECT(CHORUS_WS_CLIENT, 0, b, n, "M2:0;");
    /* Two frames in one buffer. */
    n = frame(b, 1, CHORUS_WS_OP_TEXT, "ab", 2, KEY);
    n += frame(b + n, 1, CHORUS_WS_OP_BINARY, "cde", 3, KEY);
    EXPECT(CHORUS_WS_SERVER, 0, b, n, "M1:2;M2:3;");
    CHECK(H.msglen == 5 && memcmp(H.msg, "abcde", 5) == 0);
}

/* The exact event sequence for one frame given whole, partial header,
 * partial payload. */
static void test_event_details(void)
{
    uint8_t b[64];
    chorus_ws_decoder d;
    chorus_ws_event ev;
    size_t used, n = frame(b, 1, CHORUS_WS_OP_TEXT, "0123456789", 10, KEY);

    chorus_ws_decoder_init(&d, CHORUS_WS_SERVER, 0);
    /* Partial header: nothing consumed. */
    for (size_t k = 0; k < 6; k++) {
        chorus_ws_decode(&d, b, k, &used, &ev);
        CHECK_EQ_INT(ev.type, CHORUS_WS_EV_NEED_MORE);
        CHECK_EQ_INT(used, 0);
    }
    /* Header + 3 payload bytes: a partial DATA chunk, unmasked in place. */
    chorus_ws_decode(&d, b, 9, &used, &ev);
    CHECK_EQ_INT(ev.type, CHORUS_WS_EV_DATA);
    CHECK_EQ_INT(used, 9);
    CHECK_EQ_INT(ev.len, 3);
    CHECK_EQ_INT(ev.fin, 0);
    CHECK_EQ_INT(ev.opcode, CHORUS_WS_OP_TEXT);
    CHECK(ev.data == b + 6 && memcmp(ev.data, "012", 3) == 0);
    /* Nothing new: NEED_MORE. */
    chorus_ws_decode(&d, b + 9, 0, &used, &ev);
    CHECK_EQ_INT(ev.type, CHORUS_WS_EV_NEED_MORE);
    CHECK_EQ_INT(used, 0);
    /* The rest (mask position carried over). */
    chorus_ws_decode(&d, b + 9, n - 9, &used, &ev);
    CHECK_EQ_INT(ev.type, CHORUS_WS_EV_DATA);
    CHECK_EQ_INT(used, 7);
    CHECK_EQ_INT(ev.fin, 1);
    CHECK(ev.data && memcmp(ev.data, "3456789", 7) == 0);

    /* Header alone of a non-empty frame: header consumed, NEED_MORE. */
    n = frame(b, 1, CHORUS_WS_OP_BINARY, "xy", 2, KEY);
    chorus_ws_decode(&d, b, 6, &used, &ev);
    CHECK_EQ_INT(ev.type, CHORUS_WS_EV_NEED_MORE);
    CHECK_EQ_INT(used, 6);
    chorus_ws_decode(&d, b + 6, 2, &used, &ev);
    CHECK_EQ_INT(ev.type, CHORUS_WS_EV_DATA);
    CHECK_EQ_INT(used, 2);
    CHECK(ev.data && memcmp(ev.data, "xy", 2) == 0);

    /* A partial control frame is not consumed at all, nor unmasked. */
    n = frame(b, 1, CHORUS_WS_OP_PING, "ping!", 5, KEY);
    for (size_t k = 0; k < n; k++) {
        uint8_t before[64];
        memcpy(before, b, n);
        chorus_ws_decode(&d, b, k, &used, &ev);
        CHECK_EQ_INT(ev.type, CHORUS_WS_EV_NEED_MORE);
        CHECK_EQ_INT(used, 0);
        CHECK(memcmp(before, b, n) == 0);
    }
    chorus_ws_decode(&d, b, n, &used, &ev);
    CHECK_EQ_INT(ev.type, CHORUS_WS_EV_CONTROL);
    CHECK_EQ_INT(ev.opcode, CHORUS_WS_OP_PING);
    CHECK_EQ_INT(used, n);
    CHECK(ev.len == 5 && ev.data && memcmp(ev.data, "ping!", 5) == 0);
}

static void test_masking_rules(void)
{
    uint8_t b[64];
    size_t n;

    /* Server role: unmasked frame rejected after its first 2 bytes. */
    n = frame(b, 1, CHORUS_WS_OP_TEXT, "hi", 2, NULL);
    EXPECT(CHORUS_WS_SERVER, 0, b, 2, "E1002;");
    CHECK_EQ_STR(H.reason, "unmasked frame");
    EXPECT(CHORUS_WS_SERVER, 0, b, n, "E1002;");
    n = frame(b, 1, CHORUS_WS_OP_PING, "", 0, NULL);
    EXPECT(CHORUS_WS_SERVER, 0, b, n, "E1002;");
    /* Client role: masked frame rejected. */
    n = frame(b, 1, CHORUS_WS_OP_TEXT, "hi", 2, KEY);
    EXPECT(CHORUS_WS_CLIENT, 0, b, 2, "E1002;");
    CHECK_EQ_STR(H.reason, "masked frame");
    n = frame(b, 1, CHORUS_WS_OP_PONG, "", 0, KEY);
    EXPECT(CHORUS_WS_CLIENT, 0, b, n, "E1002;");
}

static void test_rsv_and_opcodes(void)
{
    uint8_t b[64];
    size_t n;

    for (int rsv = 1; rsv < 8; rsv++) {
        n = frame_rsv(b, 1, rsv, CHORUS_WS_OP_TEXT, "x", 1, KEY);
        EXPECT(CHORUS_WS_SERVER, 0, b, 2, "E1002;");
        CHECK_EQ_STR(H.reason, "reserved bits set");
        n = frame_rsv(b, 1, rsv, CHORUS_WS_OP_PING, "", 0, NULL);
        EXPECT(CHORUS_WS_CLIENT, 0, b, n, "E1002;");
    }
    for (int op = 3; op <= 0xF; op++) {
        if (op >= 8 && op <= 0xA)
            continue;
        n = frame(b, 1, op, "", 0, KEY);
        EXPECT(CHORUS_WS_SERVER, 0, b, 2, "E1002;");
        CHECK_EQ_STR(H.reason, "reserved opcode");
        n = frame(b, 0, op, "abc", 3, NULL);
        EXPECT(CHORUS_WS_CLIENT, 0, b, n, "E1002;");
    }
}

static void test_control_rules(void)
{
    uint8_t b[300], payload[126];
    size_t n;

    memset(payload, 'p', sizeof(payload));
    /* Control frames must not be fragmented. */
    n = frame(b, 0, CHORUS_WS_OP_PING, "", 0, KEY);
    EXPECT(CHORUS_WS_SERVER, 0, b, 2, "E1002;");
    CHECK_EQ_STR(H.reason, "fragmented control frame");
    n = frame(b, 0, CHORUS_WS_OP_CLOSE, "", 0, NULL);
    EXPECT(CHORUS_WS_CLIENT, 0, b, n, "E1002;");
    /* 125 bytes OK, 126 rejected as soon as the length byte is seen. */
    n = frame(b, 1, CHORUS_WS_OP_PING, payload, 125, KEY);
    EXPECT(CHORUS_WS_SERVER, 0, b, n, "C9;");
    CHECK_EQ_INT(H.ctl_len, 125);
    CHECK(memcmp(H.ctl, payload, 125) == 0);
    n = frame(b, 1, CHORUS_WS_OP_PONG, payload, 126, KEY);
    EXPECT(CHORUS_WS_SERVER, 0, b, 2, "E1002;");
    CHECK_EQ_STR(H.reason, "control frame too long");
    n = frame(b, 1, CHORUS_WS_OP_PING, payload, 126, NULL);
    EXPECT(CHORUS_WS_CLIENT, 0, b, n, "E1002;");
    /* Pong and empty ping. */
    n = frame(b, 1, CHORUS_WS_OP_PONG, "x", 1, KEY);
    n += frame(b + n, 1, CHORUS_WS_OP_PING, "", 0, KEY);
    EXPECT(CHORUS_WS_SERVER, 0, b, n, "C10;C9;");
}

static void test_length_rules(void)
{
    uint8_t b[32];

    /* 16-bit length must be >= 126. */
    const uint8_t l16_bad[] = {0x82, 126, 0x00, 125};
    const uint8_t l16_ok[] = {0x82, 126, 0x00, 126};
    EXPECT(CHORUS_WS_CLIENT, 0, l16_bad, sizeof(l16_bad), "E1002;");
    CHECK_EQ_STR(H.reason, "non-minimal length");
    h_init(CHORUS_WS_CLIENT, 0);
    memcpy(b, l16_ok, sizeof(l16_ok));
    h_feed(b, sizeof(l16_ok), 1);
    CHECK_EQ_STR(H.log, "");
    /* 64-bit length must be > 65535 ... */
    const uint8_t l64_bad[] = {0x82, 127, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    const uint8_t l64_zero[] = {0x82, 127, 0, 0, 0, 0, 0, 0, 0, 0};
    const uint8_t l64_ok[] = {0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0};
    EXPECT(CHORUS_WS_CLIENT, 0, l64_bad, sizeof(l64_bad), "E1002;");
    CHECK_EQ_STR(H.reason, "non-minimal length");
    EXPECT(CHORUS_WS_CLIENT, 0, l64_zero, sizeof(l64_zero), "E1002;");
    EXPECT(CHORUS_WS_CLIENT, 0, l64_ok, sizeof(l64_ok), "");
    /* ... with the top bit clear. */
    const uint8_t l64_top[] = {0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0};
    EXPECT(CHORUS_WS_CLIENT, 0, l64_top, sizeof(l64_top), "E1002;");
    CHECK_EQ_STR(H.reason, "length top bit set");
    /* Masked, server role: same rules. */
    const uint8_t m16_bad[] = {0x81, 0x80 | 126, 0x00, 0x05, 1, 2, 3, 4};
    EXPECT(CHORUS_WS_SERVER, 0, m16_bad, sizeof(m16_bad), "E1002;");
    /* Huge but legal length with no limit: accepted, data streamed. */
    const uint8_t huge[] = {0x82, 127,  0x7F, 0xFF, 0xFF, 0xFF,
                            0xFF, 0xFF, 0xFF, 0xFF, 'a',  'b'};
    EXPECT(CHORUS_WS_CLIENT, 0, huge, sizeof(huge), "");
    CHECK_EQ_INT(H.msglen, 2);
}

static void test_fragmentation(void)
{
    uint8_t b[512];
    size_t n;

    /* Text in three fragments with a ping, a pong and a close between. */
    n = frame(b, 0, CHORUS_WS_OP_TEXT, "Hel", 3, KEY);
    n += frame(b + n, 1, CHORUS_WS_OP_PING, "p1", 2, KEY);
    n += frame(b + n, 0, CHORUS_WS_OP_CONT, "l", 1, KEY);
    n += frame(b + n, 1, CHORUS_WS_OP_PONG, "", 0, KEY);
    n += frame(b + n, 1, CHORUS_WS_OP_CONT, "o", 1, KEY);
    n += frame(b + n, 1, CHORUS_WS_OP_BINARY, "next", 4, KEY);
    EXPECT(CHORUS_WS_SERVER, 0, b, n, "C9;C10;M1:5;M2:4;");
    CHECK(H.msglen == 9 && memcmp(H.msg, "Hellonext", 9) == 0);
    /* Empty fragments. */
    n = frame(b, 0, CHORUS_WS_OP_BINARY, "", 0, NULL);
    n += frame(b + n, 0, CHORUS_WS_OP_CONT, "ab", 2, NULL);
    n += frame(b + n, 1, CHORUS_WS_OP_CONT, "", 0, NULL);
    EXPECT(CHORUS_WS_CLIENT, 0, b, n, "M2:2;");
    /* Continuation without an open message. */
    n = frame(b, 1, CHORUS_WS_OP_CONT, "x", 1, KEY);
    EXPECT(CHORUS_WS_SERVER, 0, b, 2, "E1002;");
    CHECK_EQ_STR(H.reason, "continuation without message");
    n = frame(b, 1, CHORUS_WS_OP_TEXT, "a", 1, KEY);
    n += frame(b + n, 1, CHORUS_WS_OP_CONT, "b", 1, KEY);
    EXPECT(CHORUS_WS_SERVER, 0, b, n, "M1:1;E1002;");
    /* New TEXT/BINARY while a message is open. */
    n = frame(b, 0, CHORUS_WS_OP_TEXT, "a", 1, KEY);
    n += frame(b + n, 1, CHORUS_WS_OP_TEXT, "b", 1, KEY);
    EXPECT(CHORUS_WS_SERVER, 0, b, n, "E1002;");
    CHECK_EQ_STR(H.reason, "message already open");
    n = frame(b, 0, CHORUS_WS_OP_BINARY, "a", 1, NULL);
    n += frame(b + n, 1, CHORUS_WS_OP_PING, "", 0, NULL);
    n += frame(b + n, 0, CHORUS_WS_OP_BINARY, "b", 1, NULL);
    EXPECT(CHORUS_WS_CLIENT, 0, b, n, "C9;E1002;");
}

/* Decodes all of buf[0..n) with one decoder; returns whether a message
 * or frame is still open after it. */
static int busy_after(chorus_ws_decoder *d, uint8_t *buf, size_t n)
{
    size_t used = 0, consumed;
    chorus_ws_event ev;

    do {
        chorus_ws_decode(d, buf + used, n - used, &consumed, &ev);
        used += consumed;
    } while (ev.type != CHORUS_WS_EV_NEED_MORE && used < n);
    return chorus_ws_decoder_busy(d);
}

static void test_busy(void)
{
    chorus_ws_decoder d;
    uint8_t b[64];
    size_t n;

    chorus_ws_decoder_init(&d, CHORUS_WS_SERVER, 0);
    CHECK(!chorus_ws_decoder_busy(&d));
    n = frame(b, 1, CHORUS_WS_OP_TEXT, "hello", 5, KEY);
    CHECK(busy_after(&d, b, n - 2)); /* payload pending */
    CHECK(!busy_after(&d, b + n - 2, 2));
    n = frame(b, 0, CHORUS_WS_OP_TEXT, "he", 2, KEY);
    CHECK(busy_after(&d, b, n)); /* first fragment only */
    n = frame(b, 1, CHORUS_WS_OP_PING, "", 0, KEY);
    CHECK(busy_after(&d, b, n)); /* a ping between fragments */
    n = frame(b, 1, CHORUS_WS_OP_CONT, "llo", 3, KEY);
    CHECK(!busy_after(&d, b, n));
}

static void test_max_message(void)
{
    uint8_t b[512], big[200];
    size_t n;

    memset(big, 'z', sizeof(big));
    /* Exactly the limit is fine, one more is 1009. */
    n = frame(b, 1, CHORUS_WS_OP_BINARY, big, 10, KEY);
    EXPECT(CHORUS_WS_SERVER, 10, b, n, "M2:10;");
    n = frame(b, 1, CHORUS_WS_OP_BINARY, big, 11, KEY);
    EXPECT(CHORUS_WS_SERVER, 10, b, n, "E1009;");
    CHECK_EQ_STR(H.reason, "message too big");
    /* Reported from the header alone, before any payload arrives. */
    EXPECT(CHORUS_WS_SERVER, 10, b, 6, "E1009;");
    n = frame(b, 1, CHORUS_WS_OP_TEXT, big, 200, NULL);
    EXPECT(CHORUS_WS_CLIENT, 199, b, 4, "E1009;");
    /* Across fragments: 6 + 4 fine, 6 + 5 fails at the second header. */
    n = frame(b, 0, CHORUS_WS_OP_TEXT, big, 6, KEY);
    n += frame(b + n, 1, CHORUS_WS_OP_CONT, big, 4, KEY);
    EXPECT(CHORUS_WS_SERVER, 10, b, n, "M1:10;");
    n = frame(b, 0, CHORUS_WS_OP_TEXT, big, 6, KEY);
    size_t second = n;
    n += frame(b + n, 1, CHORUS_WS_OP_CONT, big, 5, KEY);
    EXPECT(CHORUS_WS_SERVER, 10, b, second + 6, "E1009;");
    /* The count restarts with each message; control frames don't count. */
    n = frame(b, 1, CHORUS_WS_OP_BINARY, big, 10, KEY);
    n += frame(b + n, 1, CHORUS_WS_OP_PING, big, 20, KEY);
    n += frame(b + n, 1, CHORUS_WS_OP_TEXT, big, 10, KEY);
    EXPECT(CHORUS_WS_SERVER, 10, b, n, "M2:10;C9;M1:10;");
}

static void test_text_utf8(void)
{
    uint8_t b[512], text[100];
    size_t n;

    /* A bad byte anywhere in a 100-byte text frame: no error before it
     * arrives, 1007 as soon as it does (mid-frame). */
    for (size_t bad = 0; bad < sizeof(text); bad += 9) {
        memset(text, 'a', sizeof(text));
        text[bad] = 0xFF;
        n = frame(b, 1, CHORUS_WS_OP_TEXT, text, sizeof(text), KEY);
        EXPECT(CHORUS_WS_SERVER, 0, b, 6 + bad, "");
        EXPECT(CHORUS_WS_SERVER, 0, b, 6 + bad + 1, "E1007;");
        CHECK_EQ_STR(H.reason, "invalid utf-8");
    }
    /* Surrogate fails at its second byte. */
    n = frame(b, 1, CHORUS_WS_OP_TEXT, "ab\xED\xA0\x80", 5, KEY);
    EXPECT(CHORUS_WS_SERVER, 0, b, 6 + 3, "");
    EXPECT(CHORUS_WS_SERVER, 0, b, 6 + 4, "E1007;");
    /* A character split across fragments is fine. */
    n = frame(b, 0, CHORUS_WS_OP_TEXT, "\xE2\x82", 2, KEY);
    n += frame(b + n, 1, CHORUS_WS_OP_PING, "", 0, KEY);
    n += frame(b + n, 1, CHORUS_WS_OP_CONT, "\xAC", 1, KEY);
    EXPECT(CHORUS_WS_SERVER, 0, b, n, "C9;M1:3;");
    CHECK(memcmp(H.msg, "\xE2\x82\xAC", 3) == 0);
    /* ... and a bad continuation in the next fragment is caught. */
    n = frame(b, 0, CHORUS_WS_OP_TEXT, "\xE2\x82", 2, KEY);
    n += frame(b + n, 1, CHORUS_WS_OP_CONT, "A", 1, KEY);
    EXPECT(CHORUS_WS_SERVER, 0, b, n, "E1007;");
    /* Text ending mid-character at FIN: 1007. */
    n = frame(b, 1, CHORUS_WS_OP_TEXT, "ok\xE2\x82", 4, KEY);
    EXPECT(CHORUS_WS_SERVER, 0, b, n, "E1007;");
    CHECK_EQ_STR(H.reason, "truncated utf-8 at end of message");
    n = frame(b, 0, CHORUS_WS_OP_TEXT, "\xF0\x9F", 2, NULL);
    n += frame(b + n, 1, CHORUS_WS_OP_CONT, "", 0, NULL);
    EXPECT(CHORUS_WS_CLIENT, 0, b, n, "E1007;");
    /* Validation restarts with each message. */
    n = frame(b, 1, CHORUS_WS_OP_TEXT, "\xC3\xA9", 2, KEY);
    n += frame(b + n, 1, CHORUS_WS_OP_TEXT, "\xC3\xA9", 2, KEY);
    EXPECT(CHORUS_WS_SERVER, 0, b, n, "M1:2;M1:2;");
    /* Binary messages are not validated. */
    n = frame(b, 1, CHORUS_WS_OP_BINARY, "\xFF\xED\xA0", 3, KEY);
    EXPECT(CHORUS_WS_SERVER, 0, b, n, "M2:3;");
}

static void test_close_frames(void)
{
    uint8_t b[300], p[130];
    size_t n;

    n = frame(b, 1, CHORUS_WS_OP_CLOSE, "", 0, KEY);
    EXPECT(CHORUS_WS_SERVER, 0, b, n, "C8:1005;");
    n = frame(b, 1, CHORUS_WS_OP_CLOSE, "\x03", 1, KEY);
    EXPECT(CHORUS_WS_SERVER, 0, b, n, "E1002;");
    CHECK_EQ_STR(H.reason, "close payload of 1 byte");
    n = frame(b, 1, CHORUS_WS_OP_CLOSE,
              "\x03\xE8"
              "bye",
              5, KEY);
    EXPECT(CHORUS_WS_SERVER, 0, b, n, "C8:1000;");
    CHECK(H.ctl_len == 5 && memcmp(H.ctl + 2, "bye", 3) == 0);
    n = frame(b, 1, CHORUS_WS_OP_CLOSE, "\x0B\xB8", 2, NULL);
    EXPECT(CHORUS_WS_CLIENT, 0, b, n, "C8:3000;");

    static const unsigned good[] = {1000, 1001, 1002, 1003, 1007, 1008,
                                    1009, 1010, 1011, 1012, 1013, 1014,
                                    3000, 3999, 4000, 4999};
    static const unsigned bad[] = {0,    1,    999,  1004, 1005, 1006, 1015,
                                   1016, 1100, 2000, 2999, 5000, 6000, 65535};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char want[32];
        CHECK_EQ_INT(chorus_ws_close_code_valid(good[i]), 1);
        p[0] = (uint8_t)(good[i] >> 8), p[1] = (uint8_t)good[i];
        n = frame(b, 1, CHORUS_WS_OP_CLOSE, p, 2, KEY);
        snprintf(want, sizeof(want), "C8:%u;", good[i]);
        EXPECT(CHORUS_WS_SERVER, 0, b, n, want);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_EQ_INT(chorus_ws_close_code_valid(bad[i]), 0);
        p[0] = (uint8_t)(bad[i] >> 8), p[1] = (uint8_t)bad[i];
        n = frame(b, 1, CHORUS_WS_OP_CLOSE, p, 2, KEY);
        EXPECT(CHORUS_WS_SERVER, 0, b, n, "E1002;");
        CHECK_EQ_STR(H.reason, "invalid close code");
    }
    /* Reason must be UTF-8. */
    n = frame(b, 1, CHORUS_WS_OP_CLOSE, "\x03\xE8\xCE\xBA\xE1\xBD\xB9", 7, KEY);
    EXPECT(CHORUS_WS_SERVER, 0, b, n, "C8:1000;");
    n = frame(b, 1, CHORUS_WS_OP_CLOSE, "\x03\xE8\xCE\xBA\xED\xA0\x80", 7, KEY);
    EXPECT(CHORUS_WS_SERVER, 0, b, n, "E1007;");
    n = frame(b, 1, CHORUS_WS_OP_CLOSE, "\x03\xE8\xCE", 3, KEY);
    EXPECT(CHORUS_WS_SERVER, 0, b, n, "E1007;");
    /* Longest close: code + 123 bytes of reason. */
    memset(p, 'r', sizeof(p));
    p[0] = 0x03, p[1] = 0xE8;
    n = frame(b, 1, CHORUS_WS_OP_CLOSE, p, 125, KEY);
    EXPECT(CHORUS_WS_SERVER, 0, b, n, "C8:1000;");
    CHECK_EQ_INT(H.ctl_len, 125);
}

static void test_stays_failed(void)
{
    uint8_t b[64];
    chorus_ws_decoder d;
    chorus_ws_event ev;
    size_t used, n;

    chorus_ws_decoder_init(&d, CHORUS_WS_SERVER, 0);
    n = frame(b, 1, CHORUS_WS_OP_TEXT, "\xFF", 1, KEY);
    chorus_ws_decode(&d, b, n, &used, &ev);
    CHECK_EQ_INT(ev.type, CHORUS_WS_EV_ERROR);
    CHECK_EQ_INT(ev.close_code, 1007);
    n = frame(b, 1, CHORUS_WS_OP_TEXT, "fine", 4, KEY);
    chorus_ws_decode(&d, b, n, &used, &ev);
    CHECK_EQ_INT(ev.type, CHORUS_WS_EV_ERROR);
    CHECK_EQ_INT(ev.close_code, 1007);
    CHECK_EQ_INT(used, 0);
    CHECK(ev.reason != NULL);
    chorus_ws_decode(&d, b, 0, &used, &ev);
    CHECK_EQ_INT(ev.type, CHORUS_WS_EV_ERROR);
}

/* ---- encoder ------------------------------------------------------------ */

static void test_write_header(void)
{
    uint8_t h[CHORUS_WS_MAX_HEADER];
    static const struct {
        uint64_t len;
        size_t hlen;
    } cases[] = {{0, 2},     {125, 2},    {126, 4},
                 {65535, 4}, {65536, 10}, {0x7FFFFFFFFFFFFFFFULL, 10}};

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK_EQ_INT(chorus_ws_write_header(h, 1, 1, cases[i].len, NULL),
                     cases[i].hlen);
        CHECK_EQ_INT(chorus_ws_write_header(h, 1, 1, cases[i].len, KEY),
                     cases[i].hlen + 4);
        CHECK(memcmp(h + cases[i].hlen, KEY, 4) == 0);
        CHECK_EQ_INT(h[1] & 0x80, 0x80);
    }
    chorus_ws_write_header(h, 1, CHORUS_WS_OP_TEXT, 5, NULL);
    CHECK(h[0] == 0x81 && h[1] == 5);
    chorus_ws_write_header(h, 0, CHORUS_WS_OP_BINARY, 300, NULL);
    CHECK(h[0] == 0x02 && h[1] == 126 && h[2] == 0x01 && h[3] == 0x2C);
    chorus_ws_write_header(h, 1, CHORUS_WS_OP_CLOSE, 0x0102030405ULL, NULL);
    CHECK(h[0] == 0x88 && h[1] == 127 && h[2] == 0 && h[5] == 0x01 &&
          h[9] == 0x05);
}

static void test_mask(void)
{
    uint8_t a[100], b[100];

    for (size_t i = 0; i < sizeof(a); i++)
        a[i] = (uint8_t)(i * 7 + 3);
    memcpy(b, a, sizeof(a));
    chorus_ws_mask(b, sizeof(b), KEY, 0);
    for (size_t i = 0; i < sizeof(a); i++)
        CHECK_EQ_INT(b[i], a[i] ^ KEY[i & 3]);
    /* Masking in pieces, with pos carried, equals masking at once. */
    for (size_t cut = 0; cut <= 20; cut++) {
        uint8_t c[100];
        memcpy(c, a, sizeof(a));
        chorus_ws_mask(c, cut, KEY, 0);
        chorus_ws_mask(c + cut, 13, KEY, cut);
        chorus_ws_mask(c + cut + 13, sizeof(c) - cut - 13, KEY, cut + 13);
        CHECK(memcmp(b, c, sizeof(c)) == 0);
    }
    /* Involution. */
    chorus_ws_mask(b, sizeof(b), KEY, 0);
    CHECK(memcmp(a, b, sizeof(a)) == 0);
    chorus_ws_mask(b, 0, KEY, 3);
    CHECK(memcmp(a, b, sizeof(a)) == 0);
}

static void test_close_payload(void)
{
    uint8_t out[125];
    char reason[200];
    size_t n;

    n = chorus_ws_close_payload(out, 1000, "bye");
    CHECK(n == 5 && out[0] == 0x03 && out[1] == 0xE8 &&
          memcmp(out + 2, "bye", 3) == 0);
    CHECK_EQ_INT(chorus_ws_close_payload(out, 1001, NULL), 2);
    CHECK_EQ_INT(chorus_ws_close_payload(out, 1001, ""), 2);
    CHECK_EQ_INT(chorus_ws_close_payload(out, 1005, "x"), 0);
    /* Long ASCII: truncated to 123 bytes of reason. */
    memset(reason, 'a', sizeof(reason));
    reason[199] = 0;
    n = chorus_ws_close_payload(out, 1008, reason);
    CHECK_EQ_INT(n, 125);
    /* Exactly 123 bytes: kept whole. */
    reason[123] = 0;
    CHECK_EQ_INT(chorus_ws_close_payload(out, 1008, reason), 125);
    /* Multi-byte characters straddling the cut: cut before them. */
    for (size_t shift = 0; shift < 4; shift++) {
        memset(reason, 'a', sizeof(reason));
        size_t i = 120 + shift;
        memcpy(reason + i, "\xF0\x9F\x98\x80\xE2\x82\xAC", 7);
        reason[i + 7] = 0;
        n = chorus_ws_close_payload(out, 1000, reason);
        CHECK(n <= 125);
        CHECK_EQ_INT(chorus_utf8_valid(out + 2, n - 2), 1);
        CHECK(n >= 125 - 3);
        CHECK(memcmp(out + 2, reason, n - 2) == 0);
    }
    /* The result decodes as a valid close frame. */
    uint8_t b[200];
    size_t fl = frame(b, 1, CHORUS_WS_OP_CLOSE, out, n, KEY);
    EXPECT(CHORUS_WS_SERVER, 0, b, fl, "C8:1000;");
}

/* Encode in one role, decode in the other, whole and byte by byte. */
static void test_round_trip(void)
{
    static const uint64_t lens[] = {0, 1, 125, 126, 127, 65535, 65536};
    static uint8_t payload[65536], wire[65536 + 14];

    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 31 + (i >> 8));
    for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
        size_t len = (size_t)lens[li];
        char want[32];
        snprintf(want, sizeof(want), "M2:%zu;", len);
        for (int masked = 0; masked < 2; masked++) {
            const uint8_t *key = masked ? KEY : NULL;
            chorus_ws_role role = masked ? CHORUS_WS_SERVER : CHORUS_WS_CLIENT;
            size_t n = frame(wire, 1, CHORUS_WS_OP_BINARY, payload, len, key);
            CHECK_EQ_INT(n, len +
                                (len < 126     ? 2
                                 : len < 65536 ? 4
                                               : 10) +
                                (masked ? 4 : 0));
            EXPECT(role, 0, wire, n, want);
            CHECK_EQ_INT(H.msglen, len);
            CHECK(memcmp(H.msg, payload, len) == 0);
            /* The limit equal to the length passes; one less fails. */
            EXPECT(role, len ? len : 1, wire, n, want);
            if (len > 1)
                EXPECT(role, len - 1, wire, n, "E1009;");
        }
    }
    /* Text round trip: a fragmented UTF-8 message, split mid-character. */
    const char *s = "Gr\xC3\xBC\xC3\x9F"
                    "e \xF0\x9F\x98\x80!";
    size_t sl = strlen(s), n = 0;
    n += frame(wire, 0, CHORUS_WS_OP_TEXT, s, 3, KEY);
    n += frame(wire + n, 0, CHORUS_WS_OP_CONT, s + 3, 6, KEY);
    n += frame(wire + n, 1, CHORUS_WS_OP_CONT, s + 9, sl - 9, KEY);
    snprintf((char *)payload, 32, "M1:%zu;", sl);
    EXPECT(CHORUS_WS_SERVER, 0, wire, n, (const char *)payload);
    CHECK(memcmp(H.msg, s, sl) == 0);
}

int main(void)
{
    test_single_frames();
    test_event_details();
    test_masking_rules();
    test_rsv_and_opcodes();
    test_control_rules();
    test_length_rules();
    test_fragmentation();
    test_busy();
    test_max_message();
    test_text_utf8();
    test_close_frames();
    test_stays_failed();
    test_write_header();
    test_mask();
    test_close_payload();
    test_round_trip();
    return check_report("test_ws_frame");
}
