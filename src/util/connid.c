#include "connid.h"

#include <assert.h>
#include <stdatomic.h>

/* Connections numbered so far, all workers together. */
static _Atomic uint64_t counter;

uint64_t connid_new(unsigned worker_index)
{
    assert(worker_index < (1u << CONNID_WORKER_BITS));
    /* 1..2^31 - 1, then round again: a connection still open after two
     * billion more have come and gone could meet its number again. */
    uint64_t n = atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed);
    uint64_t seq = n % ((1ull << CONNID_COUNTER_BITS) - 1) + 1;
    return seq << CONNID_WORKER_BITS | worker_index;
}
