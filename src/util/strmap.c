#include "strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

struct strmap_entry {
    struct strmap_entry *next;
    uint64_t hash;
    void *val;
    size_t len;
    char key[];
};

/* FNV-1a: short keys, no adversary worth a keyed hash here. */
static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static struct strmap_entry **find(const struct strmap *m, const char *key, size_t len,
                                  uint64_t h)
{
    struct strmap_entry **pe = &m->slots[h & (m->nslots - 1)];
    for (; *pe; pe = &(*pe)->next) {
        if ((*pe)->hash == h && (*pe)->len == len && memcmp((*pe)->key, key, len) == 0)
            break;
    }
    return pe;
}

void *strmap_get(const struct strmap *m, const char *key, size_t len)
{
    if (!m->nslots)
        return NULL;
    struct strmap_entry *e = *find(m, key, len, hash_bytes(key, len));
    return e ? e->val : NULL;
}

static void grow(struct strmap *m)
{
    size_t n = m->nslots ? m->nslots * 2 : 16;
    struct strmap_entry **slots = xcalloc(n, sizeof *slots);
    for (size_t i = 0; i < m->nslots; i++) {
        struct strmap_entry *e = m->slots[i], *next;
        for (; e; e = next) {
            next = e->next;
            struct strmap_entry **s = &slots[e->hash & (n - 1)];
            e->next = *s;
            *s = e;
        }
    }
    free(m->slots);
    m->slots = slots;
    m->nslots = n;
}

void strmap_put(struct strmap *m, const char *key, size_t len, void *val)
{
    if (m->count >= m->nslots)
        grow(m);
    uint64_t h = hash_bytes(key, len);
    struct strmap_entry **pe = find(m, key, len, h);
    if (*pe) {
        (*pe)->val = val;
        return;
    }
    struct strmap_entry *e = xmalloc(sizeof *e + len + 1);
    e->next = NULL;
    e->hash = h;
    e->val = val;
    e->len = len;
    memcpy(e->key, key, len);
    e->key[len] = '\0';
    *pe = e;
    m->count++;
}

void *strmap_del(struct strmap *m, const char *key, size_t len)
{
    if (!m->nslots)
        return NULL;
    struct strmap_entry **pe = find(m, key, len, hash_bytes(key, len));
    struct strmap_entry *e = *pe;
    if (!e)
        return NULL;
    void *val = e->val;
    *pe = e->next;
    free(e);
    m->count--;
    return val;
}

void strmap_each(const struct strmap *m, void (*fn)(const char *, size_t, void *, void *),
                 void *ud)
{
    for (size_t i = 0; i < m->nslots; i++) {
        for (struct strmap_entry *e = m->slots[i]; e; e = e->next)
            fn(e->key, e->len, e->val, ud);
    }
}

void strmap_free(struct strmap *m)
{
    for (size_t i = 0; i < m->nslots; i++) {
        struct strmap_entry *e = m->slots[i], *next;
        for (; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(m->slots);
    *m = (struct strmap){ 0 };
}
