/*
 * The caller object (docs/reference.md, "The caller"): a userdata per connection, created the
 * first time a script needs it, kept in the registry while the connection
 * lives. It never owns the connection: when the connection ends the
 * pointer is cleared, the registry lets go, and any later send returns
 * nil, "closed" — the caller's `data` table stays readable.
 */
#include <string.h>

#include "../transport/conn.h"
#include "../util/limits.h"
#include "../util/utf8.h"
#include "lx.h"
#include "lx_json.h"

#define CALLER_RELEASED (-3)    /* ws_conn.app_ref after the connection ended */

/* Set in every caller; with the block's size it identifies one without
 * fetching and comparing metatables on each call. */
#define CALLER_TAG 0x63616c6c65722121ULL

struct lx_caller {
    uint64_t tag;
    struct ws_conn *wc;         /* NULL once the connection is gone */
    uint64_t id;
};

/* The caller at idx. Only this file makes full userdata of this size
 * with this tag, and scripts cannot write into userdata. A light userdata
 * has a raw length of 0, so its pointer is never read. */
static struct lx_caller *check_caller(lua_State *L, int idx)
{
    struct lx_caller *cl = lua_touserdata(L, idx);
    if (!cl || lua_rawlen(L, idx) != sizeof *cl || cl->tag != CALLER_TAG)
        luaL_typeerror(L, idx, "caller");
    return cl;
}

/* The connection, or NULL after pushing nil, "closed" for the caller. */
static struct ws_conn *live(lua_State *L, struct lx_caller *cl)
{
    if (cl->wc && ws_is_open(cl->wc))
        return cl->wc;
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return NULL;
}

uint8_t lx_message_arg(lua_State *L, int idx, const char **p, size_t *len)
{
    if (lua_type(L, idx) == LUA_TSTRING) {
        *p = lua_tolstring(L, idx, len);
        struct lx_rt *rt = lx_rt_of(L);
        /* Lua strings are immutable: the same pointer is the same bytes. */
        if ((*p != rt->valid_text || *len != rt->valid_len) && !utf8_valid(*p, *len))
            luaL_argerror(L, idx, "text is not valid UTF-8 (send bytes with sendBinary)");
        return WS_OP_TEXT;
    }
    if (lua_type(L, idx) == LUA_TTABLE || lua_type(L, idx) == LUA_TNUMBER ||
        lua_type(L, idx) == LUA_TBOOLEAN) {
        *p = lx_json_encode(L, idx, len);
        return WS_OP_TEXT;
    }
    luaL_typeerror(L, idx, "string or table");
    return 0;
}

static int sent(lua_State *L, struct lx_caller *cl, bool ok)
{
    if (ok) {
        lua_pushboolean(L, 1);
        return 1;
    }
    (void)cl;
    /* The connection closed, or was just closed for backpressure. */
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
}

static int caller_send(lua_State *L)
{
    struct lx_caller *cl = check_caller(L, 1);
    lx_check_serving(L, "caller:send");
    const char *p;
    size_t n;
    uint8_t op = lx_message_arg(L, 2, &p, &n);
    struct ws_conn *wc = live(L, cl);
    if (!wc)
        return 2;
    return sent(L, cl, ws_send(wc, op, p, n));
}

static int caller_send_binary(lua_State *L)
{
    struct lx_caller *cl = check_caller(L, 1);
    lx_check_serving(L, "caller:sendBinary");
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    struct ws_conn *wc = live(L, cl);
    if (!wc)
        return 2;
    return sent(L, cl, ws_send(wc, WS_OP_BINARY, p, n));
}

static int control(lua_State *L, uint8_t opcode)
{
    struct lx_caller *cl = check_caller(L, 1);
    lx_check_serving(L, opcode == WS_OP_PING ? "caller:ping" : "caller:pong");
    size_t n = 0;
    const char *p = luaL_optlstring(L, 2, "", &n);
    luaL_argcheck(L, n <= WS_CONTROL_MAX, 2, "control frame payloads are at most 125 bytes");
    struct ws_conn *wc = live(L, cl);
    if (!wc)
        return 2;
    return sent(L, cl, ws_send_control(wc, opcode, p, n));
}

static int caller_ping(lua_State *L)
{
    return control(L, WS_OP_PING);
}

static int caller_pong(lua_State *L)
{
    return control(L, WS_OP_PONG);
}

unsigned lx_close_args(lua_State *L, int idx, const char **reason, size_t *n)
{
    lua_Integer code = luaL_optinteger(L, idx, WS_CLOSE_NORMAL);
    *n = 0;
    *reason = luaL_optlstring(L, idx + 1, "", n);
    luaL_argcheck(L, code >= 0 && code <= 65535 && ws_close_code_valid((unsigned)code), idx,
                  "not a close code that may be sent (1000-1003, 1007-1014, 3000-4999)");
    luaL_argcheck(L, *n <= WS_CONTROL_MAX - 2, idx + 1, "close reasons are at most 123 bytes");
    luaL_argcheck(L, utf8_valid(*reason, *n), idx + 1, "close reason is not valid UTF-8");
    return (unsigned)code;
}

static int caller_close(lua_State *L)
{
    struct lx_caller *cl = check_caller(L, 1);
    lx_check_serving(L, "caller:close");
    size_t n;
    const char *reason;
    unsigned code = lx_close_args(L, 2, &reason, &n);
    struct ws_conn *wc = live(L, cl);
    if (!wc)
        return 2;
    return sent(L, cl, ws_close(wc, code, reason, n));
}

static int membership(lua_State *L, bool join)
{
    struct lx_caller *cl = check_caller(L, 1);
    lx_check_serving(L, join ? "caller:subscribe" : "caller:unsubscribe");
    size_t n;
    const char *topic = luaL_checklstring(L, 2, &n);
    struct ws_conn *wc = live(L, cl);
    if (!wc)
        return 2;
    struct lx_rt *rt = lx_rt_of(L);
    bool changed = join ? pubsub_join(&rt->pubsub, wc, topic, n)
                        : pubsub_leave(&rt->pubsub, wc, topic, n);
    lua_pushboolean(L, changed);
    return 1;
}

static int caller_subscribe(lua_State *L)
{
    return membership(L, true);
}

static int caller_unsubscribe(lua_State *L)
{
    return membership(L, false);
}

/* Pushes the caller's data table, creating it on first use. */
static void push_data(lua_State *L, int idx)
{
    if (lua_getiuservalue(L, idx, 1) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, idx, 1);
    }
}

bool lx_conn_opened_at(const struct ws_conn *wc, const char *path, size_t len)
{
    char p[LIM_HTTP_HEAD_MAX];
    return ws_opened_path(wc, p, sizeof p) == len && memcmp(p, path, len) == 0;
}

/* Parses the kept upgrade head (into the runtime's scratch); NULL after
 * the connection is gone. */
static const struct http_request *upgrade_head(struct lx_rt *rt, struct lx_caller *cl)
{
    if (!cl->wc || http_parse_request(cl->wc->head, cl->wc->head_len, &rt->head_scratch) <= 0)
        return NULL;
    return &rt->head_scratch;
}

/* The hottest first: __index tries them in this order. */
static const luaL_Reg caller_methods[] = {
    { "send", caller_send },
    { "sendBinary", caller_send_binary },
    { "ping", caller_ping },
    { "pong", caller_pong },
    { "close", caller_close },
    { "subscribe", caller_subscribe },
    { "unsubscribe", caller_unsubscribe },
};
_Static_assert(sizeof caller_methods / sizeof caller_methods[0] == LX_CALLER_METHODS,
               "lx.h counts the caller's methods");

static int caller_index(lua_State *L)
{
    /* Methods first: they check their own argument. A short string is one
     * object per state, so a method is known by the address of its name,
     * without a table lookup (a number key is turned into a string here,
     * as luaL_checkstring below would). */
    struct lx_rt *rt = lx_rt_of(L);
    const char *name = lua_tostring(L, 2);
    for (int i = 0; i < LX_CALLER_METHODS; i++) {
        if (name == rt->caller_method_names[i]) {
            lua_pushcfunction(L, caller_methods[i].func);
            return 1;
        }
    }
    struct lx_caller *cl = check_caller(L, 1);
    const char *k = luaL_checkstring(L, 2);
    struct ws_conn *wc = cl->wc;
    if (strcmp(k, "data") == 0) {
        push_data(L, 1);
    } else if (strcmp(k, "auth") == 0) {
        lua_getiuservalue(L, 1, 2);
    } else if (strcmp(k, "id") == 0) {
        lua_pushinteger(L, (lua_Integer)cl->id);
    } else if (strcmp(k, "open") == 0) {
        lua_pushboolean(L, ws_is_open(wc));
    } else if (strcmp(k, "protocol") == 0) {
        if (wc && ws_protocol(wc))
            lua_pushstring(L, ws_protocol(wc));
        else
            lua_pushnil(L);
    } else if (strcmp(k, "secure") == 0) {
        lua_pushboolean(L, wc && ws_secure(wc));
    } else if (strcmp(k, "tls") == 0) {
        if (wc && !conn_is_closed(wc->c))
            lx_push_tls(L, wc->c);
        else
            lua_pushnil(L);
    } else if (strcmp(k, "buffered") == 0) {
        lua_pushinteger(L, wc ? (lua_Integer)ws_buffered(wc) : 0);
    } else if (strcmp(k, "remote") == 0) {
        char addr[80];
        if (wc && !conn_is_closed(wc->c)) {
            conn_remote(wc->c, addr, sizeof addr);
            lua_pushstring(L, addr);
        } else {
            lua_pushnil(L);
        }
    } else if (strcmp(k, "params") == 0) {
        /* Matched again against the service's path as it is now. */
        struct path_params params = { 0 };
        char p[LIM_HTTP_HEAD_MAX];
        size_t n = wc ? ws_opened_path(wc, p, sizeof p) : 0;
        if (wc)
            router_match(wc->svc->path, p, n, &params);
        lx_push_params(L, &params);
    } else if (strcmp(k, "path") == 0) {
        /* The path the client asked for (the service may have moved since). */
        char p[LIM_HTTP_HEAD_MAX];
        if (wc)
            lua_pushlstring(L, p, ws_opened_path(wc, p, sizeof p));
        else
            lua_pushnil(L);
    } else if (strcmp(k, "query") == 0 || strcmp(k, "headers") == 0) {
        const struct http_request *req = upgrade_head(lx_rt_of(L), cl);
        if (!req) {
            lua_pushnil(L);
            return 1;
        }
        const char *q = memchr(req->target, '?', req->target_len);
        size_t pl = q ? (size_t)(q - req->target) : req->target_len;
        if (k[0] == 'q')
            lx_push_query(L, q ? q + 1 : "", q ? req->target_len - pl - 1 : 0);
        else
            lx_push_headers(L, req);
    } else {
        lua_pushnil(L);
    }
    return 1;
}

static int caller_newindex(lua_State *L)
{
    check_caller(L, 1);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "data") != 0)
        return luaL_error(L, "caller.%s is read-only (keep your own state in caller.data)", k);
    luaL_argexpected(L, lua_istable(L, 3), 3, "table");
    lua_pushvalue(L, 3);
    lua_setiuservalue(L, 1, 1);
    return 0;
}

static int caller_tostring(lua_State *L)
{
    struct lx_caller *cl = check_caller(L, 1);
    lua_pushfstring(L, "caller %I (%s)", (lua_Integer)cl->id,
                    ws_is_open(cl->wc) ? "open" : "closed");
    return 1;
}

void lx_caller_init(struct lx_rt *rt)
{
    lua_State *L = rt->L;
    lua_newtable(L);                    /* the metatable */
    int mt = lua_gettop(L);
    /* The names, as an upvalue of __index, stay alive and so stay where
     * they were interned: their addresses are the method lookup. */
    lua_createtable(L, LX_CALLER_METHODS, 0);
    for (int i = 0; i < LX_CALLER_METHODS; i++) {
        rt->caller_method_names[i] = lua_pushstring(L, caller_methods[i].name);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushcclosure(L, caller_index, 1);
    lua_setfield(L, mt, "__index");
    lua_pushcfunction(L, caller_newindex);
    lua_setfield(L, mt, "__newindex");
    lua_pushcfunction(L, caller_tostring);
    lua_setfield(L, mt, "__tostring");
    lua_pushliteral(L, "moonws.caller");
    lua_setfield(L, mt, "__name");
    lua_pushboolean(L, 0);
    lua_setfield(L, mt, "__metatable");
    rt->caller_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

void lx_caller_push(struct lx_rt *rt, struct ws_conn *wc)
{
    lua_State *L = rt->L;
    if (wc->app_ref >= 0) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, wc->app_ref);
        return;
    }
    /* User values: 1 caller.data, 2 caller.auth. */
    struct lx_caller *cl = lua_newuserdatauv(L, sizeof *cl, 2);
    cl->tag = CALLER_TAG;
    cl->id = ws_id(wc);
    cl->wc = wc->app_ref == CALLER_RELEASED ? NULL : wc;
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->caller_mt_ref);
    lua_setmetatable(L, -2);
    if (cl->wc) {
        lua_pushvalue(L, -1);
        wc->app_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
}

void lx_caller_adopt(struct lx_rt *rt, struct ws_conn *wc, int ref)
{
    lua_State *L = rt->L;
    lx_caller_push(rt, wc);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    if (lua_rawgeti(L, -1, 1) == LUA_TTABLE)
        lua_setiuservalue(L, -3, 1);
    else
        lua_pop(L, 1);
    lua_rawgeti(L, -1, 2);
    lua_setiuservalue(L, -3, 2);
    lua_pop(L, 2);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
}

void lx_caller_release(struct lx_rt *rt, struct ws_conn *wc)
{
    lua_State *L = rt->L;
    if (wc->app_ref >= 0) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, wc->app_ref);
        struct lx_caller *cl = lua_touserdata(L, -1);
        cl->wc = NULL;
        lua_pop(L, 1);
        luaL_unref(L, LUA_REGISTRYINDEX, wc->app_ref);
    }
    wc->app_ref = CALLER_RELEASED;
}
