/* Accepting connections (loop 0 only): the plain and TLS listeners, the
 * connection limits checked before a socket gets any state, the hand-off
 * of each socket to a loop. New TLS connections use s->tls_ctx, which a
 * reload (reload.h) may replace. */
#ifndef CHORUS_LISTENER_H
#define CHORUS_LISTENER_H

#include <stddef.h>

typedef struct server server;

/* Opens the listeners of cfg (and loads the TLS certificate). Returns 0,
 * or -1 with a message in err. */
int listener_open(server *s, char *err, size_t errlen);

/* Stops accepting: closes the listening sockets. */
void listener_close(server *s);

#endif
