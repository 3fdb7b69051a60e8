#include "connid.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "buf.h"

/* Connections numbered so far, all workers together. */
static _Atomic uint64_t counter;
/* The node number new ids carry (connid_set_node). */
static atomic_uint node_number;

/* The open set: shards of open-addressing tables (linear probing), each
 * behind its own mutex. A slot with id 0 is free (no id is 0). */
#define SHARDS 16

struct slot {
    uint64_t id;
    void *p;
};

static struct shard {
    pthread_mutex_t mu;
    struct slot *slots;
    size_t cap;                 /* a power of two, or 0 */
    size_t n;
} shards[SHARDS] = {
#define S { .mu = PTHREAD_MUTEX_INITIALIZER }
    S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S,
#undef S
};

/* splitmix64's finalizer: the low bits of consecutive ids spread. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static struct shard *shard_of(uint64_t id, uint64_t *h)
{
    *h = mix(id);
    return &shards[*h % SHARDS];
}

/* The slot of id, or the free slot where it would go. */
static size_t probe(const struct shard *s, uint64_t id, uint64_t h)
{
    size_t mask = s->cap - 1;
    size_t i = (size_t)(h >> 8) & mask;
    while (s->slots[i].id && s->slots[i].id != id)
        i = (i + 1) & mask;
    return i;
}

static void grow(struct shard *s)
{
    struct slot *old = s->slots;
    size_t oldcap = s->cap;
    s->cap = oldcap ? oldcap * 2 : 64;
    s->slots = xcalloc(s->cap, sizeof *s->slots);
    for (size_t i = 0; i < oldcap; i++) {
        if (old[i].id)
            s->slots[probe(s, old[i].id, mix(old[i].id))] = old[i];
    }
    free(old);
}

void connid_open(uint64_t id, void *p)
{
    uint64_t h;
    struct shard *s = shard_of(id, &h);
    pthread_mutex_lock(&s->mu);
    /* At most three quarters full: probes stay short. */
    if ((s->n + 1) * 4 > s->cap * 3)
        grow(s);
    size_t i = probe(s, id, h);
    assert(!s->slots[i].id);
    s->slots[i] = (struct slot){ id, p };
    s->n++;
    pthread_mutex_unlock(&s->mu);
}

void connid_close(uint64_t id)
{
    uint64_t h;
    struct shard *s = shard_of(id, &h);
    pthread_mutex_lock(&s->mu);
    if (s->cap) {
        size_t mask = s->cap - 1;
        size_t i = probe(s, id, h);
        if (s->slots[i].id) {
            /* Backward-shift deletion: the entries after it that probed
             * past it move up, so no tombstone is needed. */
            s->slots[i].id = 0;
            s->n--;
            for (size_t j = (i + 1) & mask; s->slots[j].id; j = (j + 1) & mask) {
                size_t home = (size_t)(mix(s->slots[j].id) >> 8) & mask;
                /* j may move to the hole i unless its home lies in (i, j]. */
                if (((j - home) & mask) >= ((j - i) & mask)) {
                    s->slots[i] = s->slots[j];
                    s->slots[j].id = 0;
                    i = j;
                }
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
}

void *connid_find(uint64_t id)
{
    uint64_t h;
    struct shard *s = shard_of(id, &h);
    void *p = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->cap && id) {
        size_t i = probe(s, id, h);
        p = s->slots[i].id ? s->slots[i].p : NULL;
    }
    pthread_mutex_unlock(&s->mu);
    return p;
}

size_t connid_count(void)
{
    size_t n = 0;
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&shards[i].mu);
        n += shards[i].n;
        pthread_mutex_unlock(&shards[i].mu);
    }
    return n;
}

void connid_cleanup(void)
{
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&shards[i].mu);
        free(shards[i].slots);
        shards[i].slots = NULL;
        shards[i].cap = shards[i].n = 0;
        pthread_mutex_unlock(&shards[i].mu);
    }
}

void connid_set_node(unsigned node)
{
    assert(node < (1u << CONNID_NODE_BITS));
    atomic_store_explicit(&node_number, node, memory_order_relaxed);
}

uint64_t connid_new(unsigned worker_index)
{
    assert(worker_index < (1u << CONNID_WORKER_BITS));
    const uint64_t round = (1ull << CONNID_COUNTER_BITS) - 1;
    uint64_t node = (uint64_t)atomic_load_explicit(&node_number, memory_order_relaxed)
                    << CONNID_NODE_SHIFT;
    for (;;) {
        uint64_t n = atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed);
        uint64_t id = node | (n % round + 1) << CONNID_WORKER_BITS | worker_index;
        /* Before the first round is over no id can be open twice. */
        if (n < round || !connid_find(id))
            return id;
    }
}
