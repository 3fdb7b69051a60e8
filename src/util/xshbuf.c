#include "xshbuf.h"

#include <assert.h>
#include <stdlib.h>

#include "buf.h"

struct xshbuf *xshbuf_new(size_t len)
{
    struct xshbuf *b = xmalloc(sizeof *b + len);
    atomic_init(&b->refs, 1);
    b->len = len;
    return b;
}

void xshbuf_unref(struct xshbuf *b)
{
    /* Release: this thread's reads of the data happen before the free;
     * acquire on the last drop: every other thread's do too. */
    unsigned was = atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel);
    assert(was > 0);
    if (was == 1)
        free(b);
}
