/*
 * jws: JSON Web Signatures in compact form (RFC 7515) with the algorithms
 * of RFC 7518 §3 that moonws accepts — HS256/384/512, RS256/384/512,
 * ES256/384 — through OpenSSL's EVP interface. Pure: tokens and keys in,
 * verdicts and bytes out; no JSON (the layer above reads headers and
 * claims), no clock, no state.
 *
 * Algorithm confusion is closed here, not left to callers: a key is of
 * one kind (an HMAC secret, an RSA or an EC public/private key) and
 * jws_key_fits says which algorithms it may verify — an HMAC secret never
 * verifies RS/ES, a public key never verifies HS (whose "secret" would be
 * the public key itself), and "none" is not an algorithm at all.
 */
#ifndef MOONWS_JWS_H
#define MOONWS_JWS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

enum jws_alg {
    JWS_ALG_UNKNOWN = 0,
    JWS_HS256, JWS_HS384, JWS_HS512,
    JWS_RS256, JWS_RS384, JWS_RS512,
    JWS_ES256, JWS_ES384,
    JWS_ALG_COUNT
};

/* The algorithm named s (n bytes), or JWS_ALG_UNKNOWN ("none" included). */
enum jws_alg jws_alg_parse(const char *s, size_t n);
const char *jws_alg_name(enum jws_alg alg);
bool jws_alg_is_hmac(enum jws_alg alg);

/* base64url without padding (RFC 7515 §2). Encoding writes
 * jws_b64url_len(n) bytes and a NUL. Decoding accepts no padding, no
 * whitespace and no bits left over in the last character; it returns the
 * decoded length or -1. out needs (n * 3) / 4 + 1 bytes. */
size_t jws_b64url_len(size_t n);
size_t jws_b64url_encode(const void *in, size_t n, char *out);
ssize_t jws_b64url_decode(const char *in, size_t n, unsigned char *out);

/* The three parts of a compact JWS, as views into the token. */
struct jws_parts {
    const char *header, *payload, *sig;     /* base64url text */
    size_t header_len, payload_len, sig_len;
    size_t signing_len;         /* header '.' payload: the signed bytes, from header */
};

/* Splits a token into its parts: exactly two dots, three non-empty parts
 * of base64url characters (the signature may not be empty: an unsigned
 * token is refused here already). */
bool jws_split(const char *token, size_t n, struct jws_parts *p);

struct jws_key;

/* An HMAC secret (copied). */
struct jws_key *jws_key_hmac(const void *secret, size_t n);
/* A PEM public key ("PUBLIC KEY", "RSA PUBLIC KEY" or a certificate's) or,
 * with private set, a PEM private key. RSA keys must have at least 2048
 * bits; EC keys must be P-256 or P-384. NULL with the reason in err. */
struct jws_key *jws_key_pem(const char *pem, size_t n, bool private_key, char *err, size_t errcap);
/* Public keys of a JWK (RFC 7518 §6): RSA from base64url n and e, EC from
 * crv ("P-256", "P-384") and base64url x and y. NULL with the reason. */
struct jws_key *jws_key_rsa(const char *n_b64, const char *e_b64, char *err, size_t errcap);
struct jws_key *jws_key_ec(const char *crv, const char *x_b64, const char *y_b64, char *err,
                           size_t errcap);
void jws_key_free(struct jws_key *k);

/* True when k may sign or verify with alg. */
bool jws_key_fits(const struct jws_key *k, enum jws_alg alg);
/* The algorithm a key implies when none is configured: HS256, RS256, or
 * ES256/ES384 by curve. */
enum jws_alg jws_key_default_alg(const struct jws_key *k);
/* For a JWK: kty "RSA" (n, e) or "EC" (crv, x, y) of a public key, written
 * as base64url into the caller's buffers (each cap bytes). False for an
 * HMAC key or when a buffer is too small. */
bool jws_key_public_jwk(const struct jws_key *k, const char **kty, char *a, char *b,
                        const char **crv, size_t cap);
/* Bytes of an HMAC secret (0 for other keys). */
size_t jws_key_secret_len(const struct jws_key *k);

/* The largest signature jws_sign writes (RSA up to 8192 bits). */
#define JWS_SIG_MAX 1024

/* Verifies sig (raw bytes: for ES, r||s as JWS has it, not DER) over
 * input. NULL when valid, else a short reason. */
const char *jws_verify(enum jws_alg alg, const struct jws_key *k, const char *input, size_t n,
                       const unsigned char *sig, size_t siglen);
/* Signs input (ES: r||s of the curve's size); *siglen gets the length.
 * NULL on success, else why not (a public key cannot sign). */
const char *jws_sign(enum jws_alg alg, const struct jws_key *k, const char *input, size_t n,
                     unsigned char sig[JWS_SIG_MAX], size_t *siglen);

#endif
