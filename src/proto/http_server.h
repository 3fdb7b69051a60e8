/*
 * http_server: the HTTP/1.1 side of a connection — reading requests (heads
 * capped, Content-Length and chunked bodies, keep-alive, pipelining),
 * choosing what answers them (a WebSocket upgrade, a service's endpoint, a
 * static file) and writing responses. Every limit that concerns HTTP
 * (docs/reference.md, "Limits under attack") ends here with its status.
 *
 * Pipelined requests are answered in order, but not without bound: while
 * the answers queued for a connection pass the backpressure cap of the
 * service that made the last one (LIM_HTTP_BACKPRESSURE for others), its
 * next requests are neither read nor parsed until the queue drains; and
 * LIM_HTTP_PIPELINE_BATCH of them are answered per loop iteration before
 * other connections get their turn. Request bodies are charged to the
 * worker's memory budget (503 when it is full).
 */
#ifndef MOONWS_HTTP_SERVER_H
#define MOONWS_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "http_parse.h"
#include "router.h"

struct conn;
struct worker;
struct pmd_pool;

/* One worker's HTTP server: its connections share it, on its thread. */
struct http_server {
    struct router *router;
    struct pmd_pool *pmd;       /* the worker's compression pool, for upgrades */
    char *static_root;          /* realpath of --static, or NULL */
    bool stopping;              /* answer with Connection: close from now on */
    double keepalive;           /* --keepalive-timeout, seconds (main sets it) */
    /* --handshake-timeout, --max-header-size, --max-body-size (the
     * runtime sets the limits.h defaults, main what the flags say). */
    double handshake_timeout;
    size_t max_head, max_body;
    /* Where the head being answered is parsed: big, and never kept across
     * calls (the owner's, kept apart from what every message touches). */
    struct http_request *scratch;
};

/* Starts speaking HTTP on a newly accepted connection. */
void http_conn_start(struct conn *c, struct http_server *srv);

/* The server is stopping: idle HTTP connections of w close now, busy ones
 * after their current response. */
void http_server_shutdown(struct http_server *srv, struct worker *w);

#endif
