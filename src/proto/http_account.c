#include "http_account.h"

#include <string.h>

#include "../transport/conn.h"
#include "../transport/worker.h"
#include "../util/log.h"
#include "../util/metrics.h"
#include "../util/traffic_log.h"

void http_account(struct conn *c, const struct http_request *req, int route, int status,
                  uint64_t bytes, ev_tstamp start)
{
    struct worker *w = c->w;
    if (w->metrics)
        metrics_http_request(w->metrics, route >= 0 ? route : METRICS_ROUTE_NONE, status);
    if (!traffic_log_wanted(w->traffic))
        return;
    char remote[80];
    conn_remote(c, remote, sizeof remote);
    struct traffic t = { .event = TRAFFIC_HTTP, .worker = log_worker_shown(), .conn = c->id,
                         .remote = remote, .secure = conn_is_secure(c), .status = status,
                         .bytes = bytes };
    if (req) {
        /* The path as sent, without the query: a query may carry a token. */
        const char *q = memchr(req->target, '?', req->target_len);
        t.method = req->method;
        t.method_len = req->method_len;
        t.path = req->target;
        t.path_len = q ? (size_t)(q - req->target) : req->target_len;
    }
    double us = start > 0 ? (worker_now(w) - start) * 1e6 : 0;
    t.us = us > 0 ? (uint64_t)us : 0;
    traffic_log_write(w->traffic, &t);
}
