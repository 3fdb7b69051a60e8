/*
 * moonws.jwt and moonws.crypto: the primitives behind declared auth, for
 * services that do their own thing (issue tokens, check them by hand,
 * keep their own users).
 *
 * Misuse raises (a bad option, a key that does not fit); a token that
 * does not verify returns nil, reason.
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "../util/crypto.h"
#include "../util/htpasswd.h"
#include "../util/jws.h"
#include "../util/limits.h"
#include "lx.h"
#include "lx_json.h"

/* ---- moonws.crypto ---- */

static int c_sha256(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    unsigned char md[32];
    EVP_Digest(s, n, md, NULL, EVP_sha256(), NULL);
    lua_pushlstring(L, (const char *)md, sizeof md);
    return 1;
}

static int c_hmac_sha256(lua_State *L)
{
    size_t kl, n;
    const char *key = luaL_checklstring(L, 1, &kl);
    const char *s = luaL_checklstring(L, 2, &n);
    unsigned char md[32];
    unsigned ml = 0;
    HMAC(EVP_sha256(), key, (int)kl, (const unsigned char *)s, n, md, &ml);
    lua_pushlstring(L, (const char *)md, ml);
    return 1;
}

static int c_random(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0 && n <= LIM_CRYPTO_RANDOM_MAX, 1, "0 to 65536 bytes");
    luaL_Buffer b;
    unsigned char *p = (unsigned char *)luaL_buffinitsize(L, &b, (size_t)n);
    crypto_random(p, (size_t)n);
    luaL_pushresultsize(&b, (size_t)n);
    return 1;
}

static int c_base64url(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, jws_b64url_len(n) + 1);
    luaL_pushresultsize(&b, jws_b64url_encode(s, n, p));
    return 1;
}

static int c_base64url_decode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    luaL_Buffer b;
    unsigned char *p = (unsigned char *)luaL_buffinitsize(L, &b, n * 3 / 4 + 1);
    ssize_t r = jws_b64url_decode(s, n, p);
    if (r < 0) {
        luaL_pushresultsize(&b, 0);
        lua_pushnil(L);
        lua_pushliteral(L, "not base64url (no padding, alphabet A-Z a-z 0-9 - _)");
        return 2;
    }
    luaL_pushresultsize(&b, (size_t)r);
    return 1;
}

static int c_hex(lua_State *L)
{
    static const char digits[] = "0123456789abcdef";
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, 2 * n);
    for (size_t i = 0; i < n; i++) {
        p[2 * i] = digits[s[i] >> 4];
        p[2 * i + 1] = digits[s[i] & 15];
    }
    luaL_pushresultsize(&b, 2 * n);
    return 1;
}

/* password_hash(pw [, "bcrypt" | "sha512" | "yescrypt"]): a line's hash
 * for a password file. */
static int c_password_hash(lua_State *L)
{
    size_t n;
    const char *pw = luaL_checklstring(L, 1, &n);
    const char *method = luaL_optstring(L, 2, "bcrypt");
    char out[HTPASSWD_HASH_MAX];
    luaL_argcheck(L, strcmp(method, "bcrypt") == 0 || strcmp(method, "sha512") == 0 ||
                         strcmp(method, "yescrypt") == 0,
                  2, "bcrypt, sha512 or yescrypt");
    if (!htpasswd_hash(method, pw, n, out))
        return luaL_error(L, "crypt failed for %s", method);
    lua_pushstring(L, out);
    return 1;
}

static int c_password_verify(lua_State *L)
{
    size_t n, hl;
    const char *pw = luaL_checklstring(L, 1, &n);
    const char *hash = luaL_checklstring(L, 2, &hl);
    /* One user called "" with this hash: the same checks as a file's. */
    struct buf line = { 0 };
    buf_printf(&line, "x:%s", hash);
    char err[200];
    struct htpasswd *h = htpasswd_parse(line.data, line.len, err, sizeof err);
    buf_free(&line);
    if (!h)
        return luaL_argerror(L, 2, strstr(err, "user x: ") ? strstr(err, "user x: ") + 8 : err);
    lua_pushboolean(L, htpasswd_check(h, "x", 1, pw, n));
    htpasswd_free(h);
    return 1;
}

/* ---- moonws.jwt ---- */

/* The signing key of opts (at idx): `secret`, or `key` (a PEM private
 * key); raises when neither or both. */
static struct jws_key *signing_key(lua_State *L, int idx)
{
    size_t sl = 0, kl = 0;
    lua_getfield(L, idx, "secret");
    const char *secret = lua_tolstring(L, -1, &sl);
    lua_getfield(L, idx, "key");
    const char *pem = lua_tolstring(L, -1, &kl);
    lua_pop(L, 2);              /* the strings stay in the options table */
    luaL_argcheck(L, !secret != !pem, 2, "give `secret` (HS*) or `key` (a PEM private key)");
    if (secret)
        return jws_key_hmac(secret, sl);
    char err[200];
    struct jws_key *k = jws_key_pem(pem, kl, true, err, sizeof err);
    if (!k)
        luaL_error(L, "moonws.jwt.sign: `key`: %s", err);
    return k;
}

/* sign(claims, { secret = | key = , alg = , kid = }): a compact JWS. */
static int j_sign(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    struct jws_key *k = signing_key(L, 2);
    enum jws_alg alg = jws_key_default_alg(k);
    if (lua_getfield(L, 2, "alg") != LUA_TNIL) {
        size_t n;
        const char *name = lua_tolstring(L, -1, &n);
        alg = name ? jws_alg_parse(name, n) : JWS_ALG_UNKNOWN;
        if (!jws_key_fits(k, alg)) {
            jws_key_free(k);
            return luaL_argerror(L, 2, "`alg` is not one this key can sign with");
        }
    }
    lua_getfield(L, 2, "kid");
    /* The header, then the claims, as JSON. */
    lua_createtable(L, 0, 3);
    lua_pushstring(L, jws_alg_name(alg));
    lua_setfield(L, -2, "alg");
    lua_pushliteral(L, "JWT");
    lua_setfield(L, -2, "typ");
    if (lua_isstring(L, 4)) {
        lua_pushvalue(L, 4);
        lua_setfield(L, -2, "kid");
    }
    size_t hl, cl;
    const char *hj = lx_json_try_encode(L, -1, &hl);
    lua_pushvalue(L, 1);
    const char *cj = hj ? lx_json_try_encode(L, -1, &cl) : NULL;
    if (!cj) {
        jws_key_free(k);
        return luaL_error(L, "moonws.jwt.sign: claims: %s", lua_tostring(L, -1));
    }
    struct buf t = { 0 };
    char *p = buf_reserve(&t, jws_b64url_len(hl) + jws_b64url_len(cl) + 2);
    size_t o = jws_b64url_encode(hj, hl, p);
    p[o++] = '.';
    o += jws_b64url_encode(cj, cl, p + o);
    t.len = o;
    unsigned char sig[JWS_SIG_MAX];
    size_t sl;
    const char *why = jws_sign(alg, k, t.data, t.len, sig, &sl);
    jws_key_free(k);
    if (why) {
        buf_free(&t);
        return luaL_error(L, "moonws.jwt.sign: %s", why);
    }
    p = buf_reserve(&t, jws_b64url_len(sl) + 2);
    p[0] = '.';
    t.len += 1 + jws_b64url_encode(sig, sl, p + 1);
    lua_pushlstring(L, t.data, t.len);
    buf_free(&t);
    return 1;
}

/* verify(token, opts): the claims, or nil, reason. opts as a service's
 * `jwt` table (secret, public_key, jwks, algorithms, issuer, audience,
 * leeway; files too), and `scopes`. */
static int j_verify(lua_State *L)
{
    size_t n;
    const char *token = luaL_checklstring(L, 1, &n);
    luaL_checktype(L, 2, LUA_TTABLE);
    char err[512];
    struct lx_auth *a = lx_auth_jwt_options(L, 2, err, sizeof err);
    if (!a)
        return luaL_argerror(L, 2, err);
    const char *reason, *missing;
    int st = lx_auth_verify(L, a, token, n, &reason, &missing);
    lx_auth_free(a);
    if (st) {
        lua_pushnil(L);
        if (missing)
            lua_pushfstring(L, "%s: %s", reason, missing);
        else
            lua_pushstring(L, reason);
        return 2;
    }
    lua_getfield(L, -1, "claims");
    lua_getfield(L, -2, "scopes");
    return 2;
}

/* jwk(pem [, kid]): the JWK of a public key, for a JWK set. */
static int j_jwk(lua_State *L)
{
    size_t n;
    const char *pem = luaL_checklstring(L, 1, &n);
    const char *kid = luaL_optstring(L, 2, NULL);
    char err[200], a[1400], b[1400];
    struct jws_key *k = jws_key_pem(pem, n, false, err, sizeof err);
    if (!k) {
        /* A private key's public half is as good. */
        k = jws_key_pem(pem, n, true, err, sizeof err);
        if (!k)
            return luaL_argerror(L, 1, err);
    }
    const char *kty, *crv;
    bool ok = jws_key_public_jwk(k, &kty, a, b, &crv, sizeof a);
    enum jws_alg alg = jws_key_default_alg(k);
    jws_key_free(k);
    if (!ok)
        return luaL_argerror(L, 1, "this key has no JWK form here");
    lua_createtable(L, 0, 6);
    lua_pushstring(L, kty);
    lua_setfield(L, -2, "kty");
    lua_pushstring(L, a);
    lua_setfield(L, -2, crv ? "x" : "n");
    lua_pushstring(L, b);
    lua_setfield(L, -2, crv ? "y" : "e");
    if (crv) {
        lua_pushstring(L, crv);
        lua_setfield(L, -2, "crv");
    }
    lua_pushstring(L, jws_alg_name(alg));
    lua_setfield(L, -2, "alg");
    lua_pushliteral(L, "sig");
    lua_setfield(L, -2, "use");
    if (kid) {
        lua_pushstring(L, kid);
        lua_setfield(L, -2, "kid");
    }
    return 1;
}

void lx_crypto_open(lua_State *L, int module)
{
    module = lua_absindex(L, module);
    static const luaL_Reg crypto[] = {
        { "sha256", c_sha256 },
        { "hmac_sha256", c_hmac_sha256 },
        { "random", c_random },
        { "base64url", c_base64url },
        { "base64url_decode", c_base64url_decode },
        { "hex", c_hex },
        { "password_hash", c_password_hash },
        { "password_verify", c_password_verify },
        { NULL, NULL },
    };
    luaL_newlib(L, crypto);
    lua_setfield(L, module, "crypto");
    static const luaL_Reg jwt[] = {
        { "sign", j_sign },
        { "verify", j_verify },
        { "jwk", j_jwk },
        { NULL, NULL },
    };
    luaL_newlib(L, jwt);
    lua_setfield(L, module, "jwt");
}
