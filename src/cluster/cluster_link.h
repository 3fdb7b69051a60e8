/*
 * cluster_link: the process's link to Redis, for --redis (docs/cluster.md).
 *
 * One thread of its own, started here, runs a libev loop with hiredis'
 * libev adapter and owns two connections to Redis: one that publishes (and
 * keeps the node's number, its lease and its counts) and one that
 * subscribes. Nothing else touches them. Other threads (the workers) hand
 * it work and never wait for it:
 *
 * - publish / send queue a message for the link's thread through its inbox
 *   (transport/inbox.h). What waits — queued, or written to Redis and not
 *   yet confirmed — is bounded by LIM_CLUSTER_QUEUE_BYTES; past it the call
 *   returns false, and the refusals are counted and logged (rate-limited).
 *   While the link is down the call returns false at once, and what was
 *   refused (or lost in flight when the link dropped) is counted and logged
 *   when it is back. No lock is held across a socket write: the queue is
 *   the inbox's lock-free list.
 * - subscribe / unsubscribe count references per channel under a mutex
 *   held for a table update only, and wake the link's thread (ev_async),
 *   which sends SUBSCRIBE when a channel gets its first reference and
 *   UNSUBSCRIBE when it loses its last (changes in between coalesce), and
 *   subscribes again to every channel still referenced after a reconnect.
 *   These never fail and never wait.
 * - Received messages are decoded (cluster_wire.h) on the link's thread;
 *   this node's own messages (origin == its number) are skipped, malformed
 *   ones dropped and logged (rate-limited); the rest go to on_message.
 *
 * The node number: when it first reaches Redis, the link takes a number
 * with INCR PREFIXnodes (wrapped into 1..CLUSTER_NODE_MAX) and holds a
 * lease on it (PREFIXlease:N, renewed every LIM_CLUSTER_LEASE_REFRESH, for
 * LIM_CLUSTER_LEASE_TTL): a number whose lease someone else holds is passed
 * over, so numbers are reused safely once the counter wraps, and a Redis
 * that lost its data (restarted without persistence) does not hand out a
 * number that a live node has already reclaimed. The number never changes
 * once taken. Until then it is 0: the node runs alone, and what it numbers
 * meanwhile (connection ids) carries 0 — see docs/cluster.md.
 *
 * Failure: an unreachable Redis is retried with bounded exponential
 * backoff with jitter (LIM_CLUSTER_BACKOFF_*); a drop is logged once at
 * warn, the return once at info; a Redis that stops answering (the lease
 * renewal, LIM_CLUSTER_REPLY_TIMEOUT) is dropped and reconnected. Messages
 * other nodes publish while the link is down are not seen (Redis pub/sub
 * keeps no history).
 *
 * Threads: start and stop from one thread (the master); every other call
 * from any thread, between them.
 */
#ifndef MOONWS_CLUSTER_LINK_H
#define MOONWS_CLUSTER_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../util/xshbuf.h"
#include "cluster_counts.h"
#include "cluster_wire.h"
#include "redis_url.h"

struct cluster_link;

/* A message received from another node, or from another program. */
struct cluster_rx {
    enum cluster_chan chan;
    const char *name;           /* the topic, the service path, or the node number */
    size_t name_len;
    unsigned origin;            /* 0: another program */
    enum cluster_kind kind;
    uint64_t target;            /* node channels: the connection id */
    /* Borrowed for the call: take a reference (xshbuf_ref) to keep it,
     * for instance one per worker inbox post. */
    struct xshbuf *payload;
};

struct cluster_link_config {
    struct redis_url url;
    const char *prefix;         /* checked with cluster_wire_prefix_check */
    /* Called on the link's thread for each message received; must not
     * block (post to inboxes). Not called once cluster_link_stop has
     * begun. May be NULL. */
    void (*on_message)(void *ctx, const struct cluster_rx *rx);
    /* Called on the link's thread every LIM_CLUSTER_COUNT_INTERVAL while
     * the link is up, to fill in this node's per-path counts with
     * cluster_counts_add; NULL: the node takes no part in cluster counts. */
    void (*counts)(void *ctx, struct cluster_counts *out);
    /* Called on the link's thread once, when the node takes its number
     * (before the link reports itself up, and before cluster_link_start
     * returns CLUSTER_JOINED when it is then): connection ids made from
     * then on carry it. May be NULL. */
    void (*on_node)(void *ctx, unsigned node);
    void *ctx;
};

enum cluster_start {
    CLUSTER_JOINED,             /* up, with a node number */
    CLUSTER_ALONE,              /* Redis unreachable: logged at warn; the link keeps trying */
    CLUSTER_REFUSED,            /* Redis answered no: why says what; nothing was started */
};

/* Starts the link's thread and waits for its first attempt to end (about
 * LIM_CLUSTER_CONNECT_TIMEOUT at most). JOINED and ALONE set *out; REFUSED
 * (a wrong or missing password, a database SELECT refuses, a key of the
 * wrong type, a read-only replica...) leaves *out NULL and writes the
 * reason, for "moonws: --redis: WHY" and exit 2. */
enum cluster_start cluster_link_start(const struct cluster_link_config *cfg,
                                      struct cluster_link **out, char *why, size_t whylen);

/* Leaves Redis: what was queued is written first, the channels are
 * unsubscribed, the node's lease and counts deleted, both connections end
 * with QUIT (LIM_CLUSTER_QUIT_TIMEOUT at most); then the thread is joined
 * and everything freed. No other thread may call the link any more (join
 * the workers first). */
void cluster_link_stop(struct cluster_link *l);

/* This node's number, 1..CLUSTER_NODE_MAX, or 0 before it first joined. */
unsigned cluster_link_node(const struct cluster_link *l);
/* Whether the link is up now (a hint: it may drop the next moment). */
bool cluster_link_up(const struct cluster_link *l);

/* Queues payload for every other node on PREFIX topic:NAME or PREFIX
 * svc:PATH (ch is not CLUSTER_CH_NODE), in an envelope with this node's
 * number. The bytes are copied. True: queued (per calling thread, messages
 * leave in the order queued); false: not forwarded (the link is down, the
 * queue is full, or the message is larger than LIM_CLUSTER_MESSAGE_MAX) —
 * counted and logged as said above, nothing for the caller to do. */
bool cluster_link_publish(struct cluster_link *l, enum cluster_chan ch, const char *name,
                          size_t nlen, enum cluster_kind kind, const void *payload, size_t len);
/* The same for one connection of node `node` (PREFIX node:N, target id). */
bool cluster_link_send(struct cluster_link *l, unsigned node, uint64_t target,
                       enum cluster_kind kind, const void *payload, size_t len);

/* Takes / drops one reference on PREFIX topic:NAME or PREFIX svc:PATH
 * (not a node channel: the link keeps its own). Dropping a reference that
 * was not taken is a broken invariant (assertion). */
void cluster_link_subscribe(struct cluster_link *l, enum cluster_chan ch, const char *name,
                            size_t nlen);
void cluster_link_unsubscribe(struct cluster_link *l, enum cluster_chan ch, const char *name,
                              size_t nlen);

/* The sum over the OTHER nodes of their counts for path, as Redis had them
 * at this node's last read (each node writes its counts every
 * LIM_CLUSTER_COUNT_INTERVAL, this node reads the others' at the same
 * pace: the figure is at most about two intervals old; a node that died is
 * counted until LIM_CLUSTER_COUNT_TTL after its last write). False when
 * there is no figure younger than LIM_CLUSTER_COUNT_TTL: the link has not
 * read one yet, or has been down (or Redis slow) that long, or there is no
 * counts callback. A path no other node counts gives true and 0. Any
 * thread; a mutex held for a lookup. */
bool cluster_link_count_others(struct cluster_link *l, const char *path, size_t len,
                               uint64_t *n);

struct cluster_link_stats {
    uint64_t published;         /* messages Redis took (PUBLISH answered) */
    uint64_t not_forwarded;     /* refused while down, or lost in flight when it dropped */
    uint64_t queue_full;        /* refused: LIM_CLUSTER_QUEUE_BYTES */
    uint64_t too_large;         /* refused: LIM_CLUSTER_MESSAGE_MAX */
    uint64_t received;          /* handed to on_message */
    uint64_t own_skipped;       /* this node's own, not handed on */
    uint64_t malformed;         /* dropped: did not decode, or too large */
    uint64_t drops;             /* times the link went down after being up */
    uint64_t joins;             /* times the link came up */
    uint64_t subscribed;        /* channels subscribed on Redis, as it last said */
};
/* A snapshot of the counters; any thread. */
void cluster_link_stats(const struct cluster_link *l, struct cluster_link_stats *st);

#endif
