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

struct svc *router_mount(struct router *r, struct svc *s)
{
    struct svc *other = router_find(r, s->path, strlen(s->path));
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

struct svc *router_find(const struct router *r, const char *path, size_t len)
{
    for (size_t i = 0; i < r->n; i++) {
        if (str_is(r->svcs[i]->path, path, len))
            return r->svcs[i];
    }
    return NULL;
}

int router_find_route(const struct router *r, const char *method, size_t mlen,
                      const char *path, size_t plen, struct svc **svc, size_t *route,
                      char *allow, size_t allowcap)
{
    int result = ROUTE_NONE;
    size_t al = 0;
    bool head = mlen == 4 && memcmp(method, "HEAD", 4) == 0;
    allow[0] = '\0';
    for (size_t i = 0; i < r->n; i++) {
        struct svc *s = r->svcs[i];
        for (size_t k = 0; k < s->nroutes; k++) {
            struct svc_route *rt = &s->routes[k];
            if (!str_is(rt->path, path, plen))
                continue;
            /* HEAD is answered by a GET route, without the body. */
            if (str_is(rt->method, method, mlen) || (head && strcmp(rt->method, "GET") == 0)) {
                *svc = s;
                *route = k;
                return ROUTE_FOUND;
            }
            result = ROUTE_WRONG_METHOD;
            int w = snprintf(allow + al, allowcap - al, "%s%s", al ? ", " : "", rt->method);
            if (w > 0 && (size_t)w < allowcap - al)
                al += (size_t)w;
        }
    }
    return result;
}

void router_free(struct router *r)
{
    free(r->svcs);
    *r = (struct router){ 0 };
}
