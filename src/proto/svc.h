/*
 * svc: a mounted service as the protocol layer sees it — its path, its
 * options in C terms, its HTTP routes, its open WebSocket connections, and
 * the operations the layer above (the Lua runtime) implements for it.
 *
 * The runtime owns a svc and holds one reference while it is mounted; each
 * open connection holds another, so a service removed by a reload lives on
 * until its last connection is gone. Options may be replaced in place by a
 * reload; connections read them at the moment they need them.
 */
#ifndef MOONWS_SVC_H
#define MOONWS_SVC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../util/buf.h"
#include "http_parse.h"
#include "pmd.h"
#include "router.h"

struct conn;
struct ws_conn;
struct svc;

struct svc_conf {
    char **protocols;           /* sub-protocols supported, in preference order */
    size_t nprotocols;
    char **origins;             /* allowed Origin values; see any_origin */
    size_t norigins;
    bool any_origin;            /* no `origins` list: every Origin is allowed */
    double idle_timeout;        /* seconds; 0 = never */
    double close_timeout;       /* seconds to wait for the peer's close frame */
    size_t max_message;
    size_t max_backpressure;
    struct pmd_conf pmd;
    bool auto_pong;             /* no onPing handler: pong automatically */
};

struct svc_route {
    char *method;
    char *path;                 /* the full path: service path + route path (a pattern) */
    int metrics_route;          /* its series of moonws_http_requests_total; -1: none held */
};

/* A complete HTTP request as handlers see it; valid during the call. */
struct http_exchange {
    struct conn *conn;
    const struct http_request *req;
    const char *path;           /* percent-decoded, without the query */
    size_t path_len;
    const char *query;          /* raw, after '?'; NULL when absent */
    size_t query_len;
    const char *body;
    size_t body_len;
    /* The path parameters of the service's (upgrade) or the route's (HTTP)
     * pattern; never NULL. */
    const struct path_params *params;
    double start;               /* loop time of the request's first byte */
};

/* What a handler answers. headers holds raw "Name: value\r\n" lines. */
struct http_reply {
    int status;
    struct buf headers;
    struct buf body;
};

struct svc_ops {
    /* The gate (auth, onUpgrade). Returns true to accept: then
     * reply->headers may hold header lines for the 101, and *app_ref a
     * handle the runtime attaches to the connection (caller.data,
     * caller.auth). On refusal fills reply (status, headers, body). */
    bool (*upgrade)(struct svc *s, const struct http_exchange *ex, struct http_reply *reply,
                    int *app_ref);
    void (*open)(struct svc *s, struct ws_conn *wc);
    void (*message)(struct svc *s, struct ws_conn *wc, uint8_t opcode, char *data, size_t len);
    void (*ping)(struct svc *s, struct ws_conn *wc, const char *data, size_t len);
    void (*pong)(struct svc *s, struct ws_conn *wc, const char *data, size_t len);
    /* Idle timeout; returns false when the service has no handler for it. */
    bool (*idle)(struct svc *s, struct ws_conn *wc);
    /* Runs once per connection when it ends (see ws_conn.h for the code). */
    void (*close)(struct svc *s, struct ws_conn *wc, unsigned code, const char *reason,
                  size_t len);
    /* An HTTP endpoint, by index into routes. */
    void (*http)(struct svc *s, size_t route, const struct http_exchange *ex,
                 struct http_reply *reply);
    /* The last reference is gone: free everything. */
    void (*release)(struct svc *s);
};

struct svc {
    char *path;                 /* a pattern (router.h) */
    struct svc_conf conf;
    struct svc_route *routes;
    size_t nroutes;
    const struct svc_ops *ops;
    void *rt;                   /* the runtime's own state */
    struct ws_conn *conns;      /* open connections (list through ws_conn) */
    size_t nconns;
    unsigned refs;
    /* Its series (util/metrics.h), held by the runtime while it is mounted
     * (-1: none held): the path's, and the route "websocket PATH" of its
     * upgrades; cells: the path's counters in this worker's block, which a
     * new connection takes for its whole life. */
    int metrics_path, metrics_upgrade;
    struct metrics_path_cells *metrics;
};

static inline void svc_ref(struct svc *s)
{
    s->refs++;
}

static inline void svc_unref(struct svc *s)
{
    if (--s->refs == 0)
        s->ops->release(s);
}

/* Frees what svc_conf holds (the lists). */
void svc_conf_free(struct svc_conf *c);

#endif
