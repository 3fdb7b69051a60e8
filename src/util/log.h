/*
 * log: leveled lines on stderr, as text or as one JSON object per line.
 *
 * Each line is formatted into a local buffer and written with one write(2),
 * so lines from different threads never interleave. A worker's lines carry
 * its number.
 */
#ifndef MOONWS_LOG_H
#define MOONWS_LOG_H

#include <stdbool.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Returns false for an unknown name. */
bool log_parse_level(const char *name, enum log_level *out);
void log_set_level(enum log_level lvl);
/* Returns false for a format other than "text" or "json". */
bool log_set_format(const char *name);
bool log_enabled(enum log_level lvl);
/* The lines this thread writes carry worker number n (text "[w2] ", json
 * "worker":2); 0: none (the master). */
void log_set_worker(unsigned n);
/* The number this thread's lines carry (0: none). */
unsigned log_worker_shown(void);

void log_msg(enum log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * A line an attacker could make the server repeat (a refused connection, a
 * limit hit by many clients): at most one per interval. The occurrences in
 * between are counted, and the next line written reports them all.
 * Process-wide and thread-safe: C11 atomics, zero-initialized.
 */
struct log_every {
    _Atomic unsigned long count;        /* occurrences not reported yet */
    _Atomic long long last_ms;          /* monotonic ms of the last line, 0: none yet */
};

/* Counts one occurrence. Returns the number of occurrences (this one
 * included) the caller should report in a line now, or 0 when a line was
 * written less than interval seconds ago (this one is then reported by a
 * later line). */
unsigned long log_every_hit(struct log_every *e, double interval);
/* For a timer, so that the last occurrences of a burst are reported too:
 * the number still unreported once interval seconds have passed since the
 * last line, else 0. */
unsigned long log_every_flush(struct log_every *e, double interval);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  do { if (log_enabled(LOG_INFO)) log_msg(LOG_INFO, __VA_ARGS__); } while (0)
#define log_debug(...) do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
