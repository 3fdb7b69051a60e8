#include "cluster_counts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/buf.h"

struct count_row {
    size_t off, len;            /* the path, in names.bytes */
    uint64_t n;
};

struct cluster_count_table {
    struct cluster_names names;
    struct count_row *rows;
    size_t nrows, cap;
    bool sorted;
};

void cluster_counts_add(struct cluster_counts *c, const char *path, size_t len, uint64_t n)
{
    char num[24];
    int k = snprintf(num, sizeof num, "%llu", (unsigned long long)n);
    cluster_names_add(&c->args, path, len);
    cluster_names_add(&c->args, num, (size_t)k);
}

struct cluster_count_table *cluster_count_table_new(void)
{
    return xcalloc(1, sizeof(struct cluster_count_table));
}

void cluster_count_table_add(struct cluster_count_table *t, const char *path, size_t len,
                             uint64_t n)
{
    if (t->nrows == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->rows = xrealloc(t->rows, t->cap * sizeof *t->rows);
    }
    t->rows[t->nrows++] = (struct count_row){ t->names.bytes.len, len, n };
    cluster_names_add(&t->names, path, len);
    t->sorted = false;
}

void cluster_count_table_free(struct cluster_count_table *t)
{
    if (!t)
        return;
    cluster_names_free(&t->names);
    free(t->rows);
    free(t);
}

static int cmp_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* qsort has no context argument: the rows are sorted by a copy of their
 * bytes' base in a wrapper. */
struct sort_row {
    const char *p;
    struct count_row r;
};

static int cmp_rows(const void *a, const void *b)
{
    const struct sort_row *x = a, *y = b;
    return cmp_bytes(x->p, x->r.len, y->p, y->r.len);
}

/* Sorts the rows by path and sums the rows of one path into one. */
static void settle(struct cluster_count_table *t)
{
    if (t->sorted)
        return;
    struct sort_row *s = xmalloc((t->nrows ? t->nrows : 1) * sizeof *s);
    for (size_t i = 0; i < t->nrows; i++)
        s[i] = (struct sort_row){ t->names.bytes.data + t->rows[i].off, t->rows[i] };
    qsort(s, t->nrows, sizeof *s, cmp_rows);
    size_t k = 0;
    for (size_t i = 0; i < t->nrows; i++) {
        if (k && cmp_bytes(s[k - 1].p, s[k - 1].r.len, s[i].p, s[i].r.len) == 0)
            s[k - 1].r.n += s[i].r.n;
        else
            s[k++] = s[i];
    }
    for (size_t i = 0; i < k; i++)
        t->rows[i] = s[i].r;
    t->nrows = k;
    free(s);
    t->sorted = true;
}

void cluster_count_cache_init(struct cluster_count_cache *c)
{
    pthread_mutex_init(&c->mu, NULL);
    c->table = NULL;
    c->read_ms = 0;
}

void cluster_count_cache_free(struct cluster_count_cache *c)
{
    cluster_count_table_free(c->table);
    c->table = NULL;
    pthread_mutex_destroy(&c->mu);
}

void cluster_count_cache_swap(struct cluster_count_cache *c, struct cluster_count_table *t,
                              int64_t now_ms)
{
    settle(t);                  /* outside the lock: readers only search */
    pthread_mutex_lock(&c->mu);
    struct cluster_count_table *old = c->table;
    c->table = t;
    c->read_ms = now_ms;
    pthread_mutex_unlock(&c->mu);
    cluster_count_table_free(old);
}

bool cluster_count_cache_get(struct cluster_count_cache *c, const char *path, size_t len,
                             int64_t now_ms, int64_t max_age_ms, uint64_t *n)
{
    bool ok = false;
    pthread_mutex_lock(&c->mu);
    const struct cluster_count_table *t = c->table;
    if (t && now_ms - c->read_ms <= max_age_ms) {
        ok = true;
        *n = 0;
        size_t lo = 0, hi = t->nrows;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            const struct count_row *r = &t->rows[mid];
            int cmp = cmp_bytes(t->names.bytes.data + r->off, r->len, path, len);
            if (cmp == 0) {
                *n = r->n;
                break;
            }
            if (cmp < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return ok;
}
