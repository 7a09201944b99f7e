/* Unit tests for broker/core/config*.c: every value parser, every file-format
 * rule and error message, and broker.conf.example against the built-in
 * defaults. Usage: test_config [path/to/broker.conf.example] */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static char tmpdir[] = "/tmp/chorus_test_config.XXXXXX";

/* Writes text to a fresh file in tmpdir and returns its path (static). */
static const char *write_file(const char *name, const char *text)
{
    static char path[512];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
    return path;
}

static int same_config(const config *a, const config *b)
{
    return strcmp(a->listen, b->listen) == 0 &&
           a->echo_endpoint == b->echo_endpoint &&
           a->max_message_size == b->max_message_size &&
           a->max_outbound_bytes == b->max_outbound_bytes &&
           a->max_unacked_bytes == b->max_unacked_bytes &&
           a->ping_interval_ms == b->ping_interval_ms &&
           a->idle_timeout_ms == b->idle_timeout_ms &&
           a->handshake_timeout_ms == b->handshake_timeout_ms &&
           a->message_timeout_ms == b->message_timeout_ms &&
           a->log_level == b->log_level && a->log_format == b->log_format &&
           strcmp(a->db_path, b->db_path) == 0 &&
           a->history_size == b->history_size &&
           a->history_ttl_ms == b->history_ttl_ms &&
           a->durability == b->durability &&
           a->max_connections == b->max_connections &&
           a->max_subscriptions_per_connection ==
               b->max_subscriptions_per_connection &&
           a->max_connections_per_ip == b->max_connections_per_ip &&
           a->history == b->history && a->threads == b->threads &&
           a->compression == b->compression && a->io_uring == b->io_uring &&
           a->allow_anonymous == b->allow_anonymous &&
           a->anonymous_publish == b->anonymous_publish &&
           a->publish_rate == b->publish_rate &&
           a->publish_burst == b->publish_burst && !a->auth_secret &&
           !b->auth_secret && !a->api_key && !b->api_key &&
           !a->allowed_origins && !b->allowed_origins && !a->tls_listen &&
           !b->tls_listen && !a->web_root && !b->web_root &&
           a->engine == b->engine && a->redis_url_count == b->redis_url_count &&
           a->redis_durable == b->redis_durable &&
           a->redis_timeout_ms == b->redis_timeout_ms;
}

static void test_defaults(void)
{
    config c;
    char err[256];

    config_init(&c);
    CHECK_EQ_STR(c.listen, "127.0.0.1:8080");
    CHECK_EQ_INT(c.echo_endpoint, 0);
    CHECK_EQ_INT(c.max_message_size, 1024 * 1024);
    CHECK_EQ_INT(c.max_outbound_bytes, 16 * 1024 * 1024);
    CHECK_EQ_INT(c.max_unacked_bytes, 16 * 1024 * 1024);
    CHECK_EQ_INT(c.ping_interval_ms, 30000);
    CHECK_EQ_INT(c.idle_timeout_ms, 90000);
    CHECK_EQ_INT(c.handshake_timeout_ms, 10000);
    CHECK_EQ_INT(c.message_timeout_ms, 30000);
    CHECK_EQ_INT(c.log_level, LOG_INFO);
    CHECK_EQ_STR(c.db_path, "./chorus.db");
    CHECK_EQ_INT(c.history_size, 1000);
    CHECK_EQ_INT(c.history_ttl_ms, 24LL * 3600 * 1000);
    CHECK_EQ_INT(c.durability, DURABILITY_NORMAL);
    CHECK_EQ_INT(c.max_connections, 10000);
    CHECK_EQ_INT(c.max_subscriptions_per_connection, 1000);
    CHECK_EQ_INT(c.max_connections_per_ip, 0);
    CHECK_EQ_INT(c.history, 1);
    CHECK_EQ_INT(c.allow_anonymous, 0);
    CHECK_EQ_INT(c.anonymous_publish, 0);
    CHECK(c.auth_secret == NULL && c.api_key == NULL && c.tls_listen == NULL);
    CHECK_EQ_INT(config_validate(&c, err, sizeof err), 0);
    config_free(&c);
    config_free(&c); /* idempotent */
}

static void test_bool(void)
{
    int v = -1;

    CHECK_EQ_INT(config_parse_bool("on", &v), 0);
    CHECK_EQ_INT(v, 1);
    CHECK_EQ_INT(config_parse_bool("off", &v), 0);
    CHECK_EQ_INT(v, 0);
    const char *bad[] = {"",   "yes", "no",  "true", "1",   "0",
                         "ON", "On",  "on ", " off", "offf"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 7;
        CHECK_EQ_INT(config_parse_bool(bad[i], &v), -1);
        CHECK_EQ_INT(v, 7);
    }
}

static void test_size(void)
{
    static const struct {
        const char *s;
        uint64_t v;
    } good[] = {
        {"0", 0},
        {"1", 1},
        {"65536", 65536},
        {"007", 7},
        {"64k", 65536},
        {"64K", 65536},
        {"8m", 8ULL << 20},
        {"8M", 8ULL << 20},
        {"1g", 1ULL << 30},
        {"3G", 3ULL << 30},
        {"0k", 0},
        {"18446744073709551615", UINT64_MAX},
        {"17179869183g", 17179869183ULL << 30}, /* largest in g */
    };
    uint64_t v;

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        v = 12345;
        CHECK_EQ_INT(config_parse_size(good[i].s, &v), 0);
        CHECK(v == good[i].v);
    }
    const char *bad[] = {"",
                         "k",
                         "-1",
                         "+1",
                         " 1",
                         "1 ",
                         "1 k",
                         "1kb",
                         "1t",
                         "1.5m",
                         "0x10",
                         "1e3",
                         "18446744073709551616",
                         "17179869184g",
                         "18014398509481984k",
                         "abc"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 99;
        CHECK_EQ_INT(config_parse_size(bad[i], &v), -1);
        CHECK(v == 99);
    }
}

static void test_duration(void)
{
    static const struct {
        const char *s;
        uint64_t ms;
    } good[] = {
        {"0", 0},
        {"0ms", 0},
        {"0s", 0},
        {"500ms", 500},
        {"1ms", 1},
        {"30s", 30000},
        {"5m", 300000},
        {"24h", 86400000ULL},
        {"7d", 604800000ULL},
        {"90s", 90000},
        {"0010s", 10000},
        {"18446744073709551615ms", UINT64_MAX},
    };
    uint64_t v;

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        v = 12345;
        CHECK_EQ_INT(config_parse_duration(good[i].s, &v), 0);
        CHECK(v == good[i].ms);
    }
    const char *bad[] = {"",
                         "500",
                         "1",
                         "00",
                         "s",
                         "ms",
                         "-1s",
                         "+1s",
                         "1.5s",
                         "1 s",
                         " 1s",
                         "1s ",
                         "1S",
                         "1sec",
                         "1w",
                         "1y",
                         "1msx",
                         "1hm",
                         "18446744073709551616ms",
                         "18446744073709552s",
                         "off",
                         "0x10s"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 99;
        CHECK_EQ_INT(config_parse_duration(bad[i], &v), -1);
        CHECK(v == 99);
    }
}

static void test_log_level(void)
{
    int v = -1;

    CHECK_EQ_INT(config_parse_log_level("error", &v), 0);
    CHECK_EQ_INT(v, LOG_ERROR);
    CHECK_EQ_INT(config_parse_log_level("warn", &v), 0);
    CHECK_EQ_INT(v, LOG_WARN);
    CHECK_EQ_INT(config_parse_log_level("info", &v), 0);
    CHECK_EQ_INT(v, LOG_INFO);
    CHECK_EQ_INT(config_parse_log_level("debug", &v), 0);
    CHECK_EQ_INT(v, LOG_DEBUG);
    const char *bad[] = {"", "warning", "INFO", "trace", "fatal", "3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 42;
        CHECK_EQ_INT(config_parse_log_level(bad[i], &v), -1);
        CHECK_EQ_INT(v, 42);
    }
}

static void test_listen(void)
{
    static const struct {
        const char *s, *host;
        int port;
    } good[] = {
        {"127.0.0.1:8080", "127.0.0.1", 8080},
        {"0.0.0.0:1", "0.0.0.0", 1},
        {"localhost:65535", "localhost", 65535},
        {"my-host.example.com:443", "my-host.example.com", 443},
        {":9000", "0.0.0.0", 9000},
        {"[::1]:8080", "::1", 8080},
        {"[::]:80", "::", 80},
        {"[2001:db8::1]:443", "2001:db8::1", 443},
        {"[::ffff:127.0.0.1]:8080", "::ffff:127.0.0.1", 8080},
        {"127.0.0.1:08080", "127.0.0.1", 8080},
    };
    char host[64];
    int port;

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        port = -1;
        CHECK_EQ_INT(config_parse_listen(good[i].s, host, sizeof host, &port),
                     0);
        CHECK_EQ_STR(host, good[i].host);
        CHECK_EQ_INT(port, good[i].port);
    }
    const char *bad[] = {
        "",
        "8080",
        "127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "127.0.0.1:+80",
        "127.0.0.1:80x",
        "127.0.0.1: 80",
        " 127.0.0.1:80",
        "::1:8080",
        "[::1]",
        "[::1]8080",
        "[::1]:",
        "[]:80",
        "[::1:80",
        "[not-v6]:80",
        "[127.0.0.1]:80",
        "host name:80",
        "host/x:80",
        ":",
        "[::1]:0",
        "127.0.0.1:99999999999999999999999",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ_INT(config_parse_listen(bad[i], host, sizeof host, &port), -1);
    /* Host that does not fit the caller's buffer. */
    char small[4];
    CHECK_EQ_INT(
        config_parse_listen("localhost:80", small, sizeof small, &port), -1);
    CHECK_EQ_INT(config_parse_listen("abc:80", small, sizeof small, &port), 0);
    CHECK_EQ_STR(small, "abc");
}

/* config_set on each key: the value lands in its field. */
static void test_set(void)
{
    config c;
    char err[256];

    config_init(&c);
    CHECK_EQ_INT(config_set(&c, "listen", "[::1]:9000", err, sizeof err), 0);
    CHECK_EQ_STR(c.listen, "[::1]:9000");
    /* reno is built into every Linux kernel */
    CHECK_EQ_INT(config_set(&c, "tcp_congestion", "reno", err, sizeof err), 0);
    CHECK_EQ_STR(c.tcp_congestion, "reno");
    CHECK_EQ_INT(config_set(&c, "echo_endpoint", "on", err, sizeof err), 0);
    CHECK_EQ_INT(c.echo_endpoint, 1);
    CHECK_EQ_INT(config_set(&c, "max_message_size", "64k", err, sizeof err), 0);
    CHECK_EQ_INT(c.max_message_size, 65536);
    CHECK_EQ_INT(config_set(&c, "max_outbound_bytes", "1g", err, sizeof err),
                 0);
    CHECK(c.max_outbound_bytes == 1ULL << 30);
    CHECK_EQ_INT(config_set(&c, "max_unacked_bytes", "64k", err, sizeof err),
                 0);
    CHECK_EQ_INT(c.max_unacked_bytes, 65536);
    CHECK_EQ_INT(config_set(&c, "max_unacked_bytes", "0", err, sizeof err), -1);
    CHECK(strstr(err, "at least 1") != NULL);
    CHECK_EQ_INT(config_set(&c, "ping_interval", "0", err, sizeof err), 0);
    CHECK_EQ_INT(c.ping_interval_ms, 0);
    CHECK_EQ_INT(config_set(&c, "idle_timeout", "5m", err, sizeof err), 0);
    CHECK_EQ_INT(c.idle_timeout_ms, 300000);
    CHECK_EQ_INT(config_set(&c, "handshake_timeout", "500ms", err, sizeof err),
                 0);
    CHECK_EQ_INT(c.handshake_timeout_ms, 500);
    CHECK_EQ_INT(config_set(&c, "message_timeout", "2s", err, sizeof err), 0);
    CHECK_EQ_INT(c.message_timeout_ms, 2000);
    CHECK_EQ_INT(config_set(&c, "message_timeout", "0", err, sizeof err), 0);
    CHECK_EQ_INT(c.message_timeout_ms, 0);
    CHECK_EQ_INT(config_set(&c, "log_level", "debug", err, sizeof err), 0);
    CHECK_EQ_INT(c.log_level, LOG_DEBUG);
    CHECK_EQ_INT(config_set(&c, "db_path", "/tmp/x y.db", err, sizeof err), 0);
    CHECK_EQ_STR(c.db_path, "/tmp/x y.db");
    CHECK_EQ_INT(config_set(&c, "history_size", "0", err, sizeof err), 0);
    CHECK_EQ_INT(c.history_size, 0);
    CHECK_EQ_INT(config_set(&c, "history_ttl", "7d", err, sizeof err), 0);
    CHECK_EQ_INT(c.history_ttl_ms, 7LL * 86400000);
    CHECK_EQ_INT(config_set(&c, "durability", "full", err, sizeof err), 0);
    CHECK_EQ_INT(c.durability, DURABILITY_FULL);
    CHECK_EQ_INT(config_set(&c, "durability", "normal", err, sizeof err), 0);
    CHECK_EQ_INT(c.durability, DURABILITY_NORMAL);
    CHECK_EQ_INT(config_set(&c, "max_connections", "0", err, sizeof err), 0);
    CHECK_EQ_INT(c.max_connections, 0);
    CHECK_EQ_INT(config_set(&c, "max_subscriptions_per_connection",
                            "18446744073709551615", err, sizeof err),
                 0);
    CHECK(c.max_subscriptions_per_connection == UINT64_MAX);
    /* Bounds that are accepted exactly at the edge. */
    CHECK_EQ_INT(config_set(&c, "max_message_size", "1", err, sizeof err), 0);
    CHECK_EQ_INT(config_set(&c, "max_message_size", "256m", err, sizeof err),
                 0);
    CHECK_EQ_INT(c.max_message_size, 256 << 20);
    CHECK_EQ_INT(config_set(&c, "history_ttl", "3650d", err, sizeof err), 0);
    config_free(&c);
}

/* config_set errors: exact messages name the key and the expected form,
 * and a failed set leaves the field unchanged. */
static void test_set_errors(void)
{
    static const struct {
        const char *key, *value, *msg;
    } cases[] = {
        {"nope", "1", "unknown key \"nope\""},
        {"ping_interval_ms", "1s", "unknown key \"ping_interval_ms\""},
        {"Listen", "x", "unknown key \"Listen\""},
        {"ping_interval", "",
         "ping_interval: missing value (expected a "
         "duration like 500ms, 30s, 5m, 24h, or 0 for off)"},
        {"ping_interval", "30",
         "ping_interval: expected a duration like "
         "500ms, 30s, 5m, 24h, or 0 for off, not \"30\""},
        {"idle_timeout", "1w",
         "idle_timeout: expected a duration like "
         "500ms, 30s, 5m, 24h, or 0 for off, not \"1w\""},
        {"history_ttl", "3651d", "history_ttl: must be at most 3650d"},
        {"handshake_timeout", "0",
         "handshake_timeout: must be greater "
         "than 0"},
        {"handshake_timeout", "0s",
         "handshake_timeout: must be greater "
         "than 0"},
        {"handshake_timeout", "x",
         "handshake_timeout: expected a duration "
         "like 500ms, 30s, 5m, 24h, not \"x\""},
        {"echo_endpoint", "yes",
         "echo_endpoint: expected on or off, not "
         "\"yes\""},
        {"max_message_size", "0",
         "max_message_size: must be between 1 and "
         "256m"},
        {"max_message_size", "257m",
         "max_message_size: must be between 1 "
         "and 256m"},
        {"max_message_size", "268435457",
         "max_message_size: must be "
         "between 1 and 256m"},
        {"max_message_size", "1mb",
         "max_message_size: expected a size in "
         "bytes like 65536, 64k, 16m, 1g, not \"1mb\""},
        {"max_outbound_bytes", "0", "max_outbound_bytes: must be at least 1"},
        {"max_outbound_bytes", "99999999999999999999",
         "max_outbound_bytes: "
         "expected a size in bytes like 65536, 64k, 16m, 1g, not "
         "\"99999999999999999999\""},
        {"log_level", "trace",
         "log_level: expected one of error, warn, "
         "info, debug, not \"trace\""},
        {"durability", "sync",
         "durability: expected normal or full, not "
         "\"sync\""},
        {"listen", "8080",
         "listen: expected host:port, [ipv6]:port or "
         ":port, port 1-65535, not \"8080\""},
        {"listen", "127.0.0.1:0",
         "listen: expected host:port, [ipv6]:port "
         "or :port, port 1-65535, not \"127.0.0.1:0\""},
        {"history_size", "-1",
         "history_size: expected a non-negative "
         "integer, not \"-1\""},
        {"max_connections", "1k",
         "max_connections: expected a non-negative "
         "integer, not \"1k\""},
        {"max_subscriptions_per_connection", "18446744073709551616",
         "max_subscriptions_per_connection: expected a non-negative integer, "
         "not \"18446744073709551616\""},
        {"db_path", "", "db_path: missing value (expected a file path)"},
        {"tcp_congestion", "",
         "tcp_congestion: missing value (expected a TCP congestion control "
         "like cubic or bbr)"},
        {"tcp_congestion", "no-such-cc",
         "tcp_congestion: \"no-such-cc\" is not available here (No such "
         "file or directory); see "
         "/proc/sys/net/ipv4/tcp_available_congestion_control"},
        /* the kernel reads 15 bytes: "reno" and more must not pass */
        {"tcp_congestion", "renorenorenoreno",
         "tcp_congestion: \"renorenorenoreno\" is too long for a congestion "
         "control name"},
        {"max_connections", "12345678901234567890123456789012345678901234",
         "max_connections: expected a non-negative integer, not "
         "\"1234567890123456789012345678901234567890...\""},
    };
    config c, d;
    char err[256];

    config_init(&c);
    config_init(&d);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        CHECK_EQ_INT(
            config_set(&c, cases[i].key, cases[i].value, err, sizeof err), -1);
        CHECK_EQ_STR(err, cases[i].msg);
    }
    CHECK(same_config(&c, &d));
    /* A tiny or absent error buffer is fine. */
    CHECK_EQ_INT(config_set(&c, "nope", "1", err, 4), -1);
    CHECK_EQ_STR(err, "unk");
    CHECK_EQ_INT(config_set(&c, "nope", "1", NULL, 0), -1);
    config_free(&c);
    config_free(&d);
}

static void test_validate(void)
{
    config c;
    char err[256];

    config_init(&c);
    c.ping_interval_ms = 30000;
    c.idle_timeout_ms = 30000;
    CHECK_EQ_INT(config_validate(&c, err, sizeof err), -1);
    CHECK_EQ_STR(err, "idle_timeout (30000ms) must be 0 (off) or greater "
                      "than ping_interval (30000ms)");
    c.idle_timeout_ms = 10000;
    CHECK_EQ_INT(config_validate(&c, err, sizeof err), -1);
    c.idle_timeout_ms = 30001;
    CHECK_EQ_INT(config_validate(&c, err, sizeof err), 0);
    c.idle_timeout_ms = 0;
    CHECK_EQ_INT(config_validate(&c, err, sizeof err), 0);
    c.idle_timeout_ms = 5;
    c.ping_interval_ms = 0;
    CHECK_EQ_INT(config_validate(&c, err, sizeof err), 0);
    config_free(&c);
}

/* Loads text as a file; returns the result and leaves the message in err. */
static int load_text(config *c, const char *text, char *err, size_t errlen)
{
    const char *path = write_file("broker.conf", text);
    return config_load_file(c, path, err, errlen);
}

static void test_file_format(void)
{
    config c;
    char err[512];

    config_init(&c);
    CHECK_EQ_INT(
        load_text(
            &c,
            "\xEF\xBB\xBF# comment at the top, after a byte order mark\n"
            "\n"
            "   \t\n"
            "  # indented comment\n"
            "listen=:9001\n"
            "  log_level   =   debug   # trailing comment\n"
            "db_path = /tmp/a#b.db\n"
            "history_size = 5\t# tab before the comment\r\n"
            "history_ttl = \"1h\"\n"
            "durability=full#not a comment? yes it is part of the value\n",
            err, sizeof err),
        -1);
    CHECK_EQ_STR(err + strlen(tmpdir) + 1,
                 "broker.conf:10: durability: expected normal or full, not "
                 "\"full#not a comment? yes it is part of th...\"");
    /* The failed load changed nothing. */
    CHECK_EQ_STR(c.listen, "127.0.0.1:8080");
    CHECK_EQ_INT(c.log_level, LOG_INFO);

    CHECK_EQ_INT(
        load_text(&c,
                  "\xEF\xBB\xBF# comment at the top, after a byte order mark\n"
                  "\n"
                  "   \t\n"
                  "  # indented comment\n"
                  "listen=:9001\n"
                  "  log_level   =   debug   # trailing comment\n"
                  "db_path = /tmp/a#b.db\n"
                  "history_size = 5\t# tab before the comment\r\n"
                  "history_ttl = \"1h\"\n"
                  "echo_endpoint = \"on\"   # quoted, then a comment\n"
                  "max_connections = 7", /* no final newline */
                  err, sizeof err),
        0);
    CHECK_EQ_STR(c.listen, ":9001");
    CHECK_EQ_INT(c.log_level, LOG_DEBUG);
    CHECK_EQ_STR(c.db_path, "/tmp/a#b.db");
    CHECK_EQ_INT(c.history_size, 5);
    CHECK_EQ_INT(c.history_ttl_ms, 3600000);
    CHECK_EQ_INT(c.echo_endpoint, 1);
    CHECK_EQ_INT(c.max_connections, 7);
    CHECK_EQ_INT(c.max_message_size, 1 << 20); /* untouched: default */

    /* Quotes keep '#' and surrounding spaces; a second file may set keys
     * again (duplicates are per file). */
    CHECK_EQ_INT(load_text(&c,
                           "db_path = \" /var/lib/chorus #1/x.db \" # comment\n"
                           "log_level = warn\n",
                           err, sizeof err),
                 0);
    CHECK_EQ_STR(c.db_path, " /var/lib/chorus #1/x.db ");
    CHECK_EQ_INT(c.log_level, LOG_WARN);
    CHECK_EQ_STR(c.listen, ":9001"); /* kept from the earlier file */

    /* Empty files and comment-only files are fine. */
    CHECK_EQ_INT(load_text(&c, "", err, sizeof err), 0);
    CHECK_EQ_INT(load_text(&c, "# nothing\n\n#key = value\n", err, sizeof err),
                 0);
    config_free(&c);
}

/* File errors: "path:line: message" with the right line number. */
static void test_file_errors(void)
{
    static const struct {
        const char *text, *msg;
    } cases[] = {
        {"# ok\nlisten 127.0.0.1:80\n",
         "broker.conf:2: expected \"key = value\", found no '='"},
        {"\n\n\n= 5\n", "broker.conf:4: expected \"key = value\", found no "
                        "key before '='"},
        {"bogus = 1\n", "broker.conf:1: unknown key \"bogus\""},
        {"log_level = info\n\nping_interval = 7\n",
         "broker.conf:3: ping_interval: expected a duration like 500ms, 30s, "
         "5m, 24h, or 0 for off, not \"7\""},
        {"log_level =\n", "broker.conf:1: log_level: missing value (expected "
                          "one of error, warn, info, debug)"},
        {"log_level = # nothing\n", "broker.conf:1: log_level: missing value "
                                    "(expected one of error, warn, info, "
                                    "debug)"},
        {"log_level = \"\"\n", "broker.conf:1: log_level: missing value "
                               "(expected one of error, warn, info, debug)"},
        {"db_path = \"abc\n", "broker.conf:1: db_path: missing closing '\"'"},
        {"db_path = \"abc\" def\n",
         "broker.conf:1: db_path: unexpected text after quoted value"},
        {"a\n", "broker.conf:1: expected \"key = value\", found no '='"},
        {"log_level = info\n# x\nhistory_size = 3\nlog_level = debug\n",
         "broker.conf:4: log_level: duplicate key (first set on line 1)"},
        {"max_message_size = 300m\n",
         "broker.conf:1: max_message_size: must be between 1 and 256m"},
        {"echo_endpoint = on off\n",
         "broker.conf:1: echo_endpoint: expected on or off, not \"on off\""},
        {"listen = 1.2.3.4:80:90\n",
         "broker.conf:1: listen: expected host:port, [ipv6]:port or :port, "
         "port 1-65535, not \"1.2.3.4:80:90\""},
        {"log_level = info\nauth_secret = x\n",
         "broker.conf:2: auth_secret: must be at least 32 bytes (an HS256 "
         "key, RFC 7518 section 3.2); this one has 1"},
        {"auth_secret = \"0123456789 0123456789 012345678\"\n",
         "broker.conf:1: auth_secret: must be at least 32 bytes (an HS256 "
         "key, RFC 7518 section 3.2); this one has 31"},
        {"durability = normal\r\nlog_level = loud\r\n",
         "broker.conf:2: log_level: expected one of error, warn, info, "
         "debug, not \"loud\""},
    };
    config c, d;
    char err[512];
    size_t skip = strlen(tmpdir) + 1;

    config_init(&c);
    config_init(&d);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        CHECK_EQ_INT(load_text(&c, cases[i].text, err, sizeof err), -1);
        CHECK(strncmp(err, tmpdir, skip - 1) == 0);
        CHECK_EQ_STR(err + (strlen(err) >= skip ? skip : 0), cases[i].msg);
    }
    /* NUL byte inside a line. */
    {
        char path[512];
        snprintf(path, sizeof path, "%s/nul.conf", tmpdir);
        FILE *f = fopen(path, "w");
        fwrite("log_level = info\nhistory_size = 1\0002\n", 1, 37, f);
        fclose(f);
        CHECK_EQ_INT(config_load_file(&c, path, err, sizeof err), -1);
        CHECK_EQ_STR(err + skip, "nul.conf:2: line contains a NUL byte");
    }
    CHECK(same_config(&c, &d));

    /* Unreadable files: "path: strerror". */
    char path[512];
    snprintf(path, sizeof path, "%s/missing.conf", tmpdir);
    CHECK_EQ_INT(config_load_file(&c, path, err, sizeof err), -1);
    char want[600];
    snprintf(want, sizeof want, "%s: No such file or directory", path);
    CHECK_EQ_STR(err, want);
    CHECK_EQ_INT(config_load_file(&c, tmpdir, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: Is a directory", tmpdir);
    CHECK_EQ_STR(err, want);
    if (geteuid() != 0) {
        const char *p = write_file("noperm.conf", "log_level = info\n");
        chmod(p, 0);
        CHECK_EQ_INT(config_load_file(&c, p, err, sizeof err), -1);
        snprintf(want, sizeof want, "%s: Permission denied", p);
        CHECK_EQ_STR(err, want);
    }
    CHECK(same_config(&c, &d));
    config_free(&c);
    config_free(&d);
}

static void test_redis_url(void)
{
    redis_addr a;
    char err[256];
    static const char *bad[] = {
        "",
        "redis://",
        "redis://localhost",
        "redis://:6379",
        "http://localhost:6379",
        "redis://user:pw@localhost:6379", /* no ACL user names */
        "redis://localhost:0",
        "redis://localhost:6379/",
        "redis://localhost:6379/x",
        "redis://localhost:6379/1/2",
        "redis://local host:6379",
    };

    CHECK_EQ_INT(
        config_parse_redis_url("redis://127.0.0.1:6379", &a, err, sizeof err),
        0);
    CHECK_EQ_STR(a.host, "127.0.0.1");
    CHECK_EQ_INT(a.port, 6379);
    CHECK_EQ_STR(a.password, "");
    CHECK_EQ_INT(a.db, 0);
    CHECK_EQ_INT(config_parse_redis_url("redis://:s3cr#t@redis-1.lan:7000/3",
                                        &a, err, sizeof err),
                 0);
    CHECK_EQ_STR(a.host, "redis-1.lan");
    CHECK_EQ_INT(a.port, 7000);
    CHECK_EQ_STR(a.password, "s3cr#t");
    CHECK_EQ_INT(a.db, 3);
    CHECK_EQ_INT(
        config_parse_redis_url("redis://[::1]:6380", &a, err, sizeof err), 0);
    CHECK_EQ_STR(a.host, "::1");
    CHECK_EQ_INT(a.port, 6380);
    CHECK_EQ_INT(
        config_parse_redis_url("rediss://127.0.0.1:6379", &a, err, sizeof err),
        -1);
    CHECK(strstr(err, "rediss:// (TLS) is not supported") != NULL);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        CHECK_EQ_INT(config_parse_redis_url(bad[i], &a, err, sizeof err), -1);
        CHECK_EQ_STR(err, "expected redis://[:password@]host:port[/db]");
    }
}

/* engine, the repeatable redis_url, and keys of one engine refused
 * (naming the key and its line) while the other is in use. */
static void test_engine_keys(void)
{
    static const struct {
        const char *text, *error; /* error NULL: loads */
    } cases[] = {
        {"engine = redis\nredis_url = redis://127.0.0.1:6379\n", NULL},
        {"engine = redis\nredis_url = redis://a:1\nredis_url = redis://b:1\n"
         "redis_durable = on\nredis_timeout = 500ms\n",
         NULL},
        {"engine = sqlite\nredis_durable = off\nredis_timeout = 2s\n", NULL},
        {"engine = mysql\n",
         "engine.conf:1: engine: expected sqlite or redis, not \"mysql\""},
        {"engine = redis\n",
         "engine.conf:1: engine: engine = redis needs a redis_url"},
        {"log_level = info\nredis_url = redis://127.0.0.1:6379\n",
         "engine.conf:2: redis_url: only used with engine = redis (engine is "
         "sqlite)"},
        {"engine = sqlite\n\nredis_durable = on\n",
         "engine.conf:3: redis_durable: only used with engine = redis (engine "
         "is sqlite)"},
        {"redis_timeout = 1s\n",
         "engine.conf:1: redis_timeout: only used with engine = redis (engine "
         "is sqlite)"},
        {"engine = redis\nredis_url = redis://h:1\ndb_path = /var/x.db\n",
         "engine.conf:3: db_path: not used with engine = redis (history lives "
         "in Redis; no SQLite file is opened)"},
        {"durability = full\nengine = redis\nredis_url = redis://h:1\n",
         "engine.conf:1: durability: a SQLite setting; with engine = redis "
         "use redis_durable and Redis's appendfsync"},
        {"engine = redis\nredis_url = redis://h:1\nhistory = off\n",
         "engine.conf:3: history: engine = redis always keeps history (in "
         "Redis)"},
        {"engine = redis\nredis_url = redis://h:1\nredis_url = redis://h:1\n",
         "engine.conf:3: redis_url: h:1/0 is listed twice"},
        {"engine = redis\nredis_url = rediss://h:1\n",
         "engine.conf:2: redis_url: rediss:// (TLS) is not supported: Debian "
         "12's hiredis is built without TLS; reach Redis over a private "
         "network or a local TLS tunnel"},
        {"engine = redis\nredis_url = redis://h:1\nredis_timeout = 0\n",
         "engine.conf:3: redis_timeout: must be greater than 0"},
        {"engine = redis\nengine = sqlite\n",
         "engine.conf:2: engine: duplicate key (first set on line 1)"},
    };
    char err[512];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        config c;
        const char *path = write_file("engine.conf", cases[i].text);
        const char *base = strrchr(path, '/') + 1;
        int rc;

        config_init(&c);
        err[0] = '\0';
        rc = config_load_file(&c, path, err, sizeof err);
        if (!cases[i].error) {
            CHECK_EQ_INT(rc, 0);
            if (rc)
                fprintf(stderr, "case %zu: %s\n", i, err);
            CHECK_EQ_INT(config_validate(&c, err, sizeof err), 0);
        } else {
            CHECK_EQ_INT(rc, -1);
            CHECK_EQ_STR(strstr(err, base) ? strstr(err, base) : err,
                         cases[i].error);
            /* the failed file left the defaults in place */
            CHECK_EQ_INT(c.engine, ENGINE_SQLITE);
            CHECK_EQ_INT(c.redis_url_count, 0);
        }
        config_free(&c);
    }

    /* Two URLs in file order; validate on a config built by config_set. */
    config c;
    config_init(&c);
    CHECK_EQ_INT(config_set(&c, "engine", "redis", err, sizeof err), 0);
    CHECK_EQ_INT(config_validate(&c, err, sizeof err), -1);
    CHECK_EQ_STR(err, "engine: engine = redis needs a redis_url");
    CHECK_EQ_INT(config_set(&c, "redis_url", "redis://b:2", err, sizeof err),
                 0);
    CHECK_EQ_INT(config_set(&c, "redis_url", "redis://a:1", err, sizeof err),
                 0);
    CHECK_EQ_INT(c.redis_url_count, 2);
    CHECK_EQ_STR(c.redis_urls[0], "redis://b:2");
    CHECK_EQ_STR(c.redis_urls[1], "redis://a:1");
    CHECK_EQ_INT(config_validate(&c, err, sizeof err), 0);
    /* a file loaded over it keeps the earlier list and appends */
    const char *path =
        write_file("engine.conf", "redis_url = redis://c:3\nthreads = 2\n");
    CHECK_EQ_INT(config_load_file(&c, path, err, sizeof err), 0);
    CHECK_EQ_INT(c.redis_url_count, 3);
    CHECK_EQ_STR(c.redis_urls[2], "redis://c:3");
    config_free(&c);
}

/* A long line (longer than any fixed buffer) is read whole. */
static void test_long_line(void)
{
    size_t n = 10000;
    char *text = malloc(n + 32);
    config c;
    char err[512];

    strcpy(text, "db_path = ");
    memset(text + 10, 'x', n);
    strcpy(text + 10 + n, "\n");
    config_init(&c);
    CHECK_EQ_INT(load_text(&c, text, err, sizeof err), 0);
    CHECK_EQ_INT(strlen(c.db_path), n);
    config_free(&c);
    free(text);
}

static void test_log_format(void)
{
    config c;
    char err[256];
    int v = -1;

    CHECK_EQ_INT(config_parse_log_format("text", &v), 0);
    CHECK_EQ_INT(v, LOG_FORMAT_TEXT);
    CHECK_EQ_INT(config_parse_log_format("json", &v), 0);
    CHECK_EQ_INT(v, LOG_FORMAT_JSON);
    CHECK_EQ_INT(config_parse_log_format("JSON", &v), -1);
    CHECK_EQ_INT(config_parse_log_format("", &v), -1);
    config_init(&c);
    CHECK_EQ_INT(c.log_format, LOG_FORMAT_TEXT);
    CHECK_EQ_INT(config_set(&c, "log_format", "xml", err, sizeof err), -1);
    CHECK(strstr(err, "log_format: expected text or json") != NULL);
    CHECK_EQ_INT(config_set(&c, "log_format", "json", err, sizeof err), 0);
    CHECK_EQ_INT(c.log_format, LOG_FORMAT_JSON);
    config_free(&c);
}

/* What a reload uses: a deep copy, a per-key comparison over every key,
 * and copying one key back. */
static void test_copy_and_diff(void)
{
    config a, b;
    char err[256];
    size_t n = 0;

    config_init(&a);
    CHECK_EQ_INT(config_set(&a, "auth_secret",
                            "s0123456789abcdef0123456789abcdef", err,
                            sizeof err),
                 0);
    CHECK_EQ_INT(config_set(&a, "publish_rate", "5", err, sizeof err), 0);
    CHECK_EQ_INT(config_copy(&b, &a), 0);
    CHECK(b.auth_secret != a.auth_secret); /* its own copy */
    for (const char *k; (k = config_key_name(n)); n++)
        CHECK_EQ_INT(config_key_differs(&a, &b, k), 0);
    CHECK(n > 30);
    CHECK_EQ_INT(config_key_differs(&a, &b, "no_such_key"), -1);
    CHECK_EQ_INT(config_set(&b, "listen", "127.0.0.1:9", err, sizeof err), 0);
    CHECK_EQ_INT(config_set(&b, "publish_rate", "6", err, sizeof err), 0);
    CHECK_EQ_INT(config_set(&b, "log_format", "json", err, sizeof err), 0);
    CHECK_EQ_INT(config_key_differs(&a, &b, "listen"), 1);
    CHECK_EQ_INT(config_key_differs(&a, &b, "publish_rate"), 1);
    CHECK_EQ_INT(config_key_differs(&a, &b, "log_format"), 1);
    CHECK_EQ_INT(config_key_differs(&a, &b, "api_key"), 0);
    CHECK_EQ_INT(config_copy_key(&b, &a, "listen"), 0);
    CHECK_EQ_STR(b.listen, "127.0.0.1:8080");
    CHECK_EQ_INT(config_copy_key(&b, &a, "publish_rate"), 0);
    CHECK_EQ_INT(b.publish_rate, 5);
    CHECK_EQ_INT(config_copy_key(&b, &a, "no_such_key"), -1);
    /* A file that fails leaves the copy it was read over untouched, even
     * for keys it set before the bad line. */
    CHECK_EQ_INT(load_text(&b,
                           "auth_secret = 0123456789abcdef0123456789abcdefX\n"
                           "publish_rate = x\n",
                           err, sizeof err),
                 -1);
    CHECK_EQ_STR(b.auth_secret, a.auth_secret);
    CHECK_EQ_INT(b.publish_rate, 5);
    config_free(&a);
    config_free(&b);
}

static void test_resolve_threads(void)
{
    config c;

    config_init(&c);
    CHECK_EQ_INT(c.threads, 0);
    config_resolve_threads(&c);
    CHECK(c.threads >= 1); /* one per core */
    c.threads = 5;
    config_resolve_threads(&c);
    CHECK_EQ_INT(c.threads, 5);
    c.history = 0; /* no shared store: one loop */
    config_resolve_threads(&c);
    CHECK_EQ_INT(c.threads, 1);
    config_free(&c);
}

/* config_load_buffer: the reader behind config_load_file, on text in
 * memory (length-delimited, so a NUL is seen), named in its messages; and
 * all or nothing over a configuration that already holds strings. */
static void test_load_buffer(void)
{
    static const char secret[] = "0123456789abcdef0123456789abcdef-secret";
    static const char nul_text[] = "threads = 2\nhistory_size = 1\0002";
    static const char good[] = "api_key = \"new key\"\nthreads = 3";
    static const char bad[] = "auth_secret = replaced-secret-0123456789abcdef\n"
                              "api_key = other\nthreads = many\n";
    config c;
    char err[512];

    config_init(&c);
    CHECK_EQ_INT(config_load_buffer(&c, nul_text, sizeof nul_text - 1, "mem",
                                    err, sizeof err),
                 -1);
    CHECK_EQ_STR(err, "mem:2: line contains a NUL byte");
    CHECK_EQ_INT(c.threads, 0);

    CHECK_EQ_INT(config_set(&c, "auth_secret", secret, err, sizeof err), 0);
    CHECK_EQ_INT(config_set(&c, "api_key", "old key", err, sizeof err), 0);
    CHECK_EQ_INT(
        config_load_buffer(&c, good, strlen(good), "mem", err, sizeof err), 0);
    CHECK_EQ_STR(c.api_key, "new key");
    CHECK_EQ_STR(c.auth_secret, secret);
    CHECK_EQ_INT(c.threads, 3);

    /* The failed text set two strings before its error: both are kept. */
    CHECK_EQ_INT(
        config_load_buffer(&c, bad, strlen(bad), "mem", err, sizeof err), -1);
    CHECK_EQ_STR(err, "mem:3: threads: expected a non-negative integer, not "
                      "\"many\"");
    CHECK_EQ_STR(c.auth_secret, secret);
    CHECK_EQ_STR(c.api_key, "new key");
    CHECK_EQ_INT(config_load_buffer(&c, "", 0, "mem", err, sizeof err), 0);
    CHECK_EQ_INT(c.threads, 3);
    config_free(&c);
}

/* A file over CONFIG_FILE_MAX is refused rather than read into memory. */
static void test_file_too_large(void)
{
    char path[512], want[700];
    config c;
    char err[600];
    FILE *f;

    snprintf(path, sizeof path, "%s/large.conf", tmpdir);
    f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    for (unsigned i = 0; i <= CONFIG_FILE_MAX / 15; i++) /* 15 bytes each */
        fputs("# comment line\n", f);
    fclose(f);
    config_init(&c);
    CHECK_EQ_INT(config_load_file(&c, path, err, sizeof err), -1);
    snprintf(want, sizeof want,
             "%s: larger than %u bytes, not a configuration file", path,
             CONFIG_FILE_MAX);
    CHECK_EQ_STR(err, want);
    config_free(&c);
    unlink(path);
}

/* Finds broker.conf.example: argv[1], the source tree (CHORUS_SOURCE_DIR
 * or derived from __FILE__), or relative to the working directory. */
static const char *find_example(int argc, char **argv)
{
    static char buf[1024];
    static const char *rel[] = {"broker.conf.example", "../broker.conf.example",
                                "../../broker.conf.example",
                                "../../../broker.conf.example"};

    if (argc > 1)
        return argv[1];
#ifdef CHORUS_SOURCE_DIR
    snprintf(buf, sizeof buf, "%s/broker.conf.example", CHORUS_SOURCE_DIR);
    if (access(buf, R_OK) == 0)
        return buf;
#endif
    const char *slash = strstr(__FILE__, "tests/unit/test_config.c");
    if (slash) {
        snprintf(buf, sizeof buf, "%.*sbroker.conf.example",
                 (int)(slash - __FILE__), __FILE__);
        if (access(buf, R_OK) == 0)
            return buf;
    }
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++)
        if (access(rel[i], R_OK) == 0)
            return rel[i];
    return NULL;
}

static int is_key_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || ch == '_';
}

/* The example loads as is, and with every "# key = default" line
 * uncommented it yields exactly the defaults and sets every key once. */
static void test_example(const char *path)
{
    static const char *all_keys[] = {
        "listen",
        "echo_endpoint",
        "max_message_size",
        "max_outbound_bytes",
        "max_unacked_bytes",
        "ping_interval",
        "idle_timeout",
        "handshake_timeout",
        "message_timeout",
        "log_level",
        "log_format",
        "db_path",
        "history_size",
        "history_ttl",
        "durability",
        "max_connections",
        "max_subscriptions_per_connection",
        "max_connections_per_ip",
        "history",
        "allow_anonymous",
        "anonymous_publish",
        "publish_rate",
        "publish_burst",
        "threads",
        "compression",
        "io_uring",
        "engine",
        "redis_durable",
        "redis_timeout",
    };
    int found[sizeof all_keys / sizeof all_keys[0]] = {0};
    config c, d;
    char err[512], line[1024];
    FILE *in, *out;
    int uncommented = 0;

    if (!path) {
        fprintf(stderr, "broker.conf.example not found; pass its path\n");
        CHECK(path != NULL);
        return;
    }
    config_init(&c);
    config_init(&d);
    err[0] = '\0';
    CHECK_EQ_INT(config_load_file(&c, path, err, sizeof err), 0);
    if (err[0])
        fprintf(stderr, "%s\n", err);
    CHECK(same_config(&c, &d));

    in = fopen(path, "r");
    snprintf(err, sizeof err, "%s/example.conf", tmpdir);
    out = fopen(err, "w");
    CHECK(in && out);
    if (!in || !out) {
        if (in)
            fclose(in);
        if (out)
            fclose(out);
        config_free(&c);
        config_free(&d);
        return;
    }
    while (fgets(line, sizeof line, in)) {
        const char *p = line + 2;
        if (strncmp(line, "# ", 2) == 0 && is_key_char(*p)) {
            while (is_key_char(*p))
                p++;
            if (strncmp(p, " = ", 3) == 0) {
                size_t klen = (size_t)(p - (line + 2));
                for (size_t i = 0; i < sizeof all_keys / sizeof all_keys[0];
                     i++)
                    if (strlen(all_keys[i]) == klen &&
                        strncmp(all_keys[i], line + 2, klen) == 0)
                        found[i]++;
                fputs(line + 2, out);
                uncommented++;
                continue;
            }
        }
        fputs(line, out);
    }
    fclose(in);
    fclose(out);
    CHECK_EQ_INT(uncommented, sizeof all_keys / sizeof all_keys[0]);
    for (size_t i = 0; i < sizeof all_keys / sizeof all_keys[0]; i++) {
        if (found[i] != 1)
            fprintf(stderr, "example: key %s found %d times\n", all_keys[i],
                    found[i]);
        CHECK_EQ_INT(found[i], 1);
    }
    char upath[600];
    snprintf(upath, sizeof upath, "%s/example.conf", tmpdir);
    /* Start from non-defaults so every key must really be set. */
    config_free(&c);
    config_init(&c);
    c.echo_endpoint = 1;
    c.max_message_size = 7;
    c.max_outbound_bytes = 7;
    c.ping_interval_ms = 7;
    c.idle_timeout_ms = 7;
    c.handshake_timeout_ms = 7;
    c.log_level = LOG_ERROR;
    c.history_size = 7;
    c.history_ttl_ms = 7;
    c.durability = DURABILITY_FULL;
    c.max_connections = 7;
    c.max_subscriptions_per_connection = 7;
    c.max_connections_per_ip = 7;
    c.history = 0;
    c.threads = 7;
    c.compression = 1;
    c.allow_anonymous = 1;
    c.anonymous_publish = 1;
    c.publish_rate = 7;
    c.publish_burst = 7;
    c.redis_timeout_ms = 7;
    config_set(&c, "listen", "1.2.3.4:7", err, sizeof err);
    config_set(&c, "db_path", "/x", err, sizeof err);
    err[0] = '\0';
    CHECK_EQ_INT(config_load_file(&c, upath, err, sizeof err), 0);
    if (err[0])
        fprintf(stderr, "%s\n", err);
    CHECK(same_config(&c, &d));
    CHECK_EQ_INT(config_validate(&c, err, sizeof err), 0);
    config_free(&c);
    config_free(&d);
}

int main(int argc, char **argv)
{
    char path[600];

    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    test_defaults();
    test_bool();
    test_size();
    test_duration();
    test_log_level();
    test_log_format();
    test_copy_and_diff();
    test_resolve_threads();
    test_listen();
    test_set();
    test_set_errors();
    test_validate();
    test_file_format();
    test_file_errors();
    test_long_line();
    test_redis_url();
    test_engine_keys();
    test_load_buffer();
    test_file_too_large();
    test_example(find_example(argc, argv));

    const char *names[] = {"broker.conf", "nul.conf", "noperm.conf",
                           "example.conf", "engine.conf"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, names[i]);
        unlink(path);
    }
    rmdir(tmpdir);
    return check_report("test_config");
}
