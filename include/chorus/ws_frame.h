/* RFC 6455 frame codec. The decoder is incremental and pure: it is given
 * bytes, and answers with one event at a time; it never touches a socket.
 * Payload bytes are unmasked in place in the caller's buffer. */
#ifndef CHORUS_WS_FRAME_H
#define CHORUS_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "chorus/utf8.h"

enum {
    CHORUS_WS_OP_CONT = 0x0,
    CHORUS_WS_OP_TEXT = 0x1,
    CHORUS_WS_OP_BINARY = 0x2,
    CHORUS_WS_OP_CLOSE = 0x8,
    CHORUS_WS_OP_PING = 0x9,
    CHORUS_WS_OP_PONG = 0xA,
};

enum {
    CHORUS_WS_CLOSE_NORMAL = 1000,
    CHORUS_WS_CLOSE_GOING_AWAY = 1001,
    CHORUS_WS_CLOSE_PROTOCOL = 1002,
    CHORUS_WS_CLOSE_UNSUPPORTED = 1003,
    CHORUS_WS_CLOSE_NO_STATUS = 1005, /* never sent on the wire */
    CHORUS_WS_CLOSE_BAD_DATA = 1007,
    CHORUS_WS_CLOSE_POLICY = 1008,
    CHORUS_WS_CLOSE_TOO_BIG = 1009,
    CHORUS_WS_CLOSE_INTERNAL = 1011,
    CHORUS_WS_CLOSE_TRY_AGAIN = 1013,
};

/* Which side of the connection the decoder reads for. A server requires
 * masked frames; a client requires unmasked ones. */
typedef enum { CHORUS_WS_SERVER, CHORUS_WS_CLIENT } chorus_ws_role;

typedef enum {
    CHORUS_WS_EV_NEED_MORE, /* consumed everything usable; feed more bytes */
    CHORUS_WS_EV_DATA,      /* a chunk of a text/binary message */
    CHORUS_WS_EV_CONTROL,   /* a whole ping, pong or close frame */
    CHORUS_WS_EV_ERROR,     /* protocol violation: close with close_code */
} chorus_ws_event_type;

typedef struct chorus_ws_event {
    chorus_ws_event_type type;
    int opcode;    /* DATA: the message's opcode (TEXT or BINARY);
                      CONTROL: CLOSE, PING or PONG */
    uint8_t *data; /* unmasked payload, points into the input */
    size_t len;
    int fin;             /* DATA: 1 when this chunk ends the message */
    uint16_t close_code; /* CONTROL close: received code (1005 if none);
                            ERROR: the code to close with */
    const char *reason;  /* ERROR: static text for the close reason */
    int compressed;      /* DATA: 1 for every chunk of a message whose
                            first frame had RSV1 set (allow_rsv1 only) */
} chorus_ws_event;

typedef struct chorus_ws_decoder {
    chorus_ws_role role;
    uint64_t max_message; /* bytes of reassembled payload; 0 = no limit.
                             For a compressed message this bounds the
                             compressed bytes; the inflater bounds the
                             rest. */
    int allow_rsv1;       /* set after init once permessage-deflate is
                             negotiated (RFC 7692 section 6): RSV1 is then
                             accepted on the first frame of a TEXT/BINARY
                             message, still refused (1002) on continuation
                             and control frames. UTF-8 is not checked for
                             compressed messages: the caller checks after
                             inflating. 0 after chorus_ws_decoder_init. */

    /* private state */
    int in_frame; /* header parsed, payload pending */
    int frame_opcode;
    int frame_fin;
    int frame_masked;
    uint8_t mask[4];
    uint64_t frame_left; /* payload bytes still to come in this frame */
    uint64_t mask_pos;   /* payload bytes of this frame seen so far */
    int msg_opcode;      /* TEXT/BINARY while a message is open, else 0 */
    uint64_t msg_len;    /* payload bytes of the open message so far */
    chorus_utf8 utf8;
    int msg_compressed; /* the open message had RSV1 on its first frame */
    int failed;
} chorus_ws_decoder;

void chorus_ws_decoder_init(chorus_ws_decoder *d, chorus_ws_role role,
                            uint64_t max_message);

/* Decodes from buf[0..len). Sets *consumed to the bytes used (the caller
 * drops them) and fills *ev. Call again while the event is not NEED_MORE.
 * DATA events may carry part of a frame (so UTF-8 errors are caught as
 * soon as the offending byte arrives); CONTROL events only whole frames.
 * After an ERROR the decoder stays failed. buf is modified (unmasked). */
void chorus_ws_decode(chorus_ws_decoder *d, uint8_t *buf, size_t len,
                      size_t *consumed, chorus_ws_event *ev);

/* 1 while a frame or a fragmented message is open: bytes of a message
 * have been decoded and its end has not. */
int chorus_ws_decoder_busy(const chorus_ws_decoder *d);

/* Largest frame header: 2 + 8 (length) + 4 (mask). */
#define CHORUS_WS_MAX_HEADER 14

/* Writes a frame header to out and returns its length. mask_key NULL for
 * an unmasked (server) frame; else the payload must be masked by the
 * caller with chorus_ws_mask(). */
size_t chorus_ws_write_header(uint8_t out[CHORUS_WS_MAX_HEADER], int fin,
                              int opcode, uint64_t payload_len,
                              const uint8_t *mask_key);

/* Same with RSV1 set: the first frame of a permessage-deflate compressed
 * message (RFC 7692 section 6). Never for control or continuation frames. */
size_t chorus_ws_write_header_rsv1(uint8_t out[CHORUS_WS_MAX_HEADER], int fin,
                                   int opcode, uint64_t payload_len,
                                   const uint8_t *mask_key);

/* XORs len bytes with key, starting at position pos of the key stream. */
void chorus_ws_mask(uint8_t *p, size_t len, const uint8_t key[4], uint64_t pos);

/* 1 if code may be sent in a close frame (RFC 6455 7.4). */
int chorus_ws_close_code_valid(unsigned code);

/* Builds a close payload (code + reason, truncated to fit 125 bytes) in
 * out and returns its length. */
size_t chorus_ws_close_payload(uint8_t out[125], uint16_t code,
                               const char *reason);

#endif
