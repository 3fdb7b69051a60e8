/*
 * traffic_log: one line per HTTP request and per WebSocket connection
 * opened and closed — at --log-level debug in the log (stderr), and in the
 * file of --access-log FILE whatever the log level (at level info there).
 *
 * Lines are in the log's two formats (log.h): text, "TS [LEVEL] EVENT
 * key=value ..." (a value with a space, a quote, a backslash, '=' or a byte
 * outside printable ASCII is quoted, with \" \\ \n \r \t and \xHH escapes),
 * or one JSON object, {"ts":...,"level":...,"msg":EVENT, one member per
 * field} (strings escaped as JSON requires; bytes that are not UTF-8 come
 * out as \u00XX, so every line is valid JSON). Each line is at most
 * LIM_TRAFFIC_LINE bytes (a longer path is cut, ending in "...").
 *
 * Writing. Any worker thread writes its own lines: one write(2) per line,
 * straight to the file, opened O_APPEND — as nginx writes its access log
 * from each worker process. Appends of one write each do not interleave
 * (regular files: the kernel holds the file for each write; pipes: lines
 * are at most PIPE_BUF). A write to a regular file lands in the page cache
 * and does not wait for the disk in the common case; the file is opened
 * O_NONBLOCK, so a pipe whose reader falls behind (or a full disk) loses
 * lines instead of stopping a worker: they are counted and logged once a
 * second at most (LIM_TRAFFIC_LOST_INTERVAL). traffic_log_reopen (the
 * master, on SIGHUP) opens the file again by its name for log rotation and
 * puts it in place of the old one with dup2, atomically: a worker writing
 * meanwhile reaches the old file or the new one, never a closed
 * descriptor.
 */
#ifndef MOONWS_TRAFFIC_LOG_H
#define MOONWS_TRAFFIC_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum traffic_event {
    TRAFFIC_HTTP,               /* a request answered (an upgrade too: 101 or its refusal) */
    TRAFFIC_WS_OPEN,            /* a WebSocket connection opened */
    TRAFFIC_WS_CLOSE,           /* and ended */
};

/* The facts of one line; which fields each event writes is in the
 * comments. Strings need not be NUL-terminated where a length is given. */
struct traffic {
    enum traffic_event event;
    unsigned worker;            /* 1..N; 0: no worker number on the line */
    uint64_t conn;              /* the connection's id */
    const char *remote;         /* "ip:port" ("[ip6]:port") */
    const char *path;           /* the request's path, raw, without the query */
    size_t path_len;
    bool secure;                /* over TLS */
    /* TRAFFIC_HTTP */
    const char *method;
    size_t method_len;
    int status;
    uint64_t bytes;             /* of the answer's body (0 for HEAD and upgrades) */
    /* TRAFFIC_WS_*: the sub-protocol, or NULL */
    const char *protocol;
    /* TRAFFIC_WS_CLOSE */
    unsigned code;              /* as onClose heard it */
    uint64_t msgs_in, bytes_in, msgs_out, bytes_out;
    /* HTTP: from the request's first byte to its answer; WS_CLOSE: the
     * connection's life, from the upgrade */
    uint64_t us;
};

/* Formats one line of t, ending in \n, into out (cap at least
 * LIM_TRAFFIC_LINE); returns its length. level is "debug" or "info"; ts the
 * timestamp (traffic_timestamp). Pure: no clock, no state. */
size_t traffic_format(char *out, size_t cap, const struct traffic *t, const char *level,
                      bool json, const char *ts);
/* Now, as the log writes it: "2026-12-01T10:00:00.123Z". */
void traffic_timestamp(char out[32]);

struct traffic_log;

/* The sink: file NULL for none (lines then go to the log at debug only).
 * Returns NULL with a message in err when the file cannot be opened (made
 * 0640 when new). json: the line format, as --log-format. */
struct traffic_log *traffic_log_open(const char *file, bool json, char *err, size_t errcap);
void traffic_log_close(struct traffic_log *tl);
/* Whether a line would go anywhere now: hooks call it first, and gather
 * nothing (no getpeername) when it says no. Cheap. */
bool traffic_log_wanted(const struct traffic_log *tl);
/* Writes t's line where it goes. Any thread. */
void traffic_log_write(struct traffic_log *tl, const struct traffic *t);
/* Opens the file again by its name (rotation: the old one was renamed).
 * False with a message in err, the old file kept, when it cannot be
 * opened. The master's thread, any time. */
bool traffic_log_reopen(struct traffic_log *tl, char *err, size_t errcap);
/* Lines the file could not take, since the start. */
uint64_t traffic_log_lost(const struct traffic_log *tl);
/* Logs the lost lines not reported yet once the interval has passed (for
 * the master's once-a-second timer: the tail of a burst). */
void traffic_log_report(struct traffic_log *tl);

#endif
