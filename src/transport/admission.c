#include "admission.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "../util/buf.h"
#include "../util/log.h"

struct adm_entry {
    struct adm_entry *next;     /* in its bucket */
    struct admission *a;
    unsigned count;             /* connections open from this address */
    uint8_t len;                /* 4 or 16 */
    uint8_t addr[16];
};

struct admission {
    size_t max_total;
    unsigned max_per_ip;
    _Atomic size_t total;       /* slots reserved or held */
    _Atomic bool waiting;       /* a listener waits for a free slot */
    void (*wake)(void *ud);
    void *wake_ud;

    pthread_mutex_t lock;       /* the table and last_refused */
    struct adm_entry **buckets;
    size_t nbuckets, nentries;
    uint64_t seed;              /* hash seed: addresses cannot be chosen to collide */
    uint8_t last_refused[16];
    uint8_t last_refused_len;
    /* Every connection's entry when addresses are not counted. */
    struct adm_entry uncounted;

    struct log_every refused_log, paused_log, resumed_log;
};

struct admission *admission_new(size_t max_total, unsigned max_per_ip)
{
    struct admission *a = xcalloc(1, sizeof *a);
    a->max_total = max_total;
    a->max_per_ip = max_per_ip;
    atomic_init(&a->total, 0);
    atomic_init(&a->waiting, false);
    pthread_mutex_init(&a->lock, NULL);
    a->nbuckets = 256;
    a->buckets = xcalloc(a->nbuckets, sizeof *a->buckets);
    if (getrandom(&a->seed, sizeof a->seed, 0) != sizeof a->seed)
        a->seed = (uint64_t)(uintptr_t)a ^ 0x9e3779b97f4a7c15ull;
    a->uncounted.a = a;
    return a;
}

void admission_free(struct admission *a)
{
    if (!a)
        return;
    assert(a->nentries == 0);
    free(a->buckets);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

void admission_set_wake(struct admission *a, void (*wake)(void *ud), void *ud)
{
    a->wake = wake;
    a->wake_ud = ud;
}

bool admission_reserve(struct admission *a)
{
    size_t cur = atomic_load(&a->total);
    do {
        if (a->max_total && cur >= a->max_total) {
            unsigned long n = log_every_hit(&a->paused_log, 1.0);
            if (n)
                log_info("max_connections (%zu) reached: accepting paused (%lu time%s since the "
                         "last such line)", a->max_total, n, n == 1 ? "" : "s");
            return false;
        }
    } while (!atomic_compare_exchange_weak(&a->total, &cur, cur + 1));
    return true;
}

/* A slot is free again: wake the listeners if one waits. */
static void give_slot(struct admission *a)
{
    size_t before = atomic_fetch_sub(&a->total, 1);
    assert(before > 0);
    (void)before;
    if (atomic_exchange(&a->waiting, false) && a->wake)
        a->wake(a->wake_ud);
}

void admission_unreserve(struct admission *a)
{
    give_slot(a);
}

bool admission_wait(struct admission *a)
{
    atomic_store(&a->waiting, true);
    /* A connection that left before the flag was set saw no waiter: look
     * again now that any later one will. */
    return !a->max_total || atomic_load(&a->total) < a->max_total;
}

void admission_resumed(struct admission *a)
{
    unsigned long n = log_every_hit(&a->resumed_log, 1.0);
    if (n)
        log_info("accepting resumed: %zu connections open (max_connections %zu)",
                 atomic_load(&a->total), a->max_total);
}

/* The address as counted: 4 bytes for IPv4 (mapped or not), 16 for IPv6. */
static uint8_t key_of(const struct sockaddr *sa, uint8_t out[16])
{
    if (sa->sa_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 4;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *v6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(v6)) {
            memcpy(out, v6->s6_addr + 12, 4);
            return 4;
        }
        memcpy(out, v6->s6_addr, 16);
        return 16;
    }
    return 0;                   /* a Unix socket, say: all count as one */
}

static size_t bucket_of(const struct admission *a, const uint8_t *key, uint8_t len)
{
    uint64_t h = 0xcbf29ce484222325ull ^ a->seed;
    for (uint8_t i = 0; i < len; i++)
        h = (h ^ key[i]) * 0x100000001b3ull;
    h ^= h >> 29;
    return (size_t)h & (a->nbuckets - 1);
}

/* Doubles the table when it holds twice as many addresses as buckets. */
static void grow(struct admission *a)
{
    size_t n = a->nbuckets * 2;
    struct adm_entry **b = xcalloc(n, sizeof *b);
    struct adm_entry **old = a->buckets;
    size_t oldn = a->nbuckets;
    a->buckets = b;
    a->nbuckets = n;
    for (size_t i = 0; i < oldn; i++) {
        for (struct adm_entry *e = old[i], *next; e; e = next) {
            next = e->next;
            size_t k = bucket_of(a, e->addr, e->len);
            e->next = b[k];
            b[k] = e;
        }
    }
    free(old);
}

static void format_addr(const uint8_t *key, uint8_t len, char *out, size_t cap)
{
    if (!len || !inet_ntop(len == 4 ? AF_INET : AF_INET6, key, out, (socklen_t)cap))
        snprintf(out, cap, "?");
}

static void log_refused(struct admission *a, unsigned long n, const uint8_t *key, uint8_t len)
{
    char addr[INET6_ADDRSTRLEN];
    format_addr(key, len, addr, sizeof addr);
    log_info("max_connections_per_ip (%u) reached: refused %lu connection%s since the last "
             "such line, the last from %s", a->max_per_ip, n, n == 1 ? "" : "s", addr);
}

struct adm_entry *admission_enter(struct admission *a, const struct sockaddr *addr)
{
    if (!a->max_per_ip)
        return &a->uncounted;
    uint8_t key[16];
    uint8_t len = key_of(addr, key);
    pthread_mutex_lock(&a->lock);
    size_t k = bucket_of(a, key, len);
    struct adm_entry *e = a->buckets[k];
    while (e && (e->len != len || memcmp(e->addr, key, len) != 0))
        e = e->next;
    if (e && e->count >= a->max_per_ip) {
        memcpy(a->last_refused, key, len);
        a->last_refused_len = len;
        pthread_mutex_unlock(&a->lock);
        give_slot(a);
        unsigned long n = log_every_hit(&a->refused_log, 1.0);
        if (n)
            log_refused(a, n, key, len);
        return NULL;
    }
    if (!e) {
        e = xcalloc(1, sizeof *e);
        e->a = a;
        e->len = len;
        memcpy(e->addr, key, len);
        e->next = a->buckets[k];
        a->buckets[k] = e;
        if (++a->nentries > a->nbuckets * 2)
            grow(a);
    }
    e->count++;
    pthread_mutex_unlock(&a->lock);
    return e;
}

void admission_leave(struct adm_entry *e)
{
    struct admission *a = e->a;
    if (e != &a->uncounted) {
        pthread_mutex_lock(&a->lock);
        assert(e->count > 0);
        if (--e->count == 0) {
            struct adm_entry **p = &a->buckets[bucket_of(a, e->addr, e->len)];
            while (*p != e)
                p = &(*p)->next;
            *p = e->next;
            a->nentries--;
            free(e);
        }
        pthread_mutex_unlock(&a->lock);
    }
    give_slot(a);
}

void admission_report(struct admission *a)
{
    unsigned long n = log_every_flush(&a->refused_log, 1.0);
    if (!n)
        return;
    uint8_t key[16];
    pthread_mutex_lock(&a->lock);
    uint8_t len = a->last_refused_len;
    memcpy(key, a->last_refused, len);
    pthread_mutex_unlock(&a->lock);
    log_refused(a, n, key, len);
}

size_t admission_count(const struct admission *a)
{
    return atomic_load(&a->total);
}

size_t admission_max(const struct admission *a)
{
    return a->max_total;
}
