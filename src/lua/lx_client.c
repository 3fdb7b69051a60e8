/*
 * moonws.core: the Lua side of the client (docs/reference.md, "The Lua client") — WebSocket
 * connections, raw TCP and one-shot HTTP requests for tests — built by
 * `make` as build/lua/moonws/core.so. lua/moonws/client.lua wraps it.
 *
 * Conventions (as liolib): misuse raises; failures of the world return
 * nil, message. A closed client holds nothing and says so.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <lauxlib.h>
#include <openssl/evp.h>
#include <lua.h>

#include "../proto/http_parse.h"
#include "../proto/pmd.h"
#include "../proto/ws_client.h"
#include "../proto/ws_frame.h"
#include "../util/clock.h"
#include "../util/sslio.h"
#include "../util/utf8.h"
#include "lx_json.h"
#include "lx_process.h"

#define CLIENT_MT "moonws.client"
#define TCP_MT "moonws.tcp"
#define DEFAULT_TIMEOUT 5.0
#define MAX_MESSAGE_MAX ((lua_Integer)1 << 40)

struct lclient {
    struct ws_client c;
    bool open;                  /* false once closed: the handle holds nothing */
};

static struct lclient *check_client(lua_State *L)
{
    struct lclient *lc = luaL_checkudata(L, 1, CLIENT_MT);
    if (!lc->open)
        luaL_error(L, "attempt to use a closed client");
    return lc;
}

static double opt_timeout(lua_State *L, int idx, double def)
{
    double t = luaL_optnumber(L, idx, def);
    luaL_argcheck(L, t >= 0, idx, "timeout must not be negative");
    return t;
}

/* nil, message [, status] */
static int fail(lua_State *L, const char *msg, int status)
{
    lua_pushnil(L);
    lua_pushstring(L, msg);
    if (status) {
        lua_pushinteger(L, status);
        return 3;
    }
    return 2;
}

/* ---- connect ---- */

/* The socket options of an options table at idx (bind, rcvbuf); the bind
 * string stays referenced by the table. */
static void read_sock(lua_State *L, int idx, struct wsc_sock_opts *so)
{
    *so = (struct wsc_sock_opts){ 0 };
    if (lua_isnoneornil(L, idx))
        return;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_getfield(L, idx, "bind");
    so->bind = luaL_optstring(L, -1, NULL);
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "rcvbuf") != LUA_TNIL) {
        lua_Integer n = luaL_checkinteger(L, -1);
        luaL_argcheck(L, n > 0 && n <= (1 << 30), idx, "rcvbuf must be 1 to 2^30 bytes");
        so->rcvbuf = (int)n;
    }
    lua_pop(L, 1);
}

/* tls = { verify = true, ca = "file", cert = "file", key = "file", servername = "name" } */
static void read_tls(lua_State *L, int idx, struct wsc_tls_opts *t)
{
    *t = (struct wsc_tls_opts){ .verify = true };
    if (lua_isnoneornil(L, idx))
        return;
    luaL_checktype(L, idx, LUA_TTABLE);
    if (lua_getfield(L, idx, "verify") != LUA_TNIL)
        t->verify = lua_toboolean(L, -1);
    lua_getfield(L, idx, "ca");
    t->ca = luaL_optstring(L, -1, NULL);
    lua_getfield(L, idx, "cert");
    t->cert = luaL_optstring(L, -1, NULL);
    lua_getfield(L, idx, "key");
    t->key = luaL_optstring(L, -1, NULL);
    lua_getfield(L, idx, "servername");
    t->servername = luaL_optstring(L, -1, NULL);
    lua_pop(L, 5);              /* the strings stay alive in the options table */
}

/* compression = { server_no_context_takeover = true, client_no_context_takeover = true,
 *                 server_max_window_bits = 10, client_max_window_bits = 12 | true | false } */
static void read_offer(lua_State *L, int t, struct wsc_options *o)
{
    o->compression = true;
    lua_getfield(L, t, "server_no_context_takeover");
    o->offer.server_no_context_takeover = lua_toboolean(L, -1);
    lua_getfield(L, t, "client_no_context_takeover");
    o->offer.client_no_context_takeover = lua_toboolean(L, -1);
    lua_getfield(L, t, "server_max_window_bits");
    lua_Integer s = luaL_optinteger(L, -1, 0);
    luaL_argcheck(L, s == 0 || (s >= 8 && s <= 15), 2, "server_max_window_bits is 8-15");
    o->offer.server_max_window_bits = (int)s;
    lua_getfield(L, t, "client_max_window_bits");
    if (lua_isinteger(L, -1)) {
        lua_Integer c = lua_tointeger(L, -1);
        luaL_argcheck(L, c >= 8 && c <= 15, 2, "client_max_window_bits is 8-15");
        o->offer.client_max_window_bits = (int)c;
    } else {
        o->offer.client_max_window_bits = lua_isnil(L, -1) || lua_toboolean(L, -1) ? 0 : -1;
    }
    lua_pop(L, 4);
}

static int l_connect(lua_State *L)
{
    const char *url = luaL_checkstring(L, 1);
    bool has_opts = lua_istable(L, 2);
    struct wsc_options o = { .auto_pong = true, .timeout = DEFAULT_TIMEOUT,
                             .max_message = 256u << 20, .offer = PMD_OFFER_DEFAULT };
    const char *protos[32];
    struct buf extra = { 0 };
    struct wsc_tls_opts tls = { .verify = true };
    struct wsc_sock_opts so;
    read_sock(L, 2, &so);

    if (has_opts) {
        if (lua_getfield(L, 2, "timeout") == LUA_TNUMBER)
            o.timeout = lua_tonumber(L, -1);
        lua_pop(L, 1);
        if (lua_getfield(L, 2, "compression") == LUA_TTABLE)
            read_offer(L, lua_gettop(L), &o);
        else if (!lua_isnil(L, -1))
            o.compression = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (lua_getfield(L, 2, "auto_pong") != LUA_TNIL)
            o.auto_pong = lua_toboolean(L, -1);
        lua_pop(L, 1);
        /* An integer, 1 byte to 1 TiB: a cast would turn -1 into SIZE_MAX
         * and 1.5 or 1e300 into 0. */
        if (lua_getfield(L, 2, "max_message") != LUA_TNIL) {
            int isint = 0;
            lua_Integer m = lua_type(L, -1) == LUA_TNUMBER ? lua_tointegerx(L, -1, &isint) : 0;
            luaL_argcheck(L, isint && m >= 1 && m <= MAX_MESSAGE_MAX, 2,
                          "max_message must be an integer from 1 to 2^40");
            o.max_message = (size_t)m;
        }
        lua_pop(L, 1);
        if (lua_getfield(L, 2, "protocols") == LUA_TTABLE) {
            size_t n = lua_rawlen(L, -1);
            luaL_argcheck(L, n <= 32, 2, "at most 32 protocols");
            for (size_t i = 1; i <= n; i++) {
                lua_rawgeti(L, -1, (lua_Integer)i);
                protos[o.nprotocols++] = luaL_checkstring(L, -1);
                lua_pop(L, 1);  /* still referenced by the table */
            }
        }
        lua_pop(L, 1);
        lua_getfield(L, 2, "tls");
        read_tls(L, lua_gettop(L), &tls);
        lua_pop(L, 1);
        if (lua_getfield(L, 2, "headers") == LUA_TTABLE) {
            lua_pushnil(L);
            while (lua_next(L, -2)) {
                const char *k = luaL_checkstring(L, -2), *v = luaL_checkstring(L, -1);
                luaL_argcheck(L, !strpbrk(k, "\r\n:") && !strpbrk(v, "\r\n"), 2,
                              "header names and values must be one line");
                buf_printf(&extra, "%s: %s\r\n", k, v);
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
    }
    o.protocols = protos;
    buf_append(&extra, "", 1);
    o.headers = extra.data;

    bool secure;
    char host[256], target[4096], err[256];
    unsigned port;
    if (!wsc_parse_url(url, &secure, host, sizeof host, &port, target, sizeof target)) {
        buf_free(&extra);
        return luaL_argerror(L, 1, "not a ws:// or wss:// URL");
    }
    int fd = wsc_tcp_connect(host, port, o.timeout, &so, err, sizeof err);
    if (fd < 0) {
        buf_free(&extra);
        return fail(L, err, 0);
    }
    struct lclient *lc = lua_newuserdatauv(L, sizeof *lc, 0);
    memset(lc, 0, sizeof *lc);
    lc->c.fd = fd;
    lc->open = true;
    luaL_setmetatable(L, CLIENT_MT);
    if (secure && !wsc_tls_start(fd, host, &tls, o.timeout, &lc->c.io, &lc->c.ioctx, err,
                                 sizeof err)) {
        wsc_free(&lc->c);
        lc->open = false;
        buf_free(&extra);
        return fail(L, err, 0);
    }
    bool v6 = strchr(host, ':') != NULL;
    char hosthdr[300];
    bool default_port = port == (secure ? 443u : 80u);
    if (default_port)
        snprintf(hosthdr, sizeof hosthdr, v6 ? "[%s]" : "%s", host);
    else
        snprintf(hosthdr, sizeof hosthdr, v6 ? "[%s]:%u" : "%s:%u", host, port);
    bool ok = wsc_handshake(&lc->c, hosthdr, target, &o);
    buf_free(&extra);
    if (!ok) {
        snprintf(err, sizeof err, "%s", lc->c.error);
        int status = lc->c.status;
        wsc_free(&lc->c);
        lc->open = false;
        return fail(L, err, status);
    }
    return 1;
}

/* ---- the client object ---- */

static int l_send(lua_State *L)
{
    struct lclient *lc = check_client(L);
    size_t n;
    const char *p;
    if (lua_istable(L, 2))
        p = lx_json_encode(L, 2, &n);
    else
        p = luaL_checklstring(L, 2, &n);
    if (!wsc_send(&lc->c, WS_OP_TEXT, p, n, opt_timeout(L, 3, DEFAULT_TIMEOUT)))
        return fail(L, lc->c.error, 0);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_send_binary(lua_State *L)
{
    struct lclient *lc = check_client(L);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    if (!wsc_send(&lc->c, WS_OP_BINARY, p, n, opt_timeout(L, 3, DEFAULT_TIMEOUT)))
        return fail(L, lc->c.error, 0);
    lua_pushboolean(L, 1);
    return 1;
}

static int control(lua_State *L, uint8_t op)
{
    struct lclient *lc = check_client(L);
    size_t n = 0;
    const char *p = luaL_optlstring(L, 2, "", &n);
    if (!wsc_send_frame(&lc->c, true, 0, op, p, n, true, DEFAULT_TIMEOUT))
        return fail(L, lc->c.error, 0);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_ping(lua_State *L)
{
    return control(L, WS_OP_PING);
}

static int l_pong(lua_State *L)
{
    return control(L, WS_OP_PONG);
}

/* c:sendFrame{opcode=, payload=, fin=true, rsv=0, mask=true}: any frame,
 * valid or not, for tests of the server's defences. */
static int l_send_frame(lua_State *L)
{
    struct lclient *lc = check_client(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "opcode");
    lua_Integer op = luaL_checkinteger(L, -1);
    lua_getfield(L, 2, "payload");
    size_t n = 0;
    const char *p = luaL_optlstring(L, -1, "", &n);
    lua_getfield(L, 2, "fin");
    bool fin = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_getfield(L, 2, "rsv");
    lua_Integer rsv = luaL_optinteger(L, -1, 0);
    lua_getfield(L, 2, "mask");
    bool mask = lua_isnil(L, -1) || lua_toboolean(L, -1);
    luaL_argcheck(L, op >= 0 && op <= 15 && rsv >= 0 && rsv <= 7, 2, "opcode 0-15, rsv 0-7");
    if (!wsc_send_frame(&lc->c, fin, (uint8_t)rsv, (uint8_t)op, p, n, mask,
                        opt_timeout(L, 3, DEFAULT_TIMEOUT)))
        return fail(L, lc->c.error, 0);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_send_raw(lua_State *L)
{
    struct lclient *lc = check_client(L);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    if (!wsc_send_raw(&lc->c, p, n, opt_timeout(L, 3, DEFAULT_TIMEOUT)))
        return fail(L, lc->c.error, 0);
    lua_pushboolean(L, 1);
    return 1;
}

/* c:pump(): takes in what has arrived, without waiting; false once the
 * connection is over (so a reconnecting client knows before it sends). */
static int l_pump(lua_State *L)
{
    struct lclient *lc = check_client(L);
    lua_pushboolean(L, wsc_pump(&lc->c));
    return 1;
}

static const char *const kind_names[] = { "text", "binary", "ping", "pong", "close" };

/* msg, kind [, code] | nil, "timeout" | nil, reason */
static int l_receive(lua_State *L)
{
    struct lclient *lc = check_client(L);
    struct wsc_msg m;
    int r = wsc_receive(&lc->c, opt_timeout(L, 2, DEFAULT_TIMEOUT), &m);
    if (r == 0)
        return fail(L, "timeout", 0);
    if (r < 0)
        return fail(L, lc->c.error, 0);
    lua_pushlstring(L, m.data, m.len);
    lua_pushstring(L, kind_names[m.kind]);
    free(m.data);
    if (m.kind == WSC_CLOSE) {
        lua_pushinteger(L, m.code);
        return 3;
    }
    return 2;
}

/* c:close([code [, reason [, timeout]]]): sends a close frame, waits for the
 * server's, closes the socket. Returns the server's code (or nil, why). */
static int l_close(lua_State *L)
{
    struct lclient *lc = luaL_checkudata(L, 1, CLIENT_MT);
    if (!lc->open) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    lua_Integer code = luaL_optinteger(L, 2, WS_CLOSE_NORMAL);
    size_t rl = 0;
    const char *reason = luaL_optlstring(L, 3, "", &rl);
    double timeout = opt_timeout(L, 4, DEFAULT_TIMEOUT);
    int got = 0;
    if (wsc_close(&lc->c, (unsigned)code, reason, rl, timeout)) {
        struct wsc_msg m;
        double end = clock_seconds() + timeout;
        while (!got) {
            int r = wsc_receive(&lc->c, end - clock_seconds() > 0 ? end - clock_seconds() : 0, &m);
            if (r <= 0)
                break;
            if (m.kind == WSC_CLOSE)
                got = m.code ? m.code : WS_CLOSE_NO_STATUS;
            free(m.data);
        }
    }
    wsc_free(&lc->c);
    lc->open = false;
    if (!got)
        return fail(L, "no close frame from the server", 0);
    lua_pushinteger(L, got);
    return 1;
}

static int l_gc(lua_State *L)
{
    struct lclient *lc = luaL_checkudata(L, 1, CLIENT_MT);
    if (lc->open) {
        wsc_free(&lc->c);
        lc->open = false;
    }
    return 0;
}

/* Pushes the response headers as a table with lower-case names. */
static void push_response_headers(lua_State *L, const char *head, size_t len)
{
    static struct http_response res;
    lua_newtable(L);
    if (http_parse_response(head, len, &res) <= 0)
        return;
    for (size_t i = 0; i < res.nheaders; i++) {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (size_t k = 0; k < res.headers[i].name_len; k++) {
            char ch = res.headers[i].name[k];
            luaL_addchar(&b, ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch);
        }
        luaL_pushresult(&b);
        lua_pushlstring(L, res.headers[i].value, res.headers[i].value_len);
        lua_settable(L, -3);
    }
}

static int l_index(lua_State *L)
{
    struct lclient *lc = luaL_checkudata(L, 1, CLIENT_MT);
    const char *k = luaL_checkstring(L, 2);
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "methods");
    if (lua_getfield(L, -1, k) != LUA_TNIL)
        return 1;
    if (strcmp(k, "protocol") == 0 && lc->open && lc->c.protocol)
        lua_pushstring(L, lc->c.protocol);
    else if (strcmp(k, "extensions") == 0 && lc->open && lc->c.extensions)
        lua_pushstring(L, lc->c.extensions);
    else if (strcmp(k, "status") == 0)
        lua_pushinteger(L, lc->open ? lc->c.status : 101);
    else if (strcmp(k, "headers") == 0 && lc->open)
        push_response_headers(L, lc->c.head.data, lc->c.head.len);
    else if (strcmp(k, "compressed") == 0)
        lua_pushboolean(L, lc->open && lc->c.last_compressed);
    else if (strcmp(k, "wire") == 0)
        lua_pushinteger(L, lc->open ? (lua_Integer)lc->c.wire_bytes : 0);
    else if (strcmp(k, "open") == 0)
        lua_pushboolean(L, lc->open && !lc->c.close_received && !lc->c.eof);
    else
        lua_pushnil(L);
    return 1;
}

/* ---- raw TCP, for malformed input ---- */

struct ltcp {
    int fd;
    const struct wsc_io *io;
    void *ioctx;
};

static struct ltcp *check_tcp(lua_State *L)
{
    struct ltcp *t = luaL_checkudata(L, 1, TCP_MT);
    if (t->fd < 0)
        luaL_error(L, "attempt to use a closed socket");
    return t;
}

/* tcp(host, port [, timeout [, tls [, opts]]]): a raw connection, through
 * TLS when a tls options table is given; opts: bind, rcvbuf. */
static int l_tcp(lua_State *L)
{
    const char *host = luaL_checkstring(L, 1);
    lua_Integer port = luaL_checkinteger(L, 2);
    double timeout = opt_timeout(L, 3, DEFAULT_TIMEOUT);
    bool secure = lua_istable(L, 4);
    struct wsc_tls_opts tls;
    read_tls(L, 4, &tls);
    struct wsc_sock_opts so;
    read_sock(L, 5, &so);
    char err[256];
    int fd = wsc_tcp_connect(host, (unsigned)port, timeout, &so, err, sizeof err);
    if (fd < 0)
        return fail(L, err, 0);
    struct ltcp *t = lua_newuserdatauv(L, sizeof *t, 0);
    t->fd = fd;
    t->io = &wsc_plain_io;
    t->ioctx = (void *)(intptr_t)fd;
    luaL_setmetatable(L, TCP_MT);
    if (secure && !wsc_tls_start(fd, host, &tls, timeout, &t->io, &t->ioctx, err, sizeof err)) {
        close(fd);
        t->fd = -1;
        return fail(L, err, 0);
    }
    return 1;
}

static int tcp_send(lua_State *L)
{
    struct ltcp *t = check_tcp(L);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    double end = clock_seconds() + opt_timeout(L, 3, DEFAULT_TIMEOUT);
    while (n) {
        long w = t->io->write(t->ioctx, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (!wsc_wait(t->fd, true, end - clock_seconds()))
                return fail(L, "timeout", 0);
        } else {
            return fail(L, sslio_strerror(errno), 0);
        }
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* s:receive([timeout]): the bytes available (waiting for some), or
 * nil, "timeout" / nil, "closed". */
static int tcp_receive(lua_State *L)
{
    struct ltcp *t = check_tcp(L);
    if (!t->io->pending(t->ioctx) && !wsc_wait(t->fd, false, opt_timeout(L, 2, DEFAULT_TIMEOUT)))
        return fail(L, "timeout", 0);
    char buf[65536];
    long r;
    do {
        r = t->io->read(t->ioctx, buf, sizeof buf);
    } while (r < 0 && errno == EINTR);
    if (r == 0 || (r < 0 && errno == ECONNRESET))
        return fail(L, "closed", 0);
    if (r < 0)
        return fail(L, errno == EAGAIN ? "timeout" : sslio_strerror(errno), 0);
    lua_pushlstring(L, buf, (size_t)r);
    return 1;
}

/* s:receiveAll([timeout]): everything until the peer closes; returns what
 * came and "closed", "timeout" or the TLS error that ended it. */
static int tcp_receive_all(lua_State *L)
{
    struct ltcp *t = check_tcp(L);
    double end = clock_seconds() + opt_timeout(L, 2, DEFAULT_TIMEOUT);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    const char *why = "timeout";
    for (;;) {
        double left = end - clock_seconds();
        if (left <= 0 || (!t->io->pending(t->ioctx) && !wsc_wait(t->fd, false, left)))
            break;
        char *w = luaL_prepbuffsize(&b, 65536);
        long r = t->io->read(t->ioctx, w, 65536);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r <= 0) {
            /* A TLS alert is worth more than "closed". */
            why = r < 0 && errno == EPROTO ? sslio_strerror(errno) : "closed";
            break;
        }
        luaL_addsize(&b, (size_t)r);
    }
    luaL_pushresult(&b);
    lua_pushstring(L, why);
    return 2;
}

static int tcp_shutdown(lua_State *L)
{
    struct ltcp *t = check_tcp(L);
    shutdown(t->fd, SHUT_WR);
    return 0;
}

static int tcp_close(lua_State *L)
{
    struct ltcp *t = luaL_checkudata(L, 1, TCP_MT);
    if (t->fd >= 0) {
        t->io->free(t->ioctx);
        close(t->fd);
    }
    t->fd = -1;
    return 0;
}

/* ---- module ---- */

static int l_now(lua_State *L)
{
    lua_pushnumber(L, clock_seconds());
    return 1;
}

/* deflate(s [, window_bits]): s as one permessage-deflate payload without
 * context takeover (the tail 00 00 ff ff removed), to build compressed
 * frames by hand in tests. */
static int l_deflate(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    lua_Integer wb = luaL_optinteger(L, 2, 15);
    luaL_argcheck(L, wb >= 8 && wb <= 15, 2, "window bits are 8-15");
    struct pmd_deflater d = { .window_bits = (uint8_t)wb, .level = 6, .reset_each_message = true };
    struct buf out = { 0 };
    pmd_deflate(&d, s, n, &out);
    pmd_free(NULL, &d);
    lua_pushlstring(L, out.data ? out.data : "", out.len);
    buf_free(&out);
    return 1;
}

/* base64(s): standard base64 with padding (for Basic credentials). */
static int l_base64(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, 4 * ((n + 2) / 3) + 1);
    int w = EVP_EncodeBlock((unsigned char *)p, (const unsigned char *)s, (int)n);
    luaL_pushresultsize(&b, (size_t)w);
    return 1;
}

static int l_utf8_valid(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    lua_pushboolean(L, utf8_valid(s, n));
    return 1;
}

int luaopen_moonws_core(lua_State *L);
int luaopen_moonws_core(lua_State *L)
{
    static const luaL_Reg client_methods[] = {
        { "send", l_send },
        { "sendBinary", l_send_binary },
        { "ping", l_ping },
        { "pong", l_pong },
        { "sendFrame", l_send_frame },
        { "sendRaw", l_send_raw },
        { "receive", l_receive },
        { "pump", l_pump },
        { "close", l_close },
        { NULL, NULL },
    };
    luaL_newmetatable(L, CLIENT_MT);
    luaL_newlib(L, client_methods);
    lua_setfield(L, -2, "methods");
    lua_pushcfunction(L, l_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);

    static const luaL_Reg tcp_methods[] = {
        { "send", tcp_send },
        { "receive", tcp_receive },
        { "receiveAll", tcp_receive_all },
        { "shutdown", tcp_shutdown },
        { "close", tcp_close },
        { NULL, NULL },
    };
    luaL_newmetatable(L, TCP_MT);
    luaL_newlib(L, tcp_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, tcp_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, tcp_close);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);

    static const luaL_Reg funcs[] = {
        { "connect", l_connect },
        { "tcp", l_tcp },
        { "now", l_now },
        { "utf8_valid", l_utf8_valid },
        { "base64", l_base64 },
        { "deflate", l_deflate },
        { NULL, NULL },
    };
    luaL_newlib(L, funcs);
    lx_process_register(L);
    return 1;
}
