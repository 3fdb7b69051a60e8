/*
 * twheel (src/util/twheel.h) with a clock of its own: every node fires once,
 * never early, at most one tick late; deadlines beyond the span; a node
 * scheduled again from its own fire (the last-activity pattern); nodes
 * cancelled and moved from another's fire; a stall longer than the span.
 */
#include "check.h"

#include <stdint.h>

#include "util/twheel.h"

#define TICK 0.05

struct timer {
    struct twheel_node node;    /* first: the node is the timer */
    double at;                  /* when it was asked to fire */
    double fired_at;            /* when it did; 0: not yet */
    int fired;
};

struct clock {
    double now;
    int late, early;
};

static void record(struct twheel_node *n, void *ud)
{
    struct timer *t = (struct timer *)n;
    struct clock *c = ud;
    t->fired++;
    t->fired_at = c->now;
    if (c->now < t->at - 1e-9)
        c->early++;
    if (c->now > t->at + TICK + 1e-9)
        c->late++;
}

static uint32_t rnd_state = 88172645u;
static uint32_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 17;
    rnd_state ^= rnd_state << 5;
    return rnd_state;
}

TEST(every_node_fires_once_on_time)
{
    static struct twheel w;
    static struct timer t[5000];
    struct clock c = { .now = 1000.0 };
    twheel_init(&w, TICK, c.now);
    for (int i = 0; i < 5000; i++) {
        /* up to 60 s: more than twice the span */
        t[i].at = c.now + (double)(rnd() % 60000) / 1000.0;
        twheel_schedule(&w, &t[i].node, t[i].at);
    }
    CHECK_EQ_INT(w.count, 5000);
    size_t fired = 0;
    while (c.now < 1061.0) {
        c.now += TICK;
        fired += twheel_advance(&w, c.now, record, &c);
    }
    CHECK_EQ_INT(fired, 5000);
    CHECK_EQ_INT(w.count, 0);
    CHECK_EQ_INT(c.early, 0);
    CHECK_EQ_INT(c.late, 0);
    for (int i = 0; i < 5000; i++)
        CHECK_EQ_INT(t[i].fired, 1);
}

TEST(advancing_in_uneven_steps)
{
    static struct twheel w;
    static struct timer t[1000];
    struct clock c = { .now = 5.0 };
    twheel_init(&w, TICK, c.now);
    for (int i = 0; i < 1000; i++) {
        t[i].at = c.now + (double)(rnd() % 20000) / 1000.0;
        twheel_schedule(&w, &t[i].node, t[i].at);
    }
    int never_late = 0;
    while (w.count) {
        double step = (double)(rnd() % 300) / 1000.0;      /* 0 to 0.3 s: several ticks */
        c.now += step;
        twheel_advance(&w, c.now, record, &c);
        never_late += c.now > 40;
        if (never_late)
            break;
    }
    CHECK_EQ_INT(never_late, 0);
    CHECK_EQ_INT(c.early, 0);
    for (int i = 0; i < 1000; i++)
        CHECK_EQ_INT(t[i].fired, 1);
}

TEST(deadline_in_the_past_fires_at_the_next_tick)
{
    struct twheel w;
    struct timer a = { 0 };
    struct clock c = { .now = 10.0 };
    twheel_init(&w, TICK, c.now);
    c.now = 10.2;
    twheel_advance(&w, c.now, record, &c);
    a.at = 3.0;
    twheel_schedule(&w, &a.node, a.at);
    CHECK_EQ_INT(twheel_advance(&w, c.now, record, &c), 0);    /* not in the same tick */
    c.now += TICK;
    CHECK_EQ_INT(twheel_advance(&w, c.now, record, &c), 1);
    CHECK_EQ_INT(a.fired, 1);
}

/* The last-activity pattern: the node stays where it is while activity
 * moves the real deadline; when it fires early it goes again. */
struct idle_conn {
    struct twheel_node node;
    struct twheel *w;
    struct clock *c;
    double last_rx, idle;
    int timeouts, rearms;
};

static void idle_fire(struct twheel_node *n, void *ud)
{
    (void)ud;
    struct idle_conn *ic = (struct idle_conn *)n;
    double due = ic->last_rx + ic->idle;
    if (ic->c->now >= due) {
        ic->timeouts++;
        ic->last_rx = ic->c->now;
        due = ic->c->now + ic->idle;
    } else {
        ic->rearms++;
    }
    twheel_schedule(ic->w, &ic->node, due);
}

TEST(last_activity_pattern_moves_once_per_timeout)
{
    struct twheel w;
    struct clock c = { .now = 0.0 };
    twheel_init(&w, TICK, c.now);
    struct idle_conn ic = { .w = &w, .c = &c, .idle = 1.0 };
    twheel_schedule(&w, &ic.node, ic.idle);
    /* a frame every 0.1 s for 10 s: no timeout, ten re-arms at most */
    for (int i = 0; i < 100; i++) {
        c.now += 0.1;
        ic.last_rx = c.now;
        twheel_advance(&w, c.now, idle_fire, NULL);
    }
    CHECK_EQ_INT(ic.timeouts, 0);
    CHECK(ic.rearms <= 11);
    /* then silence: the timeout within one tick of 1 s after the last frame */
    double last = c.now;
    while (!ic.timeouts) {
        c.now += TICK / 5;
        twheel_advance(&w, c.now, idle_fire, NULL);
    }
    CHECK(c.now >= last + 1.0 - 1e-9);
    CHECK(c.now <= last + 1.0 + TICK + TICK / 5 + 1e-9);
    twheel_cancel(&w, &ic.node);
    CHECK_EQ_INT(w.count, 0);
}

/* A fire that cancels a node due in the same tick, and moves another. */
static struct timer *victim, *moved;
static struct twheel *the_wheel;

static void meddle(struct twheel_node *n, void *ud)
{
    record(n, ud);
    if (victim && n != &victim->node) {
        twheel_cancel(the_wheel, &victim->node);
        twheel_schedule(the_wheel, &moved->node, moved->at);
        victim = NULL;
    }
}

TEST(cancel_and_move_from_another_fire)
{
    struct twheel w;
    struct timer a = { .at = 1.0 }, b = { .at = 1.0 }, d = { .at = 1.0 };
    struct clock c = { .now = 0 };
    twheel_init(&w, TICK, c.now);
    the_wheel = &w;
    twheel_schedule(&w, &a.node, a.at);
    twheel_schedule(&w, &b.node, b.at);
    twheel_schedule(&w, &d.node, d.at);
    victim = &b;                        /* a fires first and cancels b */
    moved = &d;                         /* and moves d to 2 s */
    d.at = 2.0;
    c.now = 1.0;
    CHECK_EQ_INT(twheel_advance(&w, c.now, meddle, &c), 1);
    CHECK_EQ_INT(a.fired, 1);
    CHECK_EQ_INT(b.fired, 0);
    CHECK(!twheel_scheduled(&b.node));
    CHECK_EQ_INT(d.fired, 0);
    CHECK_EQ_INT(w.count, 1);
    c.now = 2.0;
    CHECK_EQ_INT(twheel_advance(&w, c.now, meddle, &c), 1);
    CHECK_EQ_INT(d.fired, 1);
    CHECK_EQ_INT(w.count, 0);
}

TEST(rescheduling_a_scheduled_node_moves_it)
{
    struct twheel w;
    struct timer a = { .at = 5.0 };
    struct clock c = { .now = 0 };
    twheel_init(&w, TICK, c.now);
    twheel_schedule(&w, &a.node, 1.0);
    twheel_schedule(&w, &a.node, 5.0);
    CHECK_EQ_INT(w.count, 1);
    c.now = 4.9;
    CHECK_EQ_INT(twheel_advance(&w, c.now, record, &c), 0);
    c.now = 5.0;
    CHECK_EQ_INT(twheel_advance(&w, c.now, record, &c), 1);
    CHECK_EQ_INT(c.early, 0);
    twheel_cancel(&w, &a.node);                 /* not scheduled: nothing */
    CHECK_EQ_INT(w.count, 0);
}

/* The loop stalled for longer than the span: everything due fires in one
 * pass, what is not due yet stays, and the wheel goes on. */
TEST(stall_longer_than_the_span)
{
    static struct twheel w;
    static struct timer t[300];
    struct clock c = { .now = 0 };
    twheel_init(&w, TICK, c.now);
    for (int i = 0; i < 300; i++) {
        t[i].at = (double)i * 0.2;              /* 0 to 60 s */
        twheel_schedule(&w, &t[i].node, t[i].at);
    }
    c.now = 40.0;                               /* more than 25.6 s at once */
    size_t n = twheel_advance(&w, c.now, record, &c);
    CHECK_EQ_INT(n, 201);                       /* 0 s to 40 s */
    for (int i = 0; i < 300; i++)
        CHECK_EQ_INT(t[i].fired, i <= 200);
    while (c.now < 61) {
        c.now += TICK;
        twheel_advance(&w, c.now, record, &c);
    }
    for (int i = 0; i < 300; i++)
        CHECK_EQ_INT(t[i].fired, 1);
    CHECK_EQ_INT(c.early, 0);
}

int main(int argc, char **argv)
{
    return check_main("test_twheel");
}
