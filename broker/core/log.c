#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* A line is built whole and written with one write(2), so lines from
 * several threads never interleave. */
#define LOG_MSG_MAX 1024
#define LOG_FIELD_MAX 1024 /* bytes of a field's value kept */
/* Room for the message and every field escaped at 6 bytes a byte, so a
 * JSON line is never cut. */
#define LOG_LINE_MAX (256 + 6 * (LOG_MSG_MAX + 4 * LOG_FIELD_MAX))

static _Atomic int log_level = LOG_INFO;
static _Atomic int log_format = LOG_FORMAT_TEXT;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_set_level(int level)
{
    atomic_store_explicit(&log_level, level, memory_order_relaxed);
}

void log_set_format(int format)
{
    atomic_store_explicit(&log_format, format, memory_order_relaxed);
}

int log_enabled(int level)
{
    return level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

int64_t log_now_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

uint64_t log_due(log_limit *l, int64_t now_ms)
{
    int64_t last = atomic_load(&l->last_ms);

    /* Of several threads due at once, the one that moves last_ms logs. */
    if (now_ms - last < 1000 ||
        !atomic_compare_exchange_strong(&l->last_ms, &last, now_ms)) {
        atomic_fetch_add(&l->suppressed, 1);
        return 0;
    }
    return 1 + atomic_exchange(&l->suppressed, 0);
}

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, no
 * surrogates, at most U+10FFFF), or 0. */
static size_t utf8_seq_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0], lo = 0x80, hi = 0xBF;
    size_t len;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4;
    else
        return 0;
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return len;
}

size_t log_json_escape(char *out, size_t cap, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;

    for (size_t i = 0; i < len;) {
        char esc[8];
        const char *piece = esc;
        size_t n = utf8_seq_len(p + i, len - i), plen;

        if (n == 0) { /* not UTF-8: U+FFFD */
            piece = "\\ufffd";
            plen = 6;
            n = 1;
        } else if (p[i] == '"' || p[i] == '\\') {
            esc[0] = '\\';
            esc[1] = (char)p[i];
            plen = 2;
        } else if (p[i] < 0x20 || p[i] == 0x7F) {
            snprintf(esc, sizeof esc, "\\u00%c%c", hex[p[i] >> 4],
                     hex[p[i] & 15]);
            plen = 6;
        } else {
            piece = (const char *)p + i;
            plen = n;
        }
        if (o + plen >= cap)
            break;
        memcpy(out + o, piece, plen);
        o += plen;
        i += n;
    }
    out[o] = '\0';
    return o;
}

typedef struct line_buf {
    char buf[LOG_LINE_MAX];
    size_t len;
} line_buf;

static void put(line_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void put(line_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->len >= sizeof b->buf - 1)
        return;
    va_start(ap, fmt);
    n = vsnprintf(b->buf + b->len, sizeof b->buf - b->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        b->len += (size_t)n < sizeof b->buf - b->len
                      ? (size_t)n
                      : sizeof b->buf - b->len - 1;
}

/* ,"name":"escaped value" */
static void put_json_string(line_buf *b, const char *name, const char *s,
                            size_t len)
{
    put(b, ",\"%s\":\"", name);
    b->len += log_json_escape(b->buf + b->len, sizeof b->buf - b->len, s,
                              len < LOG_FIELD_MAX ? len : LOG_FIELD_MAX);
    put(b, "\"");
}

static void format_json(line_buf *b, const char *stamp, int level,
                        const log_fields *f, const char *msg)
{
    put(b, "{\"ts\":\"%s\",\"level\":\"%s\"", stamp, level_names[level]);
    put_json_string(b, "msg", msg, strlen(msg));
    if (f && f->conn)
        put(b, ",\"conn\":%llu", (unsigned long long)f->conn);
    if (f && f->peer)
        put_json_string(b, "peer", f->peer, strlen(f->peer));
    if (f && f->topic)
        put_json_string(b, "topic", f->topic,
                        f->topic_len ? f->topic_len : strlen(f->topic));
    if (f && f->code)
        put_json_string(b, "code", f->code, strlen(f->code));
    if (f && f->suppressed)
        put(b, ",\"suppressed\":%llu", (unsigned long long)f->suppressed);
    put(b, "}\n");
}

static void format_text(line_buf *b, const char *stamp, int level,
                        const log_fields *f, const char *msg)
{
    put(b, "%s %s ", stamp, level_names[level]);
    if (f && f->conn && f->peer)
        put(b, "conn %llu (%s): ", (unsigned long long)f->conn, f->peer);
    else if (f && f->conn)
        put(b, "conn %llu: ", (unsigned long long)f->conn);
    else if (f && f->peer)
        put(b, "%s: ", f->peer);
    put(b, "%s", msg);
    if (f && f->suppressed)
        put(b, " (%llu similar suppressed)", (unsigned long long)f->suppressed);
    put(b, "\n");
}

static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* nowhere left to report it */
        p += w;
        n -= (size_t)w;
    }
}

static void log_line(int level, const log_fields *f, const char *fmt,
                     va_list ap)
{
    char stamp[40], msg[LOG_MSG_MAX];
    size_t n;
    line_buf b;
    struct timeval tv;
    struct tm tm;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + n, sizeof stamp - n, ".%03dZ",
             (int)(tv.tv_usec / 1000) % 1000);
    vsnprintf(msg, sizeof msg, fmt, ap);
    b.len = 0;
    if (atomic_load_explicit(&log_format, memory_order_relaxed) ==
        LOG_FORMAT_JSON)
        format_json(&b, stamp, level, f, msg);
    else
        format_text(&b, stamp, level, f, msg);
    write_all(b.buf, b.len);
}

void log_msg(int level, const char *fmt, ...)
{
    va_list ap;

    if (!log_enabled(level))
        return;
    va_start(ap, fmt);
    log_line(level, NULL, fmt, ap);
    va_end(ap);
}

void log_withv(int level, const log_fields *f, const char *fmt, va_list ap)
{
    if (log_enabled(level))
        log_line(level, f, fmt, ap);
}

void log_with(int level, const log_fields *f, const char *fmt, ...)
{
    va_list ap;

    if (!log_enabled(level))
        return;
    va_start(ap, fmt);
    log_line(level, f, fmt, ap);
    va_end(ap);
}
