/* Opening the configured history engine (store.h). */
#include "store.h"

#include <stdio.h>

static const store_engine *configured(const config *cfg)
{
    return cfg->engine == ENGINE_REDIS ? &store_engine_redis
                                       : &store_engine_sqlite;
}

int store_open(store **out, const config *cfg, char *err, size_t errlen)
{
    return configured(cfg)->open(out, cfg, err, errlen);
}

int store_new_epochs(const config *cfg, char *msg, size_t msglen)
{
    const store_engine *e = configured(cfg);

    if (!e->new_epochs) {
        snprintf(msg, msglen, "engine = %s has no offline epoch change",
                 e->name);
        return STORE_FAIL;
    }
    return e->new_epochs(cfg, msg, msglen);
}
