#include "pubsub.h"

#include <stdlib.h>
#include <string.h>

#include "../util/buf.h"
#include "ws_bcast.h"
#include "ws_conn.h"

struct member {
    struct ws_conn *wc;
    uint32_t sub;               /* its index in ws_subs(wc) */
};

struct topic {
    struct pubsub *ps;
    struct member *m;
    uint32_t n, cap;
    size_t len;
    char name[];
};

struct sub {
    struct topic *t;
    uint32_t idx;               /* its index in t->m */
};

struct ws_subs {
    uint32_t n, cap;
    struct sub s[];
};

static struct topic *topic_get(struct pubsub *ps, const char *name, size_t len, bool create)
{
    struct topic *t = strmap_get(&ps->topics, name, len);
    if (t || !create)
        return t;
    t = xcalloc(1, sizeof *t + len + 1);
    t->ps = ps;
    t->len = len;
    memcpy(t->name, name, len);
    strmap_put(&ps->topics, name, len, t);
    if (ps->watch)
        ps->watch(ps->watch_ud, name, len, true);
    return t;
}

static int find_sub(const struct ws_conn *wc, const struct topic *t)
{
    const struct ws_subs *ss = ws_subs(wc);
    if (!ss)
        return -1;
    for (uint32_t i = 0; i < ss->n; i++) {
        if (ss->s[i].t == t)
            return (int)i;
    }
    return -1;
}

bool pubsub_join(struct pubsub *ps, struct ws_conn *wc, const char *name, size_t len)
{
    struct topic *t = topic_get(ps, name, len, true);
    if (find_sub(wc, t) >= 0)
        return false;
    struct ws_subs *ss = ws_subs(wc);
    if (!ss || ss->n == ss->cap) {
        uint32_t cap = ss ? ss->cap * 2 : 2;
        bool first = !ss;
        ss = xrealloc(ss, sizeof *ss + cap * sizeof ss->s[0]);
        if (first)
            ss->n = 0;
        ss->cap = cap;
        ws_extra(wc)->subs = ss;
    }
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 4;
        t->m = xrealloc(t->m, t->cap * sizeof *t->m);
    }
    t->m[t->n] = (struct member){ wc, ss->n };
    ss->s[ss->n] = (struct sub){ t, t->n };
    t->n++;
    ss->n++;
    return true;
}

/* Removes membership number i of wc, swapping the last entries into the
 * holes on both sides and fixing their back-indexes. */
static void drop(struct ws_conn *wc, uint32_t i)
{
    struct ws_subs *ss = ws_subs(wc);
    struct topic *t = ss->s[i].t;
    uint32_t idx = ss->s[i].idx;

    t->m[idx] = t->m[--t->n];
    if (idx < t->n)
        ws_subs(t->m[idx].wc)->s[t->m[idx].sub].idx = idx;

    ss->s[i] = ss->s[--ss->n];
    if (i < ss->n)
        ss->s[i].t->m[ss->s[i].idx].sub = i;

    if (t->n == 0) {
        struct pubsub *ps = t->ps;
        if (ps->watch)
            ps->watch(ps->watch_ud, t->name, t->len, false);
        strmap_del(&ps->topics, t->name, t->len);
        free(t->m);
        free(t);
    }
    if (ss->n == 0) {
        free(ss);
        ws_extra(wc)->subs = NULL;  /* the side struct stays until the connection goes */
    }
}

bool pubsub_leave(struct pubsub *ps, struct ws_conn *wc, const char *name, size_t len)
{
    struct topic *t = topic_get(ps, name, len, false);
    int i = t ? find_sub(wc, t) : -1;
    if (i < 0)
        return false;
    drop(wc, (uint32_t)i);
    return true;
}

void pubsub_leave_all(struct ws_conn *wc)
{
    struct ws_subs *ss;
    while ((ss = ws_subs(wc)))
        drop(wc, ss->n - 1);
}

size_t pubsub_publish(struct pubsub *ps, const char *name, size_t tlen, uint8_t opcode,
                      const char *data, size_t len)
{
    struct topic *t = topic_get(ps, name, tlen, false);
    if (!t)
        return 0;
    /* A send may close a receiver (backpressure), whose onClose may change
     * memberships: walk a copy. Receivers are freed only after the loop
     * iteration, so the pointers stay valid. */
    uint32_t n = t->n;
    struct ws_conn **to = xmalloc(n * sizeof *to);
    for (uint32_t i = 0; i < n; i++)
        to[i] = t->m[i].wc;
    struct ws_bcast b;
    ws_bcast_init(&b, opcode, data, len);
    size_t sent = 0;
    for (uint32_t i = 0; i < n; i++)
        sent += ws_bcast_send(&b, to[i]);
    ws_bcast_done(&b);
    free(to);
    return sent;
}

size_t pubsub_count(const struct pubsub *ps, const char *name, size_t len)
{
    struct topic *t = strmap_get(&ps->topics, name, len);
    return t ? t->n : 0;
}

static void free_topic(const char *key, size_t len, void *val, void *ud)
{
    (void)ud;
    struct topic *t = val;
    if (t->ps->watch)
        t->ps->watch(t->ps->watch_ud, key, len, false);
    free(t->m);
    free(t);
}

void pubsub_free(struct pubsub *ps)
{
    strmap_each(&ps->topics, free_topic, NULL);
    strmap_free(&ps->topics);
}
