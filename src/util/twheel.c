#include "twheel.h"

static void list_init(struct twheel_node *head)
{
    head->prev = head->next = head;
}

static void unlink_node(struct twheel_node *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
}

static void push(struct twheel_node *head, struct twheel_node *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}

void twheel_init(struct twheel *w, double tick, double now)
{
    w->tick = tick;
    w->origin = now;
    w->now = 0;
    w->count = 0;
    for (size_t i = 0; i < TWHEEL_SLOTS; i++)
        list_init(&w->slot[i]);
}

/* The tick a time falls in (rounded down), never before tick 0. A time a
 * hair short of a tick's start (the sum of many float steps) counts as in
 * it, or a node due then would fire a whole tick late. */
static uint64_t tick_of(const struct twheel *w, double t)
{
    double k = (t - w->origin) / w->tick + 1e-7;
    return k > 0 ? (uint64_t)k : 0;
}

/* The first tick at or after a time. */
static uint64_t tick_at_or_after(const struct twheel *w, double t)
{
    double k = (t - w->origin) / w->tick;
    if (k <= 0)
        return 0;
    uint64_t whole = (uint64_t)k;
    return whole + ((double)whole < k);
}

void twheel_schedule(struct twheel *w, struct twheel_node *n, double at)
{
    if (twheel_scheduled(n))
        unlink_node(n);
    else
        w->count++;
    uint64_t due = tick_at_or_after(w, at);
    if (due <= w->now)
        due = w->now + 1;
    n->due = due;
    push(&w->slot[due % TWHEEL_SLOTS], n);
}

void twheel_cancel(struct twheel *w, struct twheel_node *n)
{
    if (!twheel_scheduled(n))
        return;
    unlink_node(n);
    w->count--;
}

/* Fires the nodes of slot s due at or before limit. They move to a list of
 * their own first: fire() may cancel one of them, or schedule nodes into
 * this very slot (a lap later), and neither may disturb the walk. */
static size_t fire_slot(struct twheel *w, struct twheel_node *s, uint64_t limit,
                        twheel_fire_fn fire, void *ud)
{
    struct twheel_node due;
    list_init(&due);
    for (struct twheel_node *n = s->next, *next; n != s; n = next) {
        next = n->next;
        if (n->due <= limit) {
            n->prev->next = n->next;
            n->next->prev = n->prev;
            push(&due, n);
        }
    }
    size_t fired = 0;
    while (due.next != &due) {
        struct twheel_node *n = due.next;
        unlink_node(n);
        w->count--;
        fired++;
        fire(n, ud);
    }
    return fired;
}

size_t twheel_advance(struct twheel *w, double now, twheel_fire_fn fire, void *ud)
{
    uint64_t target = tick_of(w, now);
    if (target <= w->now)
        return 0;
    size_t fired = 0;
    if (target - w->now >= TWHEEL_SLOTS) {
        /* A stall of a whole span or more: one pass over every slot. */
        w->now = target;
        for (size_t i = 1; i <= TWHEEL_SLOTS; i++)
            fired += fire_slot(w, &w->slot[(target + i) % TWHEEL_SLOTS], target, fire, ud);
        return fired;
    }
    while (w->now < target) {
        w->now++;
        fired += fire_slot(w, &w->slot[w->now % TWHEEL_SLOTS], w->now, fire, ud);
    }
    return fired;
}
