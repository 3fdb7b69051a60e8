#include "crypto.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

void crypto_ws_accept(const char *key, size_t keylen, char out[WS_ACCEPT_LEN])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) ||
        !EVP_DigestUpdate(ctx, key, keylen) ||
        !EVP_DigestUpdate(ctx, ws_guid, sizeof ws_guid - 1) ||
        !EVP_DigestFinal_ex(ctx, digest, &dlen) || dlen != 20) {
        log_error("SHA-1 through OpenSSL EVP failed");
        abort();
    }
    EVP_MD_CTX_free(ctx);
    EVP_EncodeBlock((unsigned char *)out, digest, 20);
}

void crypto_random(void *p, size_t n)
{
    if (RAND_bytes(p, (int)n) != 1) {
        log_error("OpenSSL RAND_bytes failed");
        abort();
    }
}

void crypto_ws_key(char out[WS_KEY_LEN])
{
    unsigned char raw[16];
    crypto_random(raw, sizeof raw);
    EVP_EncodeBlock((unsigned char *)out, raw, sizeof raw);
}

bool crypto_is_ws_key(const char *s, size_t n)
{
    /* 16 bytes encode to 22 characters and "==". */
    if (n != 24 || s[22] != '=' || s[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            return false;
    }
    /* The last character before the padding carries only 2 significant bits. */
    return strchr("AQgw", s[21]) != NULL;
}
