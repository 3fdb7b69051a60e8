/*
 * The environment each service runs in: exactly what docs/reference.md
 * ("The environment of a service") lists, and no way to the rest of the
 * state.
 *
 * A service's globals are its own table; what it does not define it reads
 * through to a base shared by every service. The base holds only functions
 * that reach nothing else: the plain base functions, print going to the
 * log, setmetatable without __gc finalizers (they would run outside every
 * handler's budget and error policy), collectgarbage without the options
 * that would change the collector every service shares. The libraries are
 * the service's own copies — a service that replaces string.upper changes
 * its own — reduced to what can harm neither the server nor the host: os
 * without exit (it raises), setlocale (it would change number formatting
 * for the whole process), execute, remove, rename and tmpname; debug with
 * traceback only (the rest reads and writes any value's insides, and
 * sethook would take the CPU budget's hook away); no io. `package` holds the
 * service's own loaded and preload tables, so package.loaded, require and
 * the globals lead to the same tables; `load` reads text only (Lua does not
 * check bytecode, and patched bytecode crashes it), into the service's
 * environment unless told otherwise.
 *
 * The unsafe extras — io, os.execute/remove/rename/tmpname, loadfile and
 * dofile (text only, into the service's environment), C modules through
 * require — come with --unsafe-lua (every service) or `sandbox = false`
 * (that service). They reach the host, not the server's insides: what would
 * break the server (os.exit, setlocale, the debug library, bytecode, the
 * collector's modes, finalizers) stays out whatever the flags say.
 */
#include <string.h>

#include <lualib.h>

#include "lx.h"

/* Base functions every service reads through to, as they are. */
static const char *const base_names[] = {
    "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "rawequal",
    "rawget", "rawlen", "rawset", "select", "tonumber", "tostring", "type", "xpcall",
    "_VERSION",
};

static const char *const os_safe[] = { "clock", "date", "difftime", "getenv", "time", NULL };
static const char *const os_unsafe[] = { "execute", "remove", "rename", "tmpname", NULL };
static const char *const debug_safe[] = { "traceback", NULL };

/* The libraries each service gets a copy of: whole, or only the functions
 * listed. */
static const struct {
    const char *name;
    const char *const *only;
} libs[] = {
    { LUA_STRLIBNAME, NULL },  { LUA_TABLIBNAME, NULL }, { LUA_MATHLIBNAME, NULL },
    { LUA_UTF8LIBNAME, NULL }, { LUA_COLIBNAME, NULL },     /* guarded in itself */
    { LUA_OSLIBNAME, os_safe }, { LUA_DBLIBNAME, debug_safe },
};

/* Pushes the state's own library called name. */
static void push_lib(lua_State *L, const char *name)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
}

/* t[name] = the value on top (popped), t at idx, raw. */
static void raw_set(lua_State *L, int idx, const char *name)
{
    idx = lua_absindex(L, idx);
    lua_pushstring(L, name);
    lua_insert(L, -2);
    lua_rawset(L, idx);
}

/* dst[name] = src[name] for each name of the NULL-ended list; dst may be
 * a service's table, set raw (no metamethod runs outside a handler). */
static void copy_fields(lua_State *L, int dst, int src, const char *const *names)
{
    for (; *names; names++) {
        lua_getfield(L, src, *names);
        raw_set(L, dst, *names);
    }
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

static int no_exit(lua_State *L)
{
    return luaL_error(L, "os.exit is not available to services (the server would stop)");
}

/* setmetatable without finalizers (upvalue 1: the real one): a __gc runs
 * whenever the collector gets to it, outside every handler's budget and
 * error policy. */
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

/* collectgarbage without the options that change the one collector of
 * the worker's state, which every service shares (upvalue 1: the real
 * one): "stop" alone would let memory grow until the cap for all. */
static int safe_collectgarbage(lua_State *L)
{
    static const char *const allowed[] = { "collect", "count", "step", "isrunning" };
    const char *opt = luaL_optstring(L, 1, "collect");
    for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++) {
        if (strcmp(opt, allowed[i]) == 0) {
            int n = lua_gettop(L);
            lua_pushvalue(L, lua_upvalueindex(1));
            lua_insert(L, 1);
            lua_call(L, n, LUA_MULTRET);
            return lua_gettop(L);
        }
    }
    return luaL_error(L, "collectgarbage('%s') is not available to services: the collector is "
                      "shared by every service of the worker (collect, count, step and "
                      "isrunning are)", opt);
}

/* Refuses a mode that allows binary chunks only. */
static bool text_mode(lua_State *L, const char *mode)
{
    if (strchr(mode, 't'))
        return true;
    luaL_pushfail(L);
    lua_pushliteral(L, "binary chunks are not available to services");
    return false;
}

/* load(chunk [, chunkname [, mode [, env]]]) (upvalue 1: the real load, 2:
 * the service's environment): text only, and the chunk's _ENV is the
 * service's environment unless env is given. */
static int sandbox_load(lua_State *L)
{
    if (!text_mode(L, luaL_optstring(L, 3, "bt")))
        return 2;
    bool env_given = !lua_isnone(L, 4);
    lua_settop(L, 4);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_pushliteral(L, "t");
    lua_pushvalue(L, env_given ? 4 : lua_upvalueindex(2));
    lua_call(L, 4, LUA_MULTRET);
    return lua_gettop(L) - 4;
}

/* Loads a file as text, its _ENV the value at env; leaves the function,
 * or the error message (returns false). */
static bool load_file(lua_State *L, const char *name, int env)
{
    env = lua_absindex(L, env);
    if (luaL_loadfilex(L, name, "t") != LUA_OK)
        return false;
    lua_pushvalue(L, env);
    if (!lua_setupvalue(L, -2, 1))
        lua_pop(L, 1);
    return true;
}

/* loadfile(filename [, mode [, env]]) of the unsafe extras (upvalue 1: the
 * service's environment). A file name is required: without one Lua reads
 * the server's standard input. */
static int sandbox_loadfile(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    if (!text_mode(L, luaL_optstring(L, 2, "bt")))
        return 2;
    if (load_file(L, name, lua_isnone(L, 3) ? lua_upvalueindex(1) : 3))
        return 1;
    luaL_pushfail(L);
    lua_insert(L, -2);
    return 2;
}

/* dofile(filename) of the unsafe extras (upvalue 1: the environment). */
static int sandbox_dofile(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_settop(L, 1);
    if (!load_file(L, name, lua_upvalueindex(1)))
        return lua_error(L);
    lua_call(L, 0, LUA_MULTRET);
    return lua_gettop(L) - 1;
}

/* t[name] = fn closed over the value at up (t at idx). */
static void set_closure(lua_State *L, int idx, const char *name, lua_CFunction fn, int up)
{
    idx = lua_absindex(L, idx);
    lua_pushvalue(L, up);
    lua_pushcclosure(L, fn, 1);
    raw_set(L, idx, name);
}

void lx_sandbox_init(struct lx_rt *rt)
{
    lua_State *L = rt->L;
    lx_budget_guard_coroutines(L);
    lx_require_init(rt);

    lua_newtable(L);
    int base = lua_gettop(L);
    lua_pushglobaltable(L);
    int g = base + 1;
    for (size_t i = 0; i < sizeof base_names / sizeof *base_names; i++) {
        lua_getfield(L, g, base_names[i]);
        lua_setfield(L, base, base_names[i]);
    }
    lua_getfield(L, g, "setmetatable");
    set_closure(L, base, "setmetatable", safe_setmetatable, -1);
    lua_getfield(L, g, "collectgarbage");
    set_closure(L, base, "collectgarbage", safe_collectgarbage, -1);
    lua_pop(L, 3);
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->module_ref);      /* print: moonws.log.info */
    lua_getfield(L, -1, "log");
    lua_getfield(L, -1, "info");
    lua_setfield(L, base, "print");
    lua_pop(L, 2);
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
    lua_newtable(L);
    int loaded = lua_gettop(L);
    for (size_t i = 0; i < sizeof libs / sizeof *libs; i++) {
        push_lib(L, libs[i].name);
        if (libs[i].only) {
            lua_newtable(L);
            copy_fields(L, lua_gettop(L), lua_gettop(L) - 1, libs[i].only);
        } else {
            lx_push_copy(L, -1);
        }
        lua_remove(L, -2);
        lua_pushvalue(L, -1);
        lua_setfield(L, loaded, libs[i].name);
        lua_setfield(L, env, libs[i].name);
    }
    lua_getfield(L, env, LUA_OSLIBNAME);
    lua_pushcfunction(L, no_exit);
    lua_setfield(L, -2, "exit");
    lua_pop(L, 1);

    lua_createtable(L, 0, 3);
    int pkg = lua_gettop(L);
    lua_pushvalue(L, loaded);
    lua_setfield(L, pkg, "loaded");
    lua_newtable(L);
    lua_setfield(L, pkg, "preload");
    push_lib(L, LUA_LOADLIBNAME);
    lua_getfield(L, -1, "config");
    lua_setfield(L, pkg, "config");
    lua_pop(L, 1);
    lua_pushvalue(L, pkg);
    lua_setfield(L, loaded, LUA_LOADLIBNAME);
    lx_require_push(L, env, pkg);
    lua_setfield(L, env, "require");
    lua_setfield(L, env, LUA_LOADLIBNAME);

    lua_pushglobaltable(L);
    lua_getfield(L, -1, "load");
    lua_pushvalue(L, env);
    lua_pushcclosure(L, sandbox_load, 2);
    lua_setfield(L, env, "load");
    lua_pop(L, 1);
    lua_pushvalue(L, env);
    lua_setfield(L, env, LUA_GNAME);
    lua_pushvalue(L, env);
    lua_setfield(L, loaded, LUA_GNAME);
    lua_getfield(L, env, "moonws");
    lua_setfield(L, loaded, "moonws");
    lua_pop(L, 1);                      /* loaded */

    lua_newtable(L);                    /* the metatable: read through to the base */
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->base_env_ref);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, env);
    if (rt->unsafe_lua)
        lx_sandbox_unsafe(rt, env);
}

/* Pushes t[name], t at idx, when it is a table (raw: the service's top
 * level may have given t a metatable, or replaced t[name]). */
static bool push_own_table(lua_State *L, int idx, const char *name)
{
    idx = lua_absindex(L, idx);
    lua_pushstring(L, name);
    if (lua_rawget(L, idx) == LUA_TTABLE)
        return true;
    lua_pop(L, 1);
    return false;
}

void lx_sandbox_unsafe(struct lx_rt *rt, int env)
{
    lua_State *L = rt->L;
    env = lua_absindex(L, env);
    push_lib(L, LUA_IOLIBNAME);
    lx_push_copy(L, -1);
    lua_remove(L, -2);
    int io = lua_gettop(L);
    lua_pushvalue(L, io);
    raw_set(L, env, LUA_IOLIBNAME);
    if (push_own_table(L, env, LUA_LOADLIBNAME)) {
        if (push_own_table(L, -1, "loaded")) {
            lua_pushvalue(L, io);
            raw_set(L, -2, LUA_IOLIBNAME);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    if (push_own_table(L, env, LUA_OSLIBNAME)) {
        push_lib(L, LUA_OSLIBNAME);
        copy_fields(L, lua_gettop(L) - 1, lua_gettop(L), os_unsafe);
        lua_pop(L, 2);
    }
    set_closure(L, env, "loadfile", sandbox_loadfile, env);
    set_closure(L, env, "dofile", sandbox_dofile, env);
    lua_pop(L, 1);                      /* io */
}
