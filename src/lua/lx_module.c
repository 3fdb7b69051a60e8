/*
 * The moonws module (docs/reference.md, "The moonws module") and the environment each service runs
 * in.
 */
#include <string.h>

#include "../cluster/cluster_link.h"
#include "../transport/worker.h"
#include "../util/log.h"
#include "../util/pathcount.h"
#include "lx.h"
#include "lx_json.h"
#include "runtime.h"

/* What the path argument at idx names (lx_at_path). */
static struct lx_at find_svc(lua_State *L, int idx)
{
    size_t n;
    const char *path = luaL_checklstring(L, idx, &n);
    return lx_at_path(lx_rt_of(L), path, n);
}

/* A broadcast goes to the other workers first, so that they write to
 * their clients while this one writes to its own; the count is this
 * worker's. */
static int send_to_service(lua_State *L, uint8_t opcode, const char *p, size_t n)
{
    size_t len;
    const char *path = luaL_checklstring(L, 1, &len);
    struct lx_rt *rt = lx_rt_of(L);
    lx_deliver_broadcast(rt, path, len, opcode, p, n);
    lua_pushinteger(L, (lua_Integer)lx_broadcast_here(rt, path, len, opcode, p, n));
    return 1;
}

static int m_broadcast(lua_State *L)
{
    lx_check_serving(L, "moonws.broadcast");
    const char *p;
    size_t n;
    uint8_t op = lx_message_arg(L, 2, &p, &n);
    return send_to_service(L, op, p, n);
}

static int m_broadcast_binary(lua_State *L)
{
    lx_check_serving(L, "moonws.broadcastBinary");
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    return send_to_service(L, WS_OP_BINARY, p, n);
}

static int publish(lua_State *L, bool binary)
{
    lx_check_serving(L, binary ? "moonws.publishBinary" : "moonws.publish");
    size_t tl, n;
    const char *topic = luaL_checklstring(L, 1, &tl);
    const char *p;
    uint8_t op = WS_OP_BINARY;
    if (binary)
        p = luaL_checklstring(L, 2, &n);
    else
        op = lx_message_arg(L, 2, &p, &n);
    struct lx_rt *rt = lx_rt_of(L);
    /* The other workers first, as for a broadcast. */
    lx_deliver_publish(rt, topic, tl, op, p, n);
    lua_pushinteger(L, (lua_Integer)pubsub_publish(&rt->pubsub, topic, tl, op, p, n));
    return 1;
}

static int m_publish(lua_State *L)
{
    return publish(L, false);
}

static int m_publish_binary(lua_State *L)
{
    return publish(L, true);
}

/* moonws.send(id, v) / sendBinary(id, s): true when the connection was
 * open at the call and the message was queued to its worker, or, for an id
 * of another node (--redis), when it was handed to the cluster link (not
 * delivered: that node drops it if the id is not open there); nil,
 * "closed" when it was not open; nil, "busy" when its worker's inbox or
 * the link's queue is full; nil, "unavailable" when the id is another
 * node's and the link to Redis is down. */
static int send_one(lua_State *L, bool binary)
{
    lx_check_serving(L, binary ? "moonws.sendBinary" : "moonws.send");
    lua_Integer id = luaL_checkinteger(L, 1);
    const char *p;
    size_t n;
    uint8_t op = WS_OP_BINARY;
    if (binary)
        p = luaL_checklstring(L, 2, &n);
    else
        op = lx_message_arg(L, 2, &p, &n);
    int r = id > 0 ? lx_deliver_send(lx_rt_of(L), (uint64_t)id, op, p, n) : LX_SEND_CLOSED;
    if (r == LX_SEND_QUEUED) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, r == LX_SEND_BUSY          ? "busy"
                      : r == LX_SEND_UNAVAILABLE ? "unavailable"
                                                 : "closed");
    return 2;
}

static int m_send(lua_State *L)
{
    return send_one(L, false);
}

static int m_send_binary(lua_State *L)
{
    return send_one(L, true);
}

/* The key moonws.count looks up for the path at idx (util/pathcount.h):
 * the service's path, or for a concrete path under a pattern the pattern,
 * a NUL and the path; pushes it, or returns NULL (nothing pushed) when no
 * service serves the path here. */
static const char *count_key(lua_State *L, int idx, size_t *kl)
{
    struct lx_at at = find_svc(L, idx);
    if (!at.svc)
        return NULL;
    size_t pl = strlen(at.svc->path);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, at.svc->path, at.only ? pl + 1 : pl);      /* its NUL too */
    if (at.only)
        luaL_addlstring(&b, at.only, at.only_len);
    luaL_pushresult(&b);
    return lua_tolstring(L, -1, kl);
}

/* The connections open in the whole process: of the service at the path,
 * or opened at a concrete path under its pattern. */
static int m_count(lua_State *L)
{
    size_t kl;
    const char *key = count_key(L, 1, &kl);
    lua_pushinteger(L, key ? pathcount_get(key, kl) : 0);
    return 1;
}

/* The same over the cluster: this process's count now plus the other
 * nodes' as last read from Redis (at most about 2 s old); nil,
 * "unavailable" when that figure is older than LIM_CLUSTER_COUNT_TTL (the
 * link down or Redis slow that long). Without --redis: moonws.count. */
static int m_cluster_count(lua_State *L)
{
    struct lx_rt *rt = lx_rt_of(L);
    size_t kl;
    const char *key = count_key(L, 1, &kl);
    if (!key) {
        /* Served elsewhere perhaps: the others' count is keyed by path. */
        key = luaL_checklstring(L, 1, &kl);
    }
    uint64_t others = 0;
    long here = pathcount_get(key, kl);
    if (rt->cluster && !cluster_link_count_others(rt->cluster->link, key, kl, &others)) {
        lua_pushnil(L);
        lua_pushliteral(L, "unavailable");
        return 2;
    }
    lua_pushinteger(L, (lua_Integer)(here + (long)others));
    return 1;
}

static int connections_next(lua_State *L)
{
    lua_Integer i = lua_tointeger(L, lua_upvalueindex(2)) + 1;
    lua_pushinteger(L, i);
    lua_replace(L, lua_upvalueindex(2));
    lua_rawgeti(L, lua_upvalueindex(1), i);
    return 1;
}

/* An iterator over the callers open now (a snapshot: connections that open
 * or close while the loop runs do not disturb it). */
static int m_connections(lua_State *L)
{
    struct lx_at at = find_svc(L, 1);
    struct lx_rt *rt = lx_rt_of(L);
    lua_newtable(L);
    lua_Integer i = 0;
    for (struct ws_conn *wc = at.svc ? at.svc->conns : NULL; wc; wc = wc->svc_next) {
        if (!lx_at_has(&at, wc))
            continue;
        lx_caller_push(rt, wc);
        lua_rawseti(L, -2, ++i);
    }
    lua_pushinteger(L, 0);
    lua_pushcclosure(L, connections_next, 2);
    return 1;
}

static int do_log(lua_State *L, enum log_level lvl)
{
    if (!log_enabled(lvl))
        return 0;
    int n = lua_gettop(L);      /* before luaL_buffinit, which pushes a placeholder */
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1)
            luaL_addchar(&b, ' ');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    struct lx_service *ls = lx_rt_of(L)->current;
    log_msg(lvl, "[%s] %s", ls ? ls->name : "moonws", lua_tostring(L, -1));
    return 0;
}

static int log_error_f(lua_State *L) { return do_log(L, LOG_ERROR); }
static int log_warn_f(lua_State *L) { return do_log(L, LOG_WARN); }
static int log_info_f(lua_State *L) { return do_log(L, LOG_INFO); }
static int log_debug_f(lua_State *L) { return do_log(L, LOG_DEBUG); }

void lx_module_init(struct lx_rt *rt)
{
    lua_State *L = rt->L;

    static const luaL_Reg funcs[] = {
        { "broadcast", m_broadcast },
        { "broadcastBinary", m_broadcast_binary },
        { "publish", m_publish },
        { "publishBinary", m_publish_binary },
        { "count", m_count },
        { "cluster_count", m_cluster_count },
        { "connections", m_connections },
        { "send", m_send },
        { "sendBinary", m_send_binary },
        { NULL, NULL },
    };
    luaL_newlib(L, funcs);
    int mod = lua_gettop(L);
    /* Which worker runs this state (1..N), and how many there are: a
     * script that wants one timer for the process runs it on worker 1. */
    lua_pushinteger(L, (lua_Integer)rt->w->index + 1);
    lua_setfield(L, mod, "worker");
    lua_pushinteger(L, (lua_Integer)rt->nworkers);
    lua_setfield(L, mod, "workers");

    lx_json_open(L);
    lua_setfield(L, mod, "json");
    lx_reply_open(L, mod);
    lx_crypto_open(L, mod);

    static const luaL_Reg logf[] = {
        { "error", log_error_f }, { "warn", log_warn_f },
        { "info", log_info_f },   { "debug", log_debug_f },
        { NULL, NULL },
    };
    luaL_newlib(L, logf);
    lua_setfield(L, mod, "log");
    rt->module_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    lx_sandbox_init(rt);

    lua_newtable(L);
    rt->shared_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lx_dict_init(rt);
}

void lx_env_new(struct lx_rt *rt, struct lx_service *ls)
{
    lua_State *L = rt->L;
    lua_newtable(L);                    /* the environment */
    int env = lua_gettop(L);

    /* This service's moonws: the module plus its own `shared`, which
     * outlives reloads because it is kept by file name (and follows a
     * moved service to its new name), and its own json and log tables (a
     * service that replaces moonws.json.encode does so for itself only). */
    lua_newtable(L);
    int mod = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->shared_ref);
    lx_shared_keep(rt, ls);
    if (lua_getfield(L, -1, ls->shared_key) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, ls->shared_key);
        ls->shared_created = true;
    } else {
        lx_push_copy(L, -1);            /* its own fields, before the top level runs */
        ls->shared_undo_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_setfield(L, mod, "shared");
    lua_pop(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->module_ref);
    int common = lua_gettop(L);
    static const char *const own[] = { "json", "log" };
    for (size_t i = 0; i < sizeof own / sizeof *own; i++) {
        lua_getfield(L, common, own[i]);
        lx_push_copy(L, -1);
        lua_setfield(L, mod, own[i]);
        lua_pop(L, 1);
    }
    lua_newtable(L);
    lua_pushvalue(L, common);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, mod);
    lua_pop(L, 1);                      /* the common module */
    lua_setfield(L, env, "moonws");
    lx_sandbox_fill(rt, env);
}

void lx_shared_undo(struct lx_rt *rt, struct lx_service *ls)
{
    lua_State *L = rt->L;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->shared_ref);
    if (ls->shared_created) {
        lua_pushnil(L);
        lua_setfield(L, -2, ls->shared_key);
    } else if (ls->shared_undo_ref != LUA_NOREF && lua_getfield(L, -1, ls->shared_key) == LUA_TTABLE) {
        int t = lua_gettop(L);
        lua_rawgeti(L, LUA_REGISTRYINDEX, ls->shared_undo_ref);
        int before = t + 1;
        /* Fields it added go (collected first: no new keys while walking),
         * then every field gets its old value back. */
        lua_newtable(L);
        int added = t + 2;
        lua_Integer nadded = 0;
        lua_pushnil(L);
        while (lua_next(L, t)) {
            lua_pop(L, 1);
            lua_pushvalue(L, -1);
            if (lua_rawget(L, before) == LUA_TNIL) {
                lua_pushvalue(L, -2);
                lua_rawseti(L, added, ++nadded);
            }
            lua_pop(L, 1);
        }
        for (lua_Integer i = 1; i <= nadded; i++) {
            lua_rawgeti(L, added, i);
            lua_pushnil(L);
            lua_rawset(L, t);
        }
        lua_pushnil(L);
        while (lua_next(L, before)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, t);
        }
    }
    lua_settop(L, top);
    lx_shared_keep(rt, ls);
}

void lx_shared_keep(struct lx_rt *rt, struct lx_service *ls)
{
    luaL_unref(rt->L, LUA_REGISTRYINDEX, ls->shared_undo_ref);
    ls->shared_undo_ref = LUA_NOREF;
    ls->shared_created = false;
}

void lx_shared_rename(struct lx_rt *rt, const char *from, const char *to)
{
    lua_State *L = rt->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->shared_ref);
    lua_getfield(L, -1, from);
    lua_setfield(L, -2, to);
    lua_pushnil(L);
    lua_setfield(L, -2, from);
    lua_pop(L, 1);
}
