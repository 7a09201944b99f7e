/* Unit tests for bench/bench_sse.c, the bench's SSE decoders: events as
 * the HTML standard's event stream interpretation gives them (line ends,
 * comments, the space after the colon, multi-line data, unknown fields),
 * whatever the cuts between reads; a whole line handed out in one piece;
 * chunked transfer coding, its framing errors and its end. */
#include "bench_sse.h"

#include "check.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* ---- event harness ------------------------------------------------------ */

/* What a client makes of the stream, as a log: "<type>|<data>|<id>;" per
 * dispatched event that has data (the standard drops the others), "R<v>;"
 * per retry line, "#" per comment. Values are joined from their chunks. */
typedef struct collector {
    char log[2048];
    char data[512], type[32], id[64], val[512];
    size_t data_len, type_len, id_len, val_len;
    int has_data, chunks;
} collector;

static void add(char *dst, size_t *n, size_t cap, const void *p, size_t len)
{
    if (*n + len < cap) {
        memcpy(dst + *n, p, len);
        *n += len;
        dst[*n] = 0;
    }
}

static void logf_(collector *c, const char *s, size_t n)
{
    size_t l = strlen(c->log);
    add(c->log, &l, sizeof c->log, s, n);
}

static void on_field(collector *c, const sse_item *it)
{
    if (it->first)
        c->val_len = 0;
    add(c->val, &c->val_len, sizeof c->val, it->val, it->len);
    c->chunks++;
    if (!it->fin)
        return;
    switch (it->field) {
    case SSE_F_DATA:
        if (c->has_data)
            add(c->data, &c->data_len, sizeof c->data, "\n", 1);
        add(c->data, &c->data_len, sizeof c->data, c->val, c->val_len);
        c->has_data = 1;
        break;
    case SSE_F_EVENT:
        c->type_len = 0;
        add(c->type, &c->type_len, sizeof c->type, c->val, c->val_len);
        break;
    case SSE_F_ID:
        c->id_len = 0;
        add(c->id, &c->id_len, sizeof c->id, c->val, c->val_len);
        break;
    case SSE_F_RETRY:
        logf_(c, "R", 1);
        logf_(c, c->val, c->val_len);
        logf_(c, ";", 1);
        break;
    case SSE_F_COMMENT: logf_(c, "#", 1); break;
    default: break;
    }
}

static void on_dispatch(collector *c)
{
    if (c->has_data) {
        char ev[700];
        int n = snprintf(ev, sizeof ev, "%s|%s|%s;",
                         c->type_len ? c->type : "message", c->data, c->id);
        logf_(c, ev, (size_t)n);
    }
    c->has_data = 0;
    c->data_len = c->type_len = 0;
    c->data[0] = c->type[0] = 0;
    /* the last event id stays, as in the standard */
}

/* Feeds s in pieces of `step` bytes (0: one piece) and returns the log. */
static const char *run_events(collector *c, const char *s, size_t step)
{
    sse_dec d;
    size_t len = strlen(s), off = 0;

    memset(c, 0, sizeof *c);
    sse_dec_init(&d);
    while (off < len) {
        size_t n = step && len - off > step ? step : len - off;
        uint8_t piece[1024];
        size_t p = 0;
        memcpy(piece, s + off, n); /* its own buffer, as a read gives */
        while (p < n) {
            sse_item it;
            size_t used = sse_dec_next(&d, piece + p, n - p, &it);
            CHECK(used > 0);
            if (!used)
                return c->log;
            p += used;
            if (it.type == SSE_FIELD)
                on_field(c, &it);
            else if (it.type == SSE_DISPATCH)
                on_dispatch(c);
            else
                CHECK(p == n); /* NEED_MORE only once all is used */
        }
        off += n;
    }
    return c->log;
}

/* The same log whatever the cuts: whole, every size 1..17, and a cut at
 * every position into two reads. */
static void expect_events(const char *stream, const char *want)
{
    collector c;
    size_t len = strlen(stream);

    CHECK_EQ_STR(run_events(&c, stream, 0), want);
    for (size_t step = 1; step <= 17; step++)
        CHECK_EQ_STR(run_events(&c, stream, step), want);
    for (size_t cut = 1; cut < len; cut++) {
        char two[1024];
        sse_dec d;
        /* two reads: [0, cut) and [cut, len) */
        memset(&c, 0, sizeof c);
        sse_dec_init(&d);
        memcpy(two, stream, len);
        for (int part = 0; part < 2; part++) {
            size_t p = part ? cut : 0, end = part ? len : cut;
            while (p < end) {
                sse_item it;
                p += sse_dec_next(&d, (uint8_t *)two + p, end - p, &it);
                if (it.type == SSE_FIELD)
                    on_field(&c, &it);
                else if (it.type == SSE_DISPATCH)
                    on_dispatch(&c);
            }
        }
        CHECK_EQ_STR(c.log, want);
    }
}

static void test_chorus_stream(void)
{
    expect_events(
        "retry: 1000\n\n"
        "event: subscribed\ndata: {\"epoch\":\"e1\",\"offset\":0}\n\n"
        "id: e1:1\nevent: message\n"
        "data: {\"topic\":\"t\",\"offset\":1,\"ts\":5,\"data\":\"x\"}\n\n"
        ": ping\n\n"
        "id: e1:2\nevent: message\ndata: {\"data\":\"y\"}\n\n",
        "R1000;subscribed|{\"epoch\":\"e1\",\"offset\":0}|;"
        "message|{\"topic\":\"t\",\"offset\":1,\"ts\":5,\"data\":\"x\"}|e1:1;"
        "#message|{\"data\":\"y\"}|e1:2;");
}

static void test_line_ends(void)
{
    expect_events("data: a\r\n\r\ndata: b\r\rdata: c\n\n",
                  "message|a|;message|b|;message|c|;");
    /* CR then LF in separate reads is one line end, not two */
    expect_events("data: a\r\ndata: b\r\n\r\n", "message|a\nb|;");
    /* line ends past the first 16 bytes of a line, in either half of a
     * 16-byte block */
    expect_events("data: 0123456789abcdefghij\rdata: 0123456789abcdefghijklmn"
                  "opqrstuvwxyz0123456789\r\n\n",
                  "message|0123456789abcdefghij\n0123456789abcdefghijklmnopq"
                  "rstuvwxyz0123456789|;");
    expect_events("data: 0123456789abcdefghijklmnopqrstuvwxyz\n\n",
                  "message|0123456789abcdefghijklmnopqrstuvwxyz|;");
    /* the last event without its blank line is not dispatched */
    expect_events("data: a\n\ndata: b\n", "message|a|;");
}

static void test_fields(void)
{
    /* one space after the colon goes, not two; no space is fine */
    expect_events("data:x\n\ndata:  y\n\n", "message|x|;message| y|;");
    /* no colon: a field with an empty value */
    expect_events("data\n\n", "message||;");
    expect_events("data\ndata\n\n", "message|\n|;");
    /* multi-line data is one event */
    expect_events("data: line 1\ndata: line 2\ndata: line 3\n\n",
                  "message|line 1\nline 2\nline 3|;");
    /* unknown and near-miss names are ignored */
    expect_events("dat: a\ndatax: b\ndataaaaaaaaa: c\nfoo\nevents: z\n"
                  "Data: d\ndata: e\n\n",
                  "message|e|;");
    /* an event with no data line is not dispatched; its type goes */
    expect_events("event: x\n\ndata: a\n\n", "message|a|;");
    /* comments, with or without text */
    expect_events(":\n: hi\n:: x\ndata: a\n\n", "###message|a|;");
    /* the id persists across events and can be reset */
    expect_events("id: 7\ndata: a\n\ndata: b\n\nid\ndata: c\n\n",
                  "message|a|7;message|b|7;message|c|;");
    expect_events("event: gap\ndata: {\"epoch\":\"E\",\"offset\":9}\n\n",
                  "gap|{\"epoch\":\"E\",\"offset\":9}|;");
}

/* A line that arrived whole comes out as one chunk, first and fin: the
 * bench's in-place fast path depends on it. */
static void test_whole_line_in_place(void)
{
    static const char s[] = "id: e:1\nevent: message\ndata: 0123456789\n\n";
    sse_dec d;
    sse_item it;
    size_t off = 0, n = sizeof s - 1;
    int fields = 0, dispatched = 0;

    sse_dec_init(&d);
    while (off < n) {
        off += sse_dec_next(&d, (const uint8_t *)s + off, n - off, &it);
        if (it.type == SSE_FIELD) {
            fields++;
            CHECK(it.first && it.fin);
            if (it.field == SSE_F_DATA) {
                CHECK_EQ_INT(it.len, 10);
                CHECK(it.val == (const uint8_t *)s + 29);
            }
        } else if (it.type == SSE_DISPATCH) {
            dispatched++;
        }
    }
    CHECK_EQ_INT(fields, 3);
    CHECK_EQ_INT(dispatched, 1);
    CHECK_EQ_INT(off, n);
}

/* ---- chunked ------------------------------------------------------------ */

/* Decodes s in pieces of `step` bytes (0: one piece) into out; returns
 * the last result (CHUNK_END, or CHUNK_ERROR / CHUNK_OK when stopped). */
static int run_chunked(const char *s, size_t len, size_t step, char *out,
                       size_t *out_len)
{
    chunk_dec d;
    size_t off = 0;
    int r = CHUNK_OK;

    chunk_dec_init(&d);
    *out_len = 0;
    while (off < len && r == CHUNK_OK) {
        size_t n = step && len - off > step ? step : len - off, p = 0;
        while (p < n && r == CHUNK_OK) {
            const uint8_t *data;
            size_t dl, used;
            r = chunk_dec_next(&d, (const uint8_t *)s + off + p, n - p, &data,
                               &dl, &used);
            memcpy(out + *out_len, data, dl);
            *out_len += dl;
            p += used;
            if (r == CHUNK_OK)
                CHECK(used > 0);
        }
        off += n;
    }
    out[*out_len] = 0;
    return r;
}

static void test_chunked(void)
{
    static const char s[] = "5\r\nhello\r\n1;ext=1\r\n,\r\n"
                            "A\r\n event: xy\r\n10\r\n0123456789abcdef\r\n"
                            "0\r\n\r\n";
    char out[256];
    size_t n;

    for (size_t step = 0; step <= 9; step++) {
        CHECK_EQ_INT(run_chunked(s, sizeof s - 1, step, out, &n), CHUNK_END);
        CHECK_EQ_STR(out, "hello, event: xy0123456789abcdef");
    }
    /* bare LF after the data and after the size is accepted */
    CHECK_EQ_INT(run_chunked("2\nab\n0\n\n", 8, 1, out, &n), CHUNK_END);
    CHECK_EQ_STR(out, "ab");
    /* not a size, data longer than announced, an absurd size */
    CHECK_EQ_INT(run_chunked("x\r\n", 3, 0, out, &n), CHUNK_ERROR);
    CHECK_EQ_INT(run_chunked("2\r\nabc\r\n", 8, 0, out, &n), CHUNK_ERROR);
    CHECK_EQ_STR(out, "ab");
    CHECK_EQ_INT(run_chunked("1000000000000000\r\n", 18, 0, out, &n),
                 CHUNK_ERROR);
    /* the stream so far, without its end */
    CHECK_EQ_INT(run_chunked("3\r\nabc\r\n", 8, 2, out, &n), CHUNK_OK);
    CHECK_EQ_STR(out, "abc");
}

int main(void)
{
    test_chorus_stream();
    test_line_ends();
    test_fields();
    test_whole_line_in_place();
    test_chunked();
    return check_report("test_bench_sse");
}
