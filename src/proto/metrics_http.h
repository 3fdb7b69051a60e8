/*
 * metrics_http: the separate plain HTTP listener of --metrics [HOST:]PORT.
 *
 * It answers GET and HEAD of two paths and nothing else:
 *   /metrics  200, the registry (src/util/metrics.h) and the process
 *             figures in the Prometheus text format 0.0.4
 *             (Content-Type: text/plain; version=0.0.4; charset=utf-8);
 *   /healthz  200 "ok" while the server serves, 503 "draining" once
 *             metrics_http_drain was called (the server is stopping).
 * Any other path is 404, another method on those two 405 (Allow: GET,
 * HEAD); a malformed request 400, a head over LIM_HTTP_HEAD_MAX 431, a
 * request with a body 400 — those three end the connection.
 *
 * It lives in proto because it parses requests with the project's own
 * parser (http_parse.h); it rides on the transport like every other
 * connection (conn.h, with a struct worker of its own on the loop it is
 * given — the master's, not a worker's: a scrape never waits behind a
 * handler) and knows nothing of services or Lua.
 *
 * It never blocks the loop and its memory is bounded: at most
 * LIM_METRICS_CONNS connections (more are closed at once, logged), one
 * request at a time per connection (the next pipelined one is read once
 * the answer has left), a request head of at most LIM_HTTP_HEAD_MAX, and
 * LIM_METRICS_TIMEOUT seconds for a request to arrive, for an idle
 * keep-alive connection, and for an answer the client does not read on.
 * Keep-alive as in HTTP/1.1 (HTTP/1.0: with Connection: keep-alive);
 * Connection: close is honoured.
 */
#ifndef MOONWS_METRICS_HTTP_H
#define MOONWS_METRICS_HTTP_H

#include <ev.h>
#include <stddef.h>

struct metrics;
struct metrics_http;

struct metrics_http_options {
    double timeout;             /* seconds; LIM_METRICS_TIMEOUT */
    unsigned max_conns;         /* LIM_METRICS_CONNS */
};

/* Binds and listens on host:port (as listener_parse gives them; port 0:
 * a free one) on loop, answering from m. opts NULL: the limits.h values.
 * Returns NULL with a message in err when the address cannot be used.
 * Nothing is accepted before metrics_http_start. */
struct metrics_http *metrics_http_open(struct ev_loop *loop, const char *host, unsigned port,
                                       struct metrics *m, const struct metrics_http_options *opts,
                                       char *err, size_t errcap);
/* "http://HOST:PORT/metrics" with the bound port ([HOST] for IPv6): the
 * caller prints "moonws: metrics on URL" on stdout beside the
 * "listening on" lines, before metrics_http_start. */
void metrics_http_url(const struct metrics_http *mh, char *out, size_t cap);
unsigned metrics_http_port(const struct metrics_http *mh);
void metrics_http_start(struct metrics_http *mh);
/* The server is stopping: /healthz answers 503 from now on (/metrics
 * still answers). */
void metrics_http_drain(struct metrics_http *mh);
/* Stops listening, closes every connection, frees everything. On the
 * loop's thread, outside the loop's callbacks of these connections. */
void metrics_http_free(struct metrics_http *mh);

#endif
