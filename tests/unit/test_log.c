/* The log module: the JSON escaper (valid JSON for any bytes), whole
 * lines in both formats written to stderr and read back (every JSON line
 * parses with jansson and carries its fields), and the one-a-second
 * limit with its count of what was left out. */
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "check.h"

static void test_escape(void)
{
    char out[64];

    CHECK_EQ_INT(log_json_escape(out, sizeof out, "plain", 5), 5);
    CHECK_EQ_STR(out, "plain");
    log_json_escape(out, sizeof out, "a\"b\\c", 5);
    CHECK_EQ_STR(out, "a\\\"b\\\\c");
    log_json_escape(out, sizeof out, "\n\t\x01\x7f", 4);
    CHECK_EQ_STR(out, "\\u000a\\u0009\\u0001\\u007f");
    /* valid UTF-8 is kept as is: é, €, U+1F600 */
    log_json_escape(out, sizeof out, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9);
    CHECK_EQ_STR(out, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    /* invalid bytes each become U+FFFD: a lone continuation, an overlong
     * '/', a surrogate, a cut sequence, 0xFF */
    log_json_escape(out, sizeof out, "\x80|\xc0\xaf|\xed\xa0\x80|\xe2\x82", 11);
    CHECK_EQ_STR(out, "\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|"
                      "\\ufffd\\ufffd");
    log_json_escape(out, sizeof out, "\xff", 1);
    CHECK_EQ_STR(out, "\\ufffd");
    /* NUL bytes inside the length are escaped, not an end */
    log_json_escape(out, sizeof out, "a\0b", 3);
    CHECK_EQ_STR(out, "a\\u0000b");
    /* a piece that does not fit is left out whole */
    CHECK_EQ_INT(log_json_escape(out, 7, "abc\"\"\"", 6), 5);
    CHECK_EQ_STR(out, "abc\\\"");
    CHECK_EQ_INT(log_json_escape(out, 4, "\xe2\x82\xac\xe2\x82\xac", 6), 3);
    CHECK_EQ_STR(out, "\xe2\x82\xac");
}

/* Every byte value in a message and a topic still makes one valid JSON
 * line. */
static void test_lines(void)
{
    char path[] = "/tmp/chorus_test_log.XXXXXX";
    int fd = mkstemp(path), saved = dup(STDERR_FILENO);
    char msg[300], topic[256], line[16384];
    FILE *f;
    int n = 0;

    if (fd < 0 || saved < 0) {
        perror("mkstemp");
        exit(2);
    }
    for (int i = 0; i < 256; i++)
        topic[i] = (char)(255 - i);
    for (int i = 0; i < 255; i++)
        msg[i] = (char)(i + 1);
    msg[255] = '\0';
    dup2(fd, STDERR_FILENO);
    log_set_level(LOG_DEBUG);
    log_set_format(LOG_FORMAT_JSON);
    log_with(LOG_WARN,
             &(log_fields){.conn = 42,
                           .peer = "127.0.0.1:5000",
                           .topic = topic,
                           .topic_len = sizeof topic,
                           .code = "rate_limited",
                           .suppressed = 37},
             "bytes %s", msg);
    log_msg(LOG_INFO, "quote \" backslash \\ newline \n end");
    log_conn(LOG_DEBUG, 7, "[::1]:80", "closed");
    log_set_format(LOG_FORMAT_TEXT);
    log_with(LOG_INFO, &(log_fields){.conn = 9, .peer = "p", .suppressed = 3},
             "slow consumer");
    log_set_level(LOG_INFO);
    log_conn(LOG_DEBUG, 8, "p", "not shown");
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);

    f = fdopen(fd, "r");
    rewind(f);
    while (fgets(line, sizeof line, f)) {
        json_error_t err;
        json_t *o;
        n++;
        if (n == 4) {
            CHECK(strstr(line, " info conn 9 (p): slow consumer (3 similar "
                               "suppressed)\n") != NULL);
            continue;
        }
        o = json_loads(line, JSON_ALLOW_NUL, &err); /* \u0000 is JSON */
        CHECK(o != NULL);
        if (!o) {
            fprintf(stderr, "line %d: %s: %s", n, err.text, line);
            continue;
        }
        CHECK(json_is_string(json_object_get(o, "ts")));
        CHECK_EQ_INT(strlen(json_string_value(json_object_get(o, "ts"))), 24);
        CHECK(json_is_string(json_object_get(o, "msg")));
        if (n == 1) {
            CHECK_EQ_STR(json_string_value(json_object_get(o, "level")),
                         "warn");
            CHECK_EQ_INT(json_integer_value(json_object_get(o, "conn")), 42);
            CHECK_EQ_STR(json_string_value(json_object_get(o, "peer")),
                         "127.0.0.1:5000");
            CHECK_EQ_STR(json_string_value(json_object_get(o, "code")),
                         "rate_limited");
            CHECK(json_is_string(json_object_get(o, "topic")));
            CHECK_EQ_INT(json_integer_value(json_object_get(o, "suppressed")),
                         37);
        } else if (n == 2) {
            CHECK_EQ_STR(json_string_value(json_object_get(o, "msg")),
                         "quote \" backslash \\ newline \n end");
            CHECK(json_object_get(o, "conn") == NULL);
        } else {
            CHECK_EQ_STR(json_string_value(json_object_get(o, "level")),
                         "debug");
            CHECK_EQ_INT(json_integer_value(json_object_get(o, "conn")), 7);
        }
        json_decref(o);
    }
    CHECK_EQ_INT(n, 4);
    fclose(f);
    unlink(path);
}

static void test_limit(void)
{
    log_limit l = {0};

    CHECK_EQ_INT(log_due(&l, 10000), 1); /* the first is due */
    CHECK_EQ_INT(log_due(&l, 10001), 0);
    CHECK_EQ_INT(log_due(&l, 10500), 0);
    CHECK_EQ_INT(log_due(&l, 10999), 0);
    CHECK_EQ_INT(log_due(&l, 11000), 1 + 3); /* three left out */
    CHECK_EQ_INT(log_due(&l, 11001), 0);
    CHECK_EQ_INT(log_due(&l, 12500), 1 + 1);
    CHECK_EQ_INT(log_due(&l, 14000), 1); /* none since */
}

int main(void)
{
    test_escape();
    test_lines();
    test_limit();
    return check_report("test_log");
}
