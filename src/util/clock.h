/*
 * clock: the monotonic clock, the one every timeout, deadline and duration
 * of the server is measured on.
 *
 * The wall clock can be stepped — by NTP, or by a hypervisor that sets a
 * guest's time — and libev's ev_now() follows the wall clock, so a
 * timestamp taken with it before a step and compared with one taken after
 * is off by the step: a 10-second timeout fires after 9.8 seconds, or
 * after 70. CLOCK_MONOTONIC only moves forward, at the rate of real time;
 * it is also what libev's timers run on.
 */
#ifndef MOONWS_CLOCK_H
#define MOONWS_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Nanoseconds of CLOCK_MONOTONIC (since boot). */
static inline int64_t clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The same in seconds: what connections' timestamps hold. */
static inline double clock_seconds(void)
{
    return (double)clock_ns() / 1e9;
}

/* CLOCK_MONOTONIC_COARSE in nanoseconds: the time of the last timer tick
 * (a few milliseconds old at most), read without the time stamp counter —
 * for rate limits and budgets that need no finer grain. */
static inline int64_t clock_coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#endif
