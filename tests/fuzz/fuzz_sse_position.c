/* libFuzzer target for the SSE resume position parser
 * (broker/http/sse_position.c), which reads Last-Event-ID and ?since=
 * from any client.
 *
 * Input: the whole input is the position text, passed with its length
 * (no terminating NUL: ASan sees a read past it). The target checks:
 *   - the answer is 0 or -1, and -1 leaves epoch and offset untouched;
 *   - it agrees with an independent model of the grammar: 32 lowercase
 *     hex, ':', 1 or more digits whose value, compared as a string
 *     without its leading zeros, is at most "18446744073709551615";
 *   - a position taken gives back its own epoch bytes and, printed again,
 *     its digits without their leading zeros;
 *   - "<epoch>:<offset>" printed from what was taken parses back to the
 *     same two values. */
#include <inttypes.h>
#include <string.h>

#include "fuzz.h"
#include "sse_position.h"

#define MAX_INPUT 4096
#define UINT64_MAX_TEXT "18446744073709551615"

static int is_lower_hex(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static int is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

/* Whether the model takes data[0..size). */
static int model_takes(const uint8_t *data, size_t size)
{
    size_t i, digits, max_len = sizeof UINT64_MAX_TEXT - 1;
    const uint8_t *d;

    if (size < CHORUS_EPOCH_LEN + 2 || data[CHORUS_EPOCH_LEN] != ':')
        return 0;
    for (i = 0; i < CHORUS_EPOCH_LEN; i++)
        if (!is_lower_hex(data[i]))
            return 0;
    for (i = CHORUS_EPOCH_LEN + 1; i < size; i++)
        if (!is_digit(data[i]))
            return 0;
    d = data + CHORUS_EPOCH_LEN + 1;
    digits = size - CHORUS_EPOCH_LEN - 1;
    while (digits > 1 && d[0] == '0') {
        d++;
        digits--;
    }
    return digits < max_len ||
           (digits == max_len && memcmp(d, UINT64_MAX_TEXT, max_len) <= 0);
}

/* The digits of a taken offset, printed again, are the input's digits
 * without leading zeros. */
static void check_offset_text(const uint8_t *digits, size_t n, uint64_t off)
{
    char text[24];
    int len = snprintf(text, sizeof text, "%" PRIu64, off);

    while (n > 1 && digits[0] == '0') {
        digits++;
        n--;
    }
    FUZZ_ASSERT(len > 0 && (size_t)len == n);
    FUZZ_ASSERT(memcmp(text, digits, n) == 0);
}

static void check_round_trip(const char *epoch, uint64_t off)
{
    char text[CHORUS_EPOCH_LEN + 24], epoch2[CHORUS_EPOCH_LEN + 1];
    int len = snprintf(text, sizeof text, "%s:%" PRIu64, epoch, off);
    uint64_t off2 = 0;

    FUZZ_ASSERT(len > 0 && (size_t)len < sizeof text);
    FUZZ_ASSERT(sse_position_parse(text, (size_t)len, epoch2, &off2) == 0);
    FUZZ_ASSERT(strcmp(epoch, epoch2) == 0 && off == off2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char sentinel[CHORUS_EPOCH_LEN + 1] = "sentinel";
    char epoch[CHORUS_EPOCH_LEN + 1];
    uint64_t off = 0x5a5a5a5a5a5a5a5aull;
    int rc;

    if (size > MAX_INPUT)
        return 0;
    memcpy(epoch, sentinel, sizeof epoch);
    rc = sse_position_parse((const char *)data, size, epoch, &off);
    FUZZ_ASSERT(rc == 0 || rc == -1);
    FUZZ_ASSERT((rc == 0) == model_takes(data, size));
    if (rc != 0) {
        FUZZ_ASSERT(memcmp(epoch, sentinel, sizeof epoch) == 0);
        FUZZ_ASSERT(off == 0x5a5a5a5a5a5a5a5aull);
        return 0;
    }
    FUZZ_ASSERT(epoch[CHORUS_EPOCH_LEN] == '\0');
    FUZZ_ASSERT(memcmp(epoch, data, CHORUS_EPOCH_LEN) == 0);
    FUZZ_ASSERT(chorus_epoch_valid(epoch));
    check_offset_text(data + CHORUS_EPOCH_LEN + 1, size - CHORUS_EPOCH_LEN - 1,
                      off);
    check_round_trip(epoch, off);
    return 0;
}
