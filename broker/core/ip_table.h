/* Open connections per client address, for max_connections_per_ip. */
#ifndef CHORUS_IP_TABLE_H
#define CHORUS_IP_TABLE_H

#include <stdint.h>
#include <sys/socket.h>

#include "dict.h"

typedef struct ip_slot {
    dict_node node;
    uint32_t count;
    uint8_t len;
    uint8_t addr[16];
} ip_slot;

typedef struct ip_table {
    dict slots;
    uint8_t key[16];
} ip_table;

int ip_table_init(ip_table *t);
void ip_table_destroy(ip_table *t);

/* Counts one more connection from sa's address. Returns its slot, or NULL
 * when max (> 0) connections from there are already open or memory ran
 * out. */
ip_slot *ip_table_acquire(ip_table *t, const struct sockaddr *sa, uint64_t max);
void ip_table_release(ip_table *t, ip_slot *slot);

#endif
