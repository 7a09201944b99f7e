/* Unit tests for broker/pubsub/topics.c: topic lifetime (get/find/release,
 * pins), both subscription indexes (topic -> subs, owner -> subs) and the
 * (topic, owner) lookup, unsubscribe_all, removal during fan-out style
 * iteration, and topics_destroy freeing whatever is left (run under ASan
 * for the leak check). */
#include "topics.h"

#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An owner is opaque to topics; tests use this stand-in for a conn. */
typedef struct owner {
    sub *subs;
    int id;
} owner;

#define NAME(s) (s), strlen(s)

/* Walks t->subs checking the back links; returns the length, or -1 if
 * the list is inconsistent (bad t_prev, foreign topic, or a cycle). */
static long topic_list_len(const topic *t)
{
    long n = 0;
    const sub *prev = NULL;

    for (const sub *s = t->subs; s; prev = s, s = s->t_next) {
        if (s->t_prev != prev || s->t != t || n > 10000000)
            return -1;
        n++;
    }
    return n;
}

static long owner_list_len(const owner *o)
{
    long n = 0;
    const sub *prev = NULL;

    for (const sub *s = o->subs; s; prev = s, s = s->o_next) {
        if (s->o_prev != prev || s->owner != o || n > 10000000)
            return -1;
        n++;
    }
    return n;
}

static int in_topic_list(const topic *t, const sub *x)
{
    for (const sub *s = t->subs; s; s = s->t_next)
        if (s == x)
            return 1;
    return 0;
}

static void test_lifetime(void)
{
    topics ts;
    topic *a, *b;

    CHECK_EQ_INT(topics_init(&ts), 0);
    CHECK_EQ_INT(topics_count(&ts), 0);
    CHECK_EQ_INT(topics_sub_count(&ts), 0);
    CHECK(topics_find(&ts, NAME("a")) == NULL);

    a = topics_get(&ts, NAME("alpha"));
    CHECK(a != NULL);
    if (!a)
        return;
    CHECK_EQ_INT(topics_count(&ts), 1);
    CHECK_EQ_STR(a->name, "alpha");
    CHECK_EQ_INT(a->name_len, 5);
    CHECK(a->subs == NULL);
    CHECK_EQ_INT(a->nsubs, 0);
    CHECK_EQ_INT(a->pins, 0);
    CHECK_EQ_INT(a->loaded, 0);
    CHECK(topics_get(&ts, NAME("alpha")) == a);
    CHECK_EQ_INT(topics_count(&ts), 1);
    CHECK(topics_find(&ts, NAME("alpha")) == a);
    /* Names compare by length, not only prefix. */
    CHECK(topics_find(&ts, "alpha", 4) == NULL);
    CHECK(topics_find(&ts, NAME("alphab")) == NULL);
    /* A name from a buffer that is not NUL-terminated. */
    CHECK(topics_find(&ts, "alphaXYZ", 5) == a);

    b = topics_get(&ts, "beta-not-this", 4);
    CHECK(b != NULL && b != a);
    CHECK_EQ_STR(b->name, "beta");
    CHECK_EQ_INT(topics_count(&ts), 2);

    /* release frees an unused topic. */
    topics_release(&ts, a);
    CHECK_EQ_INT(topics_count(&ts), 1);
    CHECK(topics_find(&ts, NAME("alpha")) == NULL);
    CHECK(topics_find(&ts, NAME("beta")) == b);

    /* Pins keep it. */
    topics_pin(b);
    topics_pin(b);
    CHECK_EQ_INT(b->pins, 2);
    topics_release(&ts, b);
    CHECK(topics_find(&ts, NAME("beta")) == b);
    topics_unpin(&ts, b);
    CHECK(topics_find(&ts, NAME("beta")) == b);
    CHECK_EQ_INT(b->pins, 1);
    topics_unpin(&ts, b); /* last pin: freed */
    CHECK(topics_find(&ts, NAME("beta")) == NULL);
    CHECK_EQ_INT(topics_count(&ts), 0);

    /* Re-creating after free gives a fresh topic. */
    a = topics_get(&ts, NAME("alpha"));
    CHECK(a != NULL && a->pins == 0 && a->subs == NULL);
    CHECK_EQ_INT(topics_count(&ts), 1);

    /* The empty name is a valid key. */
    b = topics_get(&ts, "", 0);
    CHECK(b != NULL && b != a);
    CHECK(topics_find(&ts, "", 0) == b);
    CHECK_EQ_INT(topics_count(&ts), 2);

    topics_destroy(&ts); /* frees both unpinned leftovers */
}

static void test_subscribe_basic(void)
{
    topics ts;
    owner o1 = {NULL, 1}, o2 = {NULL, 2};
    topic *t, *u;
    sub *s1, *s2, *s3;

    CHECK_EQ_INT(topics_init(&ts), 0);
    t = topics_get(&ts, NAME("t"));
    u = topics_get(&ts, NAME("u"));

    s1 = topics_subscribe(&ts, t, &o1, &o1.subs);
    CHECK(s1 != NULL);
    CHECK(s1->t == t);
    CHECK(s1->owner == &o1);
    CHECK(t->subs == s1);
    CHECK_EQ_INT(t->nsubs, 1);
    CHECK(o1.subs == s1);
    CHECK_EQ_INT(s1->replaying, 0);
    CHECK_EQ_INT(s1->cursor, 0);
    CHECK(topics_find_sub(&ts, t, &o1) == s1);
    CHECK(topics_find_sub(&ts, t, &o2) == NULL);
    CHECK(topics_find_sub(&ts, u, &o1) == NULL);
    CHECK_EQ_INT(topics_sub_count(&ts), 1);

    s2 = topics_subscribe(&ts, t, &o2, &o2.subs);
    s3 = topics_subscribe(&ts, u, &o1, &o1.subs);
    CHECK_EQ_INT(topics_sub_count(&ts), 3);
    CHECK_EQ_INT(t->nsubs, 2);
    CHECK_EQ_INT(u->nsubs, 1);
    CHECK_EQ_INT(topic_list_len(t), 2);
    CHECK_EQ_INT(topic_list_len(u), 1);
    CHECK_EQ_INT(owner_list_len(&o1), 2);
    CHECK_EQ_INT(owner_list_len(&o2), 1);
    CHECK(topics_find_sub(&ts, t, &o2) == s2);
    CHECK(topics_find_sub(&ts, u, &o1) == s3);
    CHECK(topics_find_sub(&ts, u, &o2) == NULL);

    /* Unsubscribe s1: t keeps s2, o1 keeps s3. */
    topics_unsubscribe(&ts, s1, &o1.subs);
    CHECK(topics_find_sub(&ts, t, &o1) == NULL);
    CHECK(topics_find_sub(&ts, t, &o2) == s2);
    CHECK_EQ_INT(t->nsubs, 1);
    CHECK_EQ_INT(topic_list_len(t), 1);
    CHECK(t->subs == s2);
    CHECK(o1.subs == s3);
    CHECK_EQ_INT(owner_list_len(&o1), 1);
    CHECK_EQ_INT(topics_sub_count(&ts), 2);
    CHECK_EQ_INT(topics_count(&ts), 2);

    /* Last subscriber of unpinned u leaves: u is freed. */
    topics_unsubscribe(&ts, s3, &o1.subs);
    CHECK(o1.subs == NULL);
    CHECK(topics_find(&ts, NAME("u")) == NULL);
    CHECK_EQ_INT(topics_count(&ts), 1);

    /* Last subscriber of pinned t leaves: t stays. */
    topics_pin(t);
    topics_unsubscribe(&ts, s2, &o2.subs);
    CHECK(o2.subs == NULL);
    CHECK(topics_find(&ts, NAME("t")) == t);
    CHECK(t->subs == NULL);
    CHECK_EQ_INT(t->nsubs, 0);
    CHECK_EQ_INT(topics_sub_count(&ts), 0);
    /* Resubscribing after unsubscribe works and is found again. */
    s1 = topics_subscribe(&ts, t, &o1, &o1.subs);
    CHECK(topics_find_sub(&ts, t, &o1) == s1);
    topics_unsubscribe(&ts, s1, &o1.subs);
    CHECK(topics_find(&ts, NAME("t")) == t);
    topics_unpin(&ts, t);
    CHECK(topics_find(&ts, NAME("t")) == NULL);
    CHECK_EQ_INT(topics_count(&ts), 0);

    topics_destroy(&ts);
}

/* Removal from head, middle and tail of both lists. */
static void test_unlink_positions(void)
{
    enum { N = 5 };
    topics ts;
    owner o[N];
    owner solo = {NULL, 99};
    topic *t, *ut[N];
    sub *s[N], *so[N];
    char name[16];

    CHECK_EQ_INT(topics_init(&ts), 0);
    t = topics_get(&ts, NAME("shared"));
    topics_pin(t);
    for (int i = 0; i < N; i++) {
        o[i].subs = NULL;
        o[i].id = i;
        s[i] = topics_subscribe(&ts, t, &o[i], &o[i].subs);
        snprintf(name, sizeof name, "solo%d", i);
        ut[i] = topics_get(&ts, NAME(name));
        so[i] = topics_subscribe(&ts, ut[i], &solo, &solo.subs);
    }
    CHECK_EQ_INT(topic_list_len(t), N);
    CHECK_EQ_INT(owner_list_len(&solo), N);

    /* subscribe links at the head: t->subs is s[4] .. s[0]. */
    CHECK(t->subs == s[N - 1]);
    CHECK(solo.subs == so[N - 1]);

    /* Topic list: remove middle, then head, then tail. */
    topics_unsubscribe(&ts, s[2], &o[2].subs);
    CHECK_EQ_INT(topic_list_len(t), N - 1);
    CHECK(!in_topic_list(t, s[2]));
    CHECK(o[2].subs == NULL);
    topics_unsubscribe(&ts, s[N - 1], &o[N - 1].subs);
    CHECK_EQ_INT(topic_list_len(t), N - 2);
    CHECK(t->subs == s[N - 2]);
    topics_unsubscribe(&ts, s[0], &o[0].subs);
    CHECK_EQ_INT(topic_list_len(t), N - 3);
    CHECK_EQ_INT(t->nsubs, N - 3);
    CHECK(s[1]->t_next == NULL);
    CHECK(topics_find_sub(&ts, t, &o[1]) == s[1]);
    CHECK(topics_find_sub(&ts, t, &o[3]) == s[3]);
    CHECK(topics_find_sub(&ts, t, &o[0]) == NULL);
    CHECK(topics_find_sub(&ts, t, &o[2]) == NULL);
    CHECK(topics_find_sub(&ts, t, &o[4]) == NULL);

    /* Owner list: middle, head, tail; each solo topic goes with it. */
    topics_unsubscribe(&ts, so[2], &solo.subs);
    CHECK_EQ_INT(owner_list_len(&solo), N - 1);
    CHECK(topics_find(&ts, NAME("solo2")) == NULL);
    topics_unsubscribe(&ts, so[N - 1], &solo.subs);
    CHECK_EQ_INT(owner_list_len(&solo), N - 2);
    CHECK(solo.subs == so[N - 2]);
    topics_unsubscribe(&ts, so[0], &solo.subs);
    CHECK_EQ_INT(owner_list_len(&solo), N - 3);
    CHECK(so[1]->o_next == NULL);
    CHECK(topics_find_sub(&ts, ut[1], &solo) == so[1]);
    CHECK(topics_find_sub(&ts, ut[3], &solo) == so[3]);
    CHECK(topics_find(&ts, NAME("solo0")) == NULL);
    CHECK(topics_find(&ts, NAME("solo4")) == NULL);
    CHECK_EQ_INT(topics_count(&ts), 1 + (N - 3));
    CHECK_EQ_INT(topics_sub_count(&ts), 2 * (N - 3));
    topics_destroy(&ts); /* leftover subs, pinned topic and solos */
}

/* Many owners on one topic, many topics per owner. */
static void test_many(void)
{
    enum { OWNERS = 3000, TOPICS = 3000 };
    topics ts;
    owner *os = calloc(OWNERS, sizeof *os);
    owner big = {NULL, -1};
    topic *hot, **tt = calloc(TOPICS, sizeof *tt);
    char name[32];
    int bad = 0;

    CHECK(os && tt);
    if (!os || !tt)
        return;
    CHECK_EQ_INT(topics_init(&ts), 0);
    hot = topics_get(&ts, NAME("hot"));
    for (int i = 0; i < OWNERS; i++) {
        os[i].id = i;
        if (!topics_subscribe(&ts, hot, &os[i], &os[i].subs))
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(hot->nsubs, OWNERS);
    CHECK_EQ_INT(topic_list_len(hot), OWNERS);
    for (int i = 0; i < TOPICS; i++) {
        snprintf(name, sizeof name, "room/%d", i);
        tt[i] = topics_get(&ts, NAME(name));
        if (!tt[i] || !topics_subscribe(&ts, tt[i], &big, &big.subs))
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(owner_list_len(&big), TOPICS);
    CHECK_EQ_INT(topics_count(&ts), 1 + TOPICS);
    CHECK_EQ_INT(topics_sub_count(&ts), OWNERS + TOPICS);

    for (int i = 0; i < OWNERS; i++) {
        sub *s = topics_find_sub(&ts, hot, &os[i]);
        if (!s || s->owner != &os[i] || s->t != hot || os[i].subs != s)
            bad++;
        if (topics_find_sub(&ts, tt[i % TOPICS], &os[i]))
            bad++;
    }
    for (int i = 0; i < TOPICS; i++) {
        snprintf(name, sizeof name, "room/%d", i);
        sub *s = topics_find_sub(&ts, tt[i], &big);
        if (topics_find(&ts, NAME(name)) != tt[i] || !s || s->t != tt[i] ||
            tt[i]->subs != s || tt[i]->nsubs != 1)
            bad++;
    }
    CHECK(topics_find_sub(&ts, hot, &big) == NULL);
    CHECK_EQ_INT(bad, 0);

    /* Remove every other owner from hot by lookup. */
    for (int i = 0; i < OWNERS; i += 2)
        topics_unsubscribe(&ts, topics_find_sub(&ts, hot, &os[i]), &os[i].subs);
    CHECK_EQ_INT(hot->nsubs, OWNERS / 2);
    CHECK_EQ_INT(topic_list_len(hot), OWNERS / 2);
    for (int i = 0; i < OWNERS; i++) {
        sub *s = topics_find_sub(&ts, hot, &os[i]);
        if ((i % 2 == 0) != (s == NULL))
            bad++;
        if ((i % 2 == 0) != (os[i].subs == NULL))
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(topics_sub_count(&ts), OWNERS / 2 + TOPICS);

    /* Drop the big owner: all its (unpinned, solo) topics go. */
    topics_unsubscribe_all(&ts, &big.subs);
    CHECK(big.subs == NULL);
    CHECK_EQ_INT(topics_count(&ts), 1);
    CHECK_EQ_INT(topics_sub_count(&ts), OWNERS / 2);
    CHECK(topics_find(&ts, NAME("room/0")) == NULL);
    CHECK(topics_find(&ts, NAME("hot")) == hot);

    for (int i = 1; i < OWNERS; i += 2)
        topics_unsubscribe_all(&ts, &os[i].subs);
    CHECK_EQ_INT(topics_count(&ts), 0);
    CHECK_EQ_INT(topics_sub_count(&ts), 0);

    topics_destroy(&ts);
    free(os);
    free(tt);
}

static void test_unsubscribe_all(void)
{
    topics ts;
    owner a = {NULL, 1}, b = {NULL, 2};
    topic *solo, *pinned, *shared, *solo2;

    CHECK_EQ_INT(topics_init(&ts), 0);
    solo = topics_get(&ts, NAME("solo"));
    pinned = topics_get(&ts, NAME("pinned"));
    shared = topics_get(&ts, NAME("shared"));
    solo2 = topics_get(&ts, NAME("solo2"));
    topics_pin(pinned);
    topics_subscribe(&ts, solo, &a, &a.subs);
    topics_subscribe(&ts, pinned, &a, &a.subs);
    topics_subscribe(&ts, shared, &a, &a.subs);
    topics_subscribe(&ts, shared, &b, &b.subs);
    topics_subscribe(&ts, solo2, &a, &a.subs);
    CHECK_EQ_INT(topics_count(&ts), 4);
    CHECK_EQ_INT(topics_sub_count(&ts), 5);

    topics_unsubscribe_all(&ts, &a.subs);
    CHECK(a.subs == NULL);
    CHECK_EQ_INT(topics_count(&ts), 2);
    CHECK_EQ_INT(topics_sub_count(&ts), 1);
    CHECK(topics_find(&ts, NAME("solo")) == NULL);
    CHECK(topics_find(&ts, NAME("solo2")) == NULL);
    CHECK(topics_find(&ts, NAME("pinned")) == pinned);
    CHECK(pinned->subs == NULL && pinned->nsubs == 0);
    CHECK(topics_find(&ts, NAME("shared")) == shared);
    CHECK_EQ_INT(shared->nsubs, 1);
    CHECK_EQ_INT(topic_list_len(shared), 1);
    CHECK(shared->subs && shared->subs->owner == &b);
    CHECK(topics_find_sub(&ts, shared, &a) == NULL);
    CHECK(topics_find_sub(&ts, shared, &b) == shared->subs);
    CHECK(topics_find_sub(&ts, pinned, &a) == NULL);

    /* Empty owner list: a no-op. */
    topics_unsubscribe_all(&ts, &a.subs);
    CHECK_EQ_INT(topics_count(&ts), 2);

    topics_unsubscribe_all(&ts, &b.subs);
    CHECK(topics_find(&ts, NAME("shared")) == NULL);
    CHECK(topics_find(&ts, NAME("pinned")) == pinned);
    topics_unpin(&ts, pinned);
    CHECK_EQ_INT(topics_count(&ts), 0);
    topics_destroy(&ts);
}

/* fan_out() style: save next, then the current subscriber may go away
 * (here: its whole owner is dropped, as a slow consumer would be). */
static void test_remove_while_iterating(void)
{
    enum { N = 50 };
    topics ts;
    owner o[N];
    topic *t, *other;
    int visited = 0, bad = 0;

    CHECK_EQ_INT(topics_init(&ts), 0);
    t = topics_get(&ts, NAME("fan"));
    other = topics_get(&ts, NAME("other"));
    topics_pin(t); /* the publish batch pins the topic */
    topics_pin(other);
    for (int i = 0; i < N; i++) {
        o[i].subs = NULL;
        o[i].id = i;
        topics_subscribe(&ts, other, &o[i], &o[i].subs);
        topics_subscribe(&ts, t, &o[i], &o[i].subs);
    }
    for (sub *s = t->subs, *next; s; s = next) {
        owner *ow = s->owner;
        next = s->t_next;
        visited++;
        if (ow->id % 3 == 0)
            topics_unsubscribe_all(&ts, &ow->subs);
        else if (ow->id % 3 == 1)
            topics_unsubscribe(&ts, s, &ow->subs);
    }
    CHECK_EQ_INT(visited, N);
    for (int i = 0; i < N; i++) {
        int keep_t = i % 3 == 2, keep_other = i % 3 != 0;
        if ((topics_find_sub(&ts, t, &o[i]) != NULL) != keep_t)
            bad++;
        if ((topics_find_sub(&ts, other, &o[i]) != NULL) != keep_other)
            bad++;
        if (owner_list_len(&o[i]) != keep_t + keep_other)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(topic_list_len(t), N / 3);
    CHECK_EQ_INT(t->nsubs, N / 3);

    /* Now remove every one during the walk: the pinned topic survives. */
    for (sub *s = t->subs, *next; s; s = next) {
        next = s->t_next;
        topics_unsubscribe(&ts, s, &((owner *)s->owner)->subs);
    }
    CHECK(t->subs == NULL);
    CHECK_EQ_INT(t->nsubs, 0);
    CHECK(topics_find(&ts, NAME("fan")) == t);
    topics_unpin(&ts, t);
    CHECK(topics_find(&ts, NAME("fan")) == NULL);

    /* Unpinned topic, walk removing everyone: it is freed with its last
     * subscriber, and the walk ends cleanly because next was saved and
     * the topic is not touched again (ASan checks). */
    topics_unpin(&ts, other);
    CHECK(topics_find(&ts, NAME("other")) == other); /* still has subs */
    {
        int left = (int)other->nsubs, steps = 0;
        for (sub *s = other->subs, *next; s; s = next) {
            next = s->t_next;
            topics_unsubscribe(&ts, s, &((owner *)s->owner)->subs);
            steps++;
        }
        CHECK_EQ_INT(steps, left);
    }
    CHECK(topics_find(&ts, NAME("other")) == NULL);
    CHECK_EQ_INT(topics_count(&ts), 0);
    CHECK_EQ_INT(topics_sub_count(&ts), 0);
    topics_destroy(&ts);
}

/* topics_destroy with subscribers, pins and many topics left over. */
static void test_destroy_leftovers(void)
{
    topics ts;
    owner o[10];
    char name[32];

    CHECK_EQ_INT(topics_init(&ts), 0);
    for (int i = 0; i < 10; i++) {
        o[i].subs = NULL;
        o[i].id = i;
    }
    for (int i = 0; i < 500; i++) {
        snprintf(name, sizeof name, "leftover/%d", i);
        topic *t = topics_get(&ts, NAME(name));
        if (i % 7 == 0)
            topics_pin(t);
        for (int j = 0; j < i % 10; j++)
            topics_subscribe(&ts, t, &o[j], &o[j].subs);
    }
    CHECK_EQ_INT(topics_count(&ts), 500);
    CHECK_EQ_INT(topics_sub_count(&ts), 50 * 45);
    topics_destroy(&ts); /* ASan: no leaks */
}

/* Two tables have different SipHash keys. */
static void test_keys(void)
{
    topics a, b;

    CHECK_EQ_INT(topics_init(&a), 0);
    CHECK_EQ_INT(topics_init(&b), 0);
    CHECK(memcmp(a.key, b.key, sizeof a.key) != 0);
    topics_destroy(&a);
    topics_destroy(&b);
}

int main(void)
{
    test_lifetime();
    test_subscribe_basic();
    test_unlink_positions();
    test_many();
    test_unsubscribe_all();
    test_remove_while_iterating();
    test_destroy_leftovers();
    test_keys();
    return check_report("test_topics");
}
