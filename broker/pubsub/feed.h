/* The live feed of an engine shared with others (store.h, store_feed):
 * how messages committed elsewhere (other loops or nodes) and epoch
 * changes reach this loop's subscribers. Engines that publish centrally
 * (SQLite) have no feed: loop 0 hands its encoded blocks to the loops. */
#ifndef CHORUS_FEED_H
#define CHORUS_FEED_H

#include "store.h"

typedef struct server server;

/* The callbacks for s's loop; arg is s. */
void feed_init(server *s, store_feed *feed);

#endif
