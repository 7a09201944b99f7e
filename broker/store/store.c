/* Opening the configured history engine (store.h). */
#include "store.h"

int store_open(store **out, const config *cfg, char *err, size_t errlen)
{
    const store_engine *e = cfg->engine == ENGINE_REDIS ? &store_engine_redis
                                                        : &store_engine_sqlite;

    return e->open(out, cfg, err, errlen);
}
