/*
 * router: which service answers a path — WebSocket upgrades by the
 * service's own path, HTTP requests by method and full route path.
 *
 * Paths are patterns: a segment written ":name" matches any one non-empty
 * segment of the (percent-decoded) request path and hands it over as the
 * parameter `name`. When several patterns match, the most specific wins:
 * reading both segment by segment, the first place where one has a fixed
 * segment and the other a parameter decides for the fixed one. Two
 * patterns that differ only in their parameters' names are the same path
 * (a conflict, like two equal paths): so no two mounted patterns can match
 * a path equally well.
 */
#ifndef MOONWS_ROUTER_H
#define MOONWS_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "../util/limits.h"

struct svc;

struct router {
    struct svc **svcs;
    size_t n, cap;
};

/* The parameters a match found: views into the pattern (names) and into
 * the path (values), valid while both are. */
struct path_params {
    size_t n;
    struct {
        const char *name, *value;
        size_t name_len, value_len;
    } p[LIM_PATH_PARAMS];
};

/* NULL when pattern is a valid path pattern, else why not. */
const char *router_check_pattern(const char *pattern);
/* True when path matches pattern; params (may be NULL) gets the values. */
bool router_match(const char *pattern, const char *path, size_t len, struct path_params *params);
/* True when a and b are the same path: equal but for parameter names. */
bool router_same_path(const char *a, const char *b);

/* Adds s at its path and returns NULL; or, when another service has that
 * path (router_same_path), adds nothing and returns that service (for the
 * caller to name). */
struct svc *router_mount(struct router *r, struct svc *s);
void router_unmount(struct router *r, struct svc *s);
/* The service whose path matches best, with its parameters (params may be
 * NULL), or NULL. */
struct svc *router_find(const struct router *r, const char *path, size_t len,
                        struct path_params *params);
/* The service mounted at exactly this path (router_same_path), or NULL. */
struct svc *router_find_mounted(const struct router *r, const char *path);

#define ROUTE_FOUND 1
#define ROUTE_WRONG_METHOD 0    /* the path exists with other methods */
#define ROUTE_NONE (-1)

/* Finds the HTTP route for method and path: the best match among the
 * routes of that method (GET for HEAD). On ROUTE_WRONG_METHOD, allow gets
 * the methods that some route matching the path accepts ("GET, POST"). */
int router_find_route(const struct router *r, const char *method, size_t mlen,
                      const char *path, size_t plen, struct svc **svc, size_t *route,
                      struct path_params *params, char *allow, size_t allowcap);
void router_free(struct router *r);

#endif
