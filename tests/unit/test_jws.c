/*
 * JWS (src/util/jws.h): base64url, splitting, and signatures with the
 * algorithm-confusion rules — RFC 7515 appendix A.1 as the known vector.
 */
#include "check.h"

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "util/jws.h"

/* RFC 7515 A.1: the HS256 example (header with CRLF inside, as given). */
#define A1_HEADER "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
#define A1_PAYLOAD                                                                      \
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290" \
    "Ijp0cnVlfQ"
#define A1_KEY "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"
#define A1_SIG "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"

static struct jws_key *a1_key(void)
{
    unsigned char k[64];
    ssize_t n = jws_b64url_decode(A1_KEY, strlen(A1_KEY), k);
    CHECK_EQ_INT(n, 64);
    return jws_key_hmac(k, (size_t)n);
}

static ssize_t b64(const char *s, unsigned char *out)
{
    return jws_b64url_decode(s, strlen(s), out);
}

TEST(b64url_round_trips_every_length)
{
    unsigned char in[40], back[40];
    char enc[64];
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (unsigned char)(i * 37 + 250);
    for (size_t n = 0; n <= sizeof in; n++) {
        size_t el = jws_b64url_encode(in, n, enc);
        CHECK_EQ_INT(el, jws_b64url_len(n));
        CHECK_EQ_INT(enc[el], 0);
        CHECK(!strpbrk(enc, "+/="));
        CHECK_EQ_INT(jws_b64url_decode(enc, el, back), (ssize_t)n);
        CHECK_MEM(back, n, in, n);
    }
}

TEST(b64url_refuses_padding_other_alphabets_and_stray_bits)
{
    unsigned char out[16];
    CHECK_EQ_INT(b64("", out), 0);
    CHECK_EQ_INT(b64("QQ", out), 1);
    CHECK_EQ_INT(out[0], 'A');
    CHECK_EQ_INT(b64("QR", out), -1);       /* bits left over in the last character */
    CHECK_EQ_INT(b64("Q", out), -1);        /* one character is not a byte */
    CHECK_EQ_INT(b64("QQ==", out), -1);     /* no padding in JWS */
    CHECK_EQ_INT(b64("a+b/", out), -1);     /* base64, not base64url */
    CHECK_EQ_INT(b64("-_-_", out), 3);
    CHECK_EQ_INT(b64("QQ Q", out), -1);
}

TEST(split_wants_three_non_empty_parts)
{
    struct jws_parts p;
    const char *t = A1_HEADER "." A1_PAYLOAD "." A1_SIG;
    CHECK(jws_split(t, strlen(t), &p));
    CHECK_STR(p.header, p.header_len, A1_HEADER);
    CHECK_STR(p.payload, p.payload_len, A1_PAYLOAD);
    CHECK_STR(p.sig, p.sig_len, A1_SIG);
    CHECK_EQ_INT(p.signing_len, strlen(A1_HEADER "." A1_PAYLOAD));
    CHECK(!jws_split("a.b", 3, &p));
    CHECK(!jws_split("a.b.c.d", 7, &p));
    CHECK(!jws_split("a..c", 4, &p));
    CHECK(!jws_split("a.b.", 4, &p));        /* unsigned ("alg": "none") */
    CHECK(!jws_split(".b.c", 4, &p));
    CHECK(!jws_split("a.b=.c", 6, &p));
    CHECK(jws_split("a.b.c", 5, &p));
}

TEST(algorithm_names_and_none)
{
    CHECK_EQ_INT(jws_alg_parse("HS256", 5), JWS_HS256);
    CHECK_EQ_INT(jws_alg_parse("ES384", 5), JWS_ES384);
    CHECK_EQ_INT(jws_alg_parse("none", 4), JWS_ALG_UNKNOWN);
    CHECK_EQ_INT(jws_alg_parse("hs256", 5), JWS_ALG_UNKNOWN);
    CHECK_EQ_INT(jws_alg_parse("HS2560", 6), JWS_ALG_UNKNOWN);
    CHECK_EQ_INT(jws_alg_parse("PS256", 5), JWS_ALG_UNKNOWN);
    CHECK(strcmp(jws_alg_name(JWS_RS512), "RS512") == 0);
}

TEST(rfc7515_a1_hs256_verifies_and_signs)
{
    struct jws_key *k = a1_key();
    const char *input = A1_HEADER "." A1_PAYLOAD;
    unsigned char sig[64];
    ssize_t sl = b64(A1_SIG, sig);
    CHECK_EQ_INT(sl, 32);
    CHECK(jws_verify(JWS_HS256, k, input, strlen(input), sig, (size_t)sl) == NULL);
    unsigned char mine[JWS_SIG_MAX];
    size_t ml = 0;
    CHECK(jws_sign(JWS_HS256, k, input, strlen(input), mine, &ml) == NULL);
    CHECK_MEM(mine, ml, sig, (size_t)sl);
    /* Tampered: one bit of the signature, one byte of the input, a short MAC. */
    sig[5] ^= 1;
    CHECK(jws_verify(JWS_HS256, k, input, strlen(input), sig, (size_t)sl) != NULL);
    sig[5] ^= 1;
    CHECK(jws_verify(JWS_HS256, k, input, strlen(input) - 1, sig, (size_t)sl) != NULL);
    CHECK(jws_verify(JWS_HS256, k, input, strlen(input), sig, (size_t)sl - 1) != NULL);
    /* The same MAC is not a valid HS384/HS512 one. */
    CHECK(jws_verify(JWS_HS384, k, input, strlen(input), sig, (size_t)sl) != NULL);
    jws_key_free(k);
}

static struct jws_key *generated(const char *type, const char *param, bool private_key,
                                 struct jws_key **pub)
{
    EVP_PKEY *pkey = strcmp(type, "RSA") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)atoi(param))
                                              : EVP_PKEY_Q_keygen(NULL, NULL, "EC", param);
    if (!CHECK(pkey != NULL))
        return NULL;
    char err[200];
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, pkey, NULL, NULL, 0, NULL, NULL);
    char *pem;
    long n = BIO_get_mem_data(b, &pem);
    struct jws_key *priv = jws_key_pem(pem, (size_t)n, private_key, err, sizeof err);
    BIO_free(b);
    b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, pkey);
    n = BIO_get_mem_data(b, &pem);
    *pub = jws_key_pem(pem, (size_t)n, false, err, sizeof err);
    if (!*pub)
        NOTE("  %s\n", err);
    BIO_free(b);
    EVP_PKEY_free(pkey);
    return priv;
}

TEST(es256_signatures_are_raw_r_s_of_64_bytes)
{
    struct jws_key *pub, *priv = generated("EC", "P-256", true, &pub);
    if (!priv || !pub)
        return;
    const char *input = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbm4ifQ";
    unsigned char sig[JWS_SIG_MAX];
    size_t sl = 0;
    CHECK(jws_sign(JWS_ES256, priv, input, strlen(input), sig, &sl) == NULL);
    CHECK_EQ_INT(sl, 64);
    CHECK(jws_verify(JWS_ES256, pub, input, strlen(input), sig, sl) == NULL);
    CHECK(jws_verify(JWS_ES256, pub, input, strlen(input), sig, 63) != NULL);
    CHECK(jws_verify(JWS_ES384, pub, input, strlen(input), sig, sl) != NULL);
    sig[40] ^= 0x80;
    CHECK(jws_verify(JWS_ES256, pub, input, strlen(input), sig, sl) != NULL);
    /* A public key does not sign, and never verifies HS (the confusion
     * where the public key is taken for an HMAC secret). */
    CHECK(jws_sign(JWS_ES256, pub, input, strlen(input), sig, &sl) != NULL);
    CHECK(!jws_key_fits(pub, JWS_HS256));
    CHECK(!jws_key_fits(pub, JWS_RS256));
    CHECK_EQ_INT(jws_key_default_alg(pub), JWS_ES256);
    /* Its JWK rebuilds the same key. */
    const char *kty, *crv;
    char x[100], y[100], err[200];
    CHECK(jws_key_public_jwk(pub, &kty, x, y, &crv, sizeof x));
    CHECK(strcmp(kty, "EC") == 0 && strcmp(crv, "P-256") == 0);
    struct jws_key *again = jws_key_ec(crv, x, y, err, sizeof err);
    CHECK(again != NULL);
    sig[40] ^= 0x80;
    CHECK(jws_sign(JWS_ES256, priv, input, strlen(input), sig, &sl) == NULL);
    CHECK(again && jws_verify(JWS_ES256, again, input, strlen(input), sig, sl) == NULL);
    CHECK(jws_key_ec("P-256", y, x, err, sizeof err) == NULL);   /* not on the curve */
    CHECK(jws_key_ec("P-521", x, y, err, sizeof err) == NULL);
    jws_key_free(again);
    jws_key_free(priv);
    jws_key_free(pub);
}

TEST(es384_signatures_are_96_bytes)
{
    struct jws_key *pub, *priv = generated("EC", "P-384", true, &pub);
    if (!priv || !pub)
        return;
    unsigned char sig[JWS_SIG_MAX];
    size_t sl = 0;
    CHECK(jws_sign(JWS_ES384, priv, "a.b", 3, sig, &sl) == NULL);
    CHECK_EQ_INT(sl, 96);
    CHECK(jws_verify(JWS_ES384, pub, "a.b", 3, sig, sl) == NULL);
    CHECK(!jws_key_fits(pub, JWS_ES256));
    jws_key_free(priv);
    jws_key_free(pub);
}

TEST(rs256_round_trip_and_its_jwk)
{
    struct jws_key *pub, *priv = generated("RSA", "2048", true, &pub);
    if (!priv || !pub)
        return;
    unsigned char sig[JWS_SIG_MAX];
    size_t sl = 0;
    CHECK(jws_sign(JWS_RS256, priv, "a.b", 3, sig, &sl) == NULL);
    CHECK_EQ_INT(sl, 256);
    CHECK(jws_verify(JWS_RS256, pub, "a.b", 3, sig, sl) == NULL);
    CHECK(jws_verify(JWS_RS384, pub, "a.b", 3, sig, sl) != NULL);
    CHECK(jws_verify(JWS_RS256, pub, "a.c", 3, sig, sl) != NULL);
    CHECK(jws_verify(JWS_HS256, pub, "a.b", 3, sig, sl) != NULL);
    const char *kty, *crv;
    char n[400], e[16], err[200];
    CHECK(jws_key_public_jwk(pub, &kty, n, e, &crv, sizeof e) == false);   /* n does not fit */
    CHECK(jws_key_public_jwk(pub, &kty, n, e, &crv, sizeof n));
    CHECK(strcmp(e, "AQAB") == 0);
    struct jws_key *again = jws_key_rsa(n, e, err, sizeof err);
    CHECK(again && jws_verify(JWS_RS256, again, "a.b", 3, sig, sl) == NULL);
    jws_key_free(again);
    jws_key_free(priv);
    jws_key_free(pub);
}

TEST(weak_or_wrong_keys_are_refused)
{
    struct jws_key *pub;
    struct jws_key *priv = generated("RSA", "1024", true, &pub);
    CHECK(priv == NULL);
    CHECK(pub == NULL);
    char err[200];
    CHECK(jws_key_pem("junk", 4, false, err, sizeof err) == NULL);
    CHECK(strstr(err, "not a PEM public key") != NULL);
    /* A private key given where the public one belongs is named as such. */
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, pkey, NULL, NULL, 0, NULL, NULL);
    char *pem;
    long n = BIO_get_mem_data(b, &pem);
    CHECK(jws_key_pem(pem, (size_t)n, false, err, sizeof err) == NULL);
    CHECK(strstr(err, "private key") != NULL);
    BIO_free(b);
    EVP_PKEY_free(pkey);
    struct jws_key *h = jws_key_hmac("secret", 6);
    CHECK(!jws_key_fits(h, JWS_RS256));
    CHECK(!jws_key_fits(h, JWS_ES256));
    CHECK(jws_key_fits(h, JWS_HS512));
    CHECK_EQ_INT(jws_key_secret_len(h), 6);
    jws_key_free(h);
}

int main(int argc, char **argv)
{
    return check_main("test_jws");
}
