/* The broker's config: built from its sources (defaults, file, command
 * line) at start-up, and built again on SIGHUP and handed to every loop.
 *
 * A reload is all or nothing: the new config is read, validated and its
 * TLS certificate loaded on loop 0 before anything changes; a failure is
 * logged (with file:line) and the config in use stays whole. Keys that
 * need a restart keep their current value and are named in one line. */
#ifndef CHORUS_RELOAD_H
#define CHORUS_RELOAD_H

#include <stddef.h>

#include "config.h"
#include "loops.h"

typedef struct server server;

/* Defaults, then src->path, then the command-line values, validated, and
 * threads resolved (config_resolve_threads). Returns a config_ref with one
 * reference, or NULL with "file:line: message" in err. */
config *config_build(const config_source *src, char *err, size_t errlen);

/* Raises the soft open-file limit to the hard one, and lowers
 * max_connections to what that limit allows (logged). At start-up and on
 * each reload. */
void config_fit_fd_limit(config *cfg);

/* SIGHUP on loop 0: rebuilds the config and hands it to every loop. */
void reload_config(server *s);

#endif
