/* broker/pubsub/sse_event.c: the SSE twin of a fan-out block (frames with
 * 2-, 4- and 10-byte headers), a replayed message, and data whose JSON
 * holds line breaks (LF, CRLF, CR), which continue on `data:` lines. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fanout.h"
#include "frame_ref.h"
#include "sse_event.h"
#include "store.h"
#include "topics.h"

#define EPOCH "0123456789abcdef0123456789abcdef"

static topic *make_topic(const char *name)
{
    size_t len = strlen(name);
    topic *t = calloc(1, sizeof *t + len + 1);

    memcpy(t->name, name, len + 1);
    t->name_len = len;
    memcpy(t->epoch, EPOCH, sizeof EPOCH);
    return t;
}

/* The event text expected for one message. */
static char *expected(uint64_t offset, int64_t ts, const char *data)
{
    size_t cap = strlen(data) * 8 + 256;
    char *out = malloc(cap);

    snprintf(out, cap,
             "id: " EPOCH ":%llu\nevent: message\ndata: "
             "{\"topic\":\"news\",\"offset\":%llu,\"ts\":%lld,\"data\":%s}\n\n",
             (unsigned long long)offset, (unsigned long long)offset,
             (long long)ts, data);
    return out;
}

static char *padded(size_t n)
{
    char *s = malloc(n + 3);

    s[0] = '"';
    memset(s + 1, 'x', n);
    s[n + 1] = '"';
    s[n + 2] = '\0';
    return s;
}

static void test_block_twin(void)
{
    topic *t = make_topic("news");
    char *big = padded(70000), *mid = padded(300);
    const char *datas[] = {"{\"a\":1}", mid, big, "null"};
    store_msg msgs[4];
    size_t count, *pos, *spos, off = 0;
    frame_ref *ws, *sse;

    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < 4; i++) {
        msgs[i].topic = "news";
        msgs[i].topic_len = 4;
        msgs[i].data = datas[i];
        msgs[i].data_len = strlen(datas[i]);
        msgs[i].ts_ms = 1000 + i;
        msgs[i].offset = 41 + (uint64_t)i;
    }
    ws = fanout_build_run(t, msgs, 4, &count, &pos);
    CHECK(ws != NULL);
    CHECK_EQ_INT(count, 4);
    sse = sse_event_block(t, ws, 41, count, pos, &spos);
    CHECK(sse != NULL);
    CHECK_EQ_INT(spos[0], 0);
    for (int i = 0; i < 4; i++) {
        char *want = expected(41 + (uint64_t)i, 1000 + i, datas[i]);
        size_t n = spos[i + 1] - spos[i];
        CHECK_EQ_INT(spos[i], off);
        CHECK_EQ_INT(n, strlen(want));
        CHECK(memcmp(frame_ref_bytes(sse) + spos[i], want, n) == 0);
        off += n;
        free(want);
    }
    CHECK_EQ_INT(sse->len, off);
    frame_ref_decref(ws);
    frame_ref_decref(sse);
    free(pos);
    free(spos);
    free(big);
    free(mid);
    free(t);
}

static void test_line_breaks(void)
{
    topic *t = make_topic("news");
    const char *data = "{\"a\":\n1,\r\n\"b\":\r2\n}";
    frame_ref *f = sse_event_message(t, 7, 5, data, strlen(data));
    const char *want = "id: " EPOCH ":7\nevent: message\n"
                       "data: {\"topic\":\"news\",\"offset\":7,\"ts\":5,"
                       "\"data\":{\"a\":\n"
                       "data: 1,\n"
                       "data: \"b\":\n"
                       "data: 2\n"
                       "data: }}\n\n";

    CHECK(f != NULL);
    CHECK_EQ_INT(f->len, strlen(want));
    CHECK(memcmp(frame_ref_bytes(f), want, f->len) == 0);
    frame_ref_decref(f);

    f = sse_event_message(t, 8, 6, "\"plain\"", 7);
    {
        char *w = expected(8, 6, "\"plain\"");
        CHECK_EQ_INT(f->len, strlen(w));
        CHECK(memcmp(frame_ref_bytes(f), w, f->len) == 0);
        free(w);
    }
    frame_ref_decref(f);
    free(t);
}

int main(void)
{
    test_block_twin();
    test_line_breaks();
    return check_report("test_sse_event");
}
