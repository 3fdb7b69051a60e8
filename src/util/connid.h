/*
 * connid: connection ids, one allocator for the process.
 *
 * An id names one connection in the whole process (caller.id, the "conn N"
 * of log lines, moonws.send) and says which worker owns it, so a message
 * for it can be routed without a lookup. Its bits, low to high:
 *
 *   0..5    the owning worker's index (0..LIM_WORKERS_MAX - 1)
 *   6..36   a process-wide counter, 1..2^31 - 1 (wraps after that many
 *           connections; see connid_new)
 *   37..52  the node number, 0 for now: room for a cluster's node (Redis)
 *
 * so an id is below 2^53: JavaScript and every JSON reader that holds
 * numbers as doubles keep it exact. Thread-safe: the counter is a C11
 * atomic.
 */
#ifndef MOONWS_CONNID_H
#define MOONWS_CONNID_H

#include <stdint.h>

#define CONNID_WORKER_BITS  6
#define CONNID_COUNTER_BITS 31
#define CONNID_NODE_BITS    16

/* A new id for a connection of the worker with this index (0-based, below
 * 2^CONNID_WORKER_BITS). */
uint64_t connid_new(unsigned worker_index);

/* The index of the worker that owns id. */
static inline unsigned connid_worker(uint64_t id)
{
    return (unsigned)(id & ((1u << CONNID_WORKER_BITS) - 1));
}

#endif
