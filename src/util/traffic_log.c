#include "traffic_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "limits.h"
#include "log.h"
#include "utf8.h"

/* The most a value may take of a line, escapes included: the path gets
 * what the other fields (all bounded) leave. */
#define CAP_METHOD   64
#define CAP_REMOTE   96
#define CAP_PROTOCOL 160
#define CAP_PATH     (LIM_TRAFFIC_LINE - 1024)

/* A line being written: never past cap. */
struct line {
    char *p;
    size_t n, cap;
};

static void put(struct line *l, const char *s, size_t n)
{
    if (n > l->cap - l->n)
        n = l->cap - l->n;
    memcpy(l->p + l->n, s, n);
    l->n += n;
}

static void putf(struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct line *l, const char *fmt, ...)
{
    if (l->n >= l->cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(l->p + l->n, l->cap - l->n, fmt, ap);
    va_end(ap);
    if (r > 0)
        l->n += (size_t)r < l->cap - l->n ? (size_t)r : l->cap - l->n - 1;
}

/* The escaped form of byte c inside a quoted value; its length. */
typedef size_t (*escape_fn)(unsigned char c, bool utf8, char out[8]);

/* s between quotes, each byte through esc, cut with "..." to fit max
 * bytes, quotes included; with utf8 (the string is valid UTF-8 and goes as
 * it is) never cut inside a character. */
static void quoted(struct line *l, const char *s, size_t len, size_t max, escape_fn esc,
                   bool utf8)
{
    put(l, "\"", 1);
    size_t used = 2;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[8];
        size_t el = esc(c, utf8, e);
        bool more = i + 1 < len;
        /* room for this and, if more follows, "..."; a lead byte needs room
         * for its whole character */
        if (used + el + (more ? 3 : 0) > max || (more && utf8 && c >= 0xc0 && used + 4 + 3 > max)) {
            put(l, "...", 3);
            break;
        }
        put(l, e, el);
        used += el;
    }
    put(l, "\"", 1);
}

/* Escapes both formats share; 0 for the others. */
static size_t common_escape(unsigned char c, char out[8])
{
    switch (c) {
    case '"': memcpy(out, "\\\"", 2); return 2;
    case '\\': memcpy(out, "\\\\", 2); return 2;
    case '\n': memcpy(out, "\\n", 2); return 2;
    case '\r': memcpy(out, "\\r", 2); return 2;
    case '\t': memcpy(out, "\\t", 2); return 2;
    default: return 0;
    }
}

/* ---- text: key=value, quoted when it must be ---- */

static bool plain_byte(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '=';
}

static size_t text_escape(unsigned char c, bool utf8, char out[8])
{
    (void)utf8;
    size_t n = common_escape(c, out);
    if (n)
        return n;
    if (c >= 0x20 && c < 0x7f) {
        out[0] = (char)c;
        return 1;
    }
    return (size_t)snprintf(out, 8, "\\x%02x", c);
}

static void text_field(struct line *l, const char *key, const char *s, size_t len, size_t max)
{
    putf(l, " %s=", key);
    bool quote = len == 0;
    for (size_t i = 0; i < len && !quote; i++)
        quote = !plain_byte((unsigned char)s[i]);
    if (quote) {
        quoted(l, s, len, max, text_escape, false);
    } else if (len <= max) {
        put(l, s, len);
    } else {
        put(l, s, max - 3);
        put(l, "...", 3);
    }
}

/* ---- JSON ---- */

/* Valid UTF-8 goes as it is (control characters escaped); in a string
 * that is not, each byte above 0x7f is written as \u00XX, so that the line
 * stays valid JSON whatever the client sent. */
static size_t json_escape(unsigned char c, bool utf8, char out[8])
{
    size_t n = common_escape(c, out);
    if (n)
        return n;
    if (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8))
        return (size_t)snprintf(out, 8, "\\u%04x", c);
    out[0] = (char)c;
    return 1;
}

static void json_field(struct line *l, const char *key, const char *s, size_t len, size_t max)
{
    putf(l, ",\"%s\":", key);
    if (s)
        quoted(l, s, len, max, json_escape, utf8_valid(s, len));
    else
        put(l, "null", 4);
}

/* ---- lines ---- */

static const char *const event_names[] = { "http", "ws-open", "ws-close" };

static size_t len_of(const char *s)
{
    return s ? strlen(s) : 0;
}

size_t traffic_format(char *out, size_t cap, const struct traffic *t, const char *level,
                      bool json, const char *ts)
{
    /* One byte is kept for the line's end whatever happens. */
    struct line l = { out, 0, cap - 1 };
    const char *ev = event_names[t->event];
    const char *remote = t->remote ? t->remote : "";
    bool http = t->event == TRAFFIC_HTTP, closed = t->event == TRAFFIC_WS_CLOSE;
    if (json) {
        putf(&l, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\"", ts, level, ev);
        if (t->worker)
            putf(&l, ",\"worker\":%u", t->worker);
        putf(&l, ",\"conn\":%llu", (unsigned long long)t->conn);
        json_field(&l, "remote", remote, strlen(remote), CAP_REMOTE);
        if (http)
            json_field(&l, "method", t->method ? t->method : "", t->method ? t->method_len : 0,
                       CAP_METHOD);
        json_field(&l, "path", t->path ? t->path : "", t->path ? t->path_len : 0, CAP_PATH);
        if (http)
            putf(&l, ",\"status\":%d,\"bytes\":%llu,\"us\":%llu", t->status,
                 (unsigned long long)t->bytes, (unsigned long long)t->us);
        else
            json_field(&l, "protocol", t->protocol, len_of(t->protocol), CAP_PROTOCOL);
        putf(&l, ",\"secure\":%s", t->secure ? "true" : "false");
        if (closed)
            putf(&l, ",\"code\":%u,\"us\":%llu,\"in_msgs\":%llu,\"in_bytes\":%llu,"
                     "\"out_msgs\":%llu,\"out_bytes\":%llu",
                 t->code, (unsigned long long)t->us, (unsigned long long)t->msgs_in,
                 (unsigned long long)t->bytes_in, (unsigned long long)t->msgs_out,
                 (unsigned long long)t->bytes_out);
        put(&l, "}", 1);
    } else {
        putf(&l, "%s [%s] ", ts, level);
        if (t->worker)
            putf(&l, "[w%u] ", t->worker);
        putf(&l, "%s conn=%llu", ev, (unsigned long long)t->conn);
        text_field(&l, "remote", remote, strlen(remote), CAP_REMOTE);
        if (http)
            text_field(&l, "method", t->method ? t->method : "", t->method ? t->method_len : 0,
                       CAP_METHOD);
        text_field(&l, "path", t->path ? t->path : "", t->path ? t->path_len : 0, CAP_PATH);
        if (http)
            putf(&l, " status=%d bytes=%llu us=%llu", t->status, (unsigned long long)t->bytes,
                 (unsigned long long)t->us);
        else if (t->protocol)
            text_field(&l, "protocol", t->protocol, strlen(t->protocol), CAP_PROTOCOL);
        putf(&l, " secure=%s", t->secure ? "true" : "false");
        if (closed)
            putf(&l, " code=%u us=%llu in_msgs=%llu in_bytes=%llu out_msgs=%llu out_bytes=%llu",
                 t->code, (unsigned long long)t->us, (unsigned long long)t->msgs_in,
                 (unsigned long long)t->bytes_in, (unsigned long long)t->msgs_out,
                 (unsigned long long)t->bytes_out);
    }
    out[l.n++] = '\n';
    return l.n;
}

void traffic_timestamp(char out[32])
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(tv.tv_usec / 1000));
}

/* ---- the sink ---- */

struct traffic_log {
    char *file;                 /* NULL: no access log */
    int fd;                     /* stays the same number for the whole run (reopen: dup2) */
    bool json;
    _Atomic uint64_t lost;
    _Atomic int lost_errno;     /* the reason of the last loss */
    struct log_every lost_log;
};

static int open_file(const char *file)
{
    /* O_NONBLOCK: a pipe whose reader is behind loses lines, it does not
     * stop a worker (regular files ignore it). */
    return open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0640);
}

struct traffic_log *traffic_log_open(const char *file, bool json, char *err, size_t errcap)
{
    int fd = -1;
    if (file && (fd = open_file(file)) < 0) {
        snprintf(err, errcap, "access log %s: %s", file,
                 errno == ENXIO ? "a pipe with no reader" : strerror(errno));
        return NULL;
    }
    struct traffic_log *tl = xcalloc(1, sizeof *tl);
    tl->file = file ? xstrdup(file) : NULL;
    tl->fd = fd;
    tl->json = json;
    return tl;
}

void traffic_log_close(struct traffic_log *tl)
{
    if (!tl)
        return;
    traffic_log_report(tl);
    if (tl->fd >= 0)
        close(tl->fd);
    free(tl->file);
    free(tl);
}

bool traffic_log_wanted(const struct traffic_log *tl)
{
    return tl && (tl->fd >= 0 || log_enabled(LOG_DEBUG));
}

static void say_lost(const struct traffic_log *tl, unsigned long n, int err)
{
    log_warn("access log %s: %lu lines lost (%s)", tl->file, n,
             err == EAGAIN ? "the pipe is full: its reader is behind" : strerror(err));
}

static void lost_line(struct traffic_log *tl, int err)
{
    atomic_fetch_add_explicit(&tl->lost, 1, memory_order_relaxed);
    atomic_store_explicit(&tl->lost_errno, err, memory_order_relaxed);
    unsigned long n = log_every_hit(&tl->lost_log, LIM_TRAFFIC_LOST_INTERVAL);
    if (n)
        say_lost(tl, n, err);
}

void traffic_log_write(struct traffic_log *tl, const struct traffic *t)
{
    char ts[32], line[LIM_TRAFFIC_LINE];
    traffic_timestamp(ts);
    if (log_enabled(LOG_DEBUG)) {
        size_t n = traffic_format(line, sizeof line, t, "debug", tl->json, ts);
        ssize_t w = write(STDERR_FILENO, line, n);      /* as log.c: no retry */
        (void)w;
    }
    if (tl->fd < 0)
        return;
    size_t n = traffic_format(line, sizeof line, t, "info", tl->json, ts);
    ssize_t w;
    do {
        w = write(tl->fd, line, n);
    } while (w < 0 && errno == EINTR);
    if (w != (ssize_t)n)
        lost_line(tl, w < 0 ? errno : ENOSPC);
}

bool traffic_log_reopen(struct traffic_log *tl, char *err, size_t errcap)
{
    if (tl->fd < 0)
        return true;
    int fd = open_file(tl->file);
    if (fd < 0) {
        snprintf(err, errcap, "access log %s: cannot open it again: %s (still writing to the old "
                 "file)", tl->file, errno == ENXIO ? "a pipe with no reader" : strerror(errno));
        return false;
    }
    /* The descriptor's number stays: writers never see it closed. */
    bool ok = dup3(fd, tl->fd, O_CLOEXEC) >= 0;
    if (!ok)
        snprintf(err, errcap, "access log %s: dup3: %s (still writing to the old file)",
                 tl->file, strerror(errno));
    close(fd);
    return ok;
}

uint64_t traffic_log_lost(const struct traffic_log *tl)
{
    return atomic_load_explicit(&tl->lost, memory_order_relaxed);
}

void traffic_log_report(struct traffic_log *tl)
{
    unsigned long n = log_every_flush(&tl->lost_log, LIM_TRAFFIC_LOST_INTERVAL);
    if (n)
        say_lost(tl, n, atomic_load_explicit(&tl->lost_errno, memory_order_relaxed));
}
