#include "cluster_chans.h"

#include <assert.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../util/crypto.h"
#include "../util/siphash.h"

struct chan {
    struct chan *next;          /* hash chain */
    struct chan *next_due;      /* in the list of channels with a change due */
    uint64_t hash;
    unsigned refs;
    bool due;                   /* in that list */
    bool subscribed;            /* on the link's current connection */
    size_t len;
    char name[];
};

struct cluster_chans {
    pthread_mutex_t mu;
    struct chan **buckets;
    size_t nbuckets;            /* a power of two */
    size_t nchans;
    size_t referenced;
    struct chan *due;
    uint8_t key[16];            /* SipHash key: channel names come from clients */
};

void cluster_names_add(struct cluster_names *ns, const char *name, size_t len)
{
    if (ns->n == ns->cap) {
        ns->cap = ns->cap ? ns->cap * 2 : 16;
        ns->off = xrealloc(ns->off, ns->cap * sizeof *ns->off);
        ns->len = xrealloc(ns->len, ns->cap * sizeof *ns->len);
    }
    ns->off[ns->n] = ns->bytes.len;
    ns->len[ns->n] = len;
    ns->n++;
    buf_append(&ns->bytes, name, len);
}

void cluster_names_clear(struct cluster_names *ns)
{
    ns->bytes.len = 0;
    ns->n = 0;
}

void cluster_names_free(struct cluster_names *ns)
{
    buf_free(&ns->bytes);
    free(ns->off);
    free(ns->len);
    memset(ns, 0, sizeof *ns);
}

struct cluster_chans *cluster_chans_new(void)
{
    struct cluster_chans *t = xcalloc(1, sizeof *t);
    pthread_mutex_init(&t->mu, NULL);
    t->nbuckets = 64;
    t->buckets = xcalloc(t->nbuckets, sizeof *t->buckets);
    crypto_random(t->key, sizeof t->key);
    return t;
}

void cluster_chans_free(struct cluster_chans *t)
{
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct chan *c = t->buckets[i];
        while (c) {
            struct chan *next = c->next;
            free(c);
            c = next;
        }
    }
    free(t->buckets);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static struct chan **find(struct cluster_chans *t, uint64_t h, const char *name, size_t len)
{
    struct chan **l = &t->buckets[h & (t->nbuckets - 1)];
    while (*l && !((*l)->hash == h && (*l)->len == len && memcmp((*l)->name, name, len) == 0))
        l = &(*l)->next;
    return l;
}

static void grow(struct cluster_chans *t)
{
    size_t n = t->nbuckets * 2;
    struct chan **b = xcalloc(n, sizeof *b);
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct chan *c = t->buckets[i];
        while (c) {
            struct chan *next = c->next;
            c->next = b[c->hash & (n - 1)];
            b[c->hash & (n - 1)] = c;
            c = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
}

/* Whether c's state on Redis differs from what its references want. */
static bool needs_change(const struct chan *c)
{
    return (c->refs > 0) != c->subscribed;
}

/* Puts c in the due list when it needs a change and is not there yet;
 * returns whether it was put there. */
static bool mark_due(struct cluster_chans *t, struct chan *c)
{
    if (c->due || !needs_change(c))
        return false;
    c->due = true;
    c->next_due = t->due;
    t->due = c;
    return true;
}

bool cluster_chans_ref(struct cluster_chans *t, const char *name, size_t len)
{
    uint64_t h = siphash24(t->key, name, len);
    pthread_mutex_lock(&t->mu);
    struct chan **l = find(t, h, name, len);
    struct chan *c = *l;
    if (!c) {
        if (t->nchans >= t->nbuckets) {
            grow(t);
            l = find(t, h, name, len);
        }
        c = xcalloc(1, sizeof *c + len);
        c->hash = h;
        c->len = len;
        memcpy(c->name, name, len);
        *l = c;
        t->nchans++;
    }
    if (c->refs++ == 0)
        t->referenced++;
    bool wake = mark_due(t, c);
    pthread_mutex_unlock(&t->mu);
    return wake;
}

bool cluster_chans_unref(struct cluster_chans *t, const char *name, size_t len)
{
    uint64_t h = siphash24(t->key, name, len);
    pthread_mutex_lock(&t->mu);
    struct chan *c = *find(t, h, name, len);
    assert(c && c->refs > 0 && "cluster_link_unsubscribe without a subscribe");
    if (--c->refs == 0)
        t->referenced--;
    bool wake = mark_due(t, c);
    pthread_mutex_unlock(&t->mu);
    return wake;
}

/* Unlinks and frees c, which has no reference and is not subscribed. */
static void drop(struct cluster_chans *t, struct chan *c)
{
    struct chan **l = find(t, c->hash, c->name, c->len);
    assert(*l == c);
    *l = c->next;
    t->nchans--;
    free(c);
}

void cluster_chans_changes(struct cluster_chans *t, struct cluster_names *sub,
                           struct cluster_names *unsub)
{
    pthread_mutex_lock(&t->mu);
    struct chan *c = t->due;
    t->due = NULL;
    while (c) {
        struct chan *next = c->next_due;
        c->due = false;
        if (c->refs > 0 && !c->subscribed) {
            cluster_names_add(sub, c->name, c->len);
            c->subscribed = true;
        } else if (c->refs == 0 && c->subscribed) {
            cluster_names_add(unsub, c->name, c->len);
            c->subscribed = false;
        }
        if (c->refs == 0 && !c->subscribed)
            drop(t, c);
        c = next;
    }
    pthread_mutex_unlock(&t->mu);
}

void cluster_chans_reset(struct cluster_chans *t)
{
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct chan **l = &t->buckets[i];
        while (*l) {
            struct chan *c = *l;
            c->subscribed = false;
            if (c->refs == 0 && !c->due) {
                *l = c->next;
                t->nchans--;
                free(c);
                continue;
            }
            mark_due(t, c);
            l = &c->next;
        }
    }
    pthread_mutex_unlock(&t->mu);
}

void cluster_chans_take_subscribed(struct cluster_chans *t, struct cluster_names *out)
{
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->nbuckets; i++)
        for (struct chan *c = t->buckets[i]; c; c = c->next)
            if (c->subscribed) {
                cluster_names_add(out, c->name, c->len);
                c->subscribed = false;
            }
    pthread_mutex_unlock(&t->mu);
}

size_t cluster_chans_referenced(struct cluster_chans *t)
{
    pthread_mutex_lock(&t->mu);
    size_t n = t->referenced;
    pthread_mutex_unlock(&t->mu);
    return n;
}
