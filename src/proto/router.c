#include "router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/buf.h"
#include "svc.h"

void svc_conf_free(struct svc_conf *c)
{
    for (size_t i = 0; i < c->nprotocols; i++)
        free(c->protocols[i]);
    free(c->protocols);
    for (size_t i = 0; i < c->norigins; i++)
        free(c->origins[i]);
    free(c->origins);
    c->protocols = c->origins = NULL;
    c->nprotocols = c->norigins = 0;
}

static bool str_is(const char *s, const char *p, size_t len)
{
    return strlen(s) == len && memcmp(s, p, len) == 0;
}

static bool name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (!first && c >= '0' && c <= '9');
}

const char *router_check_pattern(const char *pattern)
{
    if (pattern[0] != '/')
        return "a path must start with /";
    size_t n = 0;
    const char *names[LIM_PATH_PARAMS];
    size_t lens[LIM_PATH_PARAMS];
    for (const char *seg = pattern + 1; seg; ) {
        const char *end = strchr(seg, '/');
        size_t sl = end ? (size_t)(end - seg) : strlen(seg);
        if (sl && seg[0] == ':') {
            if (sl == 1 || !name_char(seg[1], true))
                return "a parameter (:name) needs a name: a letter or _, then letters, digits, _";
            for (size_t i = 2; i < sl; i++) {
                if (!name_char(seg[i], false))
                    return "a parameter (:name) needs a name: a letter or _, then letters, digits, _";
            }
            if (n == LIM_PATH_PARAMS)
                return "too many parameters (at most 8)";
            for (size_t k = 0; k < n; k++) {
                if (lens[k] == sl - 1 && memcmp(names[k], seg + 1, sl - 1) == 0)
                    return "a parameter name appears twice";
            }
            names[n] = seg + 1;
            lens[n++] = sl - 1;
        }
        seg = end ? end + 1 : NULL;
    }
    return NULL;
}

bool router_match(const char *pattern, const char *path, size_t len, struct path_params *params)
{
    const char *p = pattern, *s = path, *send = path + len;
    if (params)
        params->n = 0;
    /* Fast path: no parameters at all. */
    if (!strchr(pattern, ':'))
        return str_is(pattern, path, len);
    while (*p && s < send) {
        if (p[0] == '/' && p[1] == ':' && *s == '/') {
            const char *name = p + 2, *ne = name;
            while (*ne && *ne != '/')
                ne++;
            const char *v = s + 1, *ve = v;
            while (ve < send && *ve != '/')
                ve++;
            if (ve == v)
                return false;           /* a parameter is never empty */
            if (params && params->n < LIM_PATH_PARAMS) {
                params->p[params->n].name = name;
                params->p[params->n].name_len = (size_t)(ne - name);
                params->p[params->n].value = v;
                params->p[params->n].value_len = (size_t)(ve - v);
                params->n++;
            }
            p = ne;
            s = ve;
            continue;
        }
        if (*p != *s)
            return false;
        p++;
        s++;
    }
    return !*p && s == send;
}

/* Compares the shapes of two patterns, segment by segment: < 0 when a is
 * more specific (a fixed segment where b has a parameter, first), > 0 when
 * b is, 0 when they are the same path. Fixed segments are compared by
 * their text only for sameness. */
static int shape_cmp(const char *a, const char *b, bool *same)
{
    *same = true;
    int order = 0;
    while (*a || *b) {
        if (*a != '/' || *b != '/') {
            *same = false;
            return order;
        }
        a++;
        b++;
        bool pa = *a == ':', pb = *b == ':';
        size_t la = strcspn(a, "/"), lb = strcspn(b, "/");
        if (pa != pb) {
            *same = false;
            if (!order)
                order = pa ? 1 : -1;
        } else if (!pa && (la != lb || memcmp(a, b, la) != 0)) {
            *same = false;
        }
        a += la;
        b += lb;
    }
    return order;
}

bool router_same_path(const char *a, const char *b)
{
    bool same;
    if (!a || !b)
        return false;
    shape_cmp(a, b, &same);
    return same;
}

/* True when candidate should replace best (it is more specific). */
static bool better(const char *candidate, const char *best)
{
    bool same;
    return !best || shape_cmp(candidate, best, &same) < 0;
}

struct svc *router_find_mounted(const struct router *r, const char *path)
{
    for (size_t i = 0; i < r->n; i++) {
        if (router_same_path(r->svcs[i]->path, path))
            return r->svcs[i];
    }
    return NULL;
}

struct svc *router_mount(struct router *r, struct svc *s)
{
    struct svc *other = router_find_mounted(r, s->path);
    if (other)
        return other;
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 8;
        r->svcs = xrealloc(r->svcs, r->cap * sizeof *r->svcs);
    }
    r->svcs[r->n++] = s;
    return NULL;
}

void router_unmount(struct router *r, struct svc *s)
{
    for (size_t i = 0; i < r->n; i++) {
        if (r->svcs[i] == s) {
            memmove(&r->svcs[i], &r->svcs[i + 1], (r->n - i - 1) * sizeof *r->svcs);
            r->n--;
            return;
        }
    }
}

struct svc *router_find(const struct router *r, const char *path, size_t len,
                        struct path_params *params)
{
    struct svc *best = NULL;
    for (size_t i = 0; i < r->n; i++) {
        struct svc *s = r->svcs[i];
        if (better(s->path, best ? best->path : NULL) && router_match(s->path, path, len, NULL))
            best = s;
    }
    if (best && params)
        router_match(best->path, path, len, params);
    else if (params)
        params->n = 0;
    return best;
}

int router_find_route(const struct router *r, const char *method, size_t mlen,
                      const char *path, size_t plen, struct svc **svc, size_t *route,
                      struct path_params *params, char *allow, size_t allowcap)
{
    /* Allow lists the methods in this order, whatever the routes' order. */
    static const char *const order[] = { "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE",
                                         "OPTIONS" };
    bool head = mlen == 4 && memcmp(method, "HEAD", 4) == 0;
    bool any = false;
    unsigned allowed = 0;
    const char *best = NULL;
    for (size_t i = 0; i < r->n; i++) {
        struct svc *s = r->svcs[i];
        for (size_t k = 0; k < s->nroutes; k++) {
            struct svc_route *rt = &s->routes[k];
            if (!router_match(rt->path, path, plen, NULL))
                continue;
            any = true;
            /* HEAD is answered by a GET route, without the body. */
            if (str_is(rt->method, method, mlen) || (head && strcmp(rt->method, "GET") == 0)) {
                if (better(rt->path, best)) {
                    best = rt->path;
                    *svc = s;
                    *route = k;
                }
                continue;
            }
            for (unsigned m = 0; m < sizeof order / sizeof *order; m++)
                allowed |= strcmp(order[m], rt->method) == 0 ? 1u << m : 0;
        }
    }
    size_t al = 0;
    allow[0] = '\0';
    for (unsigned m = 0; m < sizeof order / sizeof *order; m++) {
        if (!(allowed & (1u << m)))
            continue;
        int w = snprintf(allow + al, allowcap - al, "%s%s", al ? ", " : "", order[m]);
        if (w > 0 && (size_t)w < allowcap - al)
            al += (size_t)w;
    }
    if (best) {
        if (params)
            router_match(best, path, plen, params);
        return ROUTE_FOUND;
    }
    return any ? ROUTE_WRONG_METHOD : ROUTE_NONE;
}

void router_free(struct router *r)
{
    free(r->svcs);
    *r = (struct router){ 0 };
}
