#include "shdict.h"

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "limits.h"
#include "log.h"
#include "siphash.h"

struct entry {
    struct entry *hnext;            /* hash chain; the garbage list once removed */
    struct entry *prev, *next;      /* LRU list: d->head is the most recently used */
    int64_t expires;                /* monotonic ns; 0: never */
    union {
        int64_t i;
        double d;
    } num;                          /* SHDICT_INT, SHDICT_FLOAT, SHDICT_BOOL (i) */
    uint32_t hash;
    uint32_t klen;
    uint32_t vlen;                  /* SHDICT_STR: its bytes follow the key */
    uint8_t type;
    char data[];                    /* the key, then the string */
};

/* The overhead charged covers the record and one bucket pointer. */
_Static_assert(sizeof(struct entry) + sizeof(struct entry *) <= SHDICT_ENTRY_OVERHEAD,
               "SHDICT_ENTRY_OVERHEAD must cover an entry's record and its bucket");

struct table {
    struct entry **b;
    size_t mask;                    /* buckets - 1, a power of two minus one */
};

#define FIRST_BUCKETS 16
/* Buckets of the old table moved to the new one at each write while the
 * table grows: growth never stops the world, and a table of n buckets is
 * done before n more entries could arrive. */
#define REHASH_STEP 4

struct shdict {
    pthread_mutex_t mu;
    /* t[1] is the table being filled while the table grows (t[1].b != NULL):
     * lookups try t[0], then t[1]; buckets of t[0] below `rehash` are moved
     * already. */
    struct table t[2];
    size_t rehash;
    struct entry *head, *tail;
    size_t capacity, used, count;
    uint64_t evictions;
    /* Since the last log line (LIM_DICT_LOG_INTERVAL). */
    uint64_t evicted_unlogged, refused_unlogged;
    int64_t last_log;
    bool logged;
    uint8_t key[16];                /* the hash's secret */
    /* The registry's, under reg_mu. */
    bool sized;                     /* a capacity was asked for */
    size_t conflict_capacity;       /* the last capacity kept out, and said */
    char name[LIM_DICT_NAME_MAX + 1];
};

/* What an operation leaves for after the unlock: memory to free, a table to
 * allocate, a line to log. */
struct after {
    struct entry *garbage;
    struct entry **old_table;
    size_t grow_from;               /* buckets of t[0] when growth was wanted */
    uint64_t evicted, refused;
    size_t capacity;
};

const char *shdict_strerror(int rc)
{
    switch (rc) {
    case SHDICT_OK: return "ok";
    case SHDICT_NOT_FOUND: return "not found";
    case SHDICT_EXISTS: return "exists";
    case SHDICT_NO_MEMORY: return "no memory";
    case SHDICT_NOT_NUMBER: return "not a number";
    case SHDICT_OVERFLOW: return "integer overflow";
    case SHDICT_SHORT_BUFFER: return "buffer too small";
    default: return "unknown error";
    }
}

static int64_t ttl_ns(double ttl)
{
    assert(ttl >= 0 && ttl <= LIM_DICT_TTL_MAX);
    int64_t ns = (int64_t)(ttl * 1e9);
    return ttl > 0 && ns == 0 ? 1 : ns;
}

static int64_t expiry(double ttl, int64_t now)
{
    return ttl > 0 ? now + ttl_ns(ttl) : 0;
}

static inline bool expired(const struct entry *e, int64_t now)
{
    return e->expires && e->expires <= now;
}

static inline size_t charge(const struct entry *e)
{
    return SHDICT_ENTRY_OVERHEAD + e->klen + e->vlen;
}

static uint32_t hash_key(const struct shdict *d, const void *key, size_t klen)
{
    return (uint32_t)siphash24(d->key, key, klen);
}

struct shdict *shdict_new(const char *name, size_t capacity)
{
    struct shdict *d = xcalloc(1, sizeof *d);
    pthread_mutex_init(&d->mu, NULL);
    d->capacity = capacity;
    d->t[0].b = xcalloc(FIRST_BUCKETS, sizeof *d->t[0].b);
    d->t[0].mask = FIRST_BUCKETS - 1;
    snprintf(d->name, sizeof d->name, "%s", name);
    if (getrandom(d->key, sizeof d->key, 0) != (ssize_t)sizeof d->key) {
        /* No kernel randomness: a key that still differs per process. */
        uint64_t k[2] = { (uint64_t)clock_ns(), (uint64_t)getpid() ^ (uintptr_t)d };
        memcpy(d->key, k, sizeof d->key);
    }
    return d;
}

static void free_chain(struct entry *e)
{
    while (e) {
        struct entry *next = e->hnext;
        free(e);
        e = next;
    }
}

void shdict_free(struct shdict *d)
{
    if (!d)
        return;
    for (struct entry *e = d->head, *next; e; e = next) {
        next = e->next;
        free(e);
    }
    free(d->t[0].b);
    free(d->t[1].b);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

const char *shdict_name(const struct shdict *d)
{
    return d->name;
}

void shdict_stats(struct shdict *d, struct shdict_stats *st)
{
    pthread_mutex_lock(&d->mu);
    *st = (struct shdict_stats){ d->capacity, d->used, d->count, d->evictions };
    pthread_mutex_unlock(&d->mu);
}

size_t shdict_capacity(struct shdict *d)
{
    struct shdict_stats st;
    shdict_stats(d, &st);
    return st.capacity;
}

/* ---- the hash table and the LRU list (under the lock) ---- */

/* The link that points at the entry with this key, or NULL. */
static struct entry **find(struct shdict *d, uint32_t hash, const void *key, size_t klen)
{
    for (int i = 0; i < 2 && d->t[i].b; i++) {
        for (struct entry **l = &d->t[i].b[hash & d->t[i].mask]; *l; l = &(*l)->hnext) {
            struct entry *e = *l;
            if (e->hash == hash && e->klen == klen && memcmp(e->data, key, klen) == 0)
                return l;
        }
    }
    return NULL;
}

/* The link that points at e. */
static struct entry **link_of(struct shdict *d, const struct entry *e)
{
    for (int i = 0; i < 2 && d->t[i].b; i++) {
        for (struct entry **l = &d->t[i].b[e->hash & d->t[i].mask]; *l; l = &(*l)->hnext) {
            if (*l == e)
                return l;
        }
    }
    assert(!"shdict: an entry missing from its hash table");
    return NULL;
}

static void lru_unlink(struct shdict *d, struct entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        d->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        d->tail = e->prev;
}

static void lru_push(struct shdict *d, struct entry *e)
{
    e->prev = NULL;
    e->next = d->head;
    if (d->head)
        d->head->prev = e;
    else
        d->tail = e;
    d->head = e;
}

static void touch(struct shdict *d, struct entry *e)
{
    if (d->head != e) {
        lru_unlink(d, e);
        lru_push(d, e);
    }
}

/* Takes the entry *l points at out of the dictionary, onto the garbage. */
static void unlink_at(struct shdict *d, struct entry **l, struct after *a)
{
    struct entry *e = *l;
    *l = e->hnext;
    lru_unlink(d, e);
    d->used -= charge(e);
    d->count--;
    e->hnext = a->garbage;
    a->garbage = e;
}

static void insert(struct shdict *d, struct entry *e, struct after *a)
{
    struct table *t = d->t[1].b ? &d->t[1] : &d->t[0];
    struct entry **b = &t->b[e->hash & t->mask];
    e->hnext = *b;
    *b = e;
    lru_push(d, e);
    d->used += charge(e);
    d->count++;
    assert(d->used <= d->capacity);
    /* More entries than buckets: a table twice as large, allocated after
     * the unlock. */
    if (!d->t[1].b && d->count > d->t[0].mask + 1)
        a->grow_from = d->t[0].mask + 1;
}

static void rehash_step(struct shdict *d, struct after *a)
{
    if (!d->t[1].b)
        return;
    for (int n = 0; n < REHASH_STEP && d->rehash <= d->t[0].mask; n++) {
        struct entry *e = d->t[0].b[d->rehash];
        d->t[0].b[d->rehash++] = NULL;
        while (e) {
            struct entry *next = e->hnext;
            struct entry **b = &d->t[1].b[e->hash & d->t[1].mask];
            e->hnext = *b;
            *b = e;
            e = next;
        }
    }
    if (d->rehash > d->t[0].mask) {
        a->old_table = d->t[0].b;
        d->t[0] = d->t[1];
        d->t[1] = (struct table){ 0 };
        d->rehash = 0;
    }
}

/* Removes up to LIM_DICT_SWEEP expired entries from the LRU end, stopping
 * at the first live one. */
static void sweep(struct shdict *d, int64_t now, struct after *a)
{
    for (int n = 0; n < LIM_DICT_SWEEP && d->tail && expired(d->tail, now); n++)
        unlink_at(d, link_of(d, d->tail), a);
}

/* Removes least recently used entries until need more bytes fit (need is
 * at most the capacity). */
static bool make_room(struct shdict *d, size_t need, int64_t now, struct after *a)
{
    bool forcible = false;
    while (d->capacity - d->used < need) {
        struct entry *e = d->tail;
        assert(e);
        if (!expired(e, now)) {
            forcible = true;
            d->evictions++;
            d->evicted_unlogged++;
        }
        unlink_at(d, link_of(d, e), a);
    }
    return forcible;
}

/* The entry of a live key, or NULL (an expired one is removed on the way). */
static struct entry *live(struct shdict *d, uint32_t hash, const void *key, size_t klen,
                          int64_t now, struct entry ***link, struct after *a)
{
    struct entry **l = find(d, hash, key, klen);
    if (!l)
        return NULL;
    if (expired(*l, now)) {
        unlink_at(d, l, a);
        return NULL;
    }
    if (link)
        *link = l;
    return *l;
}

/* Takes the counts for a log line when one is due. */
static void log_due(struct shdict *d, int64_t now, struct after *a)
{
    if (!d->evicted_unlogged && !d->refused_unlogged)
        return;
    if (d->logged && now - d->last_log < (int64_t)(LIM_DICT_LOG_INTERVAL * 1e9))
        return;
    d->logged = true;
    d->last_log = now;
    a->evicted = d->evicted_unlogged;
    a->refused = d->refused_unlogged;
    a->capacity = d->capacity;
    d->evicted_unlogged = d->refused_unlogged = 0;
}

/* Unlocks, then does what the operation left: frees, grows the table, logs. */
static void finish(struct shdict *d, struct after *a)
{
    pthread_mutex_unlock(&d->mu);
    free_chain(a->garbage);
    free(a->old_table);
    if (a->grow_from) {
        size_t n = a->grow_from * 2;
        struct entry **b = xcalloc(n, sizeof *b);
        pthread_mutex_lock(&d->mu);
        /* Another writer may have started the same growth meanwhile. */
        if (!d->t[1].b && d->t[0].mask + 1 == a->grow_from) {
            d->t[1] = (struct table){ b, n - 1 };
            d->rehash = 0;
            b = NULL;
        }
        pthread_mutex_unlock(&d->mu);
        free(b);
    }
    if (a->evicted)
        log_info("dict %s: full (%zu bytes): %" PRIu64 " live entr%s evicted to make room",
                 d->name, a->capacity, a->evicted, a->evicted == 1 ? "y" : "ies");
    if (a->refused)
        log_info("dict %s: %" PRIu64 " value%s larger than its capacity (%zu bytes) refused",
                 d->name, a->refused, a->refused == 1 ? "" : "s", a->capacity);
}

/* ---- operations ---- */

static void copy_value(const struct entry *e, struct shdict_value *out)
{
    out->type = (enum shdict_type)e->type;
    out->str = NULL;
    out->len = 0;
    switch (e->type) {
    case SHDICT_INT: out->i = e->num.i; break;
    case SHDICT_FLOAT: out->d = e->num.d; break;
    case SHDICT_BOOL: out->b = e->num.i != 0; break;
    default: break;
    }
}

int shdict_get(struct shdict *d, const void *key, size_t klen, int64_t now,
               struct shdict_value *out, char *buf, size_t cap)
{
    uint32_t h = hash_key(d, key, klen);
    struct after a = { 0 };
    int rc = SHDICT_OK;
    pthread_mutex_lock(&d->mu);
    struct entry *e = live(d, h, key, klen, now, NULL, &a);
    if (!e) {
        rc = SHDICT_NOT_FOUND;
    } else {
        touch(d, e);
        copy_value(e, out);
        if (e->type == SHDICT_STR) {
            out->len = e->vlen;
            if (e->vlen > cap) {
                rc = SHDICT_SHORT_BUFFER;
            } else {
                if (e->vlen)
                    memcpy(buf, e->data + e->klen, e->vlen);
                out->str = buf;
            }
        }
    }
    finish(d, &a);
    return rc;
}

static struct entry *entry_new(uint32_t hash, const void *key, size_t klen,
                               const struct shdict_value *v, int64_t expires)
{
    size_t vlen = v->type == SHDICT_STR ? v->len : 0;
    struct entry *e = xmalloc(sizeof *e + klen + vlen);
    *e = (struct entry){ .expires = expires, .hash = hash, .klen = (uint32_t)klen,
                         .vlen = (uint32_t)vlen, .type = (uint8_t)v->type };
    if (klen)
        memcpy(e->data, key, klen);
    switch (v->type) {
    case SHDICT_STR:
        if (vlen)
            memcpy(e->data + klen, v->str, vlen);
        break;
    case SHDICT_INT: e->num.i = v->i; break;
    case SHDICT_FLOAT: e->num.d = v->d; break;
    case SHDICT_BOOL: e->num.i = v->b; break;
    default: assert(!"shdict: no value to store");
    }
    return e;
}

int shdict_store(struct shdict *d, enum shdict_mode mode, const void *key, size_t klen,
                 const struct shdict_value *v, double ttl, int64_t now, bool *forcible)
{
    assert(klen <= LIM_DICT_KEY_MAX);
    assert(v->type != SHDICT_NIL || mode == SHDICT_SET);
    if (forcible)
        *forcible = false;
    uint32_t h = hash_key(d, key, klen);
    size_t vlen = v->type == SHDICT_STR ? v->len : 0;
    if (vlen > UINT32_MAX)
        return SHDICT_NO_MEMORY;
    size_t need = SHDICT_ENTRY_OVERHEAD + klen + vlen;
    /* Filled before the lock: a large value is copied while others work. */
    struct entry *ne = v->type != SHDICT_NIL ? entry_new(h, key, klen, v, expiry(ttl, now)) : NULL;
    struct after a = { 0 };
    int rc = SHDICT_OK;
    pthread_mutex_lock(&d->mu);
    rehash_step(d, &a);
    sweep(d, now, &a);
    struct entry **l = NULL;
    struct entry *old = live(d, h, key, klen, now, &l, &a);
    if (mode == SHDICT_ADD && old) {
        rc = SHDICT_EXISTS;
    } else if (mode == SHDICT_REPLACE && !old) {
        rc = SHDICT_NOT_FOUND;
    } else if (ne && need > d->capacity) {
        rc = SHDICT_NO_MEMORY;
        d->refused_unlogged++;
    } else {
        if (old)
            unlink_at(d, l, &a);
        if (ne) {
            bool f = make_room(d, need, now, &a);
            if (forcible)
                *forcible = f;
            insert(d, ne, &a);
            ne = NULL;
        }
    }
    log_due(d, now, &a);
    finish(d, &a);
    free(ne);
    return rc;
}

/* a + b with Lua's rules: integers stay integers, a float makes a float. */
static int add_numbers(const struct shdict_value *a, const struct shdict_value *b,
                       struct shdict_value *sum)
{
    *sum = (struct shdict_value){ 0 };
    if (a->type == SHDICT_INT && b->type == SHDICT_INT) {
        sum->type = SHDICT_INT;
        return __builtin_add_overflow(a->i, b->i, &sum->i) ? SHDICT_OVERFLOW : SHDICT_OK;
    }
    sum->type = SHDICT_FLOAT;
    sum->d = (a->type == SHDICT_INT ? (double)a->i : a->d) +
             (b->type == SHDICT_INT ? (double)b->i : b->d);
    return SHDICT_OK;
}

int shdict_incr(struct shdict *d, const void *key, size_t klen, const struct shdict_value *n,
                const struct shdict_value *init, double ttl, int64_t now,
                struct shdict_value *out, bool *forcible)
{
    assert(klen <= LIM_DICT_KEY_MAX);
    assert(n->type == SHDICT_INT || n->type == SHDICT_FLOAT);
    assert(!init || init->type == SHDICT_INT || init->type == SHDICT_FLOAT);
    if (forcible)
        *forcible = false;
    uint32_t h = hash_key(d, key, klen);
    struct after a = { 0 };
    int rc;
    pthread_mutex_lock(&d->mu);
    rehash_step(d, &a);
    sweep(d, now, &a);
    struct entry *e = live(d, h, key, klen, now, NULL, &a);
    if (e) {
        struct shdict_value cur;
        copy_value(e, &cur);
        if (e->type != SHDICT_INT && e->type != SHDICT_FLOAT) {
            rc = SHDICT_NOT_NUMBER;
        } else if ((rc = add_numbers(&cur, n, out)) == SHDICT_OK) {
            /* Numbers carry no bytes: the entry changes in place. */
            e->type = (uint8_t)out->type;
            if (out->type == SHDICT_INT)
                e->num.i = out->i;
            else
                e->num.d = out->d;
            touch(d, e);
        }
    } else if (!init) {
        rc = SHDICT_NOT_FOUND;
    } else if ((rc = add_numbers(init, n, out)) == SHDICT_OK) {
        size_t need = SHDICT_ENTRY_OVERHEAD + klen;
        if (need > d->capacity) {
            rc = SHDICT_NO_MEMORY;
            d->refused_unlogged++;
        } else {
            bool f = make_room(d, need, now, &a);
            if (forcible)
                *forcible = f;
            insert(d, entry_new(h, key, klen, out, expiry(ttl, now)), &a);
        }
    }
    log_due(d, now, &a);
    finish(d, &a);
    return rc;
}

bool shdict_delete(struct shdict *d, const void *key, size_t klen, int64_t now)
{
    uint32_t h = hash_key(d, key, klen);
    struct after a = { 0 };
    pthread_mutex_lock(&d->mu);
    struct entry **l = NULL;
    bool found = live(d, h, key, klen, now, &l, &a) != NULL;
    if (found)
        unlink_at(d, l, &a);
    finish(d, &a);
    return found;
}

int shdict_ttl(struct shdict *d, const void *key, size_t klen, int64_t now, double *left)
{
    uint32_t h = hash_key(d, key, klen);
    struct after a = { 0 };
    pthread_mutex_lock(&d->mu);
    struct entry *e = live(d, h, key, klen, now, NULL, &a);
    if (e)
        *left = e->expires ? (double)(e->expires - now) / 1e9 : 0;
    finish(d, &a);
    return e ? SHDICT_OK : SHDICT_NOT_FOUND;
}

int shdict_expire(struct shdict *d, const void *key, size_t klen, double ttl, int64_t now)
{
    uint32_t h = hash_key(d, key, klen);
    struct after a = { 0 };
    pthread_mutex_lock(&d->mu);
    struct entry *e = live(d, h, key, klen, now, NULL, &a);
    if (e)
        e->expires = expiry(ttl, now);
    finish(d, &a);
    return e ? SHDICT_OK : SHDICT_NOT_FOUND;
}

struct shdict_key *shdict_keys(struct shdict *d, int64_t now, size_t max, size_t *n)
{
    pthread_mutex_lock(&d->mu);
    size_t count = 0, bytes = 0;
    for (struct entry *e = d->head; e && (!max || count < max); e = e->next) {
        if (!expired(e, now)) {
            count++;
            bytes += e->klen;
        }
    }
    struct shdict_key *keys = xmalloc(count * sizeof *keys + bytes);
    char *p = (char *)(keys + count);
    size_t i = 0;
    for (struct entry *e = d->head; e && i < count; e = e->next) {
        if (expired(e, now))
            continue;
        if (e->klen)
            memcpy(p, e->data, e->klen);
        keys[i++] = (struct shdict_key){ p, e->klen };
        p += e->klen;
    }
    pthread_mutex_unlock(&d->mu);
    *n = count;
    return keys;
}

void shdict_flush_all(struct shdict *d)
{
    struct after a = { 0 };
    pthread_mutex_lock(&d->mu);
    while (d->tail)
        unlink_at(d, link_of(d, d->tail), &a);
    finish(d, &a);
}

size_t shdict_flush_expired(struct shdict *d, int64_t now, size_t max)
{
    struct after a = { 0 };
    size_t n = 0;
    pthread_mutex_lock(&d->mu);
    for (struct entry *e = d->tail, *prev; e && (!max || n < max); e = prev) {
        prev = e->prev;
        if (expired(e, now)) {
            unlink_at(d, link_of(d, e), &a);
            n++;
        }
    }
    finish(d, &a);
    return n;
}

/* ---- the registry ---- */

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct shdict *reg[LIM_DICTS];
static size_t nreg;

static bool good_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > LIM_DICT_NAME_MAX)
        return false;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == ':' || c == '-'))
            return false;
    }
    return true;
}

/* Gives d a new capacity, evicting least recently used entries if it shrinks. */
static void resize(struct shdict *d, size_t capacity)
{
    struct after a = { 0 };
    pthread_mutex_lock(&d->mu);
    d->capacity = capacity;
    while (d->used > d->capacity)
        unlink_at(d, link_of(d, d->tail), &a);
    finish(d, &a);
}

enum shdict_open_rc shdict_open(const char *name, size_t capacity, struct shdict **out)
{
    *out = NULL;
    if (!good_name(name))
        return SHDICT_BAD_NAME;
    enum shdict_open_rc rc = SHDICT_OPENED;
    pthread_mutex_lock(&reg_mu);
    struct shdict *d = NULL;
    for (size_t i = 0; i < nreg && !d; i++) {
        if (strcmp(reg[i]->name, name) == 0)
            d = reg[i];
    }
    if (!d) {
        if (nreg == LIM_DICTS) {
            rc = SHDICT_TOO_MANY;
        } else {
            d = shdict_new(name, capacity ? capacity : LIM_DICT_DEFAULT);
            d->sized = capacity != 0;
            reg[nreg++] = d;
            rc = SHDICT_CREATED;
        }
    } else if (capacity && !d->sized) {
        d->sized = true;
        resize(d, capacity);
        rc = SHDICT_SIZED;
    } else if (capacity && capacity != shdict_capacity(d) && capacity != d->conflict_capacity) {
        d->conflict_capacity = capacity;
        rc = SHDICT_CONFLICT;
    }
    pthread_mutex_unlock(&reg_mu);
    *out = d;
    return rc;
}

void shdict_close_all(void)
{
    pthread_mutex_lock(&reg_mu);
    while (nreg)
        shdict_free(reg[--nreg]);
    pthread_mutex_unlock(&reg_mu);
}

bool shdict_parse_size(const char *s, size_t *out)
{
    size_t v = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (SIZE_MAX - 9) / 10)
            return false;
        v = v * 10 + (size_t)(*p - '0');
    }
    if (p == s)
        return false;
    unsigned shift = 0;
    switch (*p) {
    case 'k': case 'K': shift = 10; p++; break;
    case 'm': case 'M': shift = 20; p++; break;
    case 'g': case 'G': shift = 30; p++; break;
    default: break;
    }
    if (*p || v == 0 || v > (SIZE_MAX >> shift))
        return false;
    *out = v << shift;
    return true;
}
