/*
 * The environment each service runs in.
 *
 * A service's globals are its own table; what it does not define it reads
 * from a base shared by every service (the standard functions, with print
 * going to the log). The standard library tables (string, table, math, os,
 * io, utf8, coroutine, debug) are copied into each environment, so a
 * service that replaces string.upper changes its own copy only; the shared
 * base and the string metatable are hidden from getmetatable. `package` and
 * the modules `require` loads are shared, as in any Lua state: the sandbox
 * keeps trusted services from clobbering each other by accident, it is not
 * a wall against a hostile one.
 *
 * It also keeps the CPU budget (lx_call.c) whole where plain Lua would slip
 * past it: coroutines are resumed through a guard that lists the running
 * ones, so an interrupt reaches the coroutine that loops, and finalizers
 * (__gc), which run outside any handler call, are refused.
 */
#include <string.h>

#include "lx.h"

/* The libraries each service gets a copy of. */
static const char *const copied_libs[] = {
    "string", "table", "math", "os", "io", "utf8", "coroutine", "debug",
};

static int no_exit(lua_State *L)
{
    return luaL_error(L, "os.exit is not available to services (the server would stop)");
}

/* setmetatable without finalizers: a __gc runs whenever the collector
 * gets to it, outside every handler's budget and error policy. */
static int safe_setmetatable(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE && lua_getfield(L, 2, "__gc") != LUA_TNIL)
        return luaL_argerror(L, 2, "__gc finalizers are not available to services");
    lua_settop(L, 2);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 2, 1);
    return 1;
}

/* Calls the function at stack index 1 with the values above it while co
 * is listed as running, so that an interrupt of the budget reaches it. */
static int call_running(lua_State *L, lua_State *co)
{
    struct lx_rt *rt = lx_rt_of(L);
    if (rt->co_depth == LX_CO_MAX)
        return luaL_error(L, "coroutines nested more than %d deep", LX_CO_MAX);
    rt->co_running[rt->co_depth] = co;
    rt->co_depth++;             /* after the store: the signal handler reads up to here */
    if (rt->interrupted)
        lx_budget_arm(co);
    int rc = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    rt->co_depth--;
    if (rc != LUA_OK)
        return lua_error(L);
    return lua_gettop(L);
}

/* coroutine.resume through the guard (upvalue 1: the real resume). */
static int guarded_resume(lua_State *L)
{
    lua_State *co = lua_tothread(L, 1);
    luaL_argexpected(L, co, 1, "coroutine");
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    return call_running(L, co);
}

/* A function made by coroutine.wrap, called through the guard (upvalue 1:
 * the real wrapper, 2: its coroutine). */
static int guarded_wrapped(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    return call_running(L, lua_tothread(L, lua_upvalueindex(2)));
}

/* coroutine.wrap: the real one, its result called through the guard. The
 * real wrapper keeps its coroutine as its first upvalue (lcorolib.c). */
static int guarded_wrap(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    if (!lua_getupvalue(L, -1, 1) || !lua_isthread(L, -1))
        return luaL_error(L, "coroutine.wrap: unexpected wrapper");
    lua_pushcclosure(L, guarded_wrapped, 2);
    return 1;
}

void lx_push_copy(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
}

/* Replaces t[name] (t at idx) by a closure of fn over the old value. */
static void wrap_field(lua_State *L, int idx, const char *name, lua_CFunction fn)
{
    lua_getfield(L, idx, name);
    lua_pushcclosure(L, fn, 1);
    lua_setfield(L, idx, name);
}

void lx_sandbox_init(struct lx_rt *rt)
{
    lua_State *L = rt->L;
    lua_pushglobaltable(L);
    lx_push_copy(L, -1);
    lua_remove(L, -2);
    int base = lua_gettop(L);
    for (size_t i = 0; i < sizeof copied_libs / sizeof *copied_libs; i++) {
        lua_pushnil(L);                 /* copied per service, never read from here */
        lua_setfield(L, base, copied_libs[i]);
    }
    lua_pushnil(L);
    lua_setfield(L, base, "_G");
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->module_ref);      /* print: moonws.log.info */
    lua_getfield(L, -1, "log");
    lua_getfield(L, -1, "info");
    lua_setfield(L, base, "print");
    lua_pop(L, 2);
    wrap_field(L, base, "setmetatable", safe_setmetatable);
    rt->base_env_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    /* ("x"):upper() goes through the string metatable to the real string
     * table: keep both out of reach. */
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);
}

void lx_sandbox_fill(struct lx_rt *rt, int env)
{
    lua_State *L = rt->L;
    env = lua_absindex(L, env);
    for (size_t i = 0; i < sizeof copied_libs / sizeof *copied_libs; i++) {
        lua_getglobal(L, copied_libs[i]);
        lx_push_copy(L, -1);
        lua_remove(L, -2);
        lua_setfield(L, env, copied_libs[i]);
    }
    lua_getfield(L, env, "os");
    lua_pushcfunction(L, no_exit);
    lua_setfield(L, -2, "exit");
    lua_pop(L, 1);
    lua_getfield(L, env, "coroutine");
    wrap_field(L, lua_gettop(L), "resume", guarded_resume);
    wrap_field(L, lua_gettop(L), "wrap", guarded_wrap);
    lua_pop(L, 1);
    lua_pushvalue(L, env);
    lua_setfield(L, env, "_G");

    lua_newtable(L);                    /* the metatable: read through to the base */
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->base_env_ref);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, env);
}

bool lx_sandbox_lib(lua_State *L, int env, const char *name)
{
    for (size_t i = 0; i < sizeof copied_libs / sizeof *copied_libs; i++) {
        if (strcmp(name, copied_libs[i]) == 0) {
            lua_getfield(L, env, name);
            return true;
        }
    }
    return false;
}
