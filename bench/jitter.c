/*
 * jitter: how long a thread spinning on one core goes without running.
 * On a VM the hypervisor, and on any machine the kernel, now and then take
 * the core away; no server can be faster than that, so these gaps are the
 * floor under every latency tail measured on the machine. scripts/bench
 * runs it once per core and puts the figures beside the results.
 *
 * usage: jitter [SECONDS]   (default 2) -> one line of key=value pairs
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* The same clock wsload times round trips with. */
static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Reads the clock back to back; any gap longer than a few hundred
 * nanoseconds is time the thread did not run. */
int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 2.0;
    static const uint64_t bounds[] = {50000, 200000, 1000000};
    static const char *const names[] = {"gaps_over_50us", "gaps_over_200us",
                                        "gaps_over_1ms"};
    unsigned long count[3] = {0, 0, 0};
    uint64_t start = now_ns(), prev = start, max = 0, total = 0;

    if (!(secs > 0 && secs <= 60)) {
        fprintf(stderr, "usage: jitter [SECONDS (0-60]]\n");
        return 2;
    }
    uint64_t end = start + (uint64_t)(secs * 1e9);
    while (prev < end) {
        uint64_t t = now_ns(), gap = t - prev;
        if (gap > max)
            max = gap;
        for (int i = 0; i < 3; i++)
            if (gap > bounds[i]) {
                count[i]++;
                if (i == 0)
                    total += gap;
            }
        prev = t;
    }
    printf("seconds=%.1f max_gap_us=%.1f", secs, (double)max / 1e3);
    for (int i = 0; i < 3; i++)
        printf(" %s=%lu", names[i], count[i]);
    printf(" lost_ms=%.2f\n", (double)total / 1e6);
    return 0;
}
