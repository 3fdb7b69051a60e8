/*
 * metrics_cost: what counting costs the echo path, measured in a tight loop
 * (`make -C bench metrics` builds bench/build/metrics_cost; run it on a quiet
 * machine). Each case runs N iterations of one echoed message's worth of
 * counting and reports nanoseconds per iteration, the best of several runs,
 * beside the same loop with no counting:
 *
 *   none          the loop alone (a compiler barrier per iteration)
 *   count         what src/util/metrics.h asks of one echoed message: the
 *                 message in, the message out, the handler call, the
 *                 sampling draw (no clock)
 *   count+timing  the same, with the sampled calls timed (two clock reads
 *                 one call in LIM_METRICS_TIMING_SAMPLE)
 *   time-all      two clock reads on every call: what timing every handler
 *                 call would cost instead
 *   lock-add      one atomic_fetch_add (a locked add) per message, uncontended
 *   shared 2T     two threads doing fetch_add on one counter: what a
 *                 process-wide counter costs under contention
 *   per-worker 2T two threads each counting on its own block, as metrics.h does
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../src/util/metrics.h"

#define RUNS 5

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define BARRIER() __asm__ volatile("" ::: "memory")

static struct metrics *m;
static struct metrics_path_cells *p0;
static struct metrics_worker *w0;
static long n_iter;

static void case_none(void)
{
    for (long i = 0; i < n_iter; i++)
        BARRIER();
}

static void case_count(void)
{
    for (long i = 0; i < n_iter; i++) {
        BARRIER();
        metrics_message_in(p0, METRICS_TEXT, 32);
        (void)metrics_sample(w0);
        metrics_handler_call(p0, true, false);
        metrics_message_out(p0, METRICS_TEXT, 32);
    }
}

static void case_count_timing(void)
{
    for (long i = 0; i < n_iter; i++) {
        BARRIER();
        metrics_message_in(p0, METRICS_TEXT, 32);
        bool timed = metrics_sample(w0);
        uint64_t t0 = timed ? metrics_now_ns() : 0;
        BARRIER();
        metrics_handler_call(p0, true, false);
        if (timed)
            metrics_handler_timed(p0, metrics_now_ns() - t0);
        metrics_message_out(p0, METRICS_TEXT, 32);
    }
}

static void case_time_all(void)
{
    for (long i = 0; i < n_iter; i++) {
        uint64_t t0 = metrics_now_ns();
        BARRIER();
        metrics_handler_timed(p0, metrics_now_ns() - t0);
    }
}

static _Atomic uint64_t shared_counter;

static void case_lock_add(void)
{
    for (long i = 0; i < n_iter; i++) {
        BARRIER();
        atomic_fetch_add_explicit(&shared_counter, 1, memory_order_relaxed);
    }
}

static void *shared_thread(void *arg)
{
    (void)arg;
    case_lock_add();
    return NULL;
}

static void *own_thread(void *arg)
{
    struct metrics_path_cells *p = arg;
    for (long i = 0; i < n_iter; i++) {
        BARRIER();
        metrics_add(&p->msgs_in[METRICS_TEXT], 1);
    }
    return NULL;
}

static void two_threads(void *(*fn)(void *), void *a, void *b)
{
    pthread_t t1, t2;
    pthread_create(&t1, NULL, fn, a);
    pthread_create(&t2, NULL, fn, b);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
}

static void case_shared_2t(void)
{
    two_threads(shared_thread, NULL, NULL);
}

static void case_own_2t(void)
{
    int id = 1;
    two_threads(own_thread, metrics_path_cells(metrics_worker(m, 0), id),
                metrics_path_cells(metrics_worker(m, 1), id));
}

static double best(void (*fn)(void))
{
    double b = 1e9;
    for (int r = 0; r < RUNS; r++) {
        double t0 = now();
        fn();
        double t = (now() - t0) / (double)n_iter * 1e9;
        if (t < b)
            b = t;
    }
    return b;
}

int main(int argc, char **argv)
{
    n_iter = argc > 1 ? atol(argv[1]) : 50000000;
    m = metrics_new(2);
    int id = metrics_path_acquire(m, "/echo");
    w0 = metrics_worker(m, 0);
    p0 = metrics_path_cells(w0, id);
    double none = best(case_none);
    printf("%-14s %6.2f ns/message\n", "none", none);
    double c = best(case_count);
    printf("%-14s %6.2f ns/message (+%.2f)\n", "count", c, c - none);
    double ct = best(case_count_timing);
    printf("%-14s %6.2f ns/message (+%.2f)\n", "count+timing", ct, ct - none);
    double ta = best(case_time_all);
    printf("%-14s %6.2f ns/message (+%.2f)\n", "time-all", ta, ta - none);
    double la = best(case_lock_add);
    printf("%-14s %6.2f ns/message (+%.2f)\n", "lock-add", la, la - none);
    printf("%-14s %6.2f ns/message per thread\n", "shared 2T", best(case_shared_2t));
    printf("%-14s %6.2f ns/message per thread\n", "per-worker 2T", best(case_own_2t));
    metrics_path_release(m, id);
    metrics_free(m);
    return 0;
}
