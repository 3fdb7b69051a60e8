/*
 * shbuf: an immutable, reference-counted byte block, so one encoded frame
 * can sit in many connections' output queues at once (broadcast, publish).
 * Not thread-safe: it belongs to one worker.
 */
#ifndef MOONWS_SHBUF_H
#define MOONWS_SHBUF_H

#include <stddef.h>
#include <stdint.h>

struct shbuf {
    uint32_t refs;
    size_t len;
    char data[];
};

/* A block of len bytes with one reference, for the creator to fill. */
struct shbuf *shbuf_new(size_t len);
static inline struct shbuf *shbuf_ref(struct shbuf *b)
{
    b->refs++;
    return b;
}
void shbuf_unref(struct shbuf *b);

#endif
