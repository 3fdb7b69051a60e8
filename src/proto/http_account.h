/*
 * http_account: what one answered HTTP request leaves behind — its count in
 * moonws_http_requests_total{route,status} (the worker's own metrics block)
 * and its traffic line (method, path, status, body bytes, microseconds),
 * when one is wanted. Called once per answer, by whoever wrote it: the HTTP
 * server, and the upgrade (101, or its refusal).
 */
#ifndef MOONWS_HTTP_ACCOUNT_H
#define MOONWS_HTTP_ACCOUNT_H

#include <ev.h>
#include <stdint.h>

#include "http_parse.h"

struct conn;

/* req may be NULL (a request that could not be parsed: no method or path
 * on the line); route is a series id of util/metrics.h; start is when the
 * request's first byte arrived (loop time). */
void http_account(struct conn *c, const struct http_request *req, int route, int status,
                  uint64_t bytes, ev_tstamp start);

#endif
