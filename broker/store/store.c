/* Opening the configured history engine (store.h). */
#include "store.h"

int store_open(store **out, const config *cfg, char *err, size_t errlen)
{
    /* SQLite is the only engine built so far; the engine key of the
     * configuration chooses once there are others. */
    return store_engine_sqlite.open(out, cfg, err, errlen);
}
