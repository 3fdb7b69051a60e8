/*
 * Declared auth (the `auth` table of a service or of one of its routes):
 * read and checked when the file loads — key files, password files and
 * JWKS included, so a missing or malformed one is a load error with the
 * file and line — and enforced in C before onUpgrade or the endpoint runs.
 *
 * The token comes from `Authorization: Bearer`, else from the query
 * parameter named by `query` (a browser's WebSocket cannot send headers);
 * Basic credentials from `Authorization: Basic`. Outcomes: no or bad
 * credentials 401 with WWW-Authenticate, a valid token without the
 * required scopes 403. Each refusal is logged at info with its reason —
 * never the token or the password — at most LIM_AUTH_LOG_PER_SEC a second.
 */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../proto/http_respond.h"
#include "../transport/conn.h"
#include "../util/htpasswd.h"
#include "../util/jws.h"
#include "../util/limits.h"
#include "../util/log.h"
#include "lx.h"
#include "lx_json.h"

struct auth_key {
    struct jws_key *key;
    char *kid;                  /* NULL: any (or no) kid */
    enum jws_alg alg;           /* a JWK's own "alg", or JWS_ALG_UNKNOWN for any */
};

struct lx_auth {
    bool jwt;
    struct auth_key *keys;
    size_t nkeys;
    unsigned algs;              /* bit (1 << alg) per allowed algorithm */
    char *issuer;
    char **audience;
    size_t naudience;
    double leeway;
    char *query;                /* the token's query parameter, or NULL */
    struct htpasswd *users;     /* Basic, or NULL */
    char *realm;
    char **scopes;
    size_t nscopes;
};

void lx_auth_free(struct lx_auth *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->nkeys; i++) {
        jws_key_free(a->keys[i].key);
        free(a->keys[i].kid);
    }
    free(a->keys);
    free(a->issuer);
    for (size_t i = 0; i < a->naudience; i++)
        free(a->audience[i]);
    free(a->audience);
    free(a->query);
    htpasswd_free(a->users);
    free(a->realm);
    for (size_t i = 0; i < a->nscopes; i++)
        free(a->scopes[i]);
    free(a->scopes);
    free(a);
}

/* ---- reading the table ---- */

struct parse {
    lua_State *L;
    const char *base;           /* the folder relative file names start from */
    const char *field;          /* the field an error is about (for its line) */
    char *err;
    size_t errcap;
};

static bool perr(struct parse *p, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool perr(struct parse *p, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, p->errcap, fmt, ap);
    va_end(ap);
    p->field = field;
    return false;
}

/* Only these keys in the table at idx. */
static bool known_keys(struct parse *p, int idx, const char *what, const char *const *keys)
{
    lua_State *L = p->L;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        bool ok = lua_type(L, -1) == LUA_TSTRING;
        for (size_t i = 0; ok && keys[i]; i++) {
            if (strcmp(lua_tostring(L, -1), keys[i]) == 0)
                break;
            ok = keys[i + 1] != NULL;
        }
        if (!ok) {
            char list[200] = "";
            for (size_t i = 0; keys[i]; i++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                         keys[i]);
            const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
            lua_pop(L, 1);
            return perr(p, what, "unknown %s field `%s` (%s)", what, k, list);
        }
    }
    return true;
}

/* An optional string field; *out NULL when absent. */
static bool opt_string(struct parse *p, int idx, const char *key, char **out)
{
    lua_State *L = p->L;
    *out = NULL;
    int t = lx_rawfield(L, idx, key);
    if (t == LUA_TSTRING && lua_rawlen(L, -1) > 0)
        *out = xstrdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    if (t != LUA_TNIL && !*out)
        return perr(p, key, "`%s` must be a non-empty string", key);
    return true;
}

/* An optional string or list of strings. */
static bool opt_list(struct parse *p, int idx, const char *key, char ***out, size_t *n)
{
    lua_State *L = p->L;
    *out = NULL;
    *n = 0;
    int t = lx_rawfield(L, idx, key);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return true;
    }
    if (t == LUA_TSTRING) {
        *out = xmalloc(sizeof **out);
        (*out)[(*n)++] = xstrdup(lua_tostring(L, -1));
        lua_pop(L, 1);
        return true;
    }
    size_t len = t == LUA_TTABLE ? lua_rawlen(L, -1) : 0;
    bool ok = t == LUA_TTABLE && len > 0;
    *out = xcalloc(len ? len : 1, sizeof **out);
    for (size_t i = 1; ok && i <= len; i++) {
        ok = lua_rawgeti(L, -1, (lua_Integer)i) == LUA_TSTRING && lua_rawlen(L, -1) > 0;
        if (ok)
            (*out)[(*n)++] = xstrdup(lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (!ok)
        return perr(p, key, "`%s` must be a string or a non-empty list of strings", key);
    return true;
}

/* Reads a file named relative to p->base; NULL with the error set. */
static char *read_file(struct parse *p, const char *field, const char *name, size_t *len)
{
    char path[4096];
    if (name[0] == '/')
        snprintf(path, sizeof path, "%s", name);
    else
        snprintf(path, sizeof path, "%s/%s", p->base, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        perr(p, field, "%s: %s", name, strerror(errno));
        return NULL;
    }
    struct buf b = { 0 };
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len <= LIM_AUTH_FILE_MAX)
        buf_append(&b, chunk, n);
    bool bad = ferror(f);
    fclose(f);
    if (bad || b.len > LIM_AUTH_FILE_MAX) {
        perr(p, field, "%s: %s", name, bad ? "cannot read it" : "larger than 1 MiB");
        buf_free(&b);
        return NULL;
    }
    buf_append(&b, "", 1);
    *len = b.len - 1;
    return b.data;
}

static void add_key(struct lx_auth *a, struct jws_key *k, const char *kid, enum jws_alg alg)
{
    a->keys = xrealloc(a->keys, (a->nkeys + 1) * sizeof *a->keys);
    a->keys[a->nkeys++] = (struct auth_key){ k, kid ? xstrdup(kid) : NULL, alg };
}

/* A string field of the JWK at the top of the stack, or NULL. */
static const char *jwk_field(lua_State *L, const char *key)
{
    lx_rawfield(L, -1, key);
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 1);              /* still referenced by the JWK */
    return s;
}

/* The JWK set {"keys": [...]} at the top of the stack. */
static bool jwks_keys(struct parse *p, struct lx_auth *a, const char *field, const char *name)
{
    lua_State *L = p->L;
    if (!lua_istable(L, -1) || lx_rawfield(L, -1, "keys") != LUA_TTABLE) {
        if (lua_istable(L, -1))
            lua_pop(L, 1);
        return perr(p, field, "%s: not a JWK set ({\"keys\": [...]})", name);
    }
    size_t n = lua_rawlen(L, -1);
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i);
        if (!lua_istable(L, -1)) {
            lua_pop(L, 2);
            return perr(p, field, "%s: key %zu is not an object", name, i);
        }
        const char *kty = jwk_field(L, "kty"), *use = jwk_field(L, "use");
        const char *kid = jwk_field(L, "kid"), *alg_name = jwk_field(L, "alg");
        char why[200] = "";
        struct jws_key *k = NULL;
        enum jws_alg alg = alg_name ? jws_alg_parse(alg_name, strlen(alg_name)) : JWS_ALG_UNKNOWN;
        if (use && strcmp(use, "sig") != 0) {
            lua_pop(L, 1);
            continue;           /* an encryption key: not ours to use */
        }
        if (alg_name && alg == JWS_ALG_UNKNOWN)
            snprintf(why, sizeof why, "\"alg\": \"%.20s\" is not an algorithm accepted here", alg_name);
        else if (!kty)
            snprintf(why, sizeof why, "no \"kty\"");
        else if (strcmp(kty, "RSA") == 0)
            k = jws_key_rsa(jwk_field(L, "n"), jwk_field(L, "e"), why, sizeof why);
        else if (strcmp(kty, "EC") == 0)
            k = jws_key_ec(jwk_field(L, "crv"), jwk_field(L, "x"), jwk_field(L, "y"), why, sizeof why);
        else if (strcmp(kty, "oct") == 0)
            snprintf(why, sizeof why, "symmetric (oct) keys are refused in a JWK set: whoever "
                     "reads the set could sign tokens (use `secret_file`)");
        else
            snprintf(why, sizeof why, "\"kty\": \"%.20s\" is not RSA or EC", kty);
        if (k && alg && !jws_key_fits(k, alg)) {
            snprintf(why, sizeof why, "\"alg\": \"%s\" does not fit the key", alg_name);
            jws_key_free(k);
            k = NULL;
        }
        if (!k) {
            lua_pop(L, 2);
            return perr(p, field, "%s: key %zu%s%s%s: %s", name, i, kid ? " (kid " : "",
                        kid ? kid : "", kid ? ")" : "", why);
        }
        add_key(a, k, kid, alg);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (!a->nkeys)
        return perr(p, field, "%s: no signing keys in the set", name);
    return true;
}

/* The algorithm bits that fit some key. */
static unsigned fitting_algs(const struct lx_auth *a, bool hmac)
{
    unsigned algs = 0;
    for (int alg = 1; alg < JWS_ALG_COUNT; alg++) {
        for (size_t i = 0; i < a->nkeys; i++) {
            if (jws_alg_is_hmac((enum jws_alg)alg) == hmac &&
                jws_key_fits(a->keys[i].key, (enum jws_alg)alg))
                algs |= 1u << alg;
        }
    }
    return algs;
}

static bool parse_jwt(struct parse *p, int idx, struct lx_auth *a)
{
    static const char *const keys[] = { "secret", "secret_file", "public_key", "public_key_file",
                                        "jwks", "jwks_file", "algorithms", "issuer", "audience",
                                        "leeway", "scopes", NULL };
    lua_State *L = p->L;
    if (!lua_istable(L, idx))
        return perr(p, "jwt", "`jwt` must be a table");
    if (!known_keys(p, idx, "jwt", keys))
        return false;
    a->jwt = true;
    int sources = 0;
    const char *source = NULL;
    for (size_t i = 0; i < 6; i++) {
        if (lx_rawfield(L, idx, keys[i]) != LUA_TNIL) {
            sources++;
            source = keys[i];
        }
        lua_pop(L, 1);
    }
    if (sources != 1)
        return perr(p, sources ? source : "jwt", "`jwt` needs exactly one of secret, secret_file, "
                    "public_key, public_key_file, jwks, jwks_file (it has %d)", sources);
    bool hmac = strncmp(source, "secret", 6) == 0;
    lx_rawfield(L, idx, source);
    if (strcmp(source, "jwks") != 0 && lua_type(L, -1) != LUA_TSTRING) {
        lua_pop(L, 1);
        return perr(p, source, "`%s` must be a string", source);
    }
    size_t len;
    const char *val = lua_tolstring(L, -1, &len);
    char *text = NULL;
    const char *name = source;
    if (strstr(source, "_file")) {
        name = val;
        text = read_file(p, source, val, &len);
        if (!text) {
            lua_pop(L, 1);
            return false;
        }
        val = text;
        /* A secret file's last line end is not part of the secret. */
        if (hmac && len && val[len - 1] == '\n')
            len -= len > 1 && val[len - 2] == '\r' ? 2 : 1;
    }
    bool ok = true;
    char why[200];
    if (hmac) {
        if (len == 0)
            ok = perr(p, source, "the secret is empty");
        else
            add_key(a, jws_key_hmac(val, len), NULL, JWS_ALG_UNKNOWN);
    } else if (strncmp(source, "public_key", 10) == 0) {
        struct jws_key *k = jws_key_pem(val, len, false, why, sizeof why);
        if (k)
            add_key(a, k, NULL, JWS_ALG_UNKNOWN);
        else
            ok = perr(p, source, "%s: %s", name, why);
    } else if (strcmp(source, "jwks") == 0) {
        ok = lua_istable(L, -1) ? jwks_keys(p, a, source, "jwks")
                                : perr(p, source, "`jwks` must be a JWK set (a table)");
    } else {
        /* jwks_file: read now, and again each time the service reloads. */
        if (lx_json_decode(L, val, len)) {
            ok = jwks_keys(p, a, source, name);
        } else {
            ok = perr(p, source, "%s: %s", name, lua_tostring(L, -1));
        }
        lua_pop(L, 1);
    }
    if (text) {
        OPENSSL_cleanse(text, len);
        free(text);
    }
    lua_pop(L, 1);
    if (!ok)
        return false;

    /* algorithms: what the configuration allows, never across kinds */
    char **names;
    size_t nn;
    if (!opt_list(p, idx, "algorithms", &names, &nn))
        return false;
    unsigned fit = fitting_algs(a, hmac);
    for (size_t i = 0; i < nn && ok; i++) {
        enum jws_alg alg = jws_alg_parse(names[i], strlen(names[i]));
        if (alg == JWS_ALG_UNKNOWN)
            ok = perr(p, "algorithms", strcasecmp(names[i], "none") == 0
                      ? "algorithm %s is never accepted (an unsigned token proves nothing)"
                      : "unknown algorithm %s (HS256 HS384 HS512 RS256 RS384 RS512 ES256 ES384)",
                      names[i]);
        else if (jws_alg_is_hmac(alg) != hmac)
            ok = perr(p, "algorithms", hmac ? "%s needs a public key, not a secret"
                      : "%s with a public key is refused: whoever has the public key could "
                        "sign tokens with it", names[i]);
        else if (!(fit & (1u << alg)))
            ok = perr(p, "algorithms", "%s does not fit the configured key", names[i]);
        else
            a->algs |= 1u << alg;
    }
    for (size_t i = 0; i < nn; i++)
        free(names[i]);
    free(names);
    if (!ok)
        return false;
    if (!nn)
        a->algs = hmac ? 1u << JWS_HS256 : strcmp(source, "public_key") == 0 ||
                                              strcmp(source, "public_key_file") == 0
                                              ? 1u << jws_key_default_alg(a->keys[0].key)
                                              : fit;
    /* RFC 7518 §3.2: an HMAC key at least as long as the hash. */
    for (int alg = JWS_HS256; hmac && alg <= JWS_HS512; alg++) {
        size_t need = alg == JWS_HS256 ? 32 : alg == JWS_HS384 ? 48 : 64;
        if ((a->algs & (1u << alg)) && jws_key_secret_len(a->keys[0].key) < need)
            return perr(p, source, "the secret is %zu bytes; %s needs at least %zu (RFC 7518 §3.2)",
                        jws_key_secret_len(a->keys[0].key), jws_alg_name((enum jws_alg)alg), need);
    }
    if (!opt_string(p, idx, "issuer", &a->issuer) ||
        !opt_list(p, idx, "audience", &a->audience, &a->naudience))
        return false;
    int t = lx_rawfield(L, idx, "leeway");
    a->leeway = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (t != LUA_TNIL && (t != LUA_TNUMBER || !(a->leeway >= 0 && a->leeway <= 3600)))
        return perr(p, "leeway", "`leeway` must be a number of seconds from 0 to 3600");
    return true;
}

static bool parse_auth(struct parse *p, int idx, struct lx_auth *a)
{
    static const char *const keys[] = { "jwt", "basic", "scopes", "query", "realm", NULL };
    lua_State *L = p->L;
    if (!known_keys(p, idx, "auth", keys) || !opt_string(p, idx, "realm", &a->realm) ||
        !opt_string(p, idx, "query", &a->query) ||
        !opt_list(p, idx, "scopes", &a->scopes, &a->nscopes))
        return false;
    if (lx_rawfield(L, idx, "jwt") != LUA_TNIL && !parse_jwt(p, lua_gettop(L), a)) {
        lua_pop(L, 1);
        return false;
    }
    lua_pop(L, 1);
    if (lx_rawfield(L, idx, "basic") != LUA_TNIL) {
        int b = lua_gettop(L);
        static const char *const bkeys[] = { "file", "realm", NULL };
        char *file = NULL, *realm = NULL;
        bool ok = lua_istable(L, b) ? known_keys(p, b, "basic", bkeys)
                                    : perr(p, "basic", "`basic` must be a table");
        ok = ok && opt_string(p, b, "file", &file) && opt_string(p, b, "realm", &realm);
        if (ok && !file)
            ok = perr(p, "basic", "`basic` needs `file`, a password file (htpasswd -B)");
        size_t len;
        char *text = ok ? read_file(p, "file", file, &len) : NULL;
        if (text) {
            char why[200];
            a->users = htpasswd_parse(text, len, why, sizeof why);
            if (!a->users)
                ok = perr(p, "file", "%s: %s", file, why);
            OPENSSL_cleanse(text, len);
            free(text);
        } else {
            ok = false;
        }
        if (realm) {
            free(a->realm);
            a->realm = realm;
        }
        free(file);
        if (!ok) {
            lua_pop(L, 1);
            return false;
        }
    }
    lua_pop(L, 1);
    if (!a->jwt && !a->users)
        return perr(p, "auth", "`auth` needs `jwt` or `basic` (or both)");
    if (a->query && !a->jwt)
        return perr(p, "query", "`query` names where a token comes from: it needs `jwt`");
    if (a->nscopes && a->users)
        return perr(p, "scopes", "`scopes` cannot be combined with `basic`: Basic users carry no "
                    "scopes (declare the scoped endpoints with their own auth)");
    if (!a->realm)
        a->realm = xstrdup("moonws");
    for (const char *c = a->realm; *c; c++) {
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20)
            return perr(p, "realm", "`realm` may not hold quotes, backslashes or control characters");
    }
    return true;
}

bool lx_auth_parse(lua_State *L, int idx, const char *base, struct lx_auth **out,
                   const char **field, char *err, size_t errcap)
{
    struct parse p = { L, base, "auth", err, errcap };
    struct lx_auth *a = xcalloc(1, sizeof *a);
    int top = lua_gettop(L);
    bool ok = lua_istable(L, idx) ? parse_auth(&p, lua_absindex(L, idx), a)
                                  : perr(&p, "auth", "`auth` must be a table (or false on a route)");
    lua_settop(L, top);
    *field = p.field;
    if (!ok) {
        lx_auth_free(a);
        return false;
    }
    *out = a;
    return true;
}

struct lx_auth *lx_auth_jwt_options(lua_State *L, int idx, char *err, size_t errcap)
{
    struct parse p = { L, ".", "jwt", err, errcap };
    struct lx_auth *a = xcalloc(1, sizeof *a);
    int top = lua_gettop(L);
    idx = lua_absindex(L, idx);
    bool ok = parse_jwt(&p, idx, a) &&
              opt_list(&p, idx, "scopes", &a->scopes, &a->nscopes);
    lua_settop(L, top);
    if (!ok) {
        lx_auth_free(a);
        return NULL;
    }
    return a;
}

/* ---- checking a token ---- */

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Decodes a base64url part and its JSON; pushes the value (a table) or
 * returns false. */
static bool push_json_part(lua_State *L, const char *b64, size_t n)
{
    unsigned char *raw = xmalloc(n * 3 / 4 + 1);
    ssize_t r = jws_b64url_decode(b64, n, raw);
    bool ok = r > 0 && lx_json_decode(L, (const char *)raw, (size_t)r);
    free(raw);
    if (ok && !lua_istable(L, -1)) {
        lua_pop(L, 1);
        return false;
    }
    if (!ok && r > 0)
        lua_pop(L, 1);          /* the decoder's message */
    return ok;
}

/* A numeric date claim of the claims table at idx: 1 present (in *v), 0
 * absent, -1 not a number. */
static int date_claim(lua_State *L, int idx, const char *name, double *v)
{
    int t = lx_rawfield(L, idx, name);
    *v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return t == LUA_TNIL ? 0 : t == LUA_TNUMBER ? 1 : -1;
}

static bool aud_matches(const struct lx_auth *a, lua_State *L, int claims)
{
    int t = lx_rawfield(L, claims, "aud");
    bool ok = false;
    if (t == LUA_TSTRING) {
        for (size_t i = 0; i < a->naudience && !ok; i++)
            ok = strcmp(lua_tostring(L, -1), a->audience[i]) == 0;
    } else if (t == LUA_TTABLE) {
        size_t n = lua_rawlen(L, -1);
        for (size_t k = 1; k <= n && !ok; k++) {
            if (lua_rawgeti(L, -1, (lua_Integer)k) == LUA_TSTRING) {
                for (size_t i = 0; i < a->naudience && !ok; i++)
                    ok = strcmp(lua_tostring(L, -1), a->audience[i]) == 0;
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    return ok;
}

/* Pushes the token's scopes as a list: `scope` (space-separated, RFC
 * 8693) or `scp` (a list, or a string). */
static void push_scopes(lua_State *L, int claims)
{
    lua_newtable(L);
    int list = lua_gettop(L);
    lua_Integer n = 0;
    int t = lx_rawfield(L, claims, "scope");
    if (t != LUA_TSTRING) {
        lua_pop(L, 1);
        t = lx_rawfield(L, claims, "scp");
    }
    if (t == LUA_TSTRING) {
        const char *s = lua_tostring(L, -1);
        while (*s) {
            size_t sp = strspn(s, " ");
            s += sp;
            size_t w = strcspn(s, " ");
            if (w) {
                lua_pushlstring(L, s, w);
                lua_rawseti(L, list, ++n);
            }
            s += w;
        }
    } else if (t == LUA_TTABLE) {
        size_t len = lua_rawlen(L, -1);
        for (size_t i = 1; i <= len; i++) {
            if (lua_rawgeti(L, -1, (lua_Integer)i) == LUA_TSTRING)
                lua_rawseti(L, list, ++n);
            else
                lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    lx_json_mark_array(L, list);
}

static bool has_scope(lua_State *L, int list, const char *want)
{
    size_t n = lua_rawlen(L, list);
    bool found = false;
    for (size_t i = 1; i <= n && !found; i++) {
        lua_rawgeti(L, list, (lua_Integer)i);
        found = strcmp(lua_tostring(L, -1), want) == 0;
        lua_pop(L, 1);
    }
    return found;
}

/* Pushes the principal table {kind, subject, claims, scopes}. */
static void push_principal(lua_State *L, const char *kind, int claims, int scopes,
                           const char *subject, size_t sublen)
{
    lua_createtable(L, 0, 4);
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    if (subject) {
        lua_pushlstring(L, subject, sublen);
    } else if (lx_rawfield(L, claims, "sub") != LUA_TSTRING) {
        lua_pop(L, 1);
        lua_pushnil(L);
    }
    lua_setfield(L, -2, "subject");
    lua_pushvalue(L, claims);
    lua_setfield(L, -2, "claims");
    lua_pushvalue(L, scopes);
    lua_setfield(L, -2, "scopes");
}

int lx_auth_verify(lua_State *L, const struct lx_auth *a, const char *token, size_t n,
                   const char **reason, const char **missing)
{
    int top = lua_gettop(L);
    struct jws_parts parts;
    *missing = NULL;
    if (!jws_split(token, n, &parts)) {
        *reason = "malformed token";
        return 401;
    }
    if (!push_json_part(L, parts.header, parts.header_len)) {
        *reason = "malformed token header";
        return 401;
    }
    int header = lua_gettop(L);
    enum jws_alg alg = JWS_ALG_UNKNOWN;
    if (lx_rawfield(L, header, "alg") == LUA_TSTRING)
        alg = jws_alg_parse(lua_tostring(L, -1), lua_rawlen(L, -1));
    lua_pop(L, 1);
    const char *kid = NULL;
    if (lx_rawfield(L, header, "kid") == LUA_TSTRING)
        kid = lua_tostring(L, -1);      /* kept alive by the header table */
    lua_pop(L, 1);
    bool crit = lx_rawfield(L, header, "crit") != LUA_TNIL;
    lua_pop(L, 1);
    *reason = NULL;
    if (alg == JWS_ALG_UNKNOWN)
        *reason = "algorithm not accepted";
    else if (!(a->algs & (1u << alg)))
        *reason = "algorithm not allowed here";
    else if (crit)
        *reason = "critical header extensions are not understood";
    if (*reason) {
        lua_settop(L, top);
        return 401;
    }
    unsigned char sig[JWS_SIG_MAX];
    ssize_t sl = parts.sig_len <= jws_b64url_len(JWS_SIG_MAX)
                     ? jws_b64url_decode(parts.sig, parts.sig_len, sig)
                     : -1;
    const char *bad = sl > 0 ? "no key for this token" : "malformed signature";
    bool known_kid = !kid;
    for (size_t i = 0; i < a->nkeys && bad && sl > 0; i++) {
        const struct auth_key *k = &a->keys[i];
        if (kid && (!k->kid || strcmp(k->kid, kid) != 0))
            continue;
        known_kid = true;
        if ((k->alg && k->alg != alg) || !jws_key_fits(k->key, alg))
            continue;
        bad = jws_verify(alg, k->key, token, parts.signing_len, sig, (size_t)sl);
    }
    if (bad) {
        *reason = known_kid ? bad : "unknown key id";
        lua_settop(L, top);
        return 401;
    }
    if (!push_json_part(L, parts.payload, parts.payload_len)) {
        *reason = "malformed claims";
        lua_settop(L, top);
        return 401;
    }
    int claims = lua_gettop(L);
    double now = wall_now(), exp, nbf;
    int has_exp = date_claim(L, claims, "exp", &exp), has_nbf = date_claim(L, claims, "nbf", &nbf);
    if (has_exp < 0 || has_nbf < 0)
        *reason = "malformed exp or nbf claim";
    else if (has_exp && now > exp + a->leeway)
        *reason = "token expired";
    else if (has_nbf && now + a->leeway < nbf)
        *reason = "token not yet valid";
    if (!*reason && a->issuer) {
        lx_rawfield(L, claims, "iss");
        if (!lua_isstring(L, -1) || strcmp(lua_tostring(L, -1), a->issuer) != 0)
            *reason = "wrong issuer";
        lua_pop(L, 1);
    }
    if (!*reason && a->naudience && !aud_matches(a, L, claims))
        *reason = "wrong audience";
    if (*reason) {
        lua_settop(L, top);
        return 401;
    }
    push_scopes(L, claims);
    int scopes = lua_gettop(L);
    for (size_t i = 0; i < a->nscopes; i++) {
        if (!has_scope(L, scopes, a->scopes[i])) {
            *reason = "the token lacks a required scope";
            *missing = a->scopes[i];
            lua_settop(L, top);
            return 403;
        }
    }
    push_principal(L, "jwt", claims, scopes, NULL, 0);
    lua_replace(L, top + 1);
    lua_settop(L, top + 1);
    return 0;
}

/* ---- the request ---- */

/* The first value of query parameter name, decoded into out (cap bytes). */
static bool query_param(const struct http_exchange *ex, const char *name, char *out, size_t cap,
                        size_t *len)
{
    const char *q = ex->query, *end = q ? q + ex->query_len : NULL;
    size_t nl = strlen(name);
    while (q && q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *e = amp ? amp : end;
        if ((size_t)(e - q) > nl && q[nl] == '=' && memcmp(q, name, nl) == 0 &&
            (size_t)(e - q - (ptrdiff_t)nl - 1) < cap) {
            size_t vl = (size_t)(e - q) - nl - 1;
            memcpy(out, q + nl + 1, vl);
            ssize_t dl = http_url_decode(out, vl, true);
            if (dl < 0)
                return false;
            *len = (size_t)dl;
            return true;
        }
        q = amp ? amp + 1 : end;
    }
    return false;
}

/* Logs a refusal at info, LIM_AUTH_LOG_PER_SEC a second at most (a client
 * can make as many as it likes). */
static void log_refusal(struct lx_rt *rt, const struct http_exchange *ex, int status,
                        const char *reason)
{
    if (!log_enabled(LOG_INFO))
        return;
    double now = wall_now();
    if (now - rt->auth_log_since >= 1.0) {
        if (rt->auth_log_dropped)
            log_info("auth: %u refusals were not logged", rt->auth_log_dropped);
        rt->auth_log_since = now;
        rt->auth_log_count = rt->auth_log_dropped = 0;
    }
    if (rt->auth_log_count++ >= LIM_AUTH_LOG_PER_SEC) {
        if (rt->auth_log_dropped++ == 0)
            log_info("auth: over %d refusals in a second: the rest of this second's are counted, "
                     "not logged", LIM_AUTH_LOG_PER_SEC);
        return;
    }
    char addr[80];
    conn_remote(ex->conn, addr, sizeof addr);
    log_info("auth: %.*s %.*s from %s refused (%d): %s", (int)ex->req->method_len,
             ex->req->method, (int)(ex->path_len > 200 ? 200 : ex->path_len), ex->path, addr,
             status, reason);
}

/* Fills reply with a refusal and its challenges. */
static void refuse(struct lx_rt *rt, const struct lx_auth *a, const struct http_exchange *ex,
                   struct http_reply *reply, int status, const char *reason, bool bearer_tried,
                   const char *missing_scope)
{
    log_refusal(rt, ex, status, reason);
    reply->status = status;
    reply->headers.len = 0;
    reply->body.len = 0;
    if (a->jwt) {
        buf_printf(&reply->headers, "WWW-Authenticate: Bearer realm=\"%s\"", a->realm);
        if (status == 403) {
            buf_printf(&reply->headers, ", error=\"insufficient_scope\", error_description=\"%s\", "
                       "scope=\"", reason);
            for (size_t i = 0; i < a->nscopes; i++)
                buf_printf(&reply->headers, "%s%s", i ? " " : "", a->scopes[i]);
            buf_append_str(&reply->headers, "\"");
        } else if (bearer_tried) {
            buf_printf(&reply->headers, ", error=\"invalid_token\", error_description=\"%s\"",
                       reason);
        }
        buf_append_str(&reply->headers, "\r\n");
    }
    if (a->users && status == 401)
        buf_printf(&reply->headers, "WWW-Authenticate: Basic realm=\"%s\", charset=\"UTF-8\"\r\n",
                   a->realm);
    buf_append_str(&reply->headers, "Content-Type: text/plain; charset=utf-8\r\n");
    buf_printf(&reply->body, "%d %s: %s%s%s\n", status, http_status_text(status), reason,
               missing_scope ? " " : "", missing_scope ? missing_scope : "");
}

static bool scheme_is(const char *v, size_t n, const char *scheme, const char **rest, size_t *rl)
{
    size_t sl = strlen(scheme);
    if (n <= sl || strncasecmp(v, scheme, sl) != 0 || v[sl] != ' ')
        return false;
    *rest = v + sl;
    *rl = n - sl;
    while (*rl && **rest == ' ') {
        (*rest)++;
        (*rl)--;
    }
    return *rl > 0;
}

bool lx_auth_check(struct lx_rt *rt, const struct lx_auth *a, const struct http_exchange *ex,
                   struct http_reply *reply)
{
    lua_State *L = rt->L;
    const struct http_header *h =
        http_find_header(ex->req->headers, ex->req->nheaders, "authorization");
    const char *cred = NULL;
    size_t cl = 0;
    char qtoken[LIM_HTTP_HEAD_MAX];
    if (h && a->users && scheme_is(h->value, h->value_len, "Basic", &cred, &cl)) {
        char userpass[LIM_HTTP_HEAD_MAX];
        int dl = cl / 4 * 3 < sizeof userpass && cl % 4 == 0
                     ? EVP_DecodeBlock((unsigned char *)userpass, (const unsigned char *)cred, (int)cl)
                     : -1;
        /* EVP_DecodeBlock counts the padding as zero bytes. */
        while (dl > 0 && cl && cred[cl - 1] == '=' && userpass[dl - 1] == '\0') {
            dl--;
            cl--;
        }
        const char *colon = dl > 0 ? memchr(userpass, ':', (size_t)dl) : NULL;
        if (!colon) {
            refuse(rt, a, ex, reply, 401, "malformed Basic credentials", false, NULL);
            return false;
        }
        size_t ul = (size_t)(colon - userpass);
        bool ok = htpasswd_check(a->users, userpass, ul, colon + 1, (size_t)dl - ul - 1);
        OPENSSL_cleanse((char *)colon + 1, (size_t)dl - ul - 1);
        if (!ok) {
            refuse(rt, a, ex, reply, 401, "unknown user or wrong password", false, NULL);
            return false;
        }
        lua_newtable(L);
        int claims = lua_gettop(L);
        lua_newtable(L);
        lx_json_mark_array(L, -1);
        push_principal(L, "basic", claims, claims + 1, userpass, ul);
        lua_replace(L, claims);
        lua_settop(L, claims);
        return true;
    }
    if (h && a->jwt && scheme_is(h->value, h->value_len, "Bearer", &cred, &cl)) {
        /* the header's token */
    } else if (h) {
        refuse(rt, a, ex, reply, 401, "unsupported Authorization scheme", false, NULL);
        return false;
    } else if (a->query && query_param(ex, a->query, qtoken, sizeof qtoken, &cl)) {
        cred = qtoken;
    } else {
        refuse(rt, a, ex, reply, 401, "no credentials", false, NULL);
        return false;
    }
    const char *reason, *missing;
    int st = lx_auth_verify(L, a, cred, cl, &reason, &missing);
    if (st) {
        refuse(rt, a, ex, reply, st, reason, true, missing);
        return false;
    }
    return true;
}
