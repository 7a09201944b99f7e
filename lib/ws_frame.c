/* RFC 6455 frame decoder and encoder. Pure: no I/O, no allocation.
 *
 * The decoder is strict (Autobahn testsuite cases 1-7 and 9): every rule
 * violation is reported as an ERROR event carrying the close code to send
 * and a short static reason, and the decoder then stays failed.
 *
 * Data frames are delivered as they arrive: one DATA event per call with
 * whatever part of the frame's payload is in the buffer (the header is
 * consumed together with the first chunk), so a bad UTF-8 byte in a TEXT
 * message is reported as soon as it is seen. Control frames are delivered
 * whole: nothing of one is consumed until its header and payload (at most
 * 2 + 4 + 125 bytes) are all in the buffer. */
#include "chorus/ws_frame.h"

#include <string.h>

#define MAX_CONTROL_PAYLOAD 125

void chorus_ws_decoder_init(chorus_ws_decoder *d, chorus_ws_role role,
                            uint64_t max_message)
{
    memset(d, 0, sizeof(*d));
    d->role = role;
    d->max_message = max_message;
}

static int is_control(int opcode)
{
    return opcode >= 0x8;
}

static int opcode_known(int opcode)
{
    return opcode <= CHORUS_WS_OP_BINARY ||
           (opcode >= CHORUS_WS_OP_CLOSE && opcode <= CHORUS_WS_OP_PONG);
}

/* Fills an ERROR event and marks the decoder failed; d->failed keeps the
 * close code so that later calls repeat it. */
static void fail(chorus_ws_decoder *d, chorus_ws_event *ev, uint16_t code,
                 const char *reason)
{
    d->failed = code;
    ev->type = CHORUS_WS_EV_ERROR;
    ev->close_code = code;
    ev->reason = reason;
}

static uint64_t read_be(const uint8_t *p, int n)
{
    uint64_t v = 0;

    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Checks what the first two header bytes alone can tell. Returns NULL if
 * they are acceptable, else the reason (all such errors are 1002). */
static const char *check_first_bytes(const chorus_ws_decoder *d, uint8_t b0,
                                     uint8_t b1)
{
    int fin = b0 >> 7, opcode = b0 & 0x0F, masked = b1 >> 7;

    /* RSV1 is the "Per-Message Compressed" bit of permessage-deflate
     * (RFC 7692 section 6): only on the first frame of a data message, and
     * only once the extension is negotiated. RSV2 and RSV3 stay reserved. */
    if ((b0 & 0x30) || ((b0 & 0x40) && !d->allow_rsv1))
        return "reserved bits set";
    if (!opcode_known(opcode))
        return "reserved opcode";
    if ((b0 & 0x40) && is_control(opcode))
        return "rsv1 on control frame";
    if ((b0 & 0x40) && opcode == CHORUS_WS_OP_CONT)
        return "rsv1 on continuation frame";
    if (d->role == CHORUS_WS_SERVER && !masked)
        return "unmasked frame";
    if (d->role == CHORUS_WS_CLIENT && masked)
        return "masked frame";
    if (is_control(opcode)) {
        if (!fin)
            return "fragmented control frame";
        if ((b1 & 0x7F) > MAX_CONTROL_PAYLOAD)
            return "control frame too long";
        return NULL;
    }
    if (opcode == CHORUS_WS_OP_CONT && !d->msg_opcode)
        return "continuation without message";
    if (opcode != CHORUS_WS_OP_CONT && d->msg_opcode)
        return "message already open";
    return NULL;
}

/* Validates a whole, unmasked control frame and fills the CONTROL event. */
static void deliver_control(chorus_ws_decoder *d, int opcode, uint8_t *p,
                            size_t n, chorus_ws_event *ev)
{
    if (opcode == CHORUS_WS_OP_CLOSE) {
        if (n == 0) {
            ev->close_code = CHORUS_WS_CLOSE_NO_STATUS;
        } else if (n == 1) {
            fail(d, ev, CHORUS_WS_CLOSE_PROTOCOL, "close payload of 1 byte");
            return;
        } else {
            unsigned code = (unsigned)read_be(p, 2);
            if (!chorus_ws_close_code_valid(code)) {
                fail(d, ev, CHORUS_WS_CLOSE_PROTOCOL, "invalid close code");
                return;
            }
            if (!chorus_utf8_valid(p + 2, n - 2)) {
                fail(d, ev, CHORUS_WS_CLOSE_BAD_DATA,
                     "invalid utf-8 in close reason");
                return;
            }
            ev->close_code = (uint16_t)code;
        }
    }
    ev->type = CHORUS_WS_EV_CONTROL;
    ev->opcode = opcode;
    ev->data = p;
    ev->len = n;
    ev->fin = 1;
}

/* RFC 6455 5.2: the length in the fewest bytes, and the top bit of a
 * 64-bit length clear. Returns what is wrong, or NULL. */
static const char *check_length(size_t lenlen, uint64_t plen)
{
    if (lenlen == 2 && plen < 126)
        return "non-minimal length";
    if (lenlen == 8 && (plen >> 63))
        return "length top bit set";
    if (lenlen == 8 && plen <= 0xFFFF)
        return "non-minimal length";
    return NULL;
}

/* Sets d up to take the payload of the data frame whose first byte is b0
 * (a message's first frame or a continuation), of plen bytes, masked with
 * mask (NULL: not masked). 0, or -1 after an ERROR event when the message
 * would grow past max_message. */
static int begin_data_frame(chorus_ws_decoder *d, uint8_t b0,
                            const uint8_t *mask, uint64_t plen,
                            chorus_ws_event *ev)
{
    int opcode = b0 & 0x0F;

    if (d->max_message && plen > d->max_message - d->msg_len) {
        fail(d, ev, CHORUS_WS_CLOSE_TOO_BIG, "message too big");
        return -1;
    }
    if (opcode != CHORUS_WS_OP_CONT) {
        d->msg_opcode = opcode;
        d->msg_len = 0;
        d->msg_compressed = (b0 & 0x40) != 0;
        chorus_utf8_init(&d->utf8);
    }
    d->in_frame = 1;
    d->frame_opcode = opcode;
    d->frame_fin = b0 >> 7;
    d->frame_masked = mask != NULL;
    if (mask)
        memcpy(d->mask, mask, 4);
    d->frame_left = plen;
    d->mask_pos = 0;
    return 0;
}

/* Parses a frame header at buf. Returns the header length, 0 if more bytes
 * are needed, or -1 after filling an ERROR event. Control frames are
 * delivered here when complete (the return value then covers the payload
 * too and ev is a CONTROL event); data frames leave d->in_frame set. */
static long parse_header(chorus_ws_decoder *d, uint8_t *buf, size_t len,
                         chorus_ws_event *ev)
{
    const char *bad;
    uint8_t b0, b1;
    size_t hlen, lenlen;
    uint64_t plen;
    int opcode, masked;

    if (len < 2)
        return 0;
    b0 = buf[0];
    b1 = buf[1];
    bad = check_first_bytes(d, b0, b1);
    if (bad) {
        fail(d, ev, CHORUS_WS_CLOSE_PROTOCOL, bad);
        return -1;
    }
    opcode = b0 & 0x0F;
    masked = b1 >> 7;
    plen = b1 & 0x7F;
    lenlen = plen == 126 ? 2 : plen == 127 ? 8 : 0;
    hlen = 2 + lenlen + (masked ? 4 : 0);
    if (len < hlen)
        return 0;
    if (lenlen) {
        plen = read_be(buf + 2, (int)lenlen);
        bad = check_length(lenlen, plen);
        if (bad) {
            fail(d, ev, CHORUS_WS_CLOSE_PROTOCOL, bad);
            return -1;
        }
    }
    if (is_control(opcode)) {
        if (len - hlen < plen)
            return 0;
        if (masked)
            chorus_ws_mask(buf + hlen, (size_t)plen, buf + hlen - 4, 0);
        deliver_control(d, opcode, buf + hlen, (size_t)plen, ev);
        return ev->type == CHORUS_WS_EV_ERROR ? -1 : (long)(hlen + plen);
    }
    if (begin_data_frame(d, b0, masked ? buf + hlen - 4 : NULL, plen, ev))
        return -1;
    return (long)hlen;
}

/* Delivers the part of the current data frame's payload that is in
 * buf[0..len) as a DATA event. Returns 0, or -1 after an ERROR event. */
static int deliver_data(chorus_ws_decoder *d, uint8_t *buf, size_t len,
                        size_t *used, chorus_ws_event *ev)
{
    size_t n = len;
    int opcode = d->msg_opcode;
    int compressed = d->msg_compressed;
    /* Compressed text is UTF-8 only once inflated: the caller checks. */
    int check_utf8 = opcode == CHORUS_WS_OP_TEXT && !compressed;

    if ((uint64_t)n > d->frame_left)
        n = (size_t)d->frame_left;
    if (d->frame_masked)
        chorus_ws_mask(buf, n, d->mask, d->mask_pos);
    if (check_utf8 && chorus_utf8_feed(&d->utf8, buf, n)) {
        fail(d, ev, CHORUS_WS_CLOSE_BAD_DATA, "invalid utf-8");
        return -1;
    }
    d->frame_left -= n;
    d->mask_pos += n;
    d->msg_len += n;
    *used = n;
    ev->fin = 0;
    if (d->frame_left == 0) {
        d->in_frame = 0;
        if (d->frame_fin) {
            if (check_utf8 && !chorus_utf8_complete(&d->utf8)) {
                fail(d, ev, CHORUS_WS_CLOSE_BAD_DATA,
                     "truncated utf-8 at end of message");
                return -1;
            }
            ev->fin = 1;
            d->msg_opcode = 0;
            d->msg_len = 0;
            d->msg_compressed = 0;
        }
    }
    ev->type = CHORUS_WS_EV_DATA;
    ev->opcode = opcode;
    ev->compressed = compressed;
    ev->data = buf;
    ev->len = n;
    return 0;
}

void chorus_ws_decode(chorus_ws_decoder *d, uint8_t *buf, size_t len,
                      size_t *consumed, chorus_ws_event *ev)
{
    size_t off = 0, used = 0;

    memset(ev, 0, sizeof(*ev));
    *consumed = 0;
    if (d->failed) {
        fail(d, ev, (uint16_t)d->failed, "decoder failed earlier");
        return;
    }
    if (!d->in_frame) {
        long h = parse_header(d, buf, len, ev);
        if (h <= 0)
            return; /* NEED_MORE (ev zeroed) or ERROR */
        if (ev->type == CHORUS_WS_EV_CONTROL) {
            *consumed = (size_t)h;
            return;
        }
        off = (size_t)h;
    }
    /* A data frame is open. Report its payload, or NEED_MORE if none of it
     * is here yet (an empty frame still gets its DATA event). */
    if (off == len && d->frame_left > 0) {
        *consumed = off;
        ev->type = CHORUS_WS_EV_NEED_MORE;
        return;
    }
    if (deliver_data(d, buf + off, len - off, &used, ev) == 0)
        *consumed = off + used;
}

size_t chorus_ws_write_header(uint8_t out[CHORUS_WS_MAX_HEADER], int fin,
                              int opcode, uint64_t payload_len,
                              const uint8_t *mask_key)
{
    size_t n = 2;

    out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0F));
    if (payload_len < 126) {
        out[1] = (uint8_t)payload_len;
    } else if (payload_len <= 0xFFFF) {
        out[1] = 126;
        out[2] = (uint8_t)(payload_len >> 8);
        out[3] = (uint8_t)payload_len;
        n = 4;
    } else {
        out[1] = 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(payload_len >> (56 - 8 * i));
        n = 10;
    }
    if (mask_key) {
        out[1] |= 0x80;
        memcpy(out + n, mask_key, 4);
        n += 4;
    }
    return n;
}

size_t chorus_ws_write_header_rsv1(uint8_t out[CHORUS_WS_MAX_HEADER], int fin,
                                   int opcode, uint64_t payload_len,
                                   const uint8_t *mask_key)
{
    size_t n = chorus_ws_write_header(out, fin, opcode, payload_len, mask_key);

    out[0] |= 0x40;
    return n;
}

void chorus_ws_mask(uint8_t *p, size_t len, const uint8_t key[4], uint64_t pos)
{
    uint8_t rot[8];
    uint64_t k;
    size_t i = 0;

    /* Key stream rotated to pos, repeated to a word: XOR 8 bytes a time. */
    for (int j = 0; j < 8; j++)
        rot[j] = key[(pos + (uint64_t)j) & 3];
    memcpy(&k, rot, 8);
    for (; len - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        w ^= k;
        memcpy(p + i, &w, 8);
    }
    for (; i < len; i++)
        p[i] ^= rot[i & 7];
}

int chorus_ws_close_code_valid(unsigned code)
{
    /* 1004 reserved, 1005/1006/1015 never on the wire; 1012-1014 are
     * registered with IANA (restart, try again later, bad gateway). */
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

size_t chorus_ws_close_payload(uint8_t out[125], uint16_t code,
                               const char *reason)
{
    size_t n = reason ? strlen(reason) : 0;

    /* 1005 means "no status": the close frame then has no payload. */
    if (code == 0 || code == CHORUS_WS_CLOSE_NO_STATUS)
        return 0;
    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)code;
    if (n > 123) {
        n = 123;
        /* Back up so the cut does not split a character. */
        while (n > 0 && ((uint8_t)reason[n] & 0xC0) == 0x80)
            n--;
    }
    if (n)
        memcpy(out + 2, reason, n);
    return 2 + n;
}

int chorus_ws_decoder_busy(const chorus_ws_decoder *d)
{
    return d->in_frame || d->msg_opcode != 0;
}
