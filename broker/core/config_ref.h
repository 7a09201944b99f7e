/* A config shared by the event loops. It is built and validated whole on
 * one thread, then only read; each loop holds a reference to the one it
 * uses, and the last to let go of it frees it. A reload hands the loops a
 * new one (loops.h, LMSG_CONFIG) instead of changing one in use. */
#ifndef CHORUS_CONFIG_REF_H
#define CHORUS_CONFIG_REF_H

#include "config.h"

/* A config_init()ed config with one reference, or NULL (out of memory). */
config *config_ref_new(void);

/* Takes one more reference; returns c. */
const config *config_ref_hold(const config *c);

/* Drops one reference; the last frees c. NULL is ignored. */
void config_ref_release(const config *c);

#endif
