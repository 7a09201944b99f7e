/* RFC 7692 permessage-deflate: negotiation and per-message codec. Pure
 * apart from zlib: no I/O, no libevent.
 *
 * Server policy (chorus_pmd_negotiate):
 * - The server always answers server_no_context_takeover (allowed by RFC
 *   7692 section 7.1.1.1 whether or not the client asked), so that a
 *   message is compressed once and the same bytes go to every subscriber.
 *   The compressor therefore keeps no state between messages and can be
 *   shared by all connections of a loop.
 * - The server always answers client_no_context_takeover (section
 *   7.1.1.2), so that inflating a message needs no state from earlier
 *   ones: an inflater can be reset per message, or shared per loop.
 * - server_max_window_bits=N in an offer is honoured for N = 9..15 by
 *   compressing with that window and echoing it. N = 8 cannot be honoured:
 *   zlib refuses windowBits 8 for raw deflate (it would silently use 9,
 *   the caveat of zlib's deflateInit2 documentation), and a 512-byte
 *   window may produce distances the client cannot resolve, so that offer
 *   is declined (the next offer, if any, is tried).
 * - client_max_window_bits is accepted with or without a value and is not
 *   echoed: the inflater always uses a 32 KiB window, which decodes any
 *   smaller one, including streams from old zlib clients that announce 8
 *   but use 9.
 */
#ifndef CHORUS_DEFLATE_H
#define CHORUS_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

#include <zlib.h>

/* Return codes of the codec functions. */
enum {
    CHORUS_PMD_OK = 0,
    CHORUS_PMD_ERR_NOMEM = -1,   /* close with 1011 */
    CHORUS_PMD_ERR_TOO_BIG = -2, /* inflated size above max_out: 1009 */
    CHORUS_PMD_ERR_CORRUPT = -3, /* not valid DEFLATE data: 1007 */
};

/* What was agreed; filled by chorus_pmd_negotiate. */
typedef struct chorus_pmd_params {
    int server_no_context_takeover; /* always 1 in our answers */
    int client_no_context_takeover; /* always 1 in our answers */
    int server_max_window_bits;     /* 9..15: compress with this window */
    int client_max_window_bits;     /* 8..15: the client may use up to it */
} chorus_pmd_params;

/* Longest response value chorus_pmd_negotiate writes, plus NUL. */
#define CHORUS_PMD_RESPONSE_MAX 128

/* Reads a Sec-WebSocket-Extensions value (RFC 6455 section 9.1: a comma
 * list of extensions, each with ';' parameters, values as tokens or
 * quoted strings; names compared case-insensitively) and accepts the
 * first permessage-deflate offer the server supports. Offers are declined
 * (RFC 7692 section 7) when a parameter is unknown, repeated, has a value
 * it must not have or lacks one it needs, or has an invalid value; other
 * extensions are skipped. For several Sec-WebSocket-Extensions headers,
 * call once per header in order and stop at the first 1 (the same as
 * joining them with commas).
 *
 * Returns 1 when an offer is accepted: *out holds the parameters and
 * response (at least CHORUS_PMD_RESPONSE_MAX bytes) the NUL-terminated
 * value for the response's Sec-WebSocket-Extensions header. Returns 0 when
 * no offer is acceptable, and -1 when the header does not follow the
 * grammar; in both cases nothing is accepted and response is "". We do
 * not answer 400 for -1: a server declines offers it cannot accept (RFC
 * 6455 section 9.1, RFC 7692 section 5), so the caller completes the
 * handshake without the extension (and may log the -1). */
int chorus_pmd_negotiate(const char *ext_header, size_t len,
                         chorus_pmd_params *out, char *response,
                         size_t response_size);

/* A raw-deflate compressor producing self-contained message payloads (no
 * context takeover): share one per event loop. */
typedef struct chorus_pmd_compressor {
    z_stream zs;
    int window_bits;
} chorus_pmd_compressor;

/* level: zlib 0..9 or Z_DEFAULT_COMPRESSION; window_bits 9..15 (the
 * negotiated server_max_window_bits). Returns 0 or CHORUS_PMD_ERR_NOMEM.
 * Bytes compressed with window w are valid for every connection whose
 * server_max_window_bits is >= w, so one compressor with the smallest
 * window in use serves all (browsers never ask: 15). */
int chorus_pmd_compressor_init(chorus_pmd_compressor *z, int level,
                               int window_bits);
void chorus_pmd_compressor_free(chorus_pmd_compressor *z);

/* Compresses one whole message (RFC 7692 section 7.2.1: DEFLATE, sync
 * flush, trailing 00 00 ff ff removed) into a malloc'd buffer the caller
 * owns and frees with free(); an empty message gives the single byte 00.
 * The stream is reset first, so each payload stands alone. Send it with
 * RSV1 on the first frame; if it is not smaller than the input the caller
 * may send the message uncompressed instead (RSV1 clear). Returns 0 or
 * CHORUS_PMD_ERR_NOMEM (then *out is NULL). */
int chorus_pmd_compress(chorus_pmd_compressor *z, const uint8_t *in, size_t len,
                        uint8_t **out, size_t *out_len);

/* A raw-deflate decompressor for messages from one peer. */
typedef struct chorus_pmd_inflater {
    z_stream zs;
    int no_context_takeover;
    uint8_t *dict; /* context takeover only: window kept across a BFINAL */
} chorus_pmd_inflater;

/* no_context_takeover: the negotiated client_no_context_takeover (for a
 * server); when set the stream is reset after every message, else the
 * LZ77 window carries over. Returns 0 or CHORUS_PMD_ERR_NOMEM. */
int chorus_pmd_inflater_init(chorus_pmd_inflater *z, int no_context_takeover);
void chorus_pmd_inflater_free(chorus_pmd_inflater *z);

/* Inflates one whole compressed message payload (RFC 7692 section 7.2.2:
 * 00 00 ff ff appended, then DEFLATE) into a malloc'd buffer the caller
 * owns (free()); *out may be NULL when *out_len is 0. max_out bounds the
 * inflated size (0 = no limit) and is checked while inflating, so a
 * decompression bomb costs at most max_out bytes. A payload that ends
 * inside a DEFLATE block is corrupt.
 *
 * Returns 0, CHORUS_PMD_ERR_TOO_BIG, CHORUS_PMD_ERR_CORRUPT or
 * CHORUS_PMD_ERR_NOMEM; on error *out is NULL, the stream is reset and
 * the connection must be failed (chorus_pmd_close_code). A TEXT message
 * must still be checked for UTF-8 after inflating (1007). */
int chorus_pmd_inflate(chorus_pmd_inflater *z, const uint8_t *in, size_t len,
                       size_t max_out, uint8_t **out, size_t *out_len);

/* The WebSocket close code for a codec error. RFC 7692 only says to fail
 * the connection and names no code; we send 1007 for corrupt data (the
 * payload is not what its RSV1 bit declared; node's ws does the same,
 * capnproto sends 1002), 1009 for too big and 1011 for out of memory. */
uint16_t chorus_pmd_close_code(int err);

#endif
