/*
 * metrics: the process's counters for Prometheus (--metrics), kept per
 * worker and summed only when scraped.
 *
 * Writers. Each worker thread writes only its own block (struct
 * metrics_worker): counters are single-writer C11 atomics, bumped with a
 * relaxed load and a relaxed store (metrics_add) — a plain add on x86 and
 * ARM, no lock prefix, no fence, on cache lines no other thread writes. The
 * hot path reaches its counters through a pointer its connection or service
 * keeps (struct metrics_path_cells), with no lookup. A scrape (the master,
 * answering GET /metrics) reads every block with relaxed loads and sums
 * them: each counter it reports is a value that counter had, and the sums
 * are exact once the writers are quiet.
 *
 * Series. Families about services are labelled by the service's path as it
 * is written (the pattern, "/rooms/:room", not each concrete path: the
 * number of series follows the number of services, not what clients ask
 * for). A path gets a series id when a service is mounted there
 * (metrics_path_acquire, one reference per holder: each worker's copy of
 * the service holds one) and the service lets it go when it moves to
 * another path or is freed (metrics_path_release). A connection counts,
 * for its whole life, under the series of the path it opened on: a service
 * that moves on reload keeps counting its open connections where they
 * began, its new ones under the new path, and no counter ever goes down.
 * A path served again later finds its series, counts and all, while the
 * series is still there. A series with no reference and no open
 * connection stays (frozen) until its slot is needed for a new path; then
 * it is retired and leaves the output. Past LIM_METRICS_PATHS series in
 * use the new path is counted under path="(other)" (logged). Routes (the
 * route label of moonws_http_requests_total) work the same way, with their
 * own table (LIM_METRICS_ROUTES) and three ids that always exist:
 * METRICS_ROUTE_OTHER, METRICS_ROUTE_STATIC (static files) and
 * METRICS_ROUTE_NONE (requests no route or service answered: 400, 404,
 * 405, 426, 431 ...).
 *
 * Locking. One mutex guards the tables: held by acquire, release and
 * render, never by a counter update, a socket write or a Lua call.
 *
 * Rendering follows the Prometheus text exposition format 0.0.4.
 */
#ifndef MOONWS_METRICS_H
#define MOONWS_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "limits.h"

/* The kind label of the message families. */
enum { METRICS_TEXT, METRICS_BINARY, METRICS_KINDS };

/* Close codes counted one by one: 1000 to 1015; then "3xxx" and "4xxx"
 * for the application's codes. */
#define METRICS_CLOSE_CODES 18
/* moonws_handler_duration_seconds: upper bounds 10 us, 100 us, 1 ms,
 * 10 ms, 100 ms, 1 s, and +Inf. */
#define METRICS_DURATION_BUCKETS 7

/* Ids every table has, below the LIM_METRICS_PATHS / LIM_METRICS_ROUTES
 * slots of real labels. */
enum { METRICS_PATH_OTHER = 0, METRICS_PATH_FIXED };
enum { METRICS_ROUTE_OTHER = 0, METRICS_ROUTE_STATIC = 1, METRICS_ROUTE_NONE = 2,
       METRICS_ROUTE_FIXED };
#define METRICS_PATH_SLOTS (METRICS_PATH_FIXED + LIM_METRICS_PATHS)
#define METRICS_ROUTE_SLOTS (METRICS_ROUTE_FIXED + LIM_METRICS_ROUTES)

typedef _Atomic uint64_t metrics_counter;

/* One path's counters in one worker. */
struct metrics_path_cells {
    metrics_counter opened, closed;     /* moonws_connections = opened - closed */
    metrics_counter msgs_in[METRICS_KINDS], msgs_out[METRICS_KINDS];
    metrics_counter bytes_in[METRICS_KINDS], bytes_out[METRICS_KINDS];
    metrics_counter closes[METRICS_CLOSE_CODES];
    metrics_counter handler_calls, handler_errors, budget_exceeded;
    metrics_counter backpressure_closes;
    /* Not cumulative; their sum is the histogram's count, so that a scrape
     * racing a writer still shows +Inf equal to _count. */
    metrics_counter duration[METRICS_DURATION_BUCKETS];
    metrics_counter duration_ns;
    metrics_counter deflate_in, deflate_out, inflate_in, inflate_out;
    /* (inflate_out stays the last: a scrape reads the counters up to it) */
} __attribute__((aligned(64)));

/* One route's counters in one worker: the statuses seen, in the order this
 * worker first saw them. */
struct metrics_route_cells {
    struct {
        _Atomic uint32_t status;        /* 0: free; written once, by the owner */
        metrics_counter count;
    } st[LIM_METRICS_STATUSES];
    metrics_counter other;              /* statuses past the slots */
};

/* A worker's block. Only its own thread writes it (see above). */
struct metrics_worker {
    uint32_t rng;                       /* the sampling of handler timings; owner only */
    struct metrics_path_cells paths[METRICS_PATH_SLOTS];
    struct metrics_route_cells routes[METRICS_ROUTE_SLOTS];
};

struct metrics;

/* The registry for nworkers worker blocks (at least 1). Worker blocks are
 * mapped lazily: a series a worker never touches costs it no memory. */
struct metrics *metrics_new(unsigned nworkers);
void metrics_free(struct metrics *m);
/* Worker i's block (0 <= i < nworkers), for that worker's thread alone. */
struct metrics_worker *metrics_worker(struct metrics *m, unsigned i);
unsigned metrics_workers(const struct metrics *m);

/* The series of a service path (see above); never fails: past the cap it
 * is METRICS_PATH_OTHER. Each acquire is paired with one release. */
int metrics_path_acquire(struct metrics *m, const char *path);
void metrics_path_release(struct metrics *m, int id);
/* The series of a route: "METHOD /path" for an endpoint (method and the
 * full path pattern), "websocket /path" for a service's upgrades. */
int metrics_route_acquire(struct metrics *m, const char *route);
void metrics_route_release(struct metrics *m, int id);

/* Reloads, counted as files: one applied, one refused (the old version
 * keeps serving), one removed. Any thread. */
enum metrics_reload { METRICS_RELOAD_OK, METRICS_RELOAD_ERROR, METRICS_RELOAD_REMOVED };
void metrics_reload(struct metrics *m, enum metrics_reload result);

/* ---- the hot path: inline, on the caller's own worker block ---- */

static inline void metrics_add(metrics_counter *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline struct metrics_path_cells *metrics_path_cells(struct metrics_worker *mw, int id)
{
    return &mw->paths[id];
}

static inline void metrics_conn_opened(struct metrics_path_cells *p)
{
    metrics_add(&p->opened, 1);
}

/* The connection's last count: nothing of it may touch p afterwards (a
 * scrape that sees it closed may retire the series). */
static inline void metrics_conn_closed(struct metrics_path_cells *p)
{
    atomic_store_explicit(&p->closed, atomic_load_explicit(&p->closed, memory_order_relaxed) + 1,
                          memory_order_release);
}

static inline void metrics_message_in(struct metrics_path_cells *p, int kind, size_t len)
{
    metrics_add(&p->msgs_in[kind], 1);
    metrics_add(&p->bytes_in[kind], len);
}

static inline void metrics_message_out(struct metrics_path_cells *p, int kind, size_t len)
{
    metrics_add(&p->msgs_out[kind], 1);
    metrics_add(&p->bytes_out[kind], len);
}

/* The close code a connection ended with (the one its onClose hears). */
static inline void metrics_close(struct metrics_path_cells *p, unsigned code)
{
    int i = code >= 1000 && code <= 1015 ? (int)(code - 1000)
            : code >= 3000 && code <= 3999 ? 16
            : code >= 4000 && code <= 4999 ? 17
                                           : -1;
    if (i >= 0)
        metrics_add(&p->closes[i], 1);
}

static inline void metrics_backpressure_close(struct metrics_path_cells *p)
{
    metrics_add(&p->backpressure_closes, 1);
}

/* bytes_in were compressed into bytes_out (deflate: what we send), or
 * bytes_in were inflated into bytes_out (inflate: what we receive). */
static inline void metrics_deflated(struct metrics_path_cells *p, size_t in, size_t out)
{
    metrics_add(&p->deflate_in, in);
    metrics_add(&p->deflate_out, out);
}

static inline void metrics_inflated(struct metrics_path_cells *p, size_t in, size_t out)
{
    metrics_add(&p->inflate_in, in);
    metrics_add(&p->inflate_out, out);
}

/*
 * Handler calls. Every call is counted; one outermost call in
 * LIM_METRICS_TIMING_SAMPLE is timed (its time includes the calls made
 * inside it):
 *
 *     bool timed = metrics_sample(mw);
 *     uint64_t t0 = timed ? (uint64_t)clock_ns() : 0;
 *     ... the call ...
 *     metrics_handler_call(p, ok, over_budget);
 *     if (timed)
 *         metrics_handler_timed(p, (uint64_t)clock_ns() - t0);
 */
static inline bool metrics_sample(struct metrics_worker *mw)
{
    _Static_assert((LIM_METRICS_TIMING_SAMPLE & (LIM_METRICS_TIMING_SAMPLE - 1)) == 0,
                   "LIM_METRICS_TIMING_SAMPLE must be a power of two");
    uint32_t x = mw->rng;               /* xorshift32: never 0 once seeded */
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    mw->rng = x;
    return (x & (LIM_METRICS_TIMING_SAMPLE - 1)) == 0;
}

static inline void metrics_handler_call(struct metrics_path_cells *p, bool ok, bool over_budget)
{
    metrics_add(&p->handler_calls, 1);
    if (!ok)
        metrics_add(&p->handler_errors, 1);
    if (over_budget)
        metrics_add(&p->budget_exceeded, 1);
}

/* The bucket of a duration: one comparison per bound, summed, no loop and
 * no division. */
static inline unsigned metrics_duration_bucket(uint64_t ns)
{
    return (unsigned)(ns > 10000) + (ns > 100000) + (ns > 1000000) + (ns > 10000000) +
           (ns > 100000000) + (ns > 1000000000);
}

static inline void metrics_handler_timed(struct metrics_path_cells *p, uint64_t ns)
{
    metrics_add(&p->duration[metrics_duration_bucket(ns)], 1);
    metrics_add(&p->duration_ns, ns);
}

/* One HTTP request answered (or upgrade: 101 or its refusal) by this
 * worker, under a route id. */
void metrics_http_request(struct metrics_worker *mw, int route, int status);

/* ---- scraping ---- */

/* The process as /proc and getrusage see it now. */
struct metrics_process {
    double cpu_seconds;                 /* user + system */
    double start_time;                  /* seconds since the epoch */
    uint64_t resident_bytes, virtual_bytes;
    long open_fds;                      /* -1: unknown */
    long max_fds;
};

/* Fills p; false (p partly filled, the rest zero or -1) when /proc could
 * not be read. */
bool metrics_process_read(struct metrics_process *p);

/* Appends every family in the text exposition format 0.0.4 to out; the
 * process families too when proc is not NULL. */
void metrics_render(struct metrics *m, const struct metrics_process *proc, struct buf *out);

/* Appends s as a label value: \ " and newline escaped. */
void metrics_escape_label(struct buf *out, const char *s);

#endif
