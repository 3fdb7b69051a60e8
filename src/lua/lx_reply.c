/*
 * What handlers answer with besides calls: header tables (HTTP endpoints
 * and the 101 of an accepted upgrade), and values returned from message
 * handlers, which are sent back to the caller (as Ballerina's remote
 * functions reply by returning).
 *
 * A return of nothing costs the message path a type check: the handler is
 * called for one result either way, and nil is popped.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "../proto/ws_handshake.h"
#include "../util/log.h"
#include "../util/utf8.h"
#include "lx.h"
#include "lx_json.h"

/* Registry keys (their addresses) of the metatables that mark a returned
 * value as a binary message or a close. */
static const char binary_mt_key = 'b';
static const char close_mt_key = 'c';

static bool header_owned(const char *name, size_t n, bool upgrade)
{
    if ((n == 14 && strncasecmp(name, "content-length", 14) == 0) ||
        (n == 17 && strncasecmp(name, "transfer-encoding", 17) == 0))
        return true;
    return upgrade && ws_handshake_owns(name, n);
}

static const char *add_line(struct buf *out, const char *name, size_t nl, lua_State *L, int vidx)
{
    if (lua_type(L, vidx) != LUA_TSTRING && lua_type(L, vidx) != LUA_TNUMBER)
        return "header values must be strings (or lists of strings)";
    size_t vl;
    const char *val = lua_tolstring(L, vidx, &vl);
    for (size_t i = 0; i < vl; i++) {
        if (val[i] == '\r' || val[i] == '\n' || val[i] == '\0')
            return "a header value must be one line";
    }
    buf_append(out, name, nl);
    buf_append(out, ": ", 2);
    buf_append(out, val, vl);
    buf_append(out, "\r\n", 2);
    return NULL;
}

const char *lx_reply_headers(lua_State *L, int idx, struct buf *out, bool upgrade, bool *has_ctype,
                             char *why, size_t cap)
{
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 2);
            return "header names must be strings";
        }
        size_t nl;
        const char *name = lua_tolstring(L, -2, &nl);
        bool ok = nl > 0;
        for (size_t i = 0; i < nl && ok; i++)
            ok = isalnum((unsigned char)name[i]) || strchr("!#$%&'*+-.^_`|~", name[i]);
        if (!ok) {
            lua_pop(L, 2);
            return "a header name must be a token";
        }
        if (header_owned(name, nl, upgrade)) {
            snprintf(why, cap, "%.*s is written by the server%s", (int)(nl > 64 ? 64 : nl),
                     name, upgrade ? " (a header of the handshake itself)" : "");
            lua_pop(L, 2);
            return why;
        }
        if (nl == 12 && strncasecmp(name, "content-type", 12) == 0 && has_ctype)
            *has_ctype = true;
        const char *err = NULL;
        if (lua_istable(L, -1)) {
            /* A list: one line per value (Set-Cookie, for one). */
            size_t n = lua_rawlen(L, -1);
            for (size_t i = 1; i <= n && !err; i++) {
                lua_rawgeti(L, -1, (lua_Integer)i);
                err = add_line(out, name, nl, L, lua_gettop(L));
                lua_pop(L, 1);
            }
        } else {
            err = add_line(out, name, nl, L, lua_gettop(L));
        }
        if (err) {
            lua_pop(L, 2);
            return err;
        }
        lua_pop(L, 1);
    }
    return NULL;
}

/* ---- moonws.binary, moonws.close ---- */

static void push_marker(lua_State *L, const char *key, const char *name)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_createtable(L, 0, 2);
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__name");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

/* moonws.binary(s): a value that, returned from a message handler, is sent
 * as a binary message. */
static int m_binary(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TSTRING);
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    push_marker(L, &binary_mt_key, "moonws.binary");
    lua_setmetatable(L, -2);
    return 1;
}

/* moonws.close([code [, reason]]): returned from a message handler, starts
 * the closing handshake. Checked here, as caller:close checks. */
static int m_close(lua_State *L)
{
    size_t n;
    const char *reason;
    unsigned code = lx_close_args(L, 1, &reason, &n);
    lua_createtable(L, 2, 0);
    lua_pushinteger(L, code);
    lua_rawseti(L, -2, 1);
    lua_pushlstring(L, reason, n);
    lua_rawseti(L, -2, 2);
    push_marker(L, &close_mt_key, "moonws.close");
    lua_setmetatable(L, -2);
    return 1;
}

void lx_reply_open(lua_State *L, int module)
{
    module = lua_absindex(L, module);
    lua_pushcfunction(L, m_binary);
    lua_setfield(L, module, "binary");
    lua_pushcfunction(L, m_close);
    lua_setfield(L, module, "close");
}

/* Which marker the table at idx carries: 'b', 'c' or 0. */
static char marker_of(lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx))
        return 0;
    char kind = 0;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &binary_mt_key);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &close_mt_key);
    if (lua_rawequal(L, -2, -3))
        kind = 'b';
    else if (lua_rawequal(L, -1, -3))
        kind = 'c';
    lua_pop(L, 3);
    return kind;
}

/* A returned value that cannot be sent fails the call as an error in the
 * handler would: logged, onError, close 1011. */
static void reply_failed(struct lx_rt *rt, struct lx_service *ls, struct ws_conn *wc,
                         const char *handler, const char *why)
{
    lua_State *L = rt->L;
    lua_pushfstring(L, "%s: %s returned a value that cannot be sent: %s", ls->file, handler, why);
    log_error("%s", lua_tostring(L, -1));
    if (ls->handler[H_ERROR] != LUA_NOREF) {
        lx_push_handler(rt, ls, H_ERROR);
        lx_caller_push(rt, wc);
        lua_pushvalue(L, -3);
        lx_call(rt, ls, NULL, 2, 0, NULL);
    }
    lua_pop(L, 1);
    if (ws_is_open(wc))
        ws_fail(wc, WS_CLOSE_INTERNAL, "handler error");
}

void lx_reply_send(struct lx_rt *rt, struct lx_service *ls, struct ws_conn *wc, const char *handler)
{
    lua_State *L = rt->L;
    int t = lua_type(L, -1);
    /* A boolean is what caller:send returns: `return caller:send(x)` is an
     * early return, not a reply. */
    if (t == LUA_TNIL || t == LUA_TBOOLEAN) {
        lua_pop(L, 1);
        return;
    }
    if (t == LUA_TSTRING) {
        size_t n;
        const char *p = lua_tolstring(L, -1, &n);
        /* The message handed over is known to be UTF-8 (an echo). */
        if ((p != rt->valid_text || n != rt->valid_len) && !utf8_valid(p, n))
            reply_failed(rt, ls, wc, handler,
                         "text is not valid UTF-8 (return moonws.binary(s) for bytes)");
        else
            ws_send(wc, WS_OP_TEXT, p, n);
        lua_pop(L, 1);
        return;
    }
    char kind = t == LUA_TTABLE ? marker_of(L, -1) : 0;
    if (kind == 'b') {
        size_t n;
        lua_rawgeti(L, -1, 1);
        const char *p = lua_tolstring(L, -1, &n);
        ws_send(wc, WS_OP_BINARY, p, n);
        lua_pop(L, 2);
        return;
    }
    if (kind == 'c') {
        size_t n;
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        const char *reason = lua_tolstring(L, -1, &n);
        ws_close(wc, (unsigned)lua_tointeger(L, -2), reason, n);
        lua_pop(L, 3);
        return;
    }
    if (t == LUA_TTABLE || t == LUA_TNUMBER) {
        size_t n;
        const char *json = lx_json_try_encode(L, -1, &n);
        if (!json) {
            reply_failed(rt, ls, wc, handler, lua_tostring(L, -1));
            lua_pop(L, 2);
            return;
        }
        ws_send(wc, WS_OP_TEXT, json, n);
        lua_pop(L, 1);
        return;
    }
    reply_failed(rt, ls, wc, handler, lua_typename(L, t));
    lua_pop(L, 1);
}
