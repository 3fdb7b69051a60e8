/*
 * wsl: what wsload's modes share — the parsed options, the run context
 * (loop, server process set, deadline), the measured-window probe and the
 * one-line key=value result. Each mode lives in its own wsl_<mode>.c and
 * exposes one entry point that runs the loop and prints the result.
 */
#ifndef BENCH_WSL_H
#define BENCH_WSL_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "procstat.h"
#include "wsl_client.h"

/* Defaults, in one place. */
#define WSL_DEF_CONNS 100
#define WSL_DEF_HS_CONCURRENCY 64
#define WSL_DEF_SIZE 32
#define WSL_DEF_DEPTH 1
#define WSL_DEF_DURATION 5.0
#define WSL_DEF_WARMUP 1.0
#define WSL_DEF_REPEAT 5
#define WSL_DEF_OPEN_CONCURRENCY 256
#define WSL_DEF_IDLE_SETTLE 1.0
#define WSL_DEF_BCAST_SETTLE 0.5
/* Seconds a broadcast round may take before the run fails. */
#define WSL_BCAST_ROUND_TIMEOUT 20.0
/* Seconds latency mode waits for the replies still in flight at the end. */
#define WSL_LAT_DRAIN 1.0
/* Largest payload wsload sends (and the largest broadcast body). */
#define WSL_SIZE_MAX (16u * 1024 * 1024)
/* Connections at most: the process may hold 20 000 files in all. */
#define WSL_CONNS_MAX 19000

struct wsl_opts {
    const char *mode;
    int port;
    const char *path;           /* NULL: the mode's default */
    const char *post_path;      /* NULL: path + "/broadcast" */
    int post_port;              /* broadcast: where the POST goes; 0: port */
    unsigned conns;             /* 0: the mode's default */
    size_t size;
    unsigned depth;
    double rate;
    double duration;
    double warmup;
    unsigned repeat;
    unsigned open_concurrency;
    bool binary;
    bool deflate;
    bool tls;                   /* wss://: TLS on every connection */
    const char *protocol;       /* subprotocol to offer, or NULL */
    double settle;              /* <0: the mode's default */
    double deadline;            /* 0: derived */
    const char *pids;
};

struct wsl_ctx {
    struct ev_loop *loop;
    const struct wsl_opts *o;
    struct procset ps;
    bool have_ps;
    bool deadline_hit;          /* the global deadline stopped the loop */
    ev_timer deadline_w;
};

/* A measured window: wall clock, server CPU, wsload's own CPU, and what
 * else the machine did meanwhile (to spot runs that shared their cores). */
struct wsl_probe {
    double t0, wall;            /* seconds */
    int64_t srv0, srv_ns;       /* srv_ns < 0: no pid given or a read failed */
    int64_t gen0, gen_ns;
    struct machine_cpu mach0;
    int64_t busy_ns, steal_ns;  /* busy_ns < 0: /proc/stat unreadable */
    long preempt0, preempted;   /* wsload's involuntary context switches */
};

/* CLOCK_MONOTONIC in seconds / nanoseconds. */
double wsl_now(void);
uint64_t wsl_now_ns(void);

void wsl_probe_start(struct wsl_ctx *x, struct wsl_probe *pr);
void wsl_probe_stop(struct wsl_ctx *x, struct wsl_probe *pr);
/* Adds another window's figures to acc (broadcast measures K windows). */
void wsl_probe_add(struct wsl_probe *acc, const struct wsl_probe *pr);

/*
 * The result line: wsl_kv_* append " key=value" to it; wsl_kv_probe adds
 * the probe's srv_cpu_us_per_<unit>, srv_cpu_util, gen_cpu_util,
 * other_cpu_util, steal_util and gen_preempted for `count` units; wsl_kv_end adds ok= and error= and prints the line on
 * stdout. Values never contain spaces (errors have theirs replaced).
 */
void wsl_kv_begin(const char *mode);
void wsl_kv_str(const char *key, const char *val);
void wsl_kv_u64(const char *key, uint64_t val);
void wsl_kv_f(const char *key, double val, int decimals);
void wsl_kv_probe(const struct wsl_probe *pr, const char *unit, double count);
/* Returns the process exit status: 0 when ok, else 1. */
int wsl_kv_end(bool ok, const char *err);

/* Sorts v and returns the q-quantile by nearest rank (q in 0..1). */
void wsl_sort_u64(uint64_t *v, size_t n);
uint64_t wsl_quantile_u64(const uint64_t *sorted, size_t n, double q);
/* Median of n doubles (sorts them). */
double wsl_median(double *v, size_t n);

/* "F of N connections failed (last: reason)", in a static buffer. */
const char *wsl_open_failure(const struct wc_pool *p, unsigned want);
/* With --tls, " tls=VERSION/CIPHER" of the pool's sessions; else nothing. */
void wsl_kv_tls(const struct wc_pool *p);

/* Modes. Each returns the process exit status. */
int wsl_mode_echo(struct wsl_ctx *x);
int wsl_mode_latency(struct wsl_ctx *x);
int wsl_mode_handshake(struct wsl_ctx *x);
int wsl_mode_idle(struct wsl_ctx *x);
int wsl_mode_broadcast(struct wsl_ctx *x);

#endif
