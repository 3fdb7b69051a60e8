/*
 * membudget: a process-wide count of bytes held for unfinished work, with
 * a ceiling — WebSocket messages being reassembled, the zlib memory of
 * inflate streams, HTTP request bodies being received (--max-buffered;
 * docs/reference.md, "Limits under attack"). Past the ceiling the work that would grow is refused,
 * and its connection closed, instead of the process growing.
 *
 * One budget is shared by every worker thread: the count is a C11 atomic,
 * no lock. Codecs never reach a global one: whoever owns a buffer passes
 * its budget in (NULL: not counted, no ceiling), and the same budget must
 * be used to give the memory back.
 */
#ifndef MOONWS_MEMBUDGET_H
#define MOONWS_MEMBUDGET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "log.h"

struct membudget {
    _Atomic size_t used;
    size_t limit;               /* 0: no ceiling (still counted) */
    struct log_every refused;   /* the rate of the "full" line */
    _Atomic unsigned long long last_conn;       /* for that line: the last refused */
    const char *_Atomic last_what;
};

void membudget_init(struct membudget *mb, size_t limit);

/* Counts n more bytes; false (nothing counted) when that would pass the
 * ceiling. A NULL budget takes everything. */
bool membudget_take(struct membudget *mb, size_t n);
/* Gives back n bytes taken before. */
void membudget_give(struct membudget *mb, size_t n);
size_t membudget_used(const struct membudget *mb);

/*
 * A buf whose capacity is counted: it grows only through this function
 * (never buf_reserve or buf_append past its room) and is freed with
 * membudget_buf_free. Makes room for `extra` more bytes past len. The
 * first allocation is exact; later ones double, but not past `limit`
 * (unless len + extra needs more). Returns false, the buffer as it was,
 * when the budget refuses the growth.
 */
bool membudget_buf_reserve(struct membudget *mb, struct buf *b, size_t extra, size_t limit);
void membudget_buf_free(struct membudget *mb, struct buf *b);

/* Logs that connection conn_id was closed because the budget is full
 * (what: "WebSocket 1008", "HTTP 503"): at info, at most once a second,
 * with the count since the last such line. */
void membudget_log_refusal(struct membudget *mb, unsigned long long conn_id, const char *what);
/* Logs the refusals not reported yet, once a second has passed since the
 * last such line (for a timer: the tail of a burst). */
void membudget_report(struct membudget *mb);

/* malloc and free for blocks counted whole (zlib's state and window): a
 * small header keeps each block's size. NULL when the budget refuses. */
void *membudget_alloc(struct membudget *mb, size_t n);
void membudget_free(struct membudget *mb, void *p);

#endif
