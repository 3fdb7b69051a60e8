#include "shbuf.h"

#include <assert.h>
#include <stdlib.h>

#include "buf.h"

struct shbuf *shbuf_new(size_t len)
{
    struct shbuf *b = xmalloc(sizeof *b + len);
    b->refs = 1;
    b->len = len;
    return b;
}

void shbuf_unref(struct shbuf *b)
{
    assert(b->refs > 0);
    if (--b->refs == 0)
        free(b);
}
