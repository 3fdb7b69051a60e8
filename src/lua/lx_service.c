/*
 * Services: loading a file into a validated candidate, installing it (new,
 * or over the running version), unloading it — and the svc_ops through
 * which the protocol layer reaches a service's handlers.
 *
 * Every rule of DESIGN.md §2 is checked before anything changes, and every
 * error names the file and a line.
 */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../transport/conn.h"
#include "../util/limits.h"
#include "../util/log.h"
#include "lx.h"
#include "lx_json.h"
#include "lx_service.h"

#define NO_REF (-2)

static const struct {
    const char *name;
    enum lx_handler h;
} handler_names[] = {
    { "onUpgrade", H_UPGRADE },
    { "onOpen", H_OPEN },
    { "onText", H_TEXT },
    { "onTextMessage", H_TEXT },
    { "onBinary", H_BINARY },
    { "onBinaryMessage", H_BINARY },
    { "onMessage", H_MESSAGE },
    { "onPing", H_PING },
    { "onPong", H_PONG },
    { "onIdleTimeout", H_IDLE },
    { "onClose", H_CLOSE },
    { "onError", H_ERROR },
};

static const char *const http_methods[] = { "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS" };

void lx_push_handler(struct lx_rt *rt, struct lx_service *ls, enum lx_handler h)
{
    if (ls->handler[h] == LUA_NOREF)
        lua_pushnil(rt->L);
    else
        lua_rawgeti(rt->L, LUA_REGISTRYINDEX, ls->handler[h]);
}

/* ---- loading ---- */

/* The line where `key =` first appears in src: where a table field was
 * most likely set. 0 when not found. */
static int line_of_field(const char *src, const char *key)
{
    size_t kl = strlen(key);
    int line = 1;
    for (const char *p = src; *p; p++) {
        if (*p == '\n') {
            line++;
            continue;
        }
        if (p[0] == '-' && p[1] == '-') {
            /* A comment, to the end of its line or of its [[ ]] block. */
            const char *end = NULL;
            if (p[2] == '[' && (p[3] == '[' || p[3] == '='))
                end = strstr(p, "]]");
            for (const char *q = p; *q && (end ? q < end : *q != '\n'); q++)
                line += *q == '\n';
            p = end ? end + 1 : p + strcspn(p, "\n") - 1;
            continue;
        }
        if (strncmp(p, key, kl) != 0 || (p > src && (isalnum((unsigned char)p[-1]) || p[-1] == '_')))
            continue;
        const char *q = p + kl;
        if (*q == '"' || *q == '\'')
            q++;                /* ["key"] = */
        if (*q == ']')
            q++;
        while (*q == ' ' || *q == '\t')
            q++;
        if (*q == '=' && q[1] != '=')
            return line;
    }
    return 0;
}

/* The entry of handler_names called k (ignoring case when asked), or -1. */
static int handler_of(const char *k, bool nocase)
{
    for (size_t i = 0; i < sizeof handler_names / sizeof *handler_names; i++) {
        if ((nocase ? strcasecmp(k, handler_names[i].name) : strcmp(k, handler_names[i].name)) == 0)
            return (int)i;
    }
    return -1;
}

/* True for a key that names a handler, or tries to: "onSomething", and the
 * near misses "OnText", "on_text", "onmessage" (but not "online"). */
static bool handler_like(const char *k)
{
    return ((k[0] == 'o' || k[0] == 'O') && k[1] == 'n' &&
            (isupper((unsigned char)k[2]) || k[2] == '_' || k[2] == '-')) ||
           handler_of(k, true) >= 0;
}

/* The handler a near miss was meant to be ("onmessage", "on_text",
 * "OnClose"), or NULL for an exact name or a custom on<Event>. */
static const char *misspelled_handler(const char *k)
{
    char squashed[64];
    size_t n = 0;
    for (const char *p = k; *p && n + 1 < sizeof squashed; p++) {
        if (*p != '_' && *p != '-')
            squashed[n++] = *p;
    }
    squashed[n] = '\0';
    int i = handler_of(squashed, true);
    return i >= 0 && strcmp(k, handler_names[i].name) != 0 ? handler_names[i].name : NULL;
}

struct load_ctx {
    struct lx_rt *rt;
    struct lx_service *ls;
    const char *src;
    char *err;
    size_t errcap;
};

/* Formats "file:line: message" into the error buffer; returns false. */
static bool fail(struct load_ctx *lc, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool fail(struct load_ctx *lc, int line, const char *fmt, ...)
{
    int n = snprintf(lc->err, lc->errcap, "%s:%d: ", lc->ls->file, line > 0 ? line : 1);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(lc->err + n, lc->errcap - (size_t)n, fmt, ap);
    va_end(ap);
    return false;
}

static int field_line(struct load_ctx *lc, const char *key)
{
    return line_of_field(lc->src, key);
}

/* The line a function value (at idx) was defined on. */
static int function_line(lua_State *L, int idx)
{
    lua_Debug ar;
    lua_pushvalue(L, idx);
    if (!lua_getinfo(L, ">S", &ar))
        return 0;
    return ar.linedefined > 0 ? ar.linedefined : 0;
}

static bool string_list(struct load_ctx *lc, int tbl, const char *key, char ***out, size_t *n)
{
    lua_State *L = lc->rt->L;
    *out = NULL;
    *n = 0;
    int t = lx_rawfield(L, tbl, key);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return true;
    }
    if (t == LUA_TSTRING) {
        /* A single value is a list of one. */
        *out = xmalloc(sizeof **out);
        (*out)[0] = xstrdup(lua_tostring(L, -1));
        *n = 1;
        lua_pop(L, 1);
        return true;
    }
    if (t != LUA_TTABLE) {
        lua_pop(L, 1);
        return fail(lc, field_line(lc, key), "`%s` must be a list of strings", key);
    }
    size_t len = lua_rawlen(L, -1);
    *out = xcalloc(len ? len : 1, sizeof **out);
    for (size_t i = 1; i <= len; i++) {
        if (lua_rawgeti(L, -1, (lua_Integer)i) != LUA_TSTRING || lua_rawlen(L, -1) == 0) {
            lua_pop(L, 2);
            return fail(lc, field_line(lc, key), "`%s` must be a list of non-empty strings", key);
        }
        (*out)[(*n)++] = xstrdup(lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return true;
}

/* A number field in [lo, hi]; absent leaves *out as it is. */
static bool number_field(struct load_ctx *lc, int tbl, const char *key, double lo, double hi,
                         bool integer, double *out)
{
    lua_State *L = lc->rt->L;
    int t = lx_rawfield(L, tbl, key);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return true;
    }
    int isnum;
    double v = lua_tonumberx(L, -1, &isnum);
    bool isint = lua_isinteger(L, -1) || (isnum && v == (double)(long long)v);
    lua_pop(L, 1);
    if (t != LUA_TNUMBER || !isnum || v < lo || v > hi || (integer && !isint))
        return fail(lc, field_line(lc, key), "`%s` must be %s between %g and %g", key,
                    integer ? "an integer" : "a number", lo, hi);
    *out = v;
    return true;
}

static bool parse_compression(struct load_ctx *lc, int tbl, struct pmd_conf *pc)
{
    lua_State *L = lc->rt->L;
    *pc = (struct pmd_conf)PMD_CONF_DEFAULT;
    int t = lx_rawfield(L, tbl, "compression");
    if (t == LUA_TNIL || t == LUA_TBOOLEAN) {
        pc->enabled = t == LUA_TNIL || lua_toboolean(L, -1);
        lua_pop(L, 1);
        return true;
    }
    if (t != LUA_TTABLE) {
        lua_pop(L, 1);
        return fail(lc, field_line(lc, "compression"), "`compression` must be true, false or a table");
    }
    int ct = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, ct)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
        if (strcmp(k, "window_bits") && strcmp(k, "context_takeover") && strcmp(k, "level") &&
            strcmp(k, "threshold") && strcmp(k, "enabled")) {
            lua_pop(L, 2);
            return fail(lc, field_line(lc, "compression"),
                        "unknown compression option `%s` (window_bits, context_takeover, level, "
                        "threshold, enabled)", k);
        }
    }
    double wb = pc->window_bits, level = pc->level, threshold = (double)pc->threshold;
    if (!number_field(lc, ct, "window_bits", 8, 15, true, &wb) ||
        !number_field(lc, ct, "level", 0, 9, true, &level) ||
        !number_field(lc, ct, "threshold", 0, 1e12, true, &threshold)) {
        lua_pop(L, 1);
        return false;
    }
    pc->window_bits = (uint8_t)wb;
    pc->level = (int)level;
    pc->threshold = (size_t)threshold;
    static const char *const flags[] = { "context_takeover", "enabled" };
    bool *dest[] = { &pc->context_takeover, &pc->enabled };
    for (size_t i = 0; i < 2; i++) {
        int ft = lx_rawfield(L, ct, flags[i]);
        if (ft == LUA_TBOOLEAN)
            *dest[i] = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (ft != LUA_TNIL && ft != LUA_TBOOLEAN) {
            lua_pop(L, 1);
            return fail(lc, field_line(lc, flags[i]), "compression option `%s` must be true or false",
                        flags[i]);
        }
    }
    lua_pop(L, 1);
    return true;
}

/* The path a file is served at: "chat.lua" -> "/chat", "a/index.lua" -> "/a". */
static char *path_for_file(const char *file)
{
    size_t n = strlen(file) - 4;    /* without ".lua" */
    struct buf b = { 0 };
    buf_append(&b, "/", 1);
    buf_append(&b, file, n);
    if (b.len >= 6 && memcmp(b.data + b.len - 6, "/index", 6) == 0)
        b.len -= 6;
    if (b.len == 0)
        buf_append(&b, "/", 1);
    buf_append(&b, "", 1);
    return b.data;
}

static char *join_route(const char *base, const char *route)
{
    if (strcmp(route, "/") == 0)
        return xstrdup(base);
    struct buf b = { 0 };
    if (strcmp(base, "/") != 0)
        buf_append_str(&b, base);
    buf_append_str(&b, route);
    buf_append(&b, "", 1);
    return b.data;
}

/* The folder of the service's file: where the names in its `auth` start. */
static void file_dir(struct load_ctx *lc, char *out, size_t cap)
{
    const char *slash = strrchr(lc->ls->file, '/');
    if (slash)
        snprintf(out, cap, "%s/%.*s", lc->rt->dir, (int)(slash - lc->ls->file), lc->ls->file);
    else
        snprintf(out, cap, "%s", lc->rt->dir);
}

/* Reads an `auth` value at idx (a table, or false where allowed) into *a;
 * *none for false. */
static bool auth_value(struct load_ctx *lc, int idx, int line, bool allow_false,
                       struct lx_auth **a, bool *none)
{
    lua_State *L = lc->rt->L;
    if (allow_false && lua_isboolean(L, idx) && !lua_toboolean(L, idx)) {
        *none = true;
        return true;
    }
    char base[4096], msg[512];
    const char *field;
    file_dir(lc, base, sizeof base);
    if (lx_auth_parse(L, idx, base, a, &field, msg, sizeof msg))
        return true;
    int fl = line ? line : field_line(lc, field);
    return fail(lc, fl ? fl : field_line(lc, "auth"), "`auth`: %s", msg);
}

/* A route given as a table, { handler = fn, auth = {...} | false }, at the
 * top of the stack: replaced by its handler; its auth goes to *ra. */
static bool route_table(struct load_ctx *lc, const char *key, int line,
                        struct lx_route_auth *ra)
{
    lua_State *L = lc->rt->L;
    int rv = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, rv)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
        if (strcmp(k, "handler") != 0 && strcmp(k, "auth") != 0) {
            lua_pop(L, 1);
            return fail(lc, line, "route \"%s\": unknown field `%s` (handler, auth)", key, k);
        }
    }
    if (lx_rawfield(L, rv, "auth") != LUA_TNIL &&
        !auth_value(lc, lua_gettop(L), line, true, &ra->own, &ra->none)) {
        lua_pop(L, 1);
        return false;
    }
    lua_pop(L, 1);
    lx_rawfield(L, rv, "handler");
    lua_replace(L, rv);
    return true;
}

static bool parse_routes(struct load_ctx *lc, int tbl)
{
    lua_State *L = lc->rt->L;
    struct lx_service *ls = lc->ls;
    int t = lx_rawfield(L, tbl, "http");
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return true;
    }
    if (t != LUA_TTABLE) {
        lua_pop(L, 1);
        return fail(lc, field_line(lc, "http"), "`http` must be a table of \"METHOD /path\" = function");
    }
    int ht = lua_gettop(L);
    lua_newtable(L);                    /* route handlers, by route index + 1 */
    int fns = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, ht)) {
        int line = lua_isfunction(L, -1) ? function_line(L, -1) : 0;
        struct lx_route_auth ra = { 0 };
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 4);
            return fail(lc, field_line(lc, "http"), "`http` keys must be strings like \"GET /stats\"");
        }
        const char *key = lua_tostring(L, -2);
        if (!line)
            line = line_of_field(lc->src, key);
        const char *sp = strchr(key, ' ');
        bool method_ok = false;
        for (size_t i = 0; sp && i < sizeof http_methods / sizeof *http_methods; i++)
            method_ok |= strlen(http_methods[i]) == (size_t)(sp - key) &&
                         strncmp(http_methods[i], key, (size_t)(sp - key)) == 0;
        if (!method_ok || sp[1] != '/' || strchr(sp + 1, ' ') || strchr(sp + 1, '?')) {
            lua_pop(L, 4);
            return fail(lc, line, "bad route \"%s\": want \"METHOD /path\" with METHOD one of "
                        "GET POST PUT PATCH DELETE OPTIONS", key);
        }
        if (lua_istable(L, -1) && !route_table(lc, key, line, &ra)) {
            lua_pop(L, 4);
            return false;
        }
        if (!lua_isfunction(L, -1)) {
            lx_auth_free(ra.own);
            lua_pop(L, 4);
            return fail(lc, line, "route \"%s\" must be a function, or a table { handler = "
                        "function, auth = {...} | false }", key);
        }
        char *full = join_route(ls->svc.path, sp + 1);
        const char *why = router_check_pattern(full);
        for (size_t i = 0; !why && i < ls->svc.nroutes; i++) {
            struct svc_route *o = &ls->svc.routes[i];
            if (strlen(o->method) == (size_t)(sp - key) && strncmp(o->method, key, (size_t)(sp - key)) == 0 &&
                router_same_path(o->path, full))
                why = "another route of this method has the same path (parameter names aside)";
        }
        if (why) {
            free(full);
            lx_auth_free(ra.own);
            lua_pop(L, 4);
            return fail(lc, line, "route \"%s\": %s", key, why);
        }
        ls->route_auth = xrealloc(ls->route_auth, (ls->svc.nroutes + 1) * sizeof *ls->route_auth);
        ls->route_auth[ls->svc.nroutes] = ra;
        ls->svc.routes = xrealloc(ls->svc.routes, (ls->svc.nroutes + 1) * sizeof *ls->svc.routes);
        struct svc_route *r = &ls->svc.routes[ls->svc.nroutes++];
        r->method = xstrndup(key, (size_t)(sp - key));
        r->path = full;
        lua_pushvalue(L, -1);
        lua_rawseti(L, fns, (lua_Integer)ls->svc.nroutes);
        lua_pop(L, 1);
    }
    ls->routes_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    return true;
}

/* Checks the returned table (at index tbl) and fills ls from it. */
static bool validate(struct load_ctx *lc, int tbl)
{
    lua_State *L = lc->rt->L;
    struct lx_service *ls = lc->ls;
    struct svc_conf *conf = &ls->svc.conf;

    /* path */
    int t = lx_rawfield(L, tbl, "path");
    ls->path_line = 1;
    if (t == LUA_TNIL) {
        ls->svc.path = path_for_file(ls->file);
        const char *why = router_check_pattern(ls->svc.path);
        if (why) {
            lua_pop(L, 1);
            return fail(lc, 1, "the path %s from the file name: %s", ls->svc.path, why);
        }
    } else if (t == LUA_TSTRING && lua_tostring(L, -1)[0] == '/' &&
               !strpbrk(lua_tostring(L, -1), " ?#")) {
        const char *why = router_check_pattern(lua_tostring(L, -1));
        if (why) {
            lua_pop(L, 1);
            return fail(lc, field_line(lc, "path"), "`path`: %s", why);
        }
        ls->svc.path = xstrdup(lua_tostring(L, -1));
        int line = field_line(lc, "path");
        ls->path_line = line > 0 ? line : 1;
    } else {
        lua_pop(L, 1);
        return fail(lc, field_line(lc, "path"), "`path` must be a string starting with /");
    }
    lua_pop(L, 1);

    /* dispatch: with it, any on<Name> function is an event handler */
    t = lx_rawfield(L, tbl, "dispatch");
    if (t == LUA_TSTRING && lua_rawlen(L, -1) > 0)
        ls->dispatch_key = xstrdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    if (t != LUA_TNIL && !ls->dispatch_key)
        return fail(lc, field_line(lc, "dispatch"), "`dispatch` must be the name of a JSON field");

    /* sandbox = false: the unsafe extras for this service (lx_sandbox.c) */
    t = lx_rawfield(L, tbl, "sandbox");
    ls->unsafe = t == LUA_TBOOLEAN && !lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (t != LUA_TNIL && t != LUA_TBOOLEAN)
        return fail(lc, field_line(lc, "sandbox"), "`sandbox` must be true or false");

    /* handlers */
    const char *seen[H_COUNT] = { 0 };
    lua_pushnil(L);
    while (lua_next(L, tbl)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 1);
            continue;
        }
        const char *k = lua_tostring(L, -2);
        if (!handler_like(k)) {
            lua_pop(L, 1);
            continue;
        }
        int line = lua_isfunction(L, -1) ? function_line(L, -1) : field_line(lc, k);
        int entry = handler_of(k, false);
        int found = entry >= 0 ? (int)handler_names[entry].h : -1;
        if (!lua_isfunction(L, -1)) {
            lua_pop(L, 2);
            return fail(lc, line, "%s must be a function", k);
        }
        const char *meant = misspelled_handler(k);
        if (meant) {
            lua_pop(L, 2);
            return fail(lc, line, "unknown handler %s (did you mean %s?)", k, meant);
        }
        if (found < 0) {
            if (!ls->dispatch_key) {
                lua_pop(L, 2);
                return fail(lc, line, "unknown handler %s (onUpgrade, onOpen, onText, onBinary, "
                            "onMessage, onPing, onPong, onIdleTimeout, onClose, onError; custom "
                            "on<Event> handlers need `dispatch`)", k);
            }
            lua_pop(L, 1);
            continue;
        }
        if (seen[found]) {
            lua_pop(L, 2);
            return fail(lc, line, "%s and %s are the same handler: define one", seen[found], k);
        }
        seen[found] = k;
        lua_pushvalue(L, -1);
        ls->handler[found] = luaL_ref(L, LUA_REGISTRYINDEX);
        lua_pop(L, 1);
    }
    if (seen[H_MESSAGE] && (seen[H_TEXT] || seen[H_BINARY])) {
        lx_push_handler(lc->rt, ls, H_MESSAGE);
        int line = function_line(L, -1);
        lua_pop(L, 1);
        return fail(lc, line, "onMessage cannot be combined with %s",
                    seen[H_TEXT] ? seen[H_TEXT] : seen[H_BINARY]);
    }

    /* options */
    if (!string_list(lc, tbl, "protocols", &conf->protocols, &conf->nprotocols) ||
        !string_list(lc, tbl, "origins", &conf->origins, &conf->norigins))
        return false;
    lx_rawfield(L, tbl, "origins");
    conf->any_origin = lua_isnil(L, -1);
    lua_pop(L, 1);
    double idle = LIM_WS_IDLE_DEFAULT, maxmsg = LIM_WS_MESSAGE_DEFAULT,
           maxbp = LIM_WS_BACKPRESSURE;
    if (!number_field(lc, tbl, "idle_timeout", 0, 1e9, false, &idle) ||
        !number_field(lc, tbl, "max_message", 1, (double)(1ULL << 40), true, &maxmsg) ||
        !number_field(lc, tbl, "max_backpressure", 1, (double)(1ULL << 40), true, &maxbp))
        return false;
    conf->idle_timeout = idle;
    conf->max_message = (size_t)maxmsg;
    conf->max_backpressure = (size_t)maxbp;
    conf->auto_pong = ls->handler[H_PING] == LUA_NOREF;
    if (!parse_compression(lc, tbl, &conf->pmd))
        return false;
    if (lx_rawfield(L, tbl, "auth") != LUA_TNIL) {
        bool none = false;
        bool ok = auth_value(lc, lua_gettop(L), 0, false, &ls->auth, &none);
        lua_pop(L, 1);
        if (!ok)
            return false;
    } else {
        lua_pop(L, 1);
    }
    return parse_routes(lc, tbl);
}

static struct lx_service *service_new(struct lx_rt *rt, const char *file)
{
    struct lx_service *ls = xcalloc(1, sizeof *ls);
    ls->rt = rt;
    ls->file = xstrdup(file);
    ls->name = xstrndup(file, strlen(file) - 4);
    ls->table_ref = ls->env_ref = ls->routes_ref = LUA_NOREF;
    ls->shared_undo_ref = LUA_NOREF;
    for (int i = 0; i < H_COUNT; i++)
        ls->handler[i] = LUA_NOREF;
    ls->svc.ops = &lx_svc_ops;
    ls->svc.rt = ls;
    ls->svc.refs = 1;
    return ls;
}

/* Drops everything a (candidate or retired) version holds in Lua. */
static void release_lua(struct lx_rt *rt, struct lx_service *ls)
{
    lua_State *L = rt->L;
    luaL_unref(L, LUA_REGISTRYINDEX, ls->table_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, ls->env_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, ls->routes_ref);
    ls->table_ref = ls->env_ref = ls->routes_ref = LUA_NOREF;
    for (int i = 0; i < H_COUNT; i++) {
        luaL_unref(L, LUA_REGISTRYINDEX, ls->handler[i]);
        ls->handler[i] = LUA_NOREF;
    }
}

static void free_routes(struct svc *s)
{
    for (size_t i = 0; i < s->nroutes; i++) {
        free(s->routes[i].method);
        free(s->routes[i].path);
    }
    free(s->routes);
    s->routes = NULL;
    s->nroutes = 0;
}

static void free_auth(struct lx_service *ls)
{
    lx_auth_free(ls->auth);
    ls->auth = NULL;
    for (size_t i = 0; ls->route_auth && i < ls->svc.nroutes; i++)
        lx_auth_free(ls->route_auth[i].own);
    free(ls->route_auth);
    ls->route_auth = NULL;
}

static void service_free(struct lx_service *ls)
{
    free_auth(ls);
    svc_conf_free(&ls->svc.conf);
    free_routes(&ls->svc);
    free(ls->svc.path);
    free(ls->dispatch_key);
    free(ls->file);
    free(ls->name);
    free(ls->shared_key);
    free(ls);
}

/* Discards a candidate that failed (or was only checked). */
void lx_service_discard(struct lx_rt *rt, struct lx_service *ls)
{
    lx_shared_undo(rt, ls);
    lx_timer_cancel_all(rt, ls);
    release_lua(rt, ls);
    service_free(ls);
}

struct lx_service *lx_service_load(struct lx_rt *rt, const char *file, const char *shared_of,
                                   char *err, size_t errcap)
{
    lua_State *L = rt->L;
    struct buf src = { 0 };
    char full[4096];
    snprintf(full, sizeof full, "%s/%s", rt->dir, file);
    FILE *f = fopen(full, "rb");
    if (!f) {
        snprintf(err, errcap, "%s: cannot open: %s", file, strerror(errno));
        return NULL;
    }
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_append(&src, chunk, n);
    fclose(f);
    buf_append(&src, "", 1);

    struct lx_service *ls = service_new(rt, file);
    ls->shared_key = xstrdup(shared_of ? shared_of : file);
    struct load_ctx lc = { rt, ls, src.data, err, errcap };
    char chunkname[4200];
    snprintf(chunkname, sizeof chunkname, "@%s", file);
    bool ok = false;
    if (luaL_loadbufferx(L, src.data, src.len - 1, chunkname, "t") != LUA_OK) {
        snprintf(err, errcap, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        goto out;
    }
    lx_env_new(rt, ls);
    lua_pushvalue(L, -1);
    ls->env_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_setupvalue(L, -2, 1);           /* the chunk's _ENV */
    const char *msg = NULL;
    rt->loading = true;                 /* the error is ours to report, once */
    bool ran = lx_call(rt, ls, NULL, 0, 1, &msg);
    rt->loading = false;
    if (!ran) {
        /* Errors from the file's code carry "file:line:"; others (the CPU
         * budget, an error object without a position) get the file. */
        if (!msg)
            msg = "error while loading";
        size_t fl = strlen(file);
        if (strncmp(msg, file, fl) == 0 && msg[fl] == ':')
            snprintf(err, errcap, "%s", msg);
        else
            snprintf(err, errcap, "%s:1: %s", file, msg);
        goto out;
    }
    if (!lua_istable(L, -1)) {
        fail(&lc, 0, "a service file must return a table (got %s)", luaL_typename(L, -1));
        lua_pop(L, 1);
        goto out;
    }
    int tbl = lua_gettop(L);
    ok = validate(&lc, tbl);
    lua_settop(L, tbl);
    if (ok) {
        ls->table_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        if (ls->unsafe && !rt->unsafe_lua) {
            /* Known only now that the file has returned its table: the
             * top level ran without them, handlers have them. */
            lua_rawgeti(L, LUA_REGISTRYINDEX, ls->env_ref);
            lx_sandbox_unsafe(rt, -1);
            lua_pop(L, 1);
        }
    } else {
        lua_pop(L, 1);
    }
out:
    buf_free(&src);
    if (!ok) {
        lx_service_discard(rt, ls);
        return NULL;
    }
    return ls;
}

/* ---- svc_ops: the protocol layer calling in ---- */

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

static void rt_message(struct svc *s, struct ws_conn *wc, uint8_t op, char *data, size_t len)
{
    struct lx_service *ls = s->rt;
    struct lx_rt *rt = ls->rt;
    lua_State *L = rt->L;
    bool text = op == WS_OP_TEXT;

    if (text && (ls->dispatch_key || ls->handler[H_MESSAGE] != LUA_NOREF)) {
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
            if (ev && handler_of(name, false) < 0) {
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
                    return;
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
                return;
            }
            lx_push_handler(rt, ls, H_MESSAGE);
            lx_caller_push(rt, wc);
            lua_pushvalue(L, -3);
            if (lx_call(rt, ls, wc, 2, 1, NULL))
                lx_reply_send(rt, ls, wc, "onMessage");
            lua_pop(L, 1);
            return;
        }
        lua_pop(L, 1);
    }

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
        lx_call(rt, ls, NULL, 3, 0, NULL);
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
    release_lua(ls->rt, ls);
    service_free(ls);
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

/* ---- installing and removing ---- */

bool lx_service_mount(struct lx_rt *rt, struct lx_service *ls, char *err, size_t errcap)
{
    struct svc *other = router_mount(&rt->router, &ls->svc);
    if (other) {
        snprintf(err, errcap, "%s:%d: path %s is already served by %s", ls->file, ls->path_line,
                 ls->svc.path, ((struct lx_service *)other->rt)->file);
        return false;
    }
    ls->mounted = true;
    lx_shared_keep(rt, ls);
    if (rt->nsvcs == rt->capsvcs) {
        rt->capsvcs = rt->capsvcs ? rt->capsvcs * 2 : 8;
        rt->svcs = xrealloc(rt->svcs, rt->capsvcs * sizeof *rt->svcs);
    }
    rt->svcs[rt->nsvcs++] = ls;
    return true;
}

struct lx_service *lx_service_find(struct lx_rt *rt, const char *file)
{
    for (size_t i = 0; i < rt->nsvcs; i++) {
        if (strcmp(rt->svcs[i]->file, file) == 0)
            return rt->svcs[i];
    }
    return NULL;
}

size_t lx_service_open_count(const struct lx_service *ls)
{
    size_t n = 0;
    for (struct ws_conn *wc = ls->svc.conns; wc; wc = wc->svc_next)
        n += ws_is_open(wc);
    return n;
}

void lx_service_unmount(struct lx_rt *rt, struct lx_service *ls)
{
    if (ls->mounted)
        router_unmount(&rt->router, &ls->svc);
    ls->mounted = false;
}

void lx_service_replace(struct lx_rt *rt, struct lx_service *old, struct lx_service *cand)
{
    bool moved = strcmp(old->svc.path, cand->svc.path) != 0;
    if (moved)
        lx_service_unmount(rt, old);
    /* The old version's Lua state and timers go; the candidate's move in. */
    lx_shared_keep(rt, cand);
    lx_timer_cancel_all(rt, old);
    lx_timer_adopt(rt, old, cand);
    release_lua(rt, old);
    old->table_ref = cand->table_ref;
    old->env_ref = cand->env_ref;
    old->routes_ref = cand->routes_ref;
    memcpy(old->handler, cand->handler, sizeof old->handler);
    cand->table_ref = cand->env_ref = cand->routes_ref = LUA_NOREF;
    for (int i = 0; i < H_COUNT; i++)
        cand->handler[i] = LUA_NOREF;

    free(old->dispatch_key);
    old->dispatch_key = cand->dispatch_key;
    cand->dispatch_key = NULL;
    svc_conf_free(&old->svc.conf);
    old->svc.conf = cand->svc.conf;
    cand->svc.conf = (struct svc_conf){ 0 };
    free_auth(old);
    free_routes(&old->svc);
    old->svc.routes = cand->svc.routes;
    old->svc.nroutes = cand->svc.nroutes;
    old->auth = cand->auth;
    old->route_auth = cand->route_auth;
    cand->svc.routes = NULL;
    cand->svc.nroutes = 0;
    cand->auth = NULL;
    cand->route_auth = NULL;
    old->path_line = cand->path_line;
    old->unsafe = cand->unsafe;
    if (strcmp(old->file, cand->file) != 0) {
        /* Moved to another file: the service goes by its new name, and its
         * moonws.shared (the one the candidate was loaded with) follows. */
        lx_shared_rename(rt, old->file, cand->file);
        char *t = old->file;
        old->file = cand->file;
        cand->file = t;
        t = old->name;
        old->name = cand->name;
        cand->name = t;
        free(old->shared_key);
        old->shared_key = xstrdup(old->file);
    }
    if (moved) {
        free(old->svc.path);
        old->svc.path = cand->svc.path;
        cand->svc.path = NULL;
    }
    if (!old->mounted) {
        /* The caller made sure the path is free. */
        struct svc *taken = router_mount(&rt->router, &old->svc);
        assert(!taken);
        (void)taken;
        old->mounted = true;
    }
    /* Open connections follow the new limits (compression stays as negotiated). */
    for (struct ws_conn *wc = old->svc.conns; wc; wc = wc->svc_next)
        wc->rx.max_message = old->svc.conf.max_message;
    service_free(cand);
}

void lx_service_unload(struct lx_rt *rt, struct lx_service *ls, const char *reason)
{
    for (size_t i = 0; i < rt->nsvcs; i++) {
        if (rt->svcs[i] == ls) {
            memmove(&rt->svcs[i], &rt->svcs[i + 1], (rt->nsvcs - i - 1) * sizeof *rt->svcs);
            rt->nsvcs--;
            break;
        }
    }
    if (ls->mounted)
        router_unmount(&rt->router, &ls->svc);
    ls->mounted = false;
    lx_timer_cancel_all(rt, ls);
    for (struct ws_conn *wc = ls->svc.conns; wc; wc = wc->svc_next)
        ws_close(wc, WS_CLOSE_GOING_AWAY, reason, strlen(reason));
    /* Handlers stay until the last connection is gone: onClose still runs. */
    svc_unref(&ls->svc);
}

