/*
 * wsl_stats: measuring and reporting for wsload — clocks, the window
 * probe, quantiles, the payload pattern and the key=value result line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "wsl.h"

/* The result line is built here and printed once, so a run that dies
 * half-way prints nothing rather than half a line. */
static char kv_line[2048];
static size_t kv_len;

/* CLOCK_MONOTONIC: immune to clock steps during a run. */
double wsl_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Integer nanoseconds for round trips, where doubles would round. */
uint64_t wsl_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* wsload's own CPU: with the server pinned to one core and wsload to the
 * other, this says which of the two limits a figure. */
static int64_t self_cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Times the scheduler took the CPU from wsload although it could run: on
 * a core of its own this stays near zero. */
static long self_preempted(void)
{
    struct rusage ru;

    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_nivcsw : 0;
}

/* The slow /proc reads come first and the clock last, so the window
 * starts as close as possible to the moment the caller means. */
void wsl_probe_start(struct wsl_ctx *x, struct wsl_probe *pr)
{
    if (machine_cpu_read(&pr->mach0) < 0)
        pr->mach0.busy_ns = -1;
    pr->preempt0 = self_preempted();
    pr->srv0 = x->have_ps ? procset_cpu_ns(&x->ps) : -1;
    pr->gen0 = self_cpu_ns();
    pr->t0 = wsl_now();
}

/* The clock first, then the reads, for the same reason. */
void wsl_probe_stop(struct wsl_ctx *x, struct wsl_probe *pr)
{
    struct machine_cpu m1;

    pr->wall = wsl_now() - pr->t0;
    pr->gen_ns = self_cpu_ns() - pr->gen0;
    int64_t s1 = x->have_ps && pr->srv0 >= 0 ? procset_cpu_ns(&x->ps) : -1;
    pr->srv_ns = s1 >= 0 ? s1 - pr->srv0 : -1;
    pr->preempted = self_preempted() - pr->preempt0;
    if (pr->mach0.busy_ns >= 0 && machine_cpu_read(&m1) == 0) {
        pr->busy_ns = m1.busy_ns - pr->mach0.busy_ns;
        pr->steal_ns = m1.steal_ns - pr->mach0.steal_ns;
    } else {
        pr->busy_ns = -1;
    }
}

/* Broadcast sums its rounds' windows; one unknown makes the sum unknown. */
void wsl_probe_add(struct wsl_probe *acc, const struct wsl_probe *pr)
{
    acc->wall += pr->wall;
    acc->gen_ns += pr->gen_ns;
    acc->srv_ns = acc->srv_ns < 0 || pr->srv_ns < 0 ? -1 : acc->srv_ns + pr->srv_ns;
    acc->busy_ns = acc->busy_ns < 0 || pr->busy_ns < 0 ? -1 : acc->busy_ns + pr->busy_ns;
    acc->steal_ns += pr->steal_ns;
    acc->preempted += pr->preempted;
}

/* Every line starts with the mode, so mixed logs stay parseable. */
void wsl_kv_begin(const char *mode)
{
    kv_len = 0;
    kv_line[0] = '\0';
    wsl_kv_str("mode", mode);
}

/* Appends " key=value"; spaces in values become '_' so that splitting the
 * line on blanks and then on the first '=' always works. */
void wsl_kv_str(const char *key, const char *val)
{
    int n = snprintf(kv_line + kv_len, sizeof kv_line - kv_len, "%s%s=%s",
                     kv_len ? " " : "", key, val);
    if (n < 0 || (size_t)n >= sizeof kv_line - kv_len)
        return;
    for (char *p = kv_line + kv_len + (kv_len ? 1 : 0) + strlen(key) + 1; *p; p++)
        if (*p == ' ' || *p == '\t' || *p == '\n')
            *p = '_';
    kv_len += (size_t)n;
}

/* Counts, printed exactly. */
void wsl_kv_u64(const char *key, uint64_t val)
{
    char b[32];

    snprintf(b, sizeof b, "%llu", (unsigned long long)val);
    wsl_kv_str(key, b);
}

/* Rates and times, with the precision the caller knows is meaningful. */
void wsl_kv_f(const char *key, double val, int decimals)
{
    char b[64];

    snprintf(b, sizeof b, "%.*f", decimals, val);
    wsl_kv_str(key, b);
}

/* Server CPU per unit is the figure that survives a saturated generator:
 * it stays comparable even when wsload, not the server, sets the rate.
 * Missing values are printed as "-" so the keys are always there. */
void wsl_kv_probe(const struct wsl_probe *pr, const char *unit, double count)
{
    char key[64];

    snprintf(key, sizeof key, "srv_cpu_us_per_%s", unit);
    if (pr->srv_ns >= 0 && count > 0)
        wsl_kv_f(key, (double)pr->srv_ns / 1e3 / count, 3);
    else
        wsl_kv_str(key, "-");
    if (pr->srv_ns >= 0 && pr->wall > 0)
        wsl_kv_f("srv_cpu_util", (double)pr->srv_ns / 1e9 / pr->wall, 3);
    else
        wsl_kv_str("srv_cpu_util", "-");
    wsl_kv_f("gen_cpu_util", pr->wall > 0 ? (double)pr->gen_ns / 1e9 / pr->wall : 0, 3);
    /* Clock-tick resolution: only a few hundredths are noise, more means
     * another process ran during the window. */
    if (pr->srv_ns >= 0 && pr->busy_ns >= 0 && pr->wall > 0) {
        double other = (double)(pr->busy_ns - pr->srv_ns - pr->gen_ns) / 1e9 / pr->wall;
        wsl_kv_f("other_cpu_util", other > 0 ? other : 0, 3);
    } else {
        wsl_kv_str("other_cpu_util", "-");
    }
    wsl_kv_f("steal_util", pr->wall > 0 && pr->busy_ns >= 0
                               ? (double)pr->steal_ns / 1e9 / pr->wall : 0, 3);
    wsl_kv_u64("gen_preempted", pr->preempted > 0 ? (uint64_t)pr->preempted : 0);
}

/* ok and error last, then the line is out and flushed before exit. */
int wsl_kv_end(bool ok, const char *err)
{
    wsl_kv_u64("ok", ok);
    if (err)
        wsl_kv_str("error", err);
    printf("%s\n", kv_line);
    fflush(stdout);
    return ok ? 0 : 1;
}

/* qsort order without the overflow of returning a difference. */
static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* The same for doubles. */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* qsort: samples are sorted once, at the end of a run. */
void wsl_sort_u64(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_u64);
}

/* Nearest rank: the smallest sample with at least q of them at or below
 * it, so p99.9 of 1000 samples is the largest but one. */
uint64_t wsl_quantile_u64(const uint64_t *sorted, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t rank = (size_t)(q * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

/* The mean of the middle two for an even count. */
double wsl_median(double *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One message for every mode that needs all N connections up. */
const char *wsl_open_failure(const struct wc_pool *p, unsigned want)
{
    static char msg[256];

    snprintf(msg, sizeof msg, "%llu of %u connections failed (last: %s)",
             (unsigned long long)p->failed, want,
             p->last_err ? p->last_err : "?");
    return msg;
}

/* "-" until a session is up: all of a run's sessions agree (one context,
 * one server), so the first one speaks for them. */
void wsl_kv_tls(const struct wc_pool *p)
{
    if (p->cfg.tls)
        wsl_kv_str("tls", p->tls_desc ? p->tls_desc : "-");
}
