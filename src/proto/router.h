/*
 * router: which service answers a path — WebSocket upgrades by the
 * service's own path, HTTP requests by method and full route path.
 */
#ifndef MOONWS_ROUTER_H
#define MOONWS_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

struct svc;

struct router {
    struct svc **svcs;
    size_t n, cap;
};

/* Adds s at its path and returns NULL; or, when another service has that
 * path, adds nothing and returns that service (for the caller to name). */
struct svc *router_mount(struct router *r, struct svc *s);
void router_unmount(struct router *r, struct svc *s);
struct svc *router_find(const struct router *r, const char *path, size_t len);

#define ROUTE_FOUND 1
#define ROUTE_WRONG_METHOD 0    /* the path exists with other methods */
#define ROUTE_NONE (-1)

/* Finds the HTTP route for method and path. On ROUTE_WRONG_METHOD, allow
 * gets the methods the path does accept ("GET, POST"). */
int router_find_route(const struct router *r, const char *method, size_t mlen,
                      const char *path, size_t plen, struct svc **svc, size_t *route,
                      char *allow, size_t allowcap);
void router_free(struct router *r);

#endif
