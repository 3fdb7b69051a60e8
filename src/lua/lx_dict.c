/*
 * moonws.dict(name [, capacity]): a handle to a process-wide shared
 * dictionary (src/util/shdict.h). The dictionaries belong to the process,
 * not to a Lua state: a handle is a pointer to one, valid as long as the
 * process runs, so every worker's state, every service and every version of
 * it after a reload reach the same entries.
 *
 * Every binding starts the same way: the handle, the key (a string), then
 * the value or numbers. Misuse raises; what the dictionary refuses ("not
 * found", "exists", "no memory", "not a number", "integer overflow") comes
 * back as nil, reason. No Lua allocation happens while a dictionary's lock
 * is held: values are copied out into C memory first.
 */
#include <stdlib.h>
#include <string.h>

#include "../util/clock.h"
#include "../util/limits.h"
#include "../util/log.h"
#include "../util/shdict.h"
#include "lx.h"

#define DICT_MT "moonws.dict"

static const char keys_box_key = 'k';

struct lx_dict {
    struct shdict *d;
};

static struct shdict *check_dict(lua_State *L)
{
    return ((struct lx_dict *)luaL_checkudata(L, 1, DICT_MT))->d;
}

static const char *check_key(lua_State *L, int idx, size_t *len)
{
    luaL_argexpected(L, lua_type(L, idx) == LUA_TSTRING, idx, "string");
    const char *k = lua_tolstring(L, idx, len);
    luaL_argcheck(L, *len <= LIM_DICT_KEY_MAX, idx, "a key is at most 65535 bytes");
    return k;
}

static void check_value(lua_State *L, int idx, bool nil_ok, struct shdict_value *v)
{
    *v = (struct shdict_value){ 0 };
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        v->type = SHDICT_STR;
        v->str = lua_tolstring(L, idx, &v->len);
        return;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            v->type = SHDICT_INT;
            v->i = lua_tointeger(L, idx);
        } else {
            v->type = SHDICT_FLOAT;
            v->d = lua_tonumber(L, idx);
        }
        return;
    case LUA_TBOOLEAN:
        v->type = SHDICT_BOOL;
        v->b = lua_toboolean(L, idx);
        return;
    case LUA_TNIL:
    case LUA_TNONE:
        if (nil_ok) {
            v->type = SHDICT_NIL;
            return;
        }
        break;
    default:
        break;
    }
    luaL_argerror(L, idx, "values are strings, numbers or booleans");
}

static void check_number(lua_State *L, int idx, struct shdict_value *v)
{
    luaL_argexpected(L, lua_type(L, idx) == LUA_TNUMBER, idx, "number");
    check_value(L, idx, false, v);
}

static double opt_ttl(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx))
        return 0;
    luaL_argexpected(L, lua_type(L, idx) == LUA_TNUMBER, idx, "number");
    lua_Number t = lua_tonumber(L, idx);
    luaL_argcheck(L, t >= 0 && t <= LIM_DICT_TTL_MAX, idx,
                  "a ttl is 0 (none) to 1e9 seconds");
    return (double)t;
}

static size_t opt_count(lua_State *L, int idx, lua_Integer dflt)
{
    lua_Integer n = luaL_optinteger(L, idx, dflt);
    luaL_argcheck(L, n >= 0, idx, "must not be negative (0: no bound)");
    return (size_t)n;
}

static void push_value(lua_State *L, const struct shdict_value *v)
{
    switch (v->type) {
    case SHDICT_STR: lua_pushlstring(L, v->str, v->len); break;
    case SHDICT_INT: lua_pushinteger(L, (lua_Integer)v->i); break;
    case SHDICT_FLOAT: lua_pushnumber(L, (lua_Number)v->d); break;
    case SHDICT_BOOL: lua_pushboolean(L, v->b); break;
    default: lua_pushnil(L); break;
    }
}

static int fail(lua_State *L, int rc)
{
    lua_pushnil(L);
    lua_pushstring(L, shdict_strerror(rc));
    return 2;
}

/* A write's answer, as OpenResty's shared dictionaries give it: true (or
 * the new value v), nil, forcible; or nil, reason. */
static int written(lua_State *L, int rc, const struct shdict_value *v, bool forcible)
{
    if (rc != SHDICT_OK)
        return fail(L, rc);
    if (v)
        push_value(L, v);
    else
        lua_pushboolean(L, 1);
    lua_pushnil(L);
    lua_pushboolean(L, forcible);
    return 3;
}

static int d_get(lua_State *L)
{
    struct shdict *d = check_dict(L);
    size_t kl;
    const char *k = check_key(L, 2, &kl);
    char small[256];
    struct shdict_value v;
    int rc = shdict_get(d, k, kl, clock_ns(), &v, small, sizeof small);
    /* A longer string: a buffer of its size, outside the lock, then again
     * (it may have grown meanwhile). */
    while (rc == SHDICT_SHORT_BUFFER) {
        size_t need = v.len;
        char *big = lua_newuserdatauv(L, need, 0);
        rc = shdict_get(d, k, kl, clock_ns(), &v, big, need);
        if (rc != SHDICT_SHORT_BUFFER) {
            push_value(L, &v);
            return 1;
        }
        lua_pop(L, 1);
    }
    if (rc != SHDICT_OK)
        lua_pushnil(L);
    else
        push_value(L, &v);
    return 1;
}

static int store(lua_State *L, enum shdict_mode mode)
{
    struct shdict *d = check_dict(L);
    size_t kl;
    const char *k = check_key(L, 2, &kl);
    struct shdict_value v;
    check_value(L, 3, mode == SHDICT_SET, &v);
    double ttl = opt_ttl(L, 4);
    bool forcible = false;
    int rc = shdict_store(d, mode, k, kl, &v, ttl, clock_ns(), &forcible);
    return written(L, rc, NULL, forcible);
}

static int d_set(lua_State *L)
{
    return store(L, SHDICT_SET);
}

static int d_add(lua_State *L)
{
    return store(L, SHDICT_ADD);
}

static int d_replace(lua_State *L)
{
    return store(L, SHDICT_REPLACE);
}

/* incr(key, n [, init [, ttl]]) -> the new value, nil, forcible */
static int d_incr(lua_State *L)
{
    struct shdict *d = check_dict(L);
    size_t kl;
    const char *k = check_key(L, 2, &kl);
    struct shdict_value n, init;
    check_number(L, 3, &n);
    bool has_init = !lua_isnoneornil(L, 4);
    if (has_init)
        check_number(L, 4, &init);
    double ttl = opt_ttl(L, 5);
    struct shdict_value out;
    bool forcible = false;
    int rc = shdict_incr(d, k, kl, &n, has_init ? &init : NULL, ttl, clock_ns(), &out,
                         &forcible);
    return written(L, rc, &out, forcible);
}

static int d_delete(lua_State *L)
{
    struct shdict *d = check_dict(L);
    size_t kl;
    const char *k = check_key(L, 2, &kl);
    lua_pushboolean(L, shdict_delete(d, k, kl, clock_ns()));
    return 1;
}

/* Seconds left; nil when the key never expires; nil, "not found". */
static int d_ttl(lua_State *L)
{
    struct shdict *d = check_dict(L);
    size_t kl;
    const char *k = check_key(L, 2, &kl);
    double left;
    int rc = shdict_ttl(d, k, kl, clock_ns(), &left);
    if (rc != SHDICT_OK)
        return fail(L, rc);
    if (left > 0)
        lua_pushnumber(L, (lua_Number)left);
    else
        lua_pushnil(L);
    return 1;
}

static int d_expire(lua_State *L)
{
    struct shdict *d = check_dict(L);
    size_t kl;
    const char *k = check_key(L, 2, &kl);
    luaL_checkany(L, 3);
    double ttl = opt_ttl(L, 3);
    int rc = shdict_expire(d, k, kl, ttl, clock_ns());
    if (rc != SHDICT_OK)
        return fail(L, rc);
    lua_pushboolean(L, 1);
    return 1;
}

static int keys_box_gc(lua_State *L)
{
    void **box = lua_touserdata(L, 1);
    free(*box);
    *box = NULL;
    return 0;
}

static int d_keys(lua_State *L)
{
    struct shdict *d = check_dict(L);
    size_t max = opt_count(L, 2, LIM_DICT_KEYS_DEFAULT);
    /* The C copy sits in a box the collector frees should a Lua allocation
     * below raise. */
    void **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &keys_box_key);
    lua_setmetatable(L, -2);
    size_t n;
    struct shdict_key *keys = shdict_keys(d, clock_ns(), max, &n);
    *box = keys;
    lua_createtable(L, n > INT32_MAX ? INT32_MAX : (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushlstring(L, keys[i].p, keys[i].len);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    free(keys);
    *box = NULL;
    return 1;
}

static int d_flush_all(lua_State *L)
{
    shdict_flush_all(check_dict(L));
    return 0;
}

static int d_flush_expired(lua_State *L)
{
    struct shdict *d = check_dict(L);
    size_t max = opt_count(L, 2, 0);
    lua_pushinteger(L, (lua_Integer)shdict_flush_expired(d, clock_ns(), max));
    return 1;
}

static int d_capacity(lua_State *L)
{
    struct shdict_stats st;
    shdict_stats(check_dict(L), &st);
    lua_pushinteger(L, (lua_Integer)st.capacity);
    return 1;
}

static int d_used(lua_State *L)
{
    struct shdict_stats st;
    shdict_stats(check_dict(L), &st);
    lua_pushinteger(L, (lua_Integer)st.used);
    return 1;
}

static int d_tostring(lua_State *L)
{
    struct shdict *d = check_dict(L);
    struct shdict_stats st;
    shdict_stats(d, &st);
    lua_pushfstring(L, "dict %s (%I of %I bytes)", shdict_name(d), (lua_Integer)st.used,
                    (lua_Integer)st.capacity);
    return 1;
}

/* moonws.dict(name [, capacity]): capacity is a number of bytes or a
 * string with K, M or G. */
static int m_dict(lua_State *L)
{
    luaL_argexpected(L, lua_type(L, 1) == LUA_TSTRING, 1, "string");
    size_t nl;
    const char *name = lua_tolstring(L, 1, &nl);
    size_t cap = 0;
    if (!lua_isnoneornil(L, 2)) {
        bool ok;
        if (lua_isinteger(L, 2)) {
            lua_Integer n = lua_tointeger(L, 2);
            ok = n > 0;
            cap = (size_t)n;
        } else {
            ok = lua_type(L, 2) == LUA_TSTRING && shdict_parse_size(lua_tostring(L, 2), &cap);
        }
        luaL_argcheck(L, ok, 2, "a capacity is a positive number of bytes or a string like \"10M\"");
    }
    struct shdict *d;
    enum shdict_open_rc rc = strlen(name) == nl ? shdict_open(name, cap, &d) : SHDICT_BAD_NAME;
    struct lx_rt *rt = lx_rt_of(L);
    const char *who = rt->current ? rt->current->file : "moonws";
    switch (rc) {
    case SHDICT_BAD_NAME:
        return luaL_argerror(L, 1, "a dictionary's name is 1 to 64 letters, digits or _ . : -");
    case SHDICT_TOO_MANY:
        return luaL_error(L, "moonws.dict: at most %d dictionaries in the process", LIM_DICTS);
    case SHDICT_CONFLICT:
        log_warn("%s: dict %s keeps its capacity of %zu bytes, not the %zu asked for (a "
                 "dictionary is sized once per process: by --dict, or by the first "
                 "moonws.dict(name, capacity))",
                 who, name, shdict_capacity(d), cap);
        break;
    case SHDICT_CREATED:
    case SHDICT_SIZED:
        log_debug("%s: dict %s has %zu bytes", who, name, shdict_capacity(d));
        break;
    case SHDICT_OPENED:
        break;
    }
    struct lx_dict *h = lua_newuserdatauv(L, sizeof *h, 0);
    h->d = d;
    luaL_setmetatable(L, DICT_MT);
    return 1;
}

void lx_dict_init(struct lx_rt *rt)
{
    lua_State *L = rt->L;
    static const luaL_Reg methods[] = {
        { "get", d_get },
        { "set", d_set },
        { "add", d_add },
        { "replace", d_replace },
        { "incr", d_incr },
        { "delete", d_delete },
        { "ttl", d_ttl },
        { "expire", d_expire },
        { "keys", d_keys },
        { "flush_all", d_flush_all },
        { "flush_expired", d_flush_expired },
        { "capacity", d_capacity },
        { "used", d_used },
        { NULL, NULL },
    };
    luaL_newmetatable(L, DICT_MT);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, d_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);

    lua_newtable(L);
    lua_pushcfunction(L, keys_box_gc);
    lua_setfield(L, -2, "__gc");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &keys_box_key);

    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->module_ref);
    lua_pushcfunction(L, m_dict);
    lua_setfield(L, -2, "dict");
    lua_pop(L, 1);
}
