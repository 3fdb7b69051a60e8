/*
 * xshbuf: an immutable, reference-counted byte block that may cross
 * threads — shbuf's sibling for work handed from one worker to others (a
 * publish reaching every worker through its inbox). The count is atomic:
 * any thread may take or drop a reference, and the last one frees it.
 *
 * shbuf stays the one-worker type: a broadcast takes one reference per
 * receiving connection, all on one thread, and pays no atomic operation for
 * it. A cross-worker publish takes one xshbuf reference per worker; each
 * worker then builds its frame once, in a shbuf of its own.
 */
#ifndef MOONWS_XSHBUF_H
#define MOONWS_XSHBUF_H

#include <stdatomic.h>
#include <stddef.h>

struct xshbuf {
    atomic_uint refs;
    size_t len;
    char data[];
};

/* A block of len bytes with one reference, for the creator to fill before
 * it hands out more. */
struct xshbuf *xshbuf_new(size_t len);

static inline struct xshbuf *xshbuf_ref(struct xshbuf *b)
{
    /* Taking a reference needs no ordering: the taker already holds one. */
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

/* Drops one reference; the last frees the block. */
void xshbuf_unref(struct xshbuf *b);

#endif
