/* Unit tests for broker/store/redis/redis_payload.c: the channel message
 * of one publish script call, parsed byte by byte; malformed input is
 * refused, never read past. */
#include "redis_payload.h"

#include <string.h>

#include "check.h"

#define EPOCH "0123456789abcdef0123456789abcdef"

static void test_good(void)
{
    const char *p = EPOCH " 41 1764000000123 3\n"
                          "5:hello2:{}0:";
    redis_payload pl;
    size_t pos = 0, len;
    const char *d;

    CHECK_EQ_INT(redis_payload_parse(p, strlen(p), &pl), 0);
    CHECK_EQ_STR(pl.epoch, EPOCH);
    CHECK_EQ_INT(pl.first, 41);
    CHECK_EQ_INT(pl.ts_ms, 1764000000123LL);
    CHECK_EQ_INT(pl.count, 3);
    CHECK_EQ_INT(redis_payload_next(&pl, &pos, &d, &len), 0);
    CHECK(len == 5 && memcmp(d, "hello", 5) == 0);
    CHECK_EQ_INT(redis_payload_next(&pl, &pos, &d, &len), 0);
    CHECK(len == 2 && memcmp(d, "{}", 2) == 0);
    CHECK_EQ_INT(redis_payload_next(&pl, &pos, &d, &len), 0);
    CHECK_EQ_INT(len, 0);
    CHECK_EQ_INT(redis_payload_next(&pl, &pos, &d, &len), 1);

    /* data may hold any byte, newlines and colons included */
    const char bin[] = EPOCH " 1 5 1\n4:a:\n\0";
    CHECK_EQ_INT(redis_payload_parse(bin, sizeof bin - 1, &pl), 0);
    pos = 0;
    CHECK_EQ_INT(redis_payload_next(&pl, &pos, &d, &len), 0);
    CHECK(len == 4 && memcmp(d, "a:\n\0", 4) == 0);
}

static void test_bad(void)
{
    static const char *heads[] = {
        "",
        EPOCH,
        EPOCH " ",
        EPOCH " 1 2 3",     /* no newline */
        EPOCH " 0 2 1\n0:", /* offsets start at 1 */
        EPOCH " 1 2 0\n",   /* no message */
        EPOCH " x 2 1\n0:",
        EPOCH " 1  2 1\n0:",
        EPOCH " 1 2 1 \n0:",
        "0123456789ABCDEF0123456789abcdef 1 2 1\n0:", /* upper case */
        "0123456789abcdef0123456789abcde 1 2 1\n0:",  /* 31 digits */
        EPOCH " 1 99999999999999999999 1\n0:",        /* overflow */
        EPOCH " 18446744073709551615 2 2\n0:0:",      /* last offset wraps */
    };
    redis_payload pl;
    size_t pos, len;
    const char *d;

    for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) {
        int rc = redis_payload_parse(heads[i], strlen(heads[i]), &pl);
        if (rc != -1)
            fprintf(stderr, "accepted: %s\n", heads[i]);
        CHECK_EQ_INT(rc, -1);
    }
    /* bodies: a length past the end, no colon, no digits */
    static const char *bodies[] = {"6:hello", "5hello", ":hello", "5:"};
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        char buf[128];
        int n = snprintf(buf, sizeof buf, EPOCH " 1 2 1\n%s", bodies[i]);
        CHECK_EQ_INT(redis_payload_parse(buf, (size_t)n, &pl), 0);
        pos = 0;
        CHECK_EQ_INT(redis_payload_next(&pl, &pos, &d, &len), -1);
    }
}

/* The node writes the body; what it writes reads back, sizes exact. */
static void test_put(void)
{
    static const char *msgs[] = {"", "x", "0123456789", "a:\n"};
    char body[64], *p = body;
    size_t size = 0, pos = 0, len;
    const char *d;
    redis_payload pl;

    for (size_t i = 0; i < 4; i++) {
        size += redis_payload_entry_size(strlen(msgs[i]));
        p = redis_payload_put(p, msgs[i], strlen(msgs[i]));
        CHECK_EQ_INT((size_t)(p - body), size);
    }
    CHECK(memcmp(body, "0:1:x10:01234567893:a:\n", size) == 0);
    CHECK_EQ_INT(redis_payload_entry_size(9), 11);
    CHECK_EQ_INT(redis_payload_entry_size(100), 104);
    redis_payload_of_body(&pl, 7, 5, 4, body, size);
    for (size_t i = 0; i < 4; i++) {
        CHECK_EQ_INT(redis_payload_next(&pl, &pos, &d, &len), 0);
        CHECK(len == strlen(msgs[i]) && memcmp(d, msgs[i], len) == 0);
    }
    CHECK_EQ_INT(redis_payload_next(&pl, &pos, &d, &len), 1);
}

int main(void)
{
    test_good();
    test_bad();
    test_put();
    return check_report("test_redis_payload");
}
