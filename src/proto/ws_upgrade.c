/*
 * The WebSocket upgrade (RFC 6455 §4.2): the checks, the service's gate,
 * sub-protocol and permessage-deflate negotiation, the 101.
 */
#include "ws_upgrade.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../transport/conn.h"
#include "../util/limits.h"
#include "http_account.h"
#include "http_respond.h"
#include "ws_conn.h"
#include "ws_handshake.h"

#define NO_REF (-2)

/* ws_conn.head_len has 30 bits. The kept head (keep_head) is the request
 * line and some fields of a head of at most LIM_HTTP_HEAD_CEILING bytes,
 * re-spaced: far less than twice that. */
_Static_assert(2 * LIM_HTTP_HEAD_CEILING < (1u << 30), "the kept head fits ws_conn.head_len");

static bool origin_allowed(const struct svc_conf *conf, const struct http_request *req)
{
    if (conf->any_origin)
        return true;
    const struct http_header *h = http_find_header(req->headers, req->nheaders, "origin");
    if (!h)
        return false;
    for (size_t i = 0; i < conf->norigins; i++) {
        if (strlen(conf->origins[i]) == h->value_len &&
            strncasecmp(conf->origins[i], h->value, h->value_len) == 0)
            return true;
    }
    return false;
}

/* Negotiates permessage-deflate; writes the response value into resp. */
static struct ws_pmd *negotiate_pmd(const struct svc_conf *conf, const struct http_request *req,
                                    struct pmd_pool *pool, char *resp, size_t cap)
{
    if (!conf->pmd.enabled)
        return NULL;
    const char *vals[LIM_HTTP_HEADERS_MAX];
    size_t lens[LIM_HTTP_HEADERS_MAX];
    size_t n = http_header_values(req->headers, req->nheaders, "sec-websocket-extensions", vals,
                                  lens, LIM_HTTP_HEADERS_MAX);
    struct pmd_params p;
    if (!n || !pmd_server_negotiate(&conf->pmd, vals, lens, n, &p, resp, cap))
        return NULL;
    struct ws_pmd *z = xcalloc(1, sizeof *z);
    pmd_init(&p, &conf->pmd, true, pool, &z->inf, &z->def);
    z->threshold = conf->pmd.threshold;
    return z;
}

/* True for the handshake's own fields, which mean nothing after it. */
static bool handshake_field(const struct http_header *h)
{
    static const char *const names[] = { "upgrade", "connection", "sec-websocket-key",
                                         "sec-websocket-version", "sec-websocket-extensions" };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        if (strlen(names[i]) == h->name_len && strncasecmp(names[i], h->name, h->name_len) == 0)
            return true;
    }
    return false;
}

/* The upgrade request as kept for caller.path/query/headers: the request
 * line and every field but the handshake's own (an idle connection keeps
 * these bytes for its whole life, so they are kept lean). */
static void keep_head(const struct http_request *req, struct buf *b)
{
    buf_append(b, req->method, req->method_len);
    buf_append(b, " ", 1);
    buf_append(b, req->target, req->target_len);
    buf_printf(b, " HTTP/1.%d\r\n", req->minor_version);
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (handshake_field(h))
            continue;
        buf_append(b, h->name, h->name_len);
        buf_append(b, ": ", 2);
        buf_append(b, h->value, h->value_len);
        buf_append(b, "\r\n", 2);
    }
    buf_append(b, "\r\n", 2);
}

bool ws_conn_accept(struct conn *c, struct svc *svc, const struct http_exchange *ex,
                    struct pmd_pool *pool)
{
    const struct http_request *req = ex->req;
    const char *why;
    int status = ws_check_upgrade(req, &why);
    int route = svc->metrics_upgrade;
    if (status) {
        size_t bl = http_respond_error(c, status, why,
                                       status == 426 ? "Sec-WebSocket-Version: 13\r\n" : NULL);
        http_account(c, req, route, status, bl, ex->start);
        return false;
    }
    if (!origin_allowed(&svc->conf, req)) {
        size_t bl = http_respond_error(c, 403, "origin not allowed", NULL);
        http_account(c, req, route, 403, bl, ex->start);
        return false;
    }
    int app_ref = NO_REF;
    struct http_reply gate = { .status = 403 };
    if (svc->ops->upgrade) {
        bool ok = svc->ops->upgrade(svc, ex, &gate, &app_ref);
        if (conn_is_closed(c) || !ok) {
            if (!conn_is_closed(c)) {
                http_respond(c, gate.status, gate.headers.data, gate.headers.len, gate.body.data,
                             gate.body.len, false, true);
                conn_finish(c, LIM_HTTP_LINGER);
                http_account(c, req, route, gate.status, gate.body.len, ex->start);
            }
            buf_free(&gate.headers);
            buf_free(&gate.body);
            return false;
        }
    }

    int proto = ws_select_protocol(req, svc->conf.protocols, svc->conf.nprotocols);
    char ext[256];
    struct ws_pmd *z = negotiate_pmd(&svc->conf, req, pool, ext, sizeof ext);

    /* The head lives at the end of the connection's own block. */
    struct buf head = { 0 };
    keep_head(req, &head);
    struct ws_conn *wc = xcalloc(1, sizeof *wc + head.len);
    memcpy(wc->head, head.data, head.len);
    wc->head_len = (uint32_t)head.len;
    buf_free(&head);
    wc->c = c;
    wc->svc = svc;
    wc->app_ref = app_ref;
    wc->rx.inf = z ? &z->inf : NULL;
    if (proto >= 0)
        ws_extra(wc)->protocol = xstrdup(svc->conf.protocols[proto]);

    struct buf out = { 0 };
    ws_write_accept(&out, req, ws_protocol(wc), z ? ext : NULL, gate.headers.data,
                    gate.headers.len);
    conn_write(c, out.data, out.len);
    buf_free(&out);
    http_account(c, req, route, 101, 0, ex->start);
    buf_free(&gate.headers);
    buf_free(&gate.body);
    ws_conn_start(wc);
    svc->ops->open(svc, wc);
    return true;
}

