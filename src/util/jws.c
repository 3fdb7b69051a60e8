#include "jws.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

enum key_kind { KEY_HMAC, KEY_RSA, KEY_EC };

struct jws_key {
    enum key_kind kind;
    EVP_PKEY *pkey;             /* RSA and EC */
    int ec_bytes;               /* 32 (P-256) or 48 (P-384) */
    bool private_key;
    size_t secret_len;
    unsigned char secret[];     /* HMAC */
};

static const char *const alg_names[JWS_ALG_COUNT] = {
    [JWS_HS256] = "HS256", [JWS_HS384] = "HS384", [JWS_HS512] = "HS512",
    [JWS_RS256] = "RS256", [JWS_RS384] = "RS384", [JWS_RS512] = "RS512",
    [JWS_ES256] = "ES256", [JWS_ES384] = "ES384",
};

enum jws_alg jws_alg_parse(const char *s, size_t n)
{
    for (int a = 1; a < JWS_ALG_COUNT; a++) {
        if (strlen(alg_names[a]) == n && memcmp(alg_names[a], s, n) == 0)
            return (enum jws_alg)a;
    }
    return JWS_ALG_UNKNOWN;
}

const char *jws_alg_name(enum jws_alg alg)
{
    return alg > JWS_ALG_UNKNOWN && alg < JWS_ALG_COUNT ? alg_names[alg] : "none";
}

bool jws_alg_is_hmac(enum jws_alg alg)
{
    return alg >= JWS_HS256 && alg <= JWS_HS512;
}

static const EVP_MD *alg_md(enum jws_alg alg)
{
    switch (alg) {
    case JWS_HS256: case JWS_RS256: case JWS_ES256: return EVP_sha256();
    case JWS_HS384: case JWS_RS384: case JWS_ES384: return EVP_sha384();
    case JWS_HS512: case JWS_RS512: return EVP_sha512();
    default: return NULL;
    }
}

/* ---- base64url ---- */

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t jws_b64url_len(size_t n)
{
    return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

size_t jws_b64url_encode(const void *in, size_t n, char *out)
{
    const unsigned char *p = in;
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        out[o++] = b64url[v >> 18];
        out[o++] = b64url[(v >> 12) & 63];
        out[o++] = b64url[(v >> 6) & 63];
        out[o++] = b64url[v & 63];
    }
    if (n - i == 1) {
        unsigned v = (unsigned)p[i] << 16;
        out[o++] = b64url[v >> 18];
        out[o++] = b64url[(v >> 12) & 63];
    } else if (n - i == 2) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;
        out[o++] = b64url[v >> 18];
        out[o++] = b64url[(v >> 12) & 63];
        out[o++] = b64url[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

static int b64url_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

ssize_t jws_b64url_decode(const char *in, size_t n, unsigned char *out)
{
    if (n % 4 == 1)
        return -1;              /* one character carries only 6 bits */
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value(in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* The unused low bits of the last character must be zero: otherwise
     * two spellings would decode to one value. */
    if (acc != 0)
        return -1;
    return (ssize_t)o;
}

bool jws_split(const char *token, size_t n, struct jws_parts *p)
{
    const char *d1 = memchr(token, '.', n);
    if (!d1)
        return false;
    const char *d2 = memchr(d1 + 1, '.', n - (size_t)(d1 + 1 - token));
    if (!d2 || memchr(d2 + 1, '.', n - (size_t)(d2 + 1 - token)))
        return false;
    p->header = token;
    p->header_len = (size_t)(d1 - token);
    p->payload = d1 + 1;
    p->payload_len = (size_t)(d2 - d1 - 1);
    p->sig = d2 + 1;
    p->sig_len = n - (size_t)(d2 + 1 - token);
    p->signing_len = (size_t)(d2 - token);
    if (!p->header_len || !p->payload_len || !p->sig_len)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (token[i] != '.' && b64url_value(token[i]) < 0)
            return false;
    }
    return true;
}

/* ---- keys ---- */

static struct jws_key *key_new(enum key_kind kind, size_t secret_len)
{
    struct jws_key *k = xcalloc(1, sizeof *k + secret_len);
    k->kind = kind;
    k->secret_len = secret_len;
    return k;
}

struct jws_key *jws_key_hmac(const void *secret, size_t n)
{
    struct jws_key *k = key_new(KEY_HMAC, n);
    memcpy(k->secret, secret, n);
    return k;
}

static void openssl_reason(const char *what, char *err, size_t errcap)
{
    unsigned long e = ERR_get_error();
    char reason[160] = "";
    if (e)
        ERR_error_string_n(e, reason, sizeof reason);
    ERR_clear_error();
    snprintf(err, errcap, "%s%s%s", what, e ? ": " : "", reason);
}

/* Wraps pkey (taken over) after checking it is a kind JWS can use. */
static struct jws_key *adopt_pkey(EVP_PKEY *pkey, bool private_key, char *err, size_t errcap)
{
    struct jws_key *k = NULL;
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        if (EVP_PKEY_get_bits(pkey) < 2048) {
            snprintf(err, errcap, "an RSA key of %d bits; JWS needs at least 2048 (RFC 7518 §3.3)",
                     EVP_PKEY_get_bits(pkey));
        } else {
            k = key_new(KEY_RSA, 0);
        }
    } else if (EVP_PKEY_is_a(pkey, "EC")) {
        char group[64] = "";
        size_t gl = 0;
        EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &gl);
        int bytes = strcmp(group, "prime256v1") == 0 ? 32 : strcmp(group, "secp384r1") == 0 ? 48 : 0;
        if (!bytes) {
            snprintf(err, errcap, "an EC key on curve %s; JWS here takes P-256 (ES256) or P-384 "
                     "(ES384)", group[0] ? group : "(unknown)");
        } else {
            k = key_new(KEY_EC, 0);
            k->ec_bytes = bytes;
        }
    } else {
        snprintf(err, errcap, "a key that is neither RSA nor EC");
    }
    if (!k) {
        EVP_PKEY_free(pkey);
        return NULL;
    }
    k->pkey = pkey;
    k->private_key = private_key;
    return k;
}

struct jws_key *jws_key_pem(const char *pem, size_t n, bool private_key, char *err, size_t errcap)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)n);
    if (!bio) {
        snprintf(err, errcap, "out of memory");
        return NULL;
    }
    EVP_PKEY *pkey = NULL;
    if (private_key) {
        pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    } else {
        pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
        if (!pkey) {
            /* A certificate holds the public key too. */
            ERR_clear_error();
            BIO_reset(bio);
            X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
            if (x) {
                pkey = X509_get_pubkey(x);
                X509_free(x);
            }
        }
        if (!pkey) {
            ERR_clear_error();
            BIO_reset(bio);
            pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
            if (pkey) {
                EVP_PKEY_free(pkey);
                pkey = NULL;
                BIO_free(bio);
                snprintf(err, errcap, "a private key where a public key belongs (give the "
                         "server only the public half)");
                ERR_clear_error();
                return NULL;
            }
        }
    }
    BIO_free(bio);
    if (!pkey) {
        openssl_reason(private_key ? "not a PEM private key" : "not a PEM public key or certificate",
                       err, errcap);
        return NULL;
    }
    return adopt_pkey(pkey, private_key, err, errcap);
}

/* Decodes base64url field `what` into a new buffer; NULL with err. */
static unsigned char *b64_field(const char *s, const char *what, size_t *len, char *err,
                                size_t errcap)
{
    size_t n = s ? strlen(s) : 0;
    unsigned char *out = xmalloc(n * 3 / 4 + 1);
    ssize_t r = s ? jws_b64url_decode(s, n, out) : -1;
    if (r <= 0) {
        free(out);
        snprintf(err, errcap, "`%s` is missing or not base64url", what);
        return NULL;
    }
    *len = (size_t)r;
    return out;
}

static struct jws_key *from_params(const char *type, OSSL_PARAM_BLD *bld, char *err, size_t errcap)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pkey = NULL;
    bool ok = params && ctx && EVP_PKEY_fromdata_init(ctx) > 0 &&
              EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) > 0;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    if (!ok) {
        EVP_PKEY_free(pkey);
        openssl_reason("OpenSSL refused the key", err, errcap);
        return NULL;
    }
    return adopt_pkey(pkey, false, err, errcap);
}

struct jws_key *jws_key_rsa(const char *n_b64, const char *e_b64, char *err, size_t errcap)
{
    size_t nl, el;
    unsigned char *n = b64_field(n_b64, "n", &nl, err, errcap);
    if (!n)
        return NULL;
    unsigned char *e = b64_field(e_b64, "e", &el, err, errcap);
    if (!e) {
        free(n);
        return NULL;
    }
    BIGNUM *bn = BN_bin2bn(n, (int)nl, NULL), *be = BN_bin2bn(e, (int)el, NULL);
    free(n);
    free(e);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    struct jws_key *k = NULL;
    if (bn && be && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
        k = from_params("RSA", bld, err, errcap);
    else
        snprintf(err, errcap, "out of memory");
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return k;
}

struct jws_key *jws_key_ec(const char *crv, const char *x_b64, const char *y_b64, char *err,
                           size_t errcap)
{
    const char *group = NULL;
    size_t want = 0;
    if (crv && strcmp(crv, "P-256") == 0) {
        group = "prime256v1";
        want = 32;
    } else if (crv && strcmp(crv, "P-384") == 0) {
        group = "secp384r1";
        want = 48;
    } else {
        snprintf(err, errcap, "`crv` must be P-256 or P-384");
        return NULL;
    }
    size_t xl, yl;
    unsigned char *x = b64_field(x_b64, "x", &xl, err, errcap);
    if (!x)
        return NULL;
    unsigned char *y = b64_field(y_b64, "y", &yl, err, errcap);
    if (!y) {
        free(x);
        return NULL;
    }
    struct jws_key *k = NULL;
    if (xl != want || yl != want) {
        snprintf(err, errcap, "`x` and `y` of a %s key are %zu bytes each", crv, want);
    } else {
        /* The uncompressed point: 04 || x || y. */
        unsigned char point[1 + 2 * 48];
        point[0] = 4;
        memcpy(point + 1, x, want);
        memcpy(point + 1 + want, y, want);
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        if (bld && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) &&
            OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * want))
            k = from_params("EC", bld, err, errcap);
        else
            snprintf(err, errcap, "out of memory");
        OSSL_PARAM_BLD_free(bld);
    }
    free(x);
    free(y);
    return k;
}

void jws_key_free(struct jws_key *k)
{
    if (!k)
        return;
    EVP_PKEY_free(k->pkey);
    OPENSSL_cleanse(k->secret, k->secret_len);
    free(k);
}

bool jws_key_fits(const struct jws_key *k, enum jws_alg alg)
{
    switch (alg) {
    case JWS_HS256: case JWS_HS384: case JWS_HS512:
        return k->kind == KEY_HMAC;
    case JWS_RS256: case JWS_RS384: case JWS_RS512:
        return k->kind == KEY_RSA;
    case JWS_ES256:
        return k->kind == KEY_EC && k->ec_bytes == 32;
    case JWS_ES384:
        return k->kind == KEY_EC && k->ec_bytes == 48;
    default:
        return false;
    }
}

enum jws_alg jws_key_default_alg(const struct jws_key *k)
{
    return k->kind == KEY_HMAC ? JWS_HS256 : k->kind == KEY_RSA ? JWS_RS256
           : k->ec_bytes == 32 ? JWS_ES256 : JWS_ES384;
}

size_t jws_key_secret_len(const struct jws_key *k)
{
    return k->kind == KEY_HMAC ? k->secret_len : 0;
}

/* A number parameter of pkey as base64url: in its own length (width 0,
 * RSA) or padded to width bytes (EC coordinates). */
static bool bn_b64(const EVP_PKEY *pkey, const char *param, int width, char *out, size_t cap)
{
    BIGNUM *bn = NULL;
    if (!EVP_PKEY_get_bn_param(pkey, param, &bn))
        return false;
    unsigned char raw[1024];
    int n = width ? width : BN_num_bytes(bn);
    bool ok = n > 0 && (size_t)n <= sizeof raw && jws_b64url_len((size_t)n) < cap &&
              BN_bn2binpad(bn, raw, n) == n;
    if (ok)
        jws_b64url_encode(raw, (size_t)n, out);
    BN_free(bn);
    return ok;
}

bool jws_key_public_jwk(const struct jws_key *k, const char **kty, char *a, char *b,
                        const char **crv, size_t cap)
{
    *crv = NULL;
    if (k->kind == KEY_RSA) {
        *kty = "RSA";
        return bn_b64(k->pkey, OSSL_PKEY_PARAM_RSA_N, 0, a, cap) &&
               bn_b64(k->pkey, OSSL_PKEY_PARAM_RSA_E, 0, b, cap);
    }
    if (k->kind != KEY_EC)
        return false;
    *kty = "EC";
    *crv = k->ec_bytes == 32 ? "P-256" : "P-384";
    return bn_b64(k->pkey, OSSL_PKEY_PARAM_EC_PUB_X, k->ec_bytes, a, cap) &&
           bn_b64(k->pkey, OSSL_PKEY_PARAM_EC_PUB_Y, k->ec_bytes, b, cap);
}

/* ---- signing and verifying ---- */

static bool hmac(enum jws_alg alg, const struct jws_key *k, const char *input, size_t n,
                 unsigned char *out, unsigned *outlen)
{
    return HMAC(alg_md(alg), k->secret, (int)k->secret_len, (const unsigned char *)input, n, out,
                outlen) != NULL;
}

/* r||s (each w bytes) <-> DER ECDSA-Sig-Value. */
static int raw_to_der(const unsigned char *sig, size_t w, unsigned char **der)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, (int)w, NULL), *s = BN_bin2bn(sig + w, (int)w, NULL);
    int len = -1;
    if (es && r && s && ECDSA_SIG_set0(es, r, s)) {
        r = s = NULL;           /* owned by es now */
        len = i2d_ECDSA_SIG(es, der);
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return len;
}

static bool der_to_raw(const unsigned char *der, size_t n, size_t w, unsigned char *out)
{
    const unsigned char *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)n);
    if (!es)
        return false;
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(es, &r, &s);
    bool ok = BN_bn2binpad(r, out, (int)w) == (int)w && BN_bn2binpad(s, out + w, (int)w) == (int)w;
    ECDSA_SIG_free(es);
    return ok;
}

const char *jws_verify(enum jws_alg alg, const struct jws_key *k, const char *input, size_t n,
                       const unsigned char *sig, size_t siglen)
{
    if (!k || !jws_key_fits(k, alg))
        return "the key does not fit the algorithm";
    if (k->kind == KEY_HMAC) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned ml = 0;
        if (!hmac(alg, k, input, n, mac, &ml))
            return "HMAC failed";
        return ml == siglen && CRYPTO_memcmp(mac, sig, ml) == 0 ? NULL : "bad signature";
    }
    unsigned char *der = NULL;
    const unsigned char *s = sig;
    size_t sl = siglen;
    if (k->kind == KEY_EC) {
        /* JWS carries r||s of the curve's size, exactly (RFC 7518 §3.4). */
        if (siglen != 2 * (size_t)k->ec_bytes)
            return "bad signature (an ECDSA signature of the wrong length)";
        int dl = raw_to_der(sig, (size_t)k->ec_bytes, &der);
        if (dl <= 0)
            return "bad signature";
        s = der;
        sl = (size_t)dl;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int rc = ctx ? EVP_DigestVerifyInit(ctx, NULL, alg_md(alg), NULL, k->pkey) : 0;
    if (rc == 1)
        rc = EVP_DigestVerify(ctx, s, sl, (const unsigned char *)input, n);
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    ERR_clear_error();
    return rc == 1 ? NULL : "bad signature";
}

const char *jws_sign(enum jws_alg alg, const struct jws_key *k, const char *input, size_t n,
                     unsigned char sig[JWS_SIG_MAX], size_t *siglen)
{
    if (!k || !jws_key_fits(k, alg))
        return "the key does not fit the algorithm";
    if (k->kind == KEY_HMAC) {
        unsigned ml = 0;
        if (!hmac(alg, k, input, n, sig, &ml))
            return "HMAC failed";
        *siglen = ml;
        return NULL;
    }
    if (!k->private_key)
        return "a public key cannot sign";
    unsigned char der[JWS_SIG_MAX];
    size_t dl = sizeof der;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int rc = ctx ? EVP_DigestSignInit(ctx, NULL, alg_md(alg), NULL, k->pkey) : 0;
    if (rc == 1)
        rc = EVP_DigestSign(ctx, der, &dl, (const unsigned char *)input, n);
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    if (rc != 1)
        return "signing failed";
    if (k->kind == KEY_EC) {
        if (!der_to_raw(der, dl, (size_t)k->ec_bytes, sig))
            return "signing failed";
        *siglen = 2 * (size_t)k->ec_bytes;
        return NULL;
    }
    memcpy(sig, der, dl);
    *siglen = dl;
    return NULL;
}
