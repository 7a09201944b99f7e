/* Broker configuration. A config is built and validated completely, then
 * read-only: a reload (SIGHUP) builds a new one and hands it to the loops
 * (loops.h) rather than changing one in use.
 * File format: "key = value" lines, '#' starts a comment. */
#ifndef CHORUS_CONFIG_H
#define CHORUS_CONFIG_H

#include <stddef.h>
#include <stdint.h>

enum { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };
enum { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON };
enum { DURABILITY_NORMAL = 0, DURABILITY_FULL };
enum { ENGINE_SQLITE = 0, ENGINE_REDIS };

typedef struct config {
    char *listen;                /* "host:port", "[v6]:port"; 127.0.0.1:8080 */
    int echo_endpoint;           /* off */
    uint64_t max_message_size;   /* bytes; 1m */
    uint64_t max_outbound_bytes; /* bytes queued per connection; 16m */
    uint64_t max_unacked_bytes;  /* publish data awaiting its ack, per
                                    connection, before reading pauses; 16m */
    uint64_t ping_interval_ms;   /* 30s; 0 = off */
    uint64_t idle_timeout_ms;    /* 90s; 0 = off */
    uint64_t handshake_timeout_ms; /* 10s */
    uint64_t message_timeout_ms;   /* a WebSocket message, first byte to
                                      last; 30s; 0 = off */
    int log_level;                 /* info */
    int log_format;                /* text */
    char *db_path;                 /* ./chorus.db */
    uint64_t history_size;         /* 1000 messages per topic; 0 = off */
    uint64_t history_ttl_ms;       /* 24h; 0 = off */
    int durability;                /* normal */
    uint64_t max_connections;      /* 10000; 0 = no limit */
    uint64_t max_subscriptions_per_connection; /* 1000; 0 = no limit */
    uint64_t max_connections_per_ip;           /* 0 = no limit */
    int history;                               /* on: keep history in db_path */
    uint64_t threads; /* event loops; 0 = one per core */
    int compression;  /* off: permessage-deflate when offered */
    int io_uring;     /* on: batch the end-of-turn writes */
    /* Authentication is on when auth_secret or api_key is set. */
    char *auth_secret;      /* HS256 key for client tokens; NULL */
    char *api_key;          /* bearer key for the HTTP API; NULL */
    int allow_anonymous;    /* off: with auth on, a token is needed */
    int anonymous_publish;  /* off: anonymous clients may publish */
    char *allowed_origins;  /* comma/space list, "*"; NULL = any */
    uint64_t publish_rate;  /* publishes per second per connection; 0 */
    uint64_t publish_burst; /* bucket size; 0 = publish_rate */
    char *tls_listen;       /* second listener for wss/https; NULL */
    char *tcp_congestion;   /* of accepted sockets; NULL: the system's */
    char *tls_cert;         /* PEM chain */
    char *tls_key;          /* PEM private key */
    char *web_root;         /* static files served at /; NULL */
    /* Cluster mode (README "Running a cluster"). */
    int engine;                /* sqlite */
    char **redis_urls;         /* redis_url, repeatable, in file order */
    size_t redis_url_count;    /* 0 */
    int redis_durable;         /* off: a Redis restart changes epochs */
    uint64_t redis_timeout_ms; /* 2s */
} config;

/* One redis_url, parsed: redis://[:password@]HOST:PORT[/DB]. */
typedef struct redis_addr {
    char host[256];
    int port;
    char password[256]; /* "" = no AUTH */
    unsigned db;        /* SELECT; 0 = the default database */
} redis_addr;

/* Fills c with the defaults above (strings are heap copies). */
void config_init(config *c);
void config_free(config *c);

/* Makes dst a deep copy of src. Returns 0, or -1 (out of memory) with dst
 * holding nothing to free. */
int config_copy(config *dst, const config *src);

/* threads = 0 becomes the number of cores, and history = off means one
 * loop: the number of loops the broker really runs. */
void config_resolve_threads(config *c);

/* Walks the keys: the name of key i, NULL past the last one. */
const char *config_key_name(size_t i);

/* 1 when key has different values in a and b, 0 when not, -1 when there
 * is no such key. */
int config_key_differs(const config *a, const config *b, const char *key);

/* Sets key in dst to its value in src. Returns 0, or -1 (unknown key, out
 * of memory) leaving dst's value as it was. */
int config_copy_key(config *dst, const config *src, const char *key);

/* Sets one key from its text value. Returns 0, or -1 with a message
 * (without file:line) in err. */
int config_set(config *c, const char *key, const char *value, char *err,
               size_t errlen);

/* Longest configuration file read, in bytes. */
#define CONFIG_FILE_MAX (1024u * 1024u)

/* Reads a config file over the current values: config_load_buffer on its
 * contents. Returns 0, or -1 with "path:line: message" (or "path: reason"
 * if it cannot be read or is over CONFIG_FILE_MAX) in err. */
int config_load_file(config *c, const char *path, char *err, size_t errlen);

/* Reads configuration text buf[0..len) over the current values; name
 * stands for the source in messages ("name:line: message"). All or
 * nothing: on error c is unchanged. Returns 0 or -1. */
int config_load_buffer(config *c, const char *buf, size_t len, const char *name,
                       char *err, size_t errlen);

/* Cross-key checks, to run once every source (file, command line) has been
 * applied: idle_timeout must be 0 or greater than ping_interval when both
 * are on. Returns 0, or -1 with a message in err. */
int config_validate(const config *c, char *err, size_t errlen);

/* Value parsers, exposed for tests. Each returns 0 or -1. */
int config_parse_bool(const char *s, int *out);      /* on|off */
int config_parse_size(const char *s, uint64_t *out); /* 123, 64k, 8m, 1g */
int config_parse_duration(const char *s,
                          uint64_t *ms);             /* 500ms 30s 5m 24h; "0" */
int config_parse_log_level(const char *s, int *out); /* error warn info debug */
int config_parse_log_format(const char *s, int *out); /* text json */

/* Parses a redis_url. Returns 0, or -1 with the reason in err
 * (rediss:// is refused: Debian 12's hiredis has no TLS). */
int config_parse_redis_url(const char *s, redis_addr *out, char *err,
                           size_t errlen);

/* Splits "host:port" / "[v6]:port" / ":port" (host defaults to 0.0.0.0).
 * Returns 0 or -1. */
int config_parse_listen(const char *s, char *host, size_t hostlen, int *port);

#endif
