/*
 * buf: a growable byte buffer that owns its memory.
 *
 * An empty buffer holds no memory (data == NULL), so idle connections that
 * keep a buf per direction cost 24 bytes each, not a block.
 */
#ifndef MOONWS_BUF_H
#define MOONWS_BUF_H

#include <stddef.h>

struct buf {
    char *data;
    size_t len;
    size_t cap;
};

/* Makes room for `extra` more bytes past len; returns the write position.
 * Aborts on allocation failure (the server cannot go on without memory). */
char *buf_reserve(struct buf *b, size_t extra);
/* The same, but the capacity does not grow past `limit` bytes (unless
 * len + extra needs more): for buffers with a known ceiling. */
char *buf_reserve_within(struct buf *b, size_t extra, size_t limit);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_append_str(struct buf *b, const char *s);
/* printf-style append. */
void buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes, keeping the rest. */
void buf_consume(struct buf *b, size_t n);
/* Releases the memory; the buffer is empty and owns nothing afterwards. */
void buf_free(struct buf *b);

/* malloc/realloc that abort with a message instead of returning NULL. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
