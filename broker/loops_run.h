/* The broker's main loop: every event loop and thread. */
#ifndef CHORUS_LOOPS_RUN_H
#define CHORUS_LOOPS_RUN_H

#include "config.h"

/* Starts cfg->threads loops (loop 0 on the calling thread), runs until
 * shutdown and returns the exit code; on a start-up failure returns 1
 * after logging err. */
int loops_run(const config *cfg);

#endif
