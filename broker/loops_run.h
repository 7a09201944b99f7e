/* The broker's main loop: every event loop and thread. */
#ifndef CHORUS_LOOPS_RUN_H
#define CHORUS_LOOPS_RUN_H

#include "config.h"
#include "loops.h"

/* Starts cfg->threads loops (loop 0 on the calling thread), runs until
 * shutdown and returns the exit code; on a start-up failure returns 1
 * after logging err. Takes over the caller's reference to cfg (a
 * config_ref); src is read again on a reload. */
int loops_run(const config *cfg, const config_source *src);

#endif
