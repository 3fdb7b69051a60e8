/*
 * The svc_ops of a Lua service: how the protocol layer reaches its
 * handlers — the upgrade gate, messages (with JSON binding and dispatch by
 * event), control frames, idle timeouts, the close, HTTP endpoints — each
 * call through lx_call.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "../util/log.h"
#include "lx.h"
#include "lx_json.h"
#include "lx_service.h"

#define NO_REF (-2)

/* What the upgrade hands to the connection: onUpgrade's req.data and the
 * auth principal, as one registry ref to {data, principal} (nothing when
 * there is neither, the common case). */
static void hand_over(lua_State *L, int data, int principal, int *app_ref)
{
    if (!data && !principal)
        return;
    lua_createtable(L, 2, 0);
    if (data) {
        lua_pushvalue(L, data);
        lua_rawseti(L, -2, 1);
    }
    if (principal) {
        lua_pushvalue(L, principal);
        lua_rawseti(L, -2, 2);
    }
    *app_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

static void upgrade_failed(struct http_reply *reply)
{
    reply->status = 500;
    reply->headers.len = 0;
    reply->body.len = 0;
    buf_append_str(&reply->headers, "Content-Type: text/plain; charset=utf-8\r\n");
    buf_append_str(&reply->body, "onUpgrade failed\n");
}

static bool rt_upgrade(struct svc *s, const struct http_exchange *ex, struct http_reply *reply,
                       int *app_ref)
{
    struct lx_service *ls = s->rt;
    struct lx_rt *rt = ls->rt;
    lua_State *L = rt->L;
    int base = lua_gettop(L), principal = 0;
    if (ls->auth) {
        if (!lx_auth_check(rt, ls->auth, ex, reply))
            return false;
        principal = lua_gettop(L);
    }
    if (ls->handler[H_UPGRADE] == LUA_NOREF) {
        hand_over(L, 0, principal, app_ref);
        lua_settop(L, base);
        return true;
    }
    lx_push_request(L, ex);
    int req = lua_gettop(L);
    if (principal) {
        lua_pushvalue(L, principal);
        lua_setfield(L, req, "auth");
    }
    lx_push_handler(rt, ls, H_UPGRADE);
    lua_pushvalue(L, req);
    if (!lx_call(rt, ls, NULL, 1, 3, NULL)) {
        lua_settop(L, base);
        upgrade_failed(reply);
        return false;
    }
    int r1 = req + 1;
    if (lua_isboolean(L, r1) && !lua_toboolean(L, r1)) {
        lua_Integer st = lua_isinteger(L, r1 + 1) ? lua_tointeger(L, r1 + 1) : 403;
        reply->status = st >= 400 && st <= 599 ? (int)st : 403;
        size_t bl;
        const char *body = lua_isstring(L, r1 + 2) ? lua_tolstring(L, r1 + 2, &bl) : NULL;
        if (body)
            buf_append(&reply->body, body, bl);
        buf_append_str(&reply->headers, "Content-Type: text/plain; charset=utf-8\r\n");
        lua_settop(L, base);
        return false;
    }
    /* `return true, { ["Set-Cookie"] = "..." }`: headers for the 101. */
    if (lua_istable(L, r1 + 1)) {
        char why[160];
        const char *err = lx_reply_headers(L, r1 + 1, &reply->headers, true, NULL, why, sizeof why);
        if (err) {
            log_error("%s: onUpgrade returned headers the 101 cannot carry: %s (answered 500)",
                      ls->file, err);
            lua_settop(L, base);
            upgrade_failed(reply);
            return false;
        }
    }
    lua_pushliteral(L, "data");         /* raw: no metamethod runs outside the call */
    int data = lua_rawget(L, req) == LUA_TTABLE ? lua_gettop(L) : 0;
    hand_over(L, data, principal, app_ref);
    lua_settop(L, base);
    return true;
}

static void rt_open(struct svc *s, struct ws_conn *wc)
{
    struct lx_service *ls = s->rt;
    struct lx_rt *rt = ls->rt;
    if (wc->app_ref != NO_REF) {
        int handed = wc->app_ref;
        wc->app_ref = NO_REF;
        lx_caller_adopt(rt, wc, handed);
    }
    if (ls->handler[H_OPEN] == LUA_NOREF)
        return;
    lx_push_handler(rt, ls, H_OPEN);
    lx_caller_push(rt, wc);
    lx_call(rt, ls, wc, 1, 0, NULL);
}

/* "join_room" / "join-room" / "joinRoom" -> "onJoinRoom". */
static void handler_name(const char *ev, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    out[o++] = 'o';
    out[o++] = 'n';
    bool up = true;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        char c = ev[i];
        if (c == '_' || c == '-' || c == ' ' || c == '.') {
            up = true;
            continue;
        }
        out[o++] = up ? (char)toupper((unsigned char)c) : c;
        up = false;
    }
    out[o] = '\0';
}

/* Data binding failed: onError hears why, the client gets 1003. */
static void binding_failed(struct lx_rt *rt, struct lx_service *ls, struct ws_conn *wc,
                           const char *why)
{
    lua_State *L = rt->L;
    log_info("%s: connection %llu: %s", ls->file, (unsigned long long)ws_id(wc), why);
    if (ls->handler[H_ERROR] != LUA_NOREF) {
        lx_push_handler(rt, ls, H_ERROR);
        lx_caller_push(rt, wc);
        lua_pushstring(L, why);
        lx_call(rt, ls, NULL, 2, 0, NULL);
    }
    if (ws_is_open(wc))
        ws_fail(wc, WS_CLOSE_UNSUPPORTED, "message is not valid JSON");
}

/* A text message for a service that binds JSON (onMessage, or events by
 * dispatch_key): decoded and handed to its handler. Returns false when no
 * handler took it (it goes on to onText). */
static bool rt_json_message(struct lx_service *ls, struct ws_conn *wc, char *data, size_t len)
{
    struct lx_rt *rt = ls->rt;
    lua_State *L = rt->L;
    bool decoded = lx_json_decode(L, data, len);   /* value, or error message */
    if (decoded && ls->dispatch_key && lua_istable(L, -1)) {
        size_t en;
        const char *ev = NULL;
        if (lx_rawfield(L, -1, ls->dispatch_key) == LUA_TSTRING)
            ev = lua_tolstring(L, -1, &en);
        char name[128];
        if (ev)
            handler_name(ev, en, name, sizeof name);
        /* A client may name custom events only, never onClose & co. */
        if (ev && lx_handler_of(name) < 0) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, ls->table_ref);
            int ft = lx_rawfield(L, -1, name);
            lua_remove(L, -2);
            if (ft == LUA_TFUNCTION) {
                lua_remove(L, -2);                  /* the event name */
                lx_caller_push(rt, wc);
                lua_pushvalue(L, -3);               /* the message */
                if (lx_call(rt, ls, wc, 2, 1, NULL))
                    lx_reply_send(rt, ls, wc, name);
                lua_pop(L, 1);
                return true;
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    if (ls->handler[H_MESSAGE] != LUA_NOREF) {
        if (!decoded) {
            char why[300];
            snprintf(why, sizeof why, "message is not valid JSON: %s", lua_tostring(L, -1));
            lua_pop(L, 1);
            binding_failed(rt, ls, wc, why);
            return true;
        }
        lx_push_handler(rt, ls, H_MESSAGE);
        lx_caller_push(rt, wc);
        lua_pushvalue(L, -3);
        if (lx_call(rt, ls, wc, 2, 1, NULL))
            lx_reply_send(rt, ls, wc, "onMessage");
        lua_pop(L, 1);
        return true;
    }
    lua_pop(L, 1);
    return false;
}

static void rt_message(struct svc *s, struct ws_conn *wc, uint8_t op, char *data, size_t len)
{
    struct lx_service *ls = s->rt;
    struct lx_rt *rt = ls->rt;
    lua_State *L = rt->L;
    bool text = op == WS_OP_TEXT;

    if (text && (ls->dispatch_key || ls->handler[H_MESSAGE] != LUA_NOREF) &&
        rt_json_message(ls, wc, data, len))
        return;

    enum lx_handler h = text ? H_TEXT : H_BINARY;
    if (ls->handler[h] == LUA_NOREF) {
        if (text || ls->handler[H_MESSAGE] == LUA_NOREF)
            return;
        h = H_MESSAGE;                  /* binary messages reach onMessage as bytes */
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, ls->handler[h]);
    lx_caller_push(rt, wc);
    const char *str = lua_pushlstring(L, data, len);
    if (text) {
        rt->valid_text = str;
        rt->valid_len = len;
    }
    /* One result: what the handler returns is its reply (usually nil). */
    if (lx_call(rt, ls, wc, 2, 1, NULL))
        lx_reply_send(rt, ls, wc, h == H_TEXT ? "onText" : h == H_BINARY ? "onBinary" : "onMessage");
    /* After the call the string may be collected and its memory reused. */
    rt->valid_text = NULL;
}

static void control_handler(struct svc *s, struct ws_conn *wc, enum lx_handler h,
                            const char *data, size_t len)
{
    struct lx_service *ls = s->rt;
    struct lx_rt *rt = ls->rt;
    if (ls->handler[h] == LUA_NOREF)
        return;
    lx_push_handler(rt, ls, h);
    lx_caller_push(rt, wc);
    lua_pushlstring(rt->L, data, len);
    lx_call(rt, ls, wc, 2, 0, NULL);
}

static void rt_ping(struct svc *s, struct ws_conn *wc, const char *data, size_t len)
{
    control_handler(s, wc, H_PING, data, len);
}

static void rt_pong(struct svc *s, struct ws_conn *wc, const char *data, size_t len)
{
    control_handler(s, wc, H_PONG, data, len);
}

static bool rt_idle(struct svc *s, struct ws_conn *wc)
{
    struct lx_service *ls = s->rt;
    struct lx_rt *rt = ls->rt;
    if (ls->handler[H_IDLE] == LUA_NOREF)
        return false;
    lx_push_handler(rt, ls, H_IDLE);
    lx_caller_push(rt, wc);
    lx_call(rt, ls, wc, 1, 0, NULL);
    return true;
}

/* The one handler that can run inside another's call: a send, broadcast or
 * publish that closes a connection for backpressure reaches it. Its
 * arguments are pushed with the memory cap lifted, so that a failure
 * cannot raise through the protocol layer's frames (lx_memory.c). */
static void rt_close(struct svc *s, struct ws_conn *wc, unsigned code, const char *reason,
                     size_t len)
{
    struct lx_service *ls = s->rt;
    struct lx_rt *rt = ls->rt;
    lua_State *L = rt->L;
    bool strict = lx_memory_relax(rt);
    /* It hears nothing more: its subscriptions go now. */
    pubsub_leave_all(wc);
    if (ls->handler[H_CLOSE] != LUA_NOREF) {
        lx_push_handler(rt, ls, H_CLOSE);
        lx_caller_push(rt, wc);
        lua_pushinteger(L, code);
        lua_pushlstring(L, reason, len);
        /* Counted under the connection's path, as its other calls. */
        struct metrics_path_cells *prev = rt->call_cells;
        rt->call_cells = wc->mc;
        lx_call(rt, ls, NULL, 3, 0, NULL);
        rt->call_cells = prev;
    }
    lx_caller_release(rt, wc);
    lx_memory_restore(rt, strict);
}

static void internal_error(struct http_reply *rep, const char *why)
{
    rep->status = 500;
    rep->headers.len = 0;
    rep->body.len = 0;
    buf_append_str(&rep->headers, "Content-Type: text/plain; charset=utf-8\r\n");
    buf_append_str(&rep->body, why);
}

static void rt_http(struct svc *s, size_t route, const struct http_exchange *ex,
                    struct http_reply *rep)
{
    struct lx_service *ls = s->rt;
    struct lx_rt *rt = ls->rt;
    lua_State *L = rt->L;
    int top = lua_gettop(L), principal = 0;
    const struct lx_auth *a = ls->auth;
    if (ls->route_auth && ls->route_auth[route].none)
        a = NULL;
    else if (ls->route_auth && ls->route_auth[route].own)
        a = ls->route_auth[route].own;
    if (a) {
        if (!lx_auth_check(rt, a, ex, rep))
            return;
        principal = lua_gettop(L);
    }
    int base = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ls->routes_ref);
    lua_rawgeti(L, -1, (lua_Integer)route + 1);
    lua_remove(L, -2);
    lx_push_request(L, ex);
    if (principal) {
        lua_pushvalue(L, principal);
        lua_setfield(L, -2, "auth");
    }
    if (!lx_call(rt, ls, NULL, 1, 3, NULL)) {
        lua_settop(L, top);
        internal_error(rep, "500 Internal Server Error: the handler failed (see the server log)\n");
        return;
    }
    int st = base + 1, body = base + 2, hdrs = base + 3;
    lua_Integer status = lua_isinteger(L, st) ? lua_tointeger(L, st) : 200;
    bool has_ctype = false;
    char why[160];
    const char *bad = status < 100 || status > 599 ? "a status outside 100-599"
                      : lua_isnil(L, hdrs)         ? NULL
                      : !lua_istable(L, hdrs)      ? "headers that are not a table"
                      : lx_reply_headers(L, hdrs, &rep->headers, false, &has_ctype, why, sizeof why);
    if (bad) {
        log_error("%s: route %s %s returned a bad status or headers: %s", ls->file,
                  s->routes[route].method, s->routes[route].path, bad);
        internal_error(rep, "500 Internal Server Error: bad status or headers from the handler\n");
        lua_settop(L, top);
        return;
    }
    rep->status = (int)status;
    if (lua_istable(L, body)) {
        size_t n;
        lua_pushvalue(L, body);
        /* After the call: an error here must not escape unprotected. */
        const char *json = lx_json_try_encode(L, -1, &n);
        if (!json) {
            log_error("%s: route %s %s returned a body JSON cannot hold: %s", ls->file,
                      s->routes[route].method, s->routes[route].path, lua_tostring(L, -1));
            internal_error(rep, "500 Internal Server Error: the handler's body is not JSON\n");
            lua_settop(L, top);
            return;
        }
        buf_append(&rep->body, json, n);
        if (!has_ctype)
            buf_append_str(&rep->headers, "Content-Type: application/json\r\n");
    } else if (lua_isstring(L, body)) {
        size_t n;
        const char *p = lua_tolstring(L, body, &n);
        buf_append(&rep->body, p, n);
        if (!has_ctype)
            buf_append_str(&rep->headers, "Content-Type: text/plain; charset=utf-8\r\n");
    }
    lua_settop(L, top);
}

static void rt_release(struct svc *s)
{
    struct lx_service *ls = s->rt;
    lx_service_destroy(ls->rt, ls);
}

const struct svc_ops lx_svc_ops = {
    .upgrade = rt_upgrade,
    .open = rt_open,
    .message = rt_message,
    .ping = rt_ping,
    .pong = rt_pong,
    .idle = rt_idle,
    .close = rt_close,
    .http = rt_http,
    .release = rt_release,
};
