/*
 * JSON <-> Lua values (see lx_json.h for the rules and why they are ours).
 */
#include "lx_json.h"

#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/buf.h"
#include "../util/hex.h"
#include "../util/limits.h"
#include "../util/utf8.h"

/* The registry key of the metatable that marks arrays (its address). */
static const char array_mt_key = 'a';

static void push_array_mt(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &array_mt_key) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "moonws.json.array");
    lua_setfield(L, -2, "__name");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &array_mt_key);
}

void lx_json_mark_array(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    push_array_mt(L);
    lua_setmetatable(L, idx);
}

/* ---- decoding (runs protected: errors are raised with a position) ---- */

struct dec {
    lua_State *L;
    const char *s, *p, *end;
    int depth;
};

static int dec_fail(struct dec *d, const char *what)
{
    return luaL_error(d->L, "JSON: %s at character %d", what, (int)(d->p - d->s) + 1);
}

static void skip_ws(struct dec *d)
{
    while (d->p < d->end && (*d->p == ' ' || *d->p == '\t' || *d->p == '\n' || *d->p == '\r'))
        d->p++;
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit(p[i]);
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    return v;
}

static void add_utf8(luaL_Buffer *b, unsigned cp)
{
    char u[4];
    int n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    luaL_addlstring(b, u, (size_t)n);
}

/* A string at d->p (after its opening quote), pushed. */
static void dec_string(struct dec *d)
{
    const char *start = d->p;
    /* The common case, no escapes: one push of the bytes as they are. */
    while (d->p < d->end && *d->p != '"' && *d->p != '\\' && (unsigned char)*d->p >= 0x20)
        d->p++;
    if (d->p < d->end && *d->p == '"') {
        lua_pushlstring(d->L, start, (size_t)(d->p - start));
        d->p++;
        return;
    }
    luaL_Buffer b;
    luaL_buffinit(d->L, &b);
    luaL_addlstring(&b, start, (size_t)(d->p - start));
    for (;;) {
        if (d->p >= d->end)
            dec_fail(d, "unterminated string");
        unsigned char c = (unsigned char)*d->p;
        if (c == '"')
            break;
        if (c < 0x20)
            dec_fail(d, "control character in a string");
        if (c != '\\') {
            luaL_addchar(&b, (char)c);
            d->p++;
            continue;
        }
        if (d->end - d->p < 2)
            dec_fail(d, "unterminated string");
        char e = d->p[1];
        d->p += 2;
        switch (e) {
        case '"': luaL_addchar(&b, '"'); break;
        case '\\': luaL_addchar(&b, '\\'); break;
        case '/': luaL_addchar(&b, '/'); break;
        case 'b': luaL_addchar(&b, '\b'); break;
        case 'f': luaL_addchar(&b, '\f'); break;
        case 'n': luaL_addchar(&b, '\n'); break;
        case 'r': luaL_addchar(&b, '\r'); break;
        case 't': luaL_addchar(&b, '\t'); break;
        case 'u': {
            int cp = d->end - d->p >= 4 ? hex4(d->p) : -1;
            if (cp < 0)
                dec_fail(d, "bad \\u escape");
            d->p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                /* A high surrogate must be followed by its low half. */
                int lo = d->end - d->p >= 6 && d->p[0] == '\\' && d->p[1] == 'u' ? hex4(d->p + 2) : -1;
                if (lo < 0xDC00 || lo > 0xDFFF)
                    dec_fail(d, "lone surrogate in a \\u escape");
                d->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                dec_fail(d, "lone surrogate in a \\u escape");
            }
            add_utf8(&b, (unsigned)cp);
            break;
        }
        default:
            d->p--;
            dec_fail(d, "bad escape");
        }
    }
    d->p++;
    luaL_pushresult(&b);
}

/* A number, pushed: an integer when it has no fraction or exponent and
 * fits in 64 bits, else a float. */
static void dec_number(struct dec *d)
{
    const char *start = d->p;
    bool integral = true;
    if (d->p < d->end && *d->p == '-')
        d->p++;
    if (d->p < d->end && *d->p == '0') {
        d->p++;
    } else if (d->p < d->end && *d->p >= '1' && *d->p <= '9') {
        while (d->p < d->end && *d->p >= '0' && *d->p <= '9')
            d->p++;
    } else {
        dec_fail(d, "bad number");
    }
    if (d->p < d->end && *d->p == '.') {
        integral = false;
        d->p++;
        if (d->p >= d->end || *d->p < '0' || *d->p > '9')
            dec_fail(d, "bad number");
        while (d->p < d->end && *d->p >= '0' && *d->p <= '9')
            d->p++;
    }
    if (d->p < d->end && (*d->p == 'e' || *d->p == 'E')) {
        integral = false;
        d->p++;
        if (d->p < d->end && (*d->p == '+' || *d->p == '-'))
            d->p++;
        if (d->p >= d->end || *d->p < '0' || *d->p > '9')
            dec_fail(d, "bad number");
        while (d->p < d->end && *d->p >= '0' && *d->p <= '9')
            d->p++;
    }
    size_t n = (size_t)(d->p - start);
    if (integral) {
        bool neg = *start == '-';
        uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        bool fits = true;
        for (const char *q = start + neg; q < d->p && fits; q++) {
            unsigned dig = (unsigned)(*q - '0');
            fits = v <= (lim - dig) / 10;
            v = v * 10 + dig;
        }
        if (fits) {
            lua_pushinteger(d->L, neg ? (lua_Integer)(0 - v) : (lua_Integer)v);
            return;
        }
    }
    /* The grammar was checked above: strtod reads exactly this token. */
    char small[64];
    char *tok = n < sizeof small ? small : malloc(n + 1);
    if (!tok)
        dec_fail(d, "out of memory");
    memcpy(tok, start, n);
    tok[n] = '\0';
    double v = strtod(tok, NULL);
    if (tok != small)
        free(tok);
    lua_pushnumber(d->L, v);
}

static void dec_value(struct dec *d);

static void dec_enter(struct dec *d)
{
    if (++d->depth > LIM_JSON_DEPTH)
        dec_fail(d, "nested too deep");
    luaL_checkstack(d->L, 4, "JSON nesting");
}

static void dec_array(struct dec *d)
{
    dec_enter(d);
    lua_newtable(d->L);
    lua_Integer i = 0;
    skip_ws(d);
    if (d->p < d->end && *d->p == ']') {
        d->p++;
        lx_json_mark_array(d->L, -1);   /* so that it encodes as [] again */
        d->depth--;
        return;
    }
    for (;;) {
        dec_value(d);
        lua_rawseti(d->L, -2, ++i);
        skip_ws(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            continue;
        }
        if (d->p < d->end && *d->p == ']') {
            d->p++;
            break;
        }
        dec_fail(d, "expected ',' or ']'");
    }
    d->depth--;
}

static void dec_object(struct dec *d)
{
    dec_enter(d);
    lua_newtable(d->L);
    skip_ws(d);
    if (d->p < d->end && *d->p == '}') {
        d->p++;
        d->depth--;
        return;
    }
    for (;;) {
        skip_ws(d);
        if (d->p >= d->end || *d->p != '"')
            dec_fail(d, "expected a string key");
        d->p++;
        dec_string(d);
        skip_ws(d);
        if (d->p >= d->end || *d->p != ':')
            dec_fail(d, "expected ':'");
        d->p++;
        dec_value(d);
        lua_rawset(d->L, -3);
        skip_ws(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            continue;
        }
        if (d->p < d->end && *d->p == '}') {
            d->p++;
            break;
        }
        dec_fail(d, "expected ',' or '}'");
    }
    d->depth--;
}

static bool literal(struct dec *d, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0)
        return false;
    d->p += n;
    return true;
}

static void dec_value(struct dec *d)
{
    skip_ws(d);
    if (d->p >= d->end)
        dec_fail(d, "unexpected end");
    char c = *d->p;
    if (c == '{') {
        d->p++;
        dec_object(d);
    } else if (c == '[') {
        d->p++;
        dec_array(d);
    } else if (c == '"') {
        d->p++;
        dec_string(d);
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        dec_number(d);
    } else if (literal(d, "true")) {
        lua_pushboolean(d->L, 1);
    } else if (literal(d, "false")) {
        lua_pushboolean(d->L, 0);
    } else if (literal(d, "null")) {
        lua_pushlightuserdata(d->L, NULL);
    } else {
        dec_fail(d, "unexpected character");
    }
}

/* (text pointer, length) as light userdata and integer -> the value */
static int decode_protected(lua_State *L)
{
    struct dec d = { L, lua_touserdata(L, 1), NULL, NULL, 0 };
    d.p = d.s;
    d.end = d.s + lua_tointeger(L, 2);
    dec_value(&d);
    skip_ws(&d);
    if (d.p != d.end)
        dec_fail(&d, "text after the value");
    return 1;
}

bool lx_json_decode(lua_State *L, const char *s, size_t len)
{
    lua_pushcfunction(L, decode_protected);
    lua_pushlightuserdata(L, (void *)s);
    lua_pushinteger(L, (lua_Integer)len);
    return lua_pcall(L, 2, 1, 0) == LUA_OK;
}

/* ---- encoding (allocates nothing in Lua until the result is pushed) ---- */

struct enc {
    lua_State *L;
    struct buf *out;
    const char *err;
    char errbuf[96];
};

static bool enc_fail(struct enc *e, const char *why)
{
    if (!e->err)
        e->err = why;
    return false;
}

static void enc_string(struct enc *e, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    struct buf *b = e->out;
    buf_reserve(b, n + 2);
    b->data[b->len++] = '"';
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        buf_append(b, s + run, i - run);
        run = i + 1;
        char esc[6] = { '\\', 0 };
        size_t el = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            el = 6;
        }
        buf_append(b, esc, el);
    }
    buf_append(b, s + run, n - run);
    buf_append(b, "\"", 1);
}

/* A float in the shortest form that reads back the same; ".0" when it
 * would otherwise read back as an integer. */
static bool enc_float(struct enc *e, double v)
{
    if (!isfinite(v))
        return enc_fail(e, "cannot encode inf or nan as JSON");
    char tmp[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    buf_append_str(e->out, tmp);
    if (!strpbrk(tmp, ".eE"))
        buf_append(e->out, ".0", 2);
    return true;
}

static bool enc_value(struct enc *e, int idx, int depth);

/* Whether the table at idx encodes as an array: marked as one, or keys
 * exactly 1..n with n > 0. *n gets its length. */
static bool is_array(lua_State *L, int idx, lua_Integer *n)
{
    *n = (lua_Integer)lua_rawlen(L, idx);
    if (lua_getmetatable(L, idx)) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &array_mt_key);
        bool marked = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (marked)
            return true;
    }
    if (*n == 0)
        return false;
    lua_Integer count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > *n) {
            lua_pop(L, 1);
            return false;
        }
        count++;
    }
    return count == *n;
}

static bool enc_table(struct enc *e, int idx, int depth)
{
    lua_State *L = e->L;
    if (depth > LIM_JSON_DEPTH)
        return enc_fail(e, "nested too deep (or a table that contains itself)");
    if (!lua_checkstack(L, 4))
        return enc_fail(e, "nested too deep");
    lua_Integer n;
    if (is_array(L, idx, &n)) {
        buf_append(e->out, "[", 1);
        for (lua_Integer i = 1; i <= n; i++) {
            if (i > 1)
                buf_append(e->out, ",", 1);
            lua_rawgeti(L, idx, i);
            bool ok = enc_value(e, lua_gettop(L), depth + 1);
            lua_pop(L, 1);
            if (!ok)
                return false;
        }
        buf_append(e->out, "]", 1);
        return true;
    }
    buf_append(e->out, "{", 1);
    bool first = true;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (!first)
            buf_append(e->out, ",", 1);
        first = false;
        int kt = lua_type(L, -2);
        if (kt == LUA_TSTRING) {
            size_t kl;
            const char *k = lua_tolstring(L, -2, &kl);
            if (!utf8_valid(k, kl)) {
                lua_pop(L, 2);
                return enc_fail(e, "a key is not valid UTF-8 (JSON text must be)");
            }
            enc_string(e, k, kl);
        } else if (kt == LUA_TNUMBER) {
            /* Formatted here: lua_tolstring would change the key in place. */
            char num[48];
            if (lua_isinteger(L, -2))
                snprintf(num, sizeof num, "\"%lld\"", (long long)lua_tointeger(L, -2));
            else
                snprintf(num, sizeof num, "\"%.17g\"", (double)lua_tonumber(L, -2));
            buf_append_str(e->out, num);
        } else {
            lua_pop(L, 2);
            snprintf(e->errbuf, sizeof e->errbuf, "cannot encode a table with a %s key as JSON",
                     lua_typename(L, kt));
            return enc_fail(e, e->errbuf);
        }
        buf_append(e->out, ":", 1);
        if (!enc_value(e, lua_gettop(L), depth + 1)) {
            lua_pop(L, 2);
            return false;
        }
        lua_pop(L, 1);
    }
    buf_append(e->out, "}", 1);
    return true;
}

static bool enc_value(struct enc *e, int idx, int depth)
{
    lua_State *L = e->L;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        buf_append(e->out, "null", 4);
        return true;
    case LUA_TBOOLEAN:
        buf_append_str(e->out, lua_toboolean(L, idx) ? "true" : "false");
        return true;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            char num[24];
            int w = snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, idx));
            buf_append(e->out, num, (size_t)w);
            return true;
        }
        return enc_float(e, (double)lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        if (!utf8_valid(s, n))
            return enc_fail(e, "a string is not valid UTF-8 (JSON text must be)");
        enc_string(e, s, n);
        return true;
    }
    case LUA_TTABLE:
        return enc_table(e, idx, depth);
    case LUA_TLIGHTUSERDATA:
        if (!lua_touserdata(L, idx)) {
            buf_append(e->out, "null", 4);
            return true;
        }
        /* fall through */
    default:
        snprintf(e->errbuf, sizeof e->errbuf, "cannot encode a %s as JSON",
                 luaL_typename(L, idx));
        return enc_fail(e, e->errbuf);
    }
}

static int push_protected(lua_State *L)
{
    lua_pushlstring(L, lua_touserdata(L, 1), (size_t)lua_tointeger(L, 2));
    return 1;
}

const char *lx_json_try_encode(lua_State *L, int idx, size_t *len)
{
    idx = lua_absindex(L, idx);
    struct buf out = { 0 };
    struct enc e = { .L = L, .out = &out };
    if (!enc_value(&e, idx, 0)) {
        buf_free(&out);
        lua_pushstring(L, e.err);
        return NULL;
    }
    lua_pushcfunction(L, push_protected);
    lua_pushlightuserdata(L, out.data ? out.data : (char *)"");
    lua_pushinteger(L, (lua_Integer)out.len);
    int rc = lua_pcall(L, 2, 1, 0);
    buf_free(&out);
    if (rc != LUA_OK)
        return NULL;
    lua_replace(L, idx);
    return lua_tolstring(L, idx, len);
}

const char *lx_json_encode(lua_State *L, int idx, size_t *len)
{
    const char *s = lx_json_try_encode(L, idx, len);
    if (!s)
        luaL_error(L, "cannot encode as JSON: %s", lua_tostring(L, -1));
    return s;
}

static int json_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    size_t n;
    lx_json_encode(L, 1, &n);
    lua_settop(L, 1);
    return 1;
}

static int json_decode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    if (lx_json_decode(L, s, n))
        return 1;
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
}

/* moonws.json.array([t]): t (or a new table) marked to encode as an array. */
static int json_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if (lua_getmetatable(L, 1)) {
        push_array_mt(L);
        luaL_argcheck(L, lua_rawequal(L, -1, -2), 1, "the table already has a metatable");
        lua_settop(L, 1);
        return 1;
    }
    lx_json_mark_array(L, 1);
    return 1;
}

void lx_json_open(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        { "encode", json_encode },
        { "decode", json_decode },
        { "array", json_array },
        { NULL, NULL },
    };
    luaL_newlib(L, funcs);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
}
