/*
 * The JWS codec on hostile tokens, as a server meets them in an
 * Authorization header or a query string: jws_split must not read past the
 * token, base64url decoding of each part must agree with encoding (a part
 * that decodes encodes back to itself: no padding, no stray bits), and
 * verification with an HMAC and an EC key must give a verdict (never a
 * crash) — and never "valid" for the bytes fuzzed here, which nobody signed.
 * A token the HMAC key did sign is also checked once per input: it verifies,
 * and a flipped byte of the input makes it fail.
 */
#include "fuzz.h"

#include <stdbool.h>

#include "util/jws.h"

static struct jws_key *hmac_key, *ec_key;

static void keys(void)
{
    if (hmac_key)
        return;
    hmac_key = jws_key_hmac("fuzzing secret, 32 bytes long!!", 32);
    char err[256];
    /* The P-256 public key of RFC 7515 appendix A.3. */
    ec_key = jws_key_ec("P-256", "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                        "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0", err, sizeof err);
    FUZZ_ASSERT(hmac_key && ec_key);
}

static void part_roundtrip(const char *p, size_t n)
{
    unsigned char *raw = malloc(n * 3 / 4 + 1);
    ssize_t dl = jws_b64url_decode(p, n, raw);
    if (dl >= 0) {
        char *back = malloc(jws_b64url_len((size_t)dl) + 1);
        size_t bl = jws_b64url_encode(raw, (size_t)dl, back);
        FUZZ_ASSERT(bl == n && memcmp(back, p, n) == 0);
        free(back);
    }
    free(raw);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    keys();
    char *tok = fuzz_dup(data, size);
    struct jws_parts p;
    if (jws_split(tok, size, &p)) {
        FUZZ_ASSERT(p.header == tok && p.signing_len == p.header_len + 1 + p.payload_len);
        FUZZ_ASSERT(p.sig + p.sig_len == tok + size);
        part_roundtrip(p.header, p.header_len);
        part_roundtrip(p.payload, p.payload_len);
        part_roundtrip(p.sig, p.sig_len);
        unsigned char *sig = malloc(p.sig_len * 3 / 4 + 1);
        ssize_t sl = jws_b64url_decode(p.sig, p.sig_len, sig);
        if (sl >= 0) {
            static const enum jws_alg algs[] = { JWS_HS256, JWS_HS384, JWS_HS512, JWS_ES256 };
            for (size_t i = 0; i < sizeof algs / sizeof *algs; i++) {
                struct jws_key *k = jws_alg_is_hmac(algs[i]) ? hmac_key : ec_key;
                FUZZ_ASSERT(jws_verify(algs[i], k, tok, p.signing_len, sig, (size_t)sl) != NULL);
            }
        }
        free(sig);
    }
    /* What the key signs, it verifies; a changed byte it refuses. */
    unsigned char sig[JWS_SIG_MAX];
    size_t sl;
    FUZZ_ASSERT(jws_sign(JWS_HS256, hmac_key, tok, size, sig, &sl) == NULL);
    FUZZ_ASSERT(jws_verify(JWS_HS256, hmac_key, tok, size, sig, sl) == NULL);
    if (size) {
        tok[size / 2] ^= 0x01;
        FUZZ_ASSERT(jws_verify(JWS_HS256, hmac_key, tok, size, sig, sl) != NULL);
    }
    free(tok);
    return 0;
}
