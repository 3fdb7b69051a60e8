/*
 * connid: connection ids — one allocator for the process, and the set of
 * ids open now for sending (moonws.send).
 *
 * An id names one connection in the whole process (caller.id, the "conn N"
 * of log lines, moonws.send) and says which worker owns it, so a message
 * for it can be routed without a lookup. Its bits, low to high:
 *
 *   0..5    the owning worker's index (0..LIM_WORKERS_MAX - 1)
 *   6..40   a process-wide counter, 1..2^35 - 1, then round again (see
 *           connid_new)
 *   41..52  the node number in a cluster (--redis, docs/cluster.md), 0
 *           without one or before the node has its number
 *           (connid_set_node); an id keeps the number it was made with
 *
 * so an id is below 2^53: JavaScript and every JSON reader that holds
 * numbers as doubles keep it exact. The node's bits are cluster_wire.h's
 * CLUSTER_ID_NODE_SHIFT and CLUSTER_NODE_BITS (the same numbers).
 *
 * The open set: a protocol registers a connection while it can take
 * messages (a WebSocket, from its 101 until its closing starts), with a
 * pointer only its owning worker may follow. Any thread may ask whether an
 * id is open. Sharded: a mutex per shard, held for one hash lookup, never
 * across a socket call or a callback.
 *
 * Thread-safe: the counter is a C11 atomic, the set is behind its mutexes.
 */
#ifndef MOONWS_CONNID_H
#define MOONWS_CONNID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONNID_WORKER_BITS  6
#define CONNID_COUNTER_BITS 35
#define CONNID_NODE_BITS    12
#define CONNID_NODE_SHIFT   (CONNID_WORKER_BITS + CONNID_COUNTER_BITS)

/* From the moment it is called (any thread), new ids carry node (below
 * 2^CONNID_NODE_BITS): the cluster link calls it once, when the node
 * first gets its number. */
void connid_set_node(unsigned node);

/* The node number id was made with. */
static inline unsigned connid_node(uint64_t id)
{
    return (unsigned)(id >> CONNID_NODE_SHIFT);
}

/* A new id for a connection of the worker with this index (0-based, below
 * 2^CONNID_WORKER_BITS). Once the counter has gone round, an id that is
 * still open is skipped: an open id is never given twice. */
uint64_t connid_new(unsigned worker_index);

/* The index of the worker that owns id. */
static inline unsigned connid_worker(uint64_t id)
{
    return (unsigned)(id & ((1u << CONNID_WORKER_BITS) - 1));
}

/* id is open, reachable through p (which only its owner follows). */
void connid_open(uint64_t id, void *p);
/* id is no longer open (nothing when it was not). */
void connid_close(uint64_t id);
/* The pointer id was opened with, or NULL when it is not open now. Any
 * thread may call it; only the owning worker may use the pointer. */
void *connid_find(uint64_t id);
/* Ids open now. */
size_t connid_count(void);
/* Frees the set's tables (at exit, every id closed). */
void connid_cleanup(void);

#endif
