/*
 * require inside a service. A service's modules are its own: a module is
 * looked for in the service's package.loaded, then its package.preload,
 * then on the package.path the server started with (LUA_PATH, else Lua's
 * default), loaded as text into the requiring service's environment, run
 * once, and kept in that service's package.loaded. So two services that
 * require one module each have their own copy, run in their own sandbox.
 *
 * The path is the server's and cannot be changed by a service: a service
 * that could point require at any file would read the first tokens of it
 * in the syntax error. For the same reason a module name is letters,
 * digits, `_` and `-` in parts separated by dots: no `/`, no `..`.
 *
 * C modules (found on package.cpath) are refused with a message saying so,
 * unless the service may leave the sandbox (--unsafe-lua, sandbox = false);
 * then Lua's own C searcher loads them, and they are kept per service too.
 */
#include <ctype.h>
#include <string.h>

#include <lualib.h>

#include "lx.h"

/* The registry's table of what require needs from the state's package
 * library: searchpath, path, cpath and the C searcher. */
static const char require_key = 'r';

void lx_require_init(struct lx_rt *rt)
{
    lua_State *L = rt->L;
    lua_newtable(L);
    int t = lua_gettop(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, LUA_LOADLIBNAME);
    static const char *const fields[] = { "searchpath", "path", "cpath" };
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        lua_getfield(L, -1, fields[i]);
        lua_setfield(L, t, fields[i]);
    }
    lua_getfield(L, -1, "searchers");
    lua_rawgeti(L, -1, 3);              /* the C searcher (loadlib.c) */
    lua_setfield(L, t, "csearcher");
    lua_pop(L, 3);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &require_key);
}

/* "a", "a.b", "a-b.c_d": parts of letters, digits, _ and -, none empty. */
static bool module_name(const char *name)
{
    bool part_start = true;
    for (const char *p = name; *p; p++) {
        if (*p == '.') {
            if (part_start)
                return false;
            part_start = true;
        } else if (isalnum((unsigned char)*p) || *p == '_' || *p == '-') {
            part_start = false;
        } else {
            return false;
        }
    }
    return !part_start;
}

/* Looks for name on the path in field ("path" or "cpath") of the table at
 * reg: pushes the file's name (true), or the places it tried (false). */
static bool search(lua_State *L, int reg, const char *field, const char *name)
{
    lua_getfield(L, reg, "searchpath");
    lua_pushstring(L, name);
    lua_getfield(L, reg, field);
    lua_call(L, 2, 2);
    bool found = !lua_isnil(L, -2);
    lua_remove(L, found ? -1 : -2);
    return found;
}

static bool may_leave_sandbox(lua_State *L)
{
    struct lx_rt *rt = lx_rt_of(L);
    return rt->unsafe_lua || (rt->current && rt->current->unsafe);
}

/* Puts the loader of module name, found on disk, at stack index 3 and what
 * to hand it (its file) at 4; raises when there is none. env: the
 * service's environment. */
static void find_loader(lua_State *L, const char *name, int env)
{
    if (strcmp(name, LUA_IOLIBNAME) == 0 && !may_leave_sandbox(L))
        luaL_error(L, "require: '%s' is not available to services (--unsafe-lua, or sandbox = "
                   "false for the service's handlers, gives it)", name);
    if (!module_name(name))
        luaL_error(L, "require: '%s' is not a module name (letters, digits, _ and -, in parts "
                   "separated by dots)", name);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &require_key);
    int reg = lua_gettop(L);
    if (search(L, reg, "path", name)) {
        const char *file = lua_tostring(L, -1);
        if (luaL_loadfilex(L, file, "t") != LUA_OK)
            luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", name, file,
                       lua_tostring(L, -1));
        lua_pushvalue(L, env);
        if (!lua_setupvalue(L, -2, 1))
            lua_pop(L, 1);
        lua_replace(L, 3);
        lua_replace(L, 4);
        lua_settop(L, 4);
        return;
    }
    int tried = lua_gettop(L);
    if (search(L, reg, "cpath", name)) {
        if (!may_leave_sandbox(L))
            luaL_error(L, "require: '%s' is a C module (%s): services load Lua modules only (C "
                       "modules come with --unsafe-lua, or sandbox = false)", name,
                       lua_tostring(L, -1));
        lua_getfield(L, reg, "csearcher");
        lua_pushstring(L, name);
        lua_call(L, 1, 2);
        if (!lua_isfunction(L, -2))
            luaL_error(L, "require: '%s': %s", name, lua_tostring(L, -1));
        lua_replace(L, 4);
        lua_replace(L, 3);
        lua_settop(L, 4);
        return;
    }
    luaL_error(L, "module '%s' not found:\n\tno field package.preload['%s']\n\t%s\n\t%s", name,
               name, lua_tostring(L, tried), lua_tostring(L, -1));
}

/* require(name) (upvalue 1: the service's environment, 2: its package). */
static int service_require(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_settop(L, 1);
    if (lua_getfield(L, lua_upvalueindex(2), "loaded") != LUA_TTABLE)
        return luaL_error(L, "require: package.loaded is not a table");
    if (lua_getfield(L, 2, name) != LUA_TNIL)
        return 1;
    lua_pop(L, 1);
    lua_pushnil(L);                     /* 3: the loader */
    lua_pushnil(L);                     /* 4: what it is handed */
    if (lua_getfield(L, lua_upvalueindex(2), "preload") == LUA_TTABLE &&
        lua_getfield(L, -1, name) != LUA_TNIL) {
        lua_replace(L, 3);
        lua_pushliteral(L, ":preload:");
        lua_replace(L, 4);
        lua_settop(L, 4);
    } else {
        lua_settop(L, 4);
        find_loader(L, name, lua_upvalueindex(1));
    }
    lua_pushvalue(L, 3);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 4);
    lua_call(L, 2, 1);
    if (!lua_isnil(L, -1))
        lua_setfield(L, 2, name);
    else
        lua_pop(L, 1);
    if (lua_getfield(L, 2, name) == LUA_TNIL) {     /* nothing returned, nothing set */
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
        lua_pushvalue(L, -1);
        lua_setfield(L, 2, name);
    }
    lua_pushvalue(L, 4);
    return 2;
}

void lx_require_push(lua_State *L, int env, int pkg)
{
    env = lua_absindex(L, env);
    pkg = lua_absindex(L, pkg);
    lua_pushvalue(L, env);
    lua_pushvalue(L, pkg);
    lua_pushcclosure(L, service_require, 2);
}
