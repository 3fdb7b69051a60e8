#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

static enum log_level g_level = LOG_INFO;
static bool g_json;
/* The worker this thread is, for its lines: a property of the thread, as
 * the log has no other context to learn it from (0: the master). */
static __thread unsigned t_worker;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

bool log_parse_level(const char *name, enum log_level *out)
{
    for (int i = 0; i <= LOG_DEBUG; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return true;
        }
    }
    return false;
}

void log_set_level(enum log_level lvl)
{
    g_level = lvl;
}

bool log_set_format(const char *name)
{
    if (strcmp(name, "json") == 0)
        g_json = true;
    else if (strcmp(name, "text") == 0)
        g_json = false;
    else
        return false;
    return true;
}

void log_set_worker(unsigned n)
{
    t_worker = n;
}

unsigned log_worker_shown(void)
{
    return t_worker;
}

bool log_enabled(enum log_level lvl)
{
    return lvl <= g_level;
}

/* Appends s to out as the inside of a JSON string, escaping what JSON requires. */
static size_t json_escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s && n + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            out[n++] = '\\';
            out[n++] = (char)ch;
        } else if (ch == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else if (ch == '\t') {
            out[n++] = '\\';
            out[n++] = 't';
        } else if (ch < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", ch);
        } else {
            out[n++] = (char)ch;
        }
    }
    return n;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
    if (lvl > g_level)
        return;
    char msg[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[40];
    size_t tl = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof ts - tl, ".%03dZ", (int)(tv.tv_usec / 1000));

    char line[sizeof msg * 2 + 128];
    size_t n;
    char wtag[24] = "";
    if (g_json) {
        if (t_worker)
            snprintf(wtag, sizeof wtag, "\"worker\":%u,", t_worker);
        n = (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",%s\"msg\":\"",
                             ts, level_names[lvl], wtag);
        n += json_escape(line + n, sizeof line - n - 4, msg);
        n += (size_t)snprintf(line + n, sizeof line - n, "\"}\n");
    } else {
        if (t_worker)
            snprintf(wtag, sizeof wtag, "[w%u] ", t_worker);
        n = (size_t)snprintf(line, sizeof line, "%s [%s] %s%s\n", ts, level_names[lvl], wtag, msg);
        if (n >= sizeof line)
            n = sizeof line - 1;
    }
    /* stderr may be a pipe a test reads; a short write is not worth retrying in a loop. */
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

static long long monotonic_ms(void)
{
    return clock_ns() / 1000000;
}

unsigned long log_every_flush(struct log_every *e, double interval)
{
    if (atomic_load(&e->count) == 0)
        return 0;
    long long now = monotonic_ms() | 1;         /* never 0, which means "none yet" */
    long long last = atomic_load(&e->last_ms);
    if (last && now - last < (long long)(interval * 1000))
        return 0;
    /* One thread wins the right to write this line; the others' counts go
     * into it or into the next one. */
    if (!atomic_compare_exchange_strong(&e->last_ms, &last, now))
        return 0;
    return atomic_exchange(&e->count, 0);
}

unsigned long log_every_hit(struct log_every *e, double interval)
{
    atomic_fetch_add(&e->count, 1);
    return log_every_flush(e, interval);
}
