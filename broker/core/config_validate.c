/* Cross-key rules of the configuration: what no single key's parser can
 * check, run once every source (file, command line) has been applied. */
#include "config_internal.h"

#include <string.h>

const char *config_engine_conflict(const config *c, char *err, size_t errlen)
{
    if (c->engine == ENGINE_SQLITE) {
        const char *key = c->redis_url_count            ? "redis_url"
                          : c->redis_durable            ? "redis_durable"
                          : c->redis_timeout_ms != 2000 ? "redis_timeout"
                                                        : NULL;
        if (key)
            config_set_err(
                err, errlen,
                "%s: only used with engine = redis (engine is sqlite)", key);
        return key;
    }
    if (c->redis_url_count == 0) {
        config_set_err(err, errlen, "engine: engine = redis needs a redis_url");
        return "engine";
    }
    if (strcmp(c->db_path, "./chorus.db") != 0) {
        config_set_err(
            err, errlen,
            "db_path: not used with engine = redis (history lives in "
            "Redis; no SQLite file is opened)");
        return "db_path";
    }
    if (c->durability != DURABILITY_NORMAL) {
        config_set_err(err, errlen,
                       "durability: a SQLite setting; with engine = redis use "
                       "redis_durable and Redis's appendfsync");
        return "durability";
    }
    if (!c->history) {
        config_set_err(
            err, errlen,
            "history: engine = redis always keeps history (in Redis)");
        return "history";
    }
    return NULL;
}

int config_validate(const config *c, char *err, size_t errlen)
{
    if (config_engine_conflict(c, err, errlen))
        return -1;
    if (c->ping_interval_ms && c->idle_timeout_ms &&
        c->idle_timeout_ms <= c->ping_interval_ms) {
        config_set_err(err, errlen,
                       "idle_timeout (%llums) must be 0 (off) or greater than "
                       "ping_interval (%llums)",
                       (unsigned long long)c->idle_timeout_ms,
                       (unsigned long long)c->ping_interval_ms);
        return -1;
    }
    if (c->tls_listen && (!c->tls_cert || !c->tls_key)) {
        config_set_err(err, errlen, "tls_listen needs tls_cert and tls_key");
        return -1;
    }
    return 0;
}
