/*
 * Loading a service file: compiling and running it into a candidate, and
 * validating the table it returns. Every rule of docs/reference.md, "Rules
 * checked at load time", is checked before anything changes, and every
 * error names the file and a line.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lx.h"
#include "lx_service.h"


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
int lx_handler_of(const char *name)
{
    for (size_t i = 0; i < sizeof handler_names / sizeof *handler_names; i++) {
        if (strcmp(name, handler_names[i].name) == 0)
            return (int)handler_names[i].h;
    }
    return -1;
}

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
static int handler_entry(const char *k, bool nocase)
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
           handler_entry(k, true) >= 0;
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
    int i = handler_entry(squashed, true);
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
        r->metrics_route = -1;
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
        int entry = handler_entry(k, false);
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
    double idle = lc->rt->svc_defaults.idle_timeout, maxmsg = LIM_WS_MESSAGE_DEFAULT,
           maxbp = (double)lc->rt->svc_defaults.max_backpressure,
           closet = lc->rt->svc_defaults.close_timeout;
    if (!number_field(lc, tbl, "idle_timeout", 0, 1e9, false, &idle) ||
        !number_field(lc, tbl, "close_timeout", LIM_WS_CLOSE_TIMEOUT_MIN, LIM_WS_CLOSE_TIMEOUT_MAX,
                      false, &closet) ||
        !number_field(lc, tbl, "max_message", 1, (double)(1ULL << 40), true, &maxmsg) ||
        !number_field(lc, tbl, "max_backpressure", 1, (double)(1ULL << 40), true, &maxbp))
        return false;
    conf->idle_timeout = idle;
    conf->close_timeout = closet;
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

bool lx_service_read(const char *dir, const char *file, struct buf *out, char *err, size_t errcap)
{
    char full[4096];
    snprintf(full, sizeof full, "%s/%s", dir, file);
    FILE *f = fopen(full, "rb");
    if (!f) {
        snprintf(err, errcap, "%s: cannot open: %s", file, strerror(errno));
        return false;
    }
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_append(out, chunk, n);
    bool failed = ferror(f);
    fclose(f);
    if (failed) {
        snprintf(err, errcap, "%s: cannot read: %s", file, strerror(errno));
        return false;
    }
    /* The NUL the loader wants after the bytes (not counted). */
    buf_reserve(out, 1)[0] = '\0';
    return true;
}

struct lx_service *lx_service_load(struct lx_rt *rt, const char *file, const char *shared_of,
                                   char *err, size_t errcap)
{
    struct buf src = { 0 };
    struct lx_service *ls = NULL;
    if (lx_service_read(rt->dir, file, &src, err, errcap))
        ls = lx_service_load_source(rt, file, src.data, src.len, shared_of, err, errcap);
    buf_free(&src);
    return ls;
}

struct lx_service *lx_service_load_source(struct lx_rt *rt, const char *file, const char *src,
                                          size_t len, const char *shared_of, char *err,
                                          size_t errcap)
{
    lua_State *L = rt->L;
    struct lx_service *ls = lx_service_new(rt, file);
    ls->shared_key = xstrdup(shared_of ? shared_of : file);
    struct load_ctx lc = { rt, ls, src, err, errcap };
    char chunkname[4200];
    snprintf(chunkname, sizeof chunkname, "@%s", file);
    bool ok = false;
    if (luaL_loadbufferx(L, src, len, chunkname, "t") != LUA_OK) {
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
    if (!ok) {
        lx_service_discard(rt, ls);
        return NULL;
    }
    return ls;
}
