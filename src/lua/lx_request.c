/*
 * The request tables handed to onUpgrade and HTTP endpoints, and their
 * parts the caller object shows too (query, headers, path parameters, TLS).
 */
#include <string.h>

#include "../proto/http_parse.h"
#include "../transport/conn.h"
#include "../transport/tls.h"
#include "../util/buf.h"
#include "lx.h"

static void push_decoded(lua_State *L, const char *s, size_t n)
{
    char small[256];
    struct buf big = { 0 };
    char *d = n <= sizeof small ? small : buf_reserve(&big, n);
    memcpy(d, s, n);
    ssize_t dl = http_url_decode(d, n, true);
    if (dl < 0)
        lua_pushlstring(L, s, n);       /* a bad escape: keep it raw */
    else
        lua_pushlstring(L, d, (size_t)dl);
    buf_free(&big);
}

void lx_push_query(lua_State *L, const char *q, size_t len)
{
    lua_newtable(L);
    const char *end = q + len;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *e = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(e - q));
        if (e > q) {
            push_decoded(L, q, (size_t)((eq ? eq : e) - q));
            if (eq)
                push_decoded(L, eq + 1, (size_t)(e - eq - 1));
            else
                lua_pushliteral(L, "");
            lua_settable(L, -3);
        }
        q = amp ? amp + 1 : end;
    }
}

void lx_push_headers(lua_State *L, const struct http_request *req)
{
    lua_newtable(L);
    char name[256];
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        size_t nl = h->name_len < sizeof name ? h->name_len : sizeof name - 1;
        for (size_t k = 0; k < nl; k++) {
            char c = h->name[k];
            name[k] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
        }
        lua_pushlstring(L, name, nl);
        lua_pushvalue(L, -1);
        /* Repeated fields are joined with ", " (RFC 9110 §5.3). */
        if (lua_rawget(L, -3) == LUA_TSTRING) {
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, h->value, h->value_len);
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushlstring(L, h->value, h->value_len);
        }
        lua_rawset(L, -3);
    }
}

void lx_push_tls(lua_State *L, const struct conn *c)
{
    struct tls_info ti;
    if (!tls_info(c, &ti)) {
        lua_pushnil(L);
        return;
    }
    lua_createtable(L, 0, 6);
    lua_pushstring(L, ti.version);
    lua_setfield(L, -2, "version");
    lua_pushstring(L, ti.cipher);
    lua_setfield(L, -2, "cipher");
    lua_pushstring(L, ti.alpn);
    lua_setfield(L, -2, "alpn");
    lua_pushboolean(L, ti.resumed);
    lua_setfield(L, -2, "resumed");
    if (ti.subject[0]) {
        lua_pushstring(L, ti.subject);
        lua_setfield(L, -2, "subject");
        lua_pushstring(L, ti.issuer);
        lua_setfield(L, -2, "issuer");
    }
}

void lx_push_params(lua_State *L, const struct path_params *params)
{
    lua_createtable(L, 0, (int)params->n);
    for (size_t i = 0; i < params->n; i++) {
        lua_pushlstring(L, params->p[i].name, params->p[i].name_len);
        lua_pushlstring(L, params->p[i].value, params->p[i].value_len);
        lua_rawset(L, -3);
    }
}

void lx_push_request(lua_State *L, const struct http_exchange *ex)
{
    const struct http_request *req = ex->req;
    struct conn *c = ex->conn;
    lua_createtable(L, 0, 9);
    lua_pushlstring(L, req->method, req->method_len);
    lua_setfield(L, -2, "method");
    lua_pushlstring(L, ex->path, ex->path_len);
    lua_setfield(L, -2, "path");
    lx_push_params(L, ex->params);
    lua_setfield(L, -2, "params");
    lx_push_query(L, ex->query ? ex->query : "", ex->query ? ex->query_len : 0);
    lua_setfield(L, -2, "query");
    lx_push_headers(L, req);
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, ex->body ? ex->body : "", ex->body ? ex->body_len : 0);
    lua_setfield(L, -2, "body");
    char addr[80];
    conn_remote(c, addr, sizeof addr);
    lua_pushstring(L, addr);
    lua_setfield(L, -2, "remote");
    lx_push_tls(L, c);
    lua_setfield(L, -2, "tls");
}
