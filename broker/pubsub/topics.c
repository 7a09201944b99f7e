#include "topics.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

typedef struct sub_key {
    const topic *t;
    const void *owner;
} sub_key;

typedef struct name_key {
    const char *name;
    size_t len;
} name_key;

static int name_eq(const dict_node *n, const void *key)
{
    const topic *t = (const topic *)n;
    const name_key *k = key;

    return t->name_len == k->len && memcmp(t->name, k->name, k->len) == 0;
}

static int sub_eq(const dict_node *n, const void *key)
{
    const sub *s = (const sub *)n;
    const sub_key *k = key;

    return s->t == k->t && s->owner == k->owner;
}

static uint64_t sub_hash(const topics *ts, const topic *t, const void *owner)
{
    sub_key k = {t, owner};
    return dict_siphash(&k, sizeof k, ts->key);
}

int topics_init(topics *ts)
{
    ts->watch = NULL;
    ts->watch_arg = NULL;
    if (RAND_bytes(ts->key, sizeof ts->key) != 1)
        return -1;
    if (dict_init(&ts->by_name, 64))
        return -1;
    if (dict_init(&ts->subs, 64)) {
        dict_destroy(&ts->by_name);
        return -1;
    }
    return 0;
}

void topics_destroy(topics *ts)
{
    for (size_t i = 0; i <= ts->by_name.mask; i++) {
        dict_node *n = ts->by_name.buckets[i], *next;
        for (; n; n = next) {
            topic *t = (topic *)n;
            next = n->next;
            while (t->subs) {
                sub *s = t->subs;
                t->subs = s->t_next;
                free(s);
            }
            free(t);
        }
    }
    dict_destroy(&ts->subs);
    dict_destroy(&ts->by_name);
}

topic *topics_find(topics *ts, const char *name, size_t len)
{
    name_key k = {name, len};
    uint64_t h = dict_siphash(name, len, ts->key);

    return (topic *)dict_find(&ts->by_name, h, name_eq, &k);
}

topic *topics_get(topics *ts, const char *name, size_t len)
{
    topic *t = topics_find(ts, name, len);

    if (t)
        return t;
    t = calloc(1, sizeof *t + len + 1);
    if (!t)
        return NULL;
    memcpy(t->name, name, len);
    t->name_len = len;
    dict_insert(&ts->by_name, &t->node, dict_siphash(name, len, ts->key));
    return t;
}

void topics_pin(topic *t)
{
    t->pins++;
}

void topics_unpin(topics *ts, topic *t)
{
    t->pins--;
    topics_release(ts, t);
}

void topics_release(topics *ts, topic *t)
{
    if (t->pins || t->subs)
        return;
    dict_remove(&ts->by_name, &t->node);
    free(t);
}

sub *topics_find_sub(topics *ts, topic *t, void *owner)
{
    sub_key k = {t, owner};
    return (sub *)dict_find(&ts->subs, sub_hash(ts, t, owner), sub_eq, &k);
}

sub *topics_subscribe(topics *ts, topic *t, void *owner, sub **owner_list)
{
    sub *s = calloc(1, sizeof *s);

    if (!s)
        return NULL;
    s->t = t;
    s->owner = owner;
    s->t_next = t->subs;
    if (t->subs)
        t->subs->t_prev = s;
    t->subs = s;
    if (t->nsubs++ == 0 && ts->watch)
        ts->watch(ts->watch_arg, t, 1);
    s->o_next = *owner_list;
    if (*owner_list)
        (*owner_list)->o_prev = s;
    *owner_list = s;
    dict_insert(&ts->subs, &s->node, sub_hash(ts, t, owner));
    return s;
}

void topics_unsubscribe(topics *ts, sub *s, sub **owner_list)
{
    topic *t = s->t;

    dict_remove(&ts->subs, &s->node);
    if (s->t_prev)
        s->t_prev->t_next = s->t_next;
    else
        t->subs = s->t_next;
    if (s->t_next)
        s->t_next->t_prev = s->t_prev;
    if (s->o_prev)
        s->o_prev->o_next = s->o_next;
    else
        *owner_list = s->o_next;
    if (s->o_next)
        s->o_next->o_prev = s->o_prev;
    if (--t->nsubs == 0 && ts->watch)
        ts->watch(ts->watch_arg, t, 0);
    free(s);
    topics_release(ts, t);
}

void topics_unsubscribe_all(topics *ts, sub **owner_list)
{
    while (*owner_list)
        topics_unsubscribe(ts, *owner_list, owner_list);
}

size_t topics_count(const topics *ts)
{
    return dict_count(&ts->by_name);
}

size_t topics_sub_count(const topics *ts)
{
    return dict_count(&ts->subs);
}
