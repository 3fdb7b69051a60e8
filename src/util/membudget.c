#include "membudget.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>

void membudget_init(struct membudget *mb, size_t limit)
{
    atomic_init(&mb->used, 0);
    mb->limit = limit;
    atomic_init(&mb->refused.count, 0);
    atomic_init(&mb->refused.last_ms, 0);
    atomic_init(&mb->last_conn, 0);
    atomic_init(&mb->last_what, "");
}

bool membudget_take(struct membudget *mb, size_t n)
{
    if (!mb || n == 0)
        return true;
    size_t cur = atomic_load_explicit(&mb->used, memory_order_relaxed);
    do {
        if (mb->limit && (n > mb->limit || cur > mb->limit - n))
            return false;
    } while (!atomic_compare_exchange_weak_explicit(&mb->used, &cur, cur + n,
                                                    memory_order_relaxed, memory_order_relaxed));
    return true;
}

void membudget_give(struct membudget *mb, size_t n)
{
    if (!mb || n == 0)
        return;
    size_t before = atomic_fetch_sub_explicit(&mb->used, n, memory_order_relaxed);
    /* More given back than taken: a buffer freed against the wrong budget. */
    assert(before >= n);
    (void)before;
}

size_t membudget_used(const struct membudget *mb)
{
    return mb ? atomic_load_explicit(&mb->used, memory_order_relaxed) : 0;
}

bool membudget_buf_reserve(struct membudget *mb, struct buf *b, size_t extra, size_t limit)
{
    if (extra == 0 || b->cap - b->len >= extra)
        return true;
    size_t need = b->len + extra;
    size_t cap = need;
    if (b->cap) {
        size_t twice = b->cap > SIZE_MAX / 2 ? SIZE_MAX : b->cap * 2;
        if (twice > limit)
            twice = limit;
        if (twice > cap)
            cap = twice;
    }
    if (!membudget_take(mb, cap - b->cap))
        return false;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
    return true;
}

void membudget_buf_free(struct membudget *mb, struct buf *b)
{
    membudget_give(mb, b->cap);
    buf_free(b);
}

static void log_full(struct membudget *mb, unsigned long n)
{
    log_info("memory for unfinished messages and bodies is full (--max-buffered %zu bytes): "
             "closed %lu connection%s since the last such line, the last conn %llu (%s)",
             mb->limit, n, n == 1 ? "" : "s", atomic_load(&mb->last_conn),
             atomic_load(&mb->last_what));
}

void membudget_log_refusal(struct membudget *mb, unsigned long long conn_id, const char *what)
{
    atomic_store(&mb->last_conn, conn_id);
    atomic_store(&mb->last_what, what);
    unsigned long n = log_every_hit(&mb->refused, 1.0);
    if (n)
        log_full(mb, n);
}

void membudget_report(struct membudget *mb)
{
    unsigned long n = log_every_flush(&mb->refused, 1.0);
    if (n)
        log_full(mb, n);
}

/* The header in front of each block: its size, padded so that the block
 * keeps malloc's alignment. */
#define HDR sizeof(max_align_t)

void *membudget_alloc(struct membudget *mb, size_t n)
{
    if (n > SIZE_MAX - HDR || !membudget_take(mb, n))
        return NULL;
    char *p = malloc(HDR + n);
    if (!p) {
        membudget_give(mb, n);
        return NULL;
    }
    *(size_t *)p = n;
    return p + HDR;
}

void membudget_free(struct membudget *mb, void *p)
{
    if (!p)
        return;
    char *h = (char *)p - HDR;
    membudget_give(mb, *(size_t *)h);
    free(h);
}
