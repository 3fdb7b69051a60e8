/*
 * twheel: a hashed timer wheel — many deadlines, one periodic tick, and a
 * tick that touches only what is due.
 *
 * Why: the worker's sweep (LIM_SWEEP_INTERVAL) visits every connection on
 * every tick, two cache misses each when they are idle and cold — about
 * 0.4 us per connection on the test machine, so 40 ms a sweep with 100 000
 * connections, 8% of a core at 0.5 s, and too much to tick finer. Here a
 * node sits in the slot of its deadline; a tick walks one slot. Making a
 * deadline finer costs nothing but the tick itself.
 *
 * The caller owns the nodes (embedded in its own structs, as libev
 * watchers are) and the time: it advances the wheel with its loop's clock.
 * Deadlines round up to the next tick, so a node fires at most one tick
 * late when the wheel is advanced every tick. A deadline beyond the
 * wheel's span (TWHEEL_SLOTS ticks) waits in its slot and is passed over
 * until its lap comes. For deadlines that move often (a last-activity
 * stamp), leave the node where it is and, when it fires, schedule it again
 * for the real deadline if that is still ahead: the node moves once per
 * timeout, not once per packet.
 *
 * Not thread-safe: one wheel per worker, used on its thread.
 */
#ifndef MOONWS_TWHEEL_H
#define MOONWS_TWHEEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Slots: with a 50 ms tick, a span of 25.6 s. */
#define TWHEEL_SLOTS 512

struct twheel_node {
    struct twheel_node *prev, *next;    /* NULL while not scheduled */
    uint64_t due;                       /* the tick it fires at */
};

struct twheel {
    double tick;                        /* seconds per slot */
    double origin;                      /* the time of tick 0 */
    uint64_t now;                       /* every node due at or before it has fired */
    size_t count;                       /* nodes scheduled */
    struct twheel_node slot[TWHEEL_SLOTS];      /* list heads (circular) */
};

typedef void (*twheel_fire_fn)(struct twheel_node *n, void *ud);

/* A wheel of tick seconds per slot, at time now. */
void twheel_init(struct twheel *w, double tick, double now);

static inline bool twheel_scheduled(const struct twheel_node *n)
{
    return n->next != NULL;
}

/* (Re)schedules n to fire at time at: the first tick at or after it, and
 * never before the next tick. */
void twheel_schedule(struct twheel *w, struct twheel_node *n, double at);
/* Unschedules n (nothing when it is not scheduled). */
void twheel_cancel(struct twheel *w, struct twheel_node *n);

/* Moves the wheel to time now: every node due by then fires, tick by tick
 * in order. A node is unscheduled before fire(n, ud) runs, which may
 * schedule it (or any other node) again, or cancel others. After a stall
 * of more than a whole span, everything due fires in one pass, in slot
 * order. Returns how many fired. */
size_t twheel_advance(struct twheel *w, double now, twheel_fire_fn fire, void *ud);

#endif
