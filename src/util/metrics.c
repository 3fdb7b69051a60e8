#include "metrics.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "log.h"
#include "utf8.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/*
 * A table of label values: a slot per series. Ids below nfixed are the
 * table's own (always there, never retired). A slot is free (no label),
 * held (refs > 0), or idle (refs == 0: kept, counts and all, until it is
 * needed for another label and nothing counts under it any more).
 */
struct label_slot {
    char *label;                /* NULL: free */
    unsigned refs;
};

struct label_table {
    const char *what;           /* "service paths", "routes": for the log line */
    const char *key;            /* "path", "route" */
    int cap, nfixed;
    struct label_slot *slots;
    struct log_every overflow;
};

struct metrics {
    pthread_mutex_t mu;
    unsigned nworkers;
    struct metrics_worker **w;
    struct label_table paths, routes;
    _Atomic uint64_t reloads[3];
};

static void table_init(struct label_table *t, const char *what, const char *key, int cap,
                       const char *const *fixed, int nfixed)
{
    *t = (struct label_table){ .what = what, .key = key, .cap = cap, .nfixed = nfixed };
    t->slots = xcalloc((size_t)cap, sizeof *t->slots);
    for (int i = 0; i < nfixed; i++)
        t->slots[i].label = xstrdup(fixed[i]);
}

static void table_free(struct label_table *t)
{
    for (int i = 0; i < t->cap; i++)
        free(t->slots[i].label);
    free(t->slots);
}

struct metrics *metrics_new(unsigned nworkers)
{
    if (nworkers == 0)
        nworkers = 1;
    struct metrics *m = xcalloc(1, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    m->nworkers = nworkers;
    m->w = xcalloc(nworkers, sizeof *m->w);
    for (unsigned i = 0; i < nworkers; i++) {
        /* Anonymous pages: zero, and backed only once a series is touched. */
        void *p = mmap(NULL, sizeof(struct metrics_worker), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            fprintf(stderr, "moonws: out of memory for the metrics of %u workers\n", nworkers);
            abort();
        }
        m->w[i] = p;
        m->w[i]->rng = 0x9e3779b9u * (i + 1) | 1;
    }
    static const char *const paths[] = { "(other)" };
    static const char *const routes[] = { "(other)", "(static)", "(none)" };
    table_init(&m->paths, "service paths", "path", METRICS_PATH_SLOTS, paths, METRICS_PATH_FIXED);
    table_init(&m->routes, "routes", "route", METRICS_ROUTE_SLOTS, routes, METRICS_ROUTE_FIXED);
    return m;
}

void metrics_free(struct metrics *m)
{
    if (!m)
        return;
    for (unsigned i = 0; i < m->nworkers; i++)
        munmap(m->w[i], sizeof(struct metrics_worker));
    free(m->w);
    table_free(&m->paths);
    table_free(&m->routes);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

struct metrics_worker *metrics_worker(struct metrics *m, unsigned i)
{
    return i < m->nworkers ? m->w[i] : NULL;
}

unsigned metrics_workers(const struct metrics *m)
{
    return m->nworkers;
}

/* ---- series ---- */

/* Connections still open under path series id, in any worker. Per worker,
 * closed is read first (acquire: the opens before those closes are seen
 * then), so opened - closed is never negative. */
static uint64_t open_conns(struct metrics *m, int id)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < m->nworkers; i++) {
        struct metrics_path_cells *p = &m->w[i]->paths[id];
        uint64_t closed = atomic_load_explicit(&p->closed, memory_order_acquire);
        uint64_t opened = atomic_load_explicit(&p->opened, memory_order_relaxed);
        n += opened > closed ? opened - closed : 0;
    }
    return n;
}

/* A retired slot starts again from zero in every worker. Nothing writes
 * it meanwhile: it has no holder (so no new connection or request counts
 * under it) and no open connection; whoever counts under it next learns
 * its id through this mutex. */
static void reset_cells(struct metrics *m, struct label_table *t, int id)
{
    for (unsigned i = 0; i < m->nworkers; i++) {
        if (t == &m->paths)
            memset(&m->w[i]->paths[id], 0, sizeof m->w[i]->paths[id]);
        else
            memset(&m->w[i]->routes[id], 0, sizeof m->w[i]->routes[id]);
    }
}

static int acquire(struct metrics *m, struct label_table *t, const char *label)
{
    pthread_mutex_lock(&m->mu);
    int free_slot = -1, idle = -1;
    for (int i = t->nfixed; i < t->cap; i++) {
        struct label_slot *s = &t->slots[i];
        if (s->label && strcmp(s->label, label) == 0) {
            s->refs++;
            pthread_mutex_unlock(&m->mu);
            return i;
        }
        if (!s->label && free_slot < 0)
            free_slot = i;
        if (s->label && !s->refs && idle < 0 && (t != &m->paths || open_conns(m, i) == 0))
            idle = i;
    }
    int id = free_slot >= 0 ? free_slot : idle;
    if (id >= 0) {
        struct label_slot *s = &t->slots[id];
        if (s->label)
            reset_cells(m, t, id);
        free(s->label);
        s->label = xstrdup(label);
        s->refs = 1;
    }
    pthread_mutex_unlock(&m->mu);
    if (id >= 0)
        return id;
    /* Every worker mounting the same service would say it: once a second. */
    unsigned long n = log_every_hit(&t->overflow, 1.0);
    if (n)
        log_info("metrics: more than %d %s: %s is counted as %s=\"(other)\" (%lu such since "
                 "the last line)", t->cap - t->nfixed, t->what, label, t->key, n);
    return 0;
}

static void release(struct metrics *m, struct label_table *t, int id)
{
    if (id < t->nfixed)
        return;
    pthread_mutex_lock(&m->mu);
    if (t->slots[id].refs)
        t->slots[id].refs--;
    pthread_mutex_unlock(&m->mu);
}

int metrics_path_acquire(struct metrics *m, const char *path)
{
    return acquire(m, &m->paths, path);
}

void metrics_path_release(struct metrics *m, int id)
{
    release(m, &m->paths, id);
}

int metrics_route_acquire(struct metrics *m, const char *route)
{
    return acquire(m, &m->routes, route);
}

void metrics_route_release(struct metrics *m, int id)
{
    release(m, &m->routes, id);
}

void metrics_reload(struct metrics *m, enum metrics_reload result)
{
    atomic_fetch_add_explicit(&m->reloads[result], 1, memory_order_relaxed);
}

void metrics_http_request(struct metrics_worker *mw, int route, int status)
{
    struct metrics_route_cells *r = &mw->routes[route];
    for (int i = 0; i < LIM_METRICS_STATUSES; i++) {
        uint32_t s = atomic_load_explicit(&r->st[i].status, memory_order_relaxed);
        if (s == 0) {
            /* A scrape that sees the status sees a count from zero up. */
            atomic_store_explicit(&r->st[i].status, (uint32_t)status, memory_order_release);
            s = (uint32_t)status;
        }
        if (s == (uint32_t)status) {
            metrics_add(&r->st[i].count, 1);
            return;
        }
    }
    metrics_add(&r->other, 1);
}

/* ---- the process ---- */

bool metrics_process_read(struct metrics_process *p)
{
    *p = (struct metrics_process){ .open_fds = -1, .max_fds = -1 };
    bool ok = true;
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        p->cpu_seconds = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        p->max_fds = rl.rlim_cur == RLIM_INFINITY ? -1 : (long)rl.rlim_cur;

    long page = sysconf(_SC_PAGESIZE);
    unsigned long long vsz, rss;
    FILE *f = fopen("/proc/self/statm", "re");
    if (f && fscanf(f, "%llu %llu", &vsz, &rss) == 2) {
        p->virtual_bytes = vsz * (unsigned long long)page;
        p->resident_bytes = rss * (unsigned long long)page;
    } else {
        ok = false;
    }
    if (f)
        fclose(f);

    /* The start: field 22 of /proc/self/stat, in clock ticks after boot
     * (the name in field 2 may hold spaces and parentheses: skip past the
     * last ')'), and the boot time from /proc/stat. */
    char buf[1024];
    unsigned long long start = 0, btime = 0;
    f = fopen("/proc/self/stat", "re");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    char *q = strrchr(buf, ')');
    int field = 2;
    for (; q && *q && field < 22; q++) {
        if (*q == ' ')
            field++;
    }
    bool have_start = q && field == 22 && sscanf(q, "%llu", &start) == 1;
    f = fopen("/proc/stat", "re");
    while (f && fgets(buf, sizeof buf, f)) {
        if (sscanf(buf, "btime %llu", &btime) == 1)
            break;
    }
    if (f)
        fclose(f);
    if (have_start && btime)
        p->start_time = (double)btime + (double)start / (double)sysconf(_SC_CLK_TCK);
    else
        ok = false;

    DIR *d = opendir("/proc/self/fd");
    if (d) {
        long k = 0;
        struct dirent *e;
        while ((e = readdir(d)))
            k += e->d_name[0] != '.';
        p->open_fds = k - 1;    /* the directory's own descriptor */
        closedir(d);
    } else {
        ok = false;
    }
    return ok;
}

/* ---- rendering: the text exposition format 0.0.4 ---- */

void metrics_escape_label(struct buf *out, const char *s)
{
    /* Prometheus reads label values as UTF-8: bytes that are not are
     * replaced (U+FFFD), so that one odd path cannot spoil a scrape. */
    bool valid = utf8_valid(s, strlen(s));
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\\')
            buf_append(out, "\\\\", 2);
        else if (c == '"')
            buf_append(out, "\\\"", 2);
        else if (c == '\n')
            buf_append(out, "\\n", 2);
        else if (c >= 0x80 && !valid)
            buf_append(out, "\xef\xbf\xbd", 3);
        else
            buf_append(out, s, 1);
    }
}

static void family(struct buf *out, const char *name, const char *type, const char *help)
{
    buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A sample's name and its first label, up to the value's place:
 * name{key="value" — the caller closes the braces. */
static void sample(struct buf *out, const char *name, const char *key, const char *value)
{
    buf_printf(out, "%s{%s=\"", name, key);
    metrics_escape_label(out, value);
    buf_append(out, "\"", 1);
}

static uint64_t load(const metrics_counter *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* The sum over every worker of the path counter at offset off. */
static uint64_t path_sum(struct metrics *m, int id, size_t off)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < m->nworkers; i++)
        n += load((const metrics_counter *)((const char *)&m->w[i]->paths[id] + off));
    return n;
}

#define PATH_SUM(m, id, field) path_sum((m), (id), offsetof(struct metrics_path_cells, field))

struct shown {
    const char *label;
    int id;
};

static int by_label(const void *a, const void *b)
{
    return strcmp(((const struct shown *)a)->label, ((const struct shown *)b)->label);
}

/* True when any counter of path id in any worker is not zero. */
static bool path_counted(struct metrics *m, int id)
{
    for (unsigned i = 0; i < m->nworkers; i++) {
        const metrics_counter *c = (const metrics_counter *)&m->w[i]->paths[id];
        size_t n = (offsetof(struct metrics_path_cells, inflate_out) + sizeof *c) / sizeof *c;
        for (size_t k = 0; k < n; k++) {
            if (load(&c[k]))
                return true;
        }
    }
    return false;
}

/* The series of a table that appear, sorted by label: every slot with a
 * label that is held or has counted something (routes: that has a label;
 * their statuses decide what appears). */
static size_t shown_series(struct metrics *m, struct label_table *t, struct shown *out)
{
    size_t n = 0;
    for (int i = 0; i < t->cap; i++) {
        struct label_slot *s = &t->slots[i];
        if (s->label && (t != &m->paths || s->refs || path_counted(m, i)))
            out[n++] = (struct shown){ s->label, i };
    }
    qsort(out, n, sizeof *out, by_label);
    return n;
}

/* The per-path counters that are one number each. */
static const struct {
    const char *name, *type, *help;
    size_t off;
} path_families[] = {
    { "moonws_connections_opened_total", "counter",
      "WebSocket connections opened, by the service path they opened on.",
      offsetof(struct metrics_path_cells, opened) },
    { "moonws_handler_calls_total", "counter",
      "Calls into a service's Lua: every handler, endpoint and timer function.",
      offsetof(struct metrics_path_cells, handler_calls) },
    { "moonws_handler_errors_total", "counter",
      "Handler calls that failed: a Lua error, or over the CPU budget or the memory cap.",
      offsetof(struct metrics_path_cells, handler_errors) },
    { "moonws_handler_budget_exceeded_total", "counter",
      "Handler calls stopped for using more than their CPU budget.",
      offsetof(struct metrics_path_cells, budget_exceeded) },
    { "moonws_backpressure_closes_total", "counter",
      "Connections closed 1008 for having more than max_backpressure bytes queued.",
      offsetof(struct metrics_path_cells, backpressure_closes) },
    { "moonws_deflate_input_bytes_total", "counter",
      "Message bytes given to permessage-deflate to send.",
      offsetof(struct metrics_path_cells, deflate_in) },
    { "moonws_deflate_output_bytes_total", "counter",
      "Compressed bytes permessage-deflate made of them.",
      offsetof(struct metrics_path_cells, deflate_out) },
    { "moonws_inflate_input_bytes_total", "counter",
      "Compressed message bytes received.",
      offsetof(struct metrics_path_cells, inflate_in) },
    { "moonws_inflate_output_bytes_total", "counter",
      "Message bytes they inflated to.",
      offsetof(struct metrics_path_cells, inflate_out) },
};

/* The per-path counters split by kind. */
static const struct {
    const char *name, *help;
    size_t off;
} kind_families[] = {
    { "moonws_messages_received_total", "WebSocket messages received, by kind.",
      offsetof(struct metrics_path_cells, msgs_in) },
    { "moonws_messages_sent_total",
      "WebSocket messages sent (each receiver of a broadcast counts), by kind.",
      offsetof(struct metrics_path_cells, msgs_out) },
    { "moonws_message_bytes_received_total",
      "Payload bytes of the messages received, after inflation, by kind.",
      offsetof(struct metrics_path_cells, bytes_in) },
    { "moonws_message_bytes_sent_total",
      "Payload bytes of the messages sent, before compression, by kind.",
      offsetof(struct metrics_path_cells, bytes_out) },
};

static const char *const kind_names[METRICS_KINDS] = { "text", "binary" };
static const char *const duration_bounds[METRICS_DURATION_BUCKETS] = {
    "1e-05", "0.0001", "0.001", "0.01", "0.1", "1", "+Inf",
};

/* ns as seconds, exactly: "0.000123456". */
static void seconds_ns(struct buf *out, uint64_t ns)
{
    buf_printf(out, "%llu.%09llu", (unsigned long long)(ns / 1000000000u),
               (unsigned long long)(ns % 1000000000u));
}

static void render_paths(struct metrics *m, struct buf *out)
{
    struct shown *sh = xcalloc((size_t)m->paths.cap, sizeof *sh);
    size_t n = shown_series(m, &m->paths, sh);
    if (!n) {
        free(sh);
        return;
    }
    family(out, "moonws_connections", "gauge",
           "WebSocket connections open now, by the service path they opened on.");
    for (size_t i = 0; i < n; i++) {
        sample(out, "moonws_connections", "path", sh[i].label);
        buf_printf(out, "} %llu\n", (unsigned long long)open_conns(m, sh[i].id));
    }
    for (size_t f = 0; f < sizeof path_families / sizeof *path_families; f++) {
        family(out, path_families[f].name, path_families[f].type, path_families[f].help);
        for (size_t i = 0; i < n; i++) {
            sample(out, path_families[f].name, "path", sh[i].label);
            buf_printf(out, "} %llu\n",
                       (unsigned long long)path_sum(m, sh[i].id, path_families[f].off));
        }
    }
    for (size_t f = 0; f < sizeof kind_families / sizeof *kind_families; f++) {
        family(out, kind_families[f].name, "counter", kind_families[f].help);
        for (size_t i = 0; i < n; i++) {
            for (int k = 0; k < METRICS_KINDS; k++) {
                sample(out, kind_families[f].name, "path", sh[i].label);
                buf_printf(out, ",kind=\"%s\"} %llu\n", kind_names[k],
                           (unsigned long long)path_sum(m, sh[i].id,
                                                        kind_families[f].off +
                                                            (size_t)k * sizeof(metrics_counter)));
            }
        }
    }

    /* Closes: only the codes that happened. */
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        for (int c = 0; c < METRICS_CLOSE_CODES; c++) {
            uint64_t v = path_sum(m, sh[i].id, offsetof(struct metrics_path_cells, closes) +
                                                   (size_t)c * sizeof(metrics_counter));
            if (!v)
                continue;
            if (!any)
                family(out, "moonws_closes_total", "counter",
                       "WebSocket connections ended, by the close code their onClose heard "
                       "(1005: none given, 1006: dropped; 3xxx and 4xxx: the application's).");
            any = true;
            sample(out, "moonws_closes_total", "path", sh[i].label);
            if (c < 16)
                buf_printf(out, ",code=\"%d\"} %llu\n", 1000 + c, (unsigned long long)v);
            else
                buf_printf(out, ",code=\"%dxxx\"} %llu\n", c == 16 ? 3 : 4,
                           (unsigned long long)v);
        }
    }

    family(out, "moonws_handler_duration_seconds", "histogram",
           "Wall time of outermost handler calls; one call in " STR(LIM_METRICS_TIMING_SAMPLE)
           " is timed, chosen at random.");
    for (size_t i = 0; i < n; i++) {
        uint64_t cum = 0;
        for (int b = 0; b < METRICS_DURATION_BUCKETS; b++) {
            cum += path_sum(m, sh[i].id, offsetof(struct metrics_path_cells, duration) +
                                             (size_t)b * sizeof(metrics_counter));
            sample(out, "moonws_handler_duration_seconds_bucket", "path", sh[i].label);
            buf_printf(out, ",le=\"%s\"} %llu\n", duration_bounds[b], (unsigned long long)cum);
        }
        sample(out, "moonws_handler_duration_seconds_sum", "path", sh[i].label);
        buf_append(out, "} ", 2);
        seconds_ns(out, PATH_SUM(m, sh[i].id, duration_ns));
        buf_append(out, "\n", 1);
        sample(out, "moonws_handler_duration_seconds_count", "path", sh[i].label);
        buf_printf(out, "} %llu\n", (unsigned long long)cum);
    }
    free(sh);
}

struct status_count {
    uint32_t status;            /* 0: other */
    uint64_t count;
};

static int by_status(const void *a, const void *b)
{
    const struct status_count *x = a, *y = b;
    /* "other" last */
    uint32_t sx = x->status ? x->status : UINT32_MAX, sy = y->status ? y->status : UINT32_MAX;
    return sx < sy ? -1 : sx > sy;
}

/* The statuses of route id across the workers, summed, sorted. */
static size_t route_statuses(struct metrics *m, int id, struct status_count *sc)
{
    size_t n = 0;
    uint64_t other = 0;
    for (unsigned w = 0; w < m->nworkers; w++) {
        struct metrics_route_cells *r = &m->w[w]->routes[id];
        other += load(&r->other);
        for (int i = 0; i < LIM_METRICS_STATUSES; i++) {
            uint32_t s = atomic_load_explicit(&r->st[i].status, memory_order_acquire);
            if (!s)
                break;
            uint64_t c = load(&r->st[i].count);
            size_t k = 0;
            while (k < n && sc[k].status != s)
                k++;
            if (k == n)
                sc[n++] = (struct status_count){ s, 0 };
            sc[k].count += c;
        }
    }
    if (other)
        sc[n++] = (struct status_count){ 0, other };
    qsort(sc, n, sizeof *sc, by_status);
    return n;
}

static void render_routes(struct metrics *m, struct buf *out)
{
    struct shown *sh = xcalloc((size_t)m->routes.cap, sizeof *sh);
    struct status_count *sc = xcalloc((size_t)m->nworkers * LIM_METRICS_STATUSES + 1, sizeof *sc);
    size_t n = shown_series(m, &m->routes, sh);
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        size_t k = route_statuses(m, sh[i].id, sc);
        for (size_t j = 0; j < k; j++) {
            if (!any)
                family(out, "moonws_http_requests_total", "counter",
                       "HTTP requests answered, upgrades included, by route and status.");
            any = true;
            sample(out, "moonws_http_requests_total", "route", sh[i].label);
            if (sc[j].status)
                buf_printf(out, ",status=\"%u\"} %llu\n", sc[j].status,
                           (unsigned long long)sc[j].count);
            else
                buf_printf(out, ",status=\"other\"} %llu\n", (unsigned long long)sc[j].count);
        }
    }
    free(sc);
    free(sh);
}

static void render_process(const struct metrics_process *p, struct buf *out)
{
    family(out, "process_cpu_seconds_total", "counter", "User and system CPU time, in seconds.");
    buf_printf(out, "process_cpu_seconds_total %.6f\n", p->cpu_seconds);
    if (p->open_fds >= 0) {
        family(out, "process_open_fds", "gauge", "Open file descriptors.");
        buf_printf(out, "process_open_fds %ld\n", p->open_fds);
    }
    if (p->max_fds >= 0) {
        family(out, "process_max_fds", "gauge", "The limit of open file descriptors.");
        buf_printf(out, "process_max_fds %ld\n", p->max_fds);
    }
    if (p->resident_bytes) {
        family(out, "process_resident_memory_bytes", "gauge", "Resident memory, in bytes.");
        buf_printf(out, "process_resident_memory_bytes %llu\n",
                   (unsigned long long)p->resident_bytes);
        family(out, "process_virtual_memory_bytes", "gauge", "Virtual memory, in bytes.");
        buf_printf(out, "process_virtual_memory_bytes %llu\n",
                   (unsigned long long)p->virtual_bytes);
    }
    if (p->start_time > 0) {
        family(out, "process_start_time_seconds", "gauge",
               "When the process started, in seconds since the epoch.");
        buf_printf(out, "process_start_time_seconds %.2f\n", p->start_time);
    }
}

void metrics_render(struct metrics *m, const struct metrics_process *proc, struct buf *out)
{
    pthread_mutex_lock(&m->mu);
    render_paths(m, out);
    render_routes(m, out);
    pthread_mutex_unlock(&m->mu);
    static const char *const results[] = { "ok", "error", "removed" };
    family(out, "moonws_reloads_total", "counter",
           "Service files reloaded: applied (ok), refused with the old version kept (error), "
           "removed.");
    for (int i = 0; i < 3; i++)
        buf_printf(out, "moonws_reloads_total{result=\"%s\"} %llu\n", results[i],
                   (unsigned long long)atomic_load_explicit(&m->reloads[i],
                                                            memory_order_relaxed));
    family(out, "moonws_workers", "gauge", "Worker threads.");
    buf_printf(out, "moonws_workers %u\n", m->nworkers);
    if (proc)
        render_process(proc, out);
}
