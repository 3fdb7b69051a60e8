#include "pathcount.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "buf.h"
#include "siphash.h"

/* Concrete paths come from clients: the hash is keyed (SipHash with a
 * secret made at the first use), so nobody can pile them into one bucket. */
static uint8_t hash_key[16];
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void make_key(void)
{
    if (getrandom(hash_key, sizeof hash_key, 0) != sizeof hash_key) {
        uint64_t fallback = (uint64_t)(uintptr_t)&hash_key ^ 0x9e3779b97f4a7c15ull;
        memcpy(hash_key, &fallback, sizeof fallback);
    }
}

#define SHARDS 16

struct entry {
    struct entry *next;
    uint64_t hash;
    long count;
    size_t len;
    char key[];
};

static struct shard {
    pthread_mutex_t mu;
    struct entry **buckets;
    size_t nbuckets;            /* a power of two, or 0 */
    size_t n;
} shards[SHARDS] = {
#define S { .mu = PTHREAD_MUTEX_INITIALIZER }
    S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S,
#undef S
};

/* pathcount_watch's: set before any thread counts, read-only after. */
static void (*watch_fn)(void *ud, const char *key, size_t len, bool present);
static void *watch_ud;

void pathcount_watch(void (*fn)(void *ud, const char *key, size_t len, bool present), void *ud)
{
    watch_fn = fn;
    watch_ud = ud;
}

static struct shard *shard_of(const char *key, size_t len, uint64_t *h)
{
    pthread_once(&key_once, make_key);
    *h = siphash24(hash_key, key, len);
    return &shards[*h % SHARDS];
}

static struct entry **find(struct shard *s, const char *key, size_t len, uint64_t h)
{
    struct entry **pe = &s->buckets[(h >> 8) & (s->nbuckets - 1)];
    while (*pe && ((*pe)->hash != h || (*pe)->len != len || memcmp((*pe)->key, key, len) != 0))
        pe = &(*pe)->next;
    return pe;
}

static void grow(struct shard *s)
{
    size_t n = s->nbuckets ? s->nbuckets * 2 : 16;
    struct entry **b = xcalloc(n, sizeof *b);
    for (size_t i = 0; i < s->nbuckets; i++) {
        for (struct entry *e = s->buckets[i], *next; e; e = next) {
            next = e->next;
            struct entry **to = &b[(e->hash >> 8) & (n - 1)];
            e->next = *to;
            *to = e;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
}

void pathcount_add(const char *key, size_t len, long delta)
{
    if (!delta)
        return;
    uint64_t h;
    struct shard *s = shard_of(key, len, &h);
    pthread_mutex_lock(&s->mu);
    if (s->n >= s->nbuckets)
        grow(s);
    struct entry **pe = find(s, key, len, h);
    struct entry *e = *pe;
    if (!e) {
        e = xmalloc(sizeof *e + len);
        *e = (struct entry){ .hash = h, .len = len };
        memcpy(e->key, key, len);
        *pe = e;
        s->n++;
        if (watch_fn)
            watch_fn(watch_ud, key, len, true);
    }
    e->count += delta;
    if (!e->count) {
        *pe = e->next;
        free(e);
        s->n--;
        if (watch_fn)
            watch_fn(watch_ud, key, len, false);
    }
    pthread_mutex_unlock(&s->mu);
}

long pathcount_get(const char *key, size_t len)
{
    uint64_t h;
    struct shard *s = shard_of(key, len, &h);
    long n = 0;
    pthread_mutex_lock(&s->mu);
    if (s->nbuckets) {
        struct entry *e = *find(s, key, len, h);
        n = e ? e->count : 0;
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

void pathcount_each(void (*fn)(void *ud, const char *key, size_t len, long count), void *ud)
{
    for (int i = 0; i < SHARDS; i++) {
        struct shard *s = &shards[i];
        pthread_mutex_lock(&s->mu);
        for (size_t k = 0; k < s->nbuckets; k++) {
            for (struct entry *e = s->buckets[k]; e; e = e->next)
                fn(ud, e->key, e->len, e->count);
        }
        pthread_mutex_unlock(&s->mu);
    }
}

size_t pathcount_keys(void)
{
    size_t n = 0;
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&shards[i].mu);
        n += shards[i].n;
        pthread_mutex_unlock(&shards[i].mu);
    }
    return n;
}

void pathcount_cleanup(void)
{
    for (int i = 0; i < SHARDS; i++) {
        struct shard *s = &shards[i];
        pthread_mutex_lock(&s->mu);
        for (size_t k = 0; k < s->nbuckets; k++) {
            for (struct entry *e = s->buckets[k], *next; e; e = next) {
                next = e->next;
                free(e);
            }
        }
        free(s->buckets);
        s->buckets = NULL;
        s->nbuckets = s->n = 0;
        pthread_mutex_unlock(&s->mu);
    }
}
