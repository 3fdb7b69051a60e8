/*
 * inbox: work handed to one worker's loop by other threads — the shape of
 * uWebSockets' Loop::defer. Any thread posts an item (a function and its
 * argument); the worker runs it on its own thread, in its loop, woken
 * through an ev_async.
 *
 * Posting never waits for the consumer: the queue is a linked list that a
 * poster joins with one atomic exchange (Vyukov's multi-producer,
 * single-consumer queue), plus one malloc for its node and one
 * ev_async_send. Items from one thread run in the order that thread posted
 * them (items of different threads interleave in the order their exchanges
 * happened).
 *
 * A wake-up runs the items that were queued when it began, LIM_INBOX_BATCH
 * at most; the rest, and whatever is posted meanwhile (by a running item
 * too), waits for the next loop iteration, so a busy inbox cannot starve
 * the connections.
 *
 * A byte cap bounds what waits: an item counts its `bytes` plus its node.
 * A post past the cap is refused (inbox_post returns false and the poster
 * keeps its argument), counted, and the refusals are logged at info at most
 * once per LIM_INBOX_LOG_INTERVAL with their count.
 *
 * For a cross-worker publish: the payload is an xshbuf (util/xshbuf.h), one
 * reference per receiving worker's item; `run` builds the frame once for
 * the worker's own clients and drops the reference, `drop` just drops it.
 */
#ifndef MOONWS_INBOX_H
#define MOONWS_INBOX_H

#include <ev.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct inbox_item {
    /* Runs on the consumer's thread with the inbox's ctx; it owns arg. */
    void (*run)(void *arg, void *ctx);
    /* Releases arg of an item that will never run (inbox_free); NULL when
     * there is nothing to release. */
    void (*drop)(void *arg);
    void *arg;
    /* What the item holds (its payload's size), counted against the cap. */
    size_t bytes;
};

struct inbox_node {
    _Atomic(struct inbox_node *) next;
    struct inbox_item item;
};

struct inbox {
    /* Written by every poster: a cache line of their own. */
    _Alignas(64) _Atomic(struct inbox_node *) head;
    atomic_uint_fast64_t posted;    /* items fully queued, ever */
    atomic_size_t bytes;            /* queued, nodes included */
    atomic_uint_fast64_t dropped;   /* refused posts since inbox_init */
    atomic_uint_fast64_t unlogged;  /* refused since the last log line */
    atomic_int_fast64_t last_log;   /* monotonic ms of that line; 0: none yet */
    atomic_bool closed;
    /* The consumer's. */
    _Alignas(64) struct inbox_node *tail;
    uint64_t taken;                 /* items taken off the queue, ever */
    struct inbox_node stub;         /* lets the queue never be empty of nodes */
    struct ev_loop *loop;
    ev_async async_w;
    void *ctx;
    size_t cap;
    char name[32];
};

/* Starts the inbox on loop (call on the loop's thread, before anything is
 * posted). name is for the log line ("worker 2"); cap is its byte cap
 * (LIM_INBOX_BYTES); ctx goes to every item's run. The inbox must not move
 * while in use. Like the worker's own watchers, it does not keep the loop
 * alive by itself. */
void inbox_init(struct inbox *ib, struct ev_loop *loop, const char *name, size_t cap, void *ctx);

/* Queues a copy of *it for the consumer and wakes it; from any thread,
 * the consumer's own included. Returns false, having taken nothing, when
 * the item would pass the byte cap or the inbox is closed. */
bool inbox_post(struct inbox *ib, const struct inbox_item *it);

/* The same for a control item that must not be lost to the byte cap (a
 * shutdown, a phase of a reload): counted, but never refused for the cap;
 * still refused once the inbox is closed. */
bool inbox_post_control(struct inbox *ib, const struct inbox_item *it);

/* Refuses every later post (shutdown). Posts racing with it may still get
 * in: inbox_free drops them. */
void inbox_close(struct inbox *ib);

/* On the consumer's thread, once no other thread can post any more (they
 * are joined): stops the watcher and drops every item left, each through
 * its drop function. */
void inbox_free(struct inbox *ib);

/* Refused posts since inbox_init. */
uint64_t inbox_dropped(struct inbox *ib);
/* Bytes queued now, nodes included. */
size_t inbox_bytes(struct inbox *ib);

#endif
