#include "config_ref.h"

#include <stdatomic.h>
#include <stdlib.h>

typedef struct config_ref {
    config cfg; /* first: a config pointer is a config_ref pointer */
    atomic_int refs;
} config_ref;

config *config_ref_new(void)
{
    config_ref *r = malloc(sizeof *r);

    if (!r)
        return NULL;
    config_init(&r->cfg);
    atomic_init(&r->refs, 1);
    return &r->cfg;
}

const config *config_ref_hold(const config *c)
{
    atomic_fetch_add_explicit(&((config_ref *)c)->refs, 1,
                              memory_order_relaxed);
    return c;
}

void config_ref_release(const config *c)
{
    config_ref *r = (config_ref *)c;

    if (!c)
        return;
    /* acq_rel: every read of c by the other holders happens before the
     * free. */
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1) {
        config_free(&r->cfg);
        free(r);
    }
}
