/*
 * wshs: opening-handshake helpers. See wshs.h for the contract.
 */
#include "wshs.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>
#include <strings.h>

/* The GUID every accept value is derived from (RFC 6455 §1.3). */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* A plain scan: heads are small (both tools cap them) and this runs once
 * per connection. */
size_t wshs_head_end(const char *buf, size_t n)
{
    for (size_t i = 3; i < n; i++)
        if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' &&
            buf[i - 3] == '\r')
            return i + 1;
    return 0;
}

/* Walks the head line by line; a line matches when it starts with name and
 * a colon. Obsolete line folding is not supported (RFC 9112 §5.2 lets a
 * recipient reject it), which is fine for the peers these tools talk to. */
const char *wshs_header(const char *head, size_t n, const char *name,
                        size_t *vlen)
{
    size_t nl = strlen(name);
    const char *p = memchr(head, '\n', n);
    const char *end = head + n;

    while (p && p + 1 < end) {
        const char *line = p + 1;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            eol = end;
        if ((size_t)(eol - line) > nl && line[nl] == ':' &&
            strncasecmp(line, name, nl) == 0) {
            const char *v = line + nl + 1;
            const char *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *vlen = (size_t)(ve - v);
            return v;
        }
        p = eol < end ? eol : NULL;
    }
    return NULL;
}

/* Splits on commas, cuts each element at ';' and trims it, then compares. */
bool wshs_has_token(const char *v, size_t vlen, const char *token)
{
    size_t tl = strlen(token);
    const char *end = v + vlen;

    while (v < end) {
        const char *comma = memchr(v, ',', (size_t)(end - v));
        const char *ee = comma ? comma : end;
        const char *semi = memchr(v, ';', (size_t)(ee - v));
        const char *te = semi ? semi : ee;
        while (v < te && (*v == ' ' || *v == '\t'))
            v++;
        while (te > v && (te[-1] == ' ' || te[-1] == '\t'))
            te--;
        if ((size_t)(te - v) == tl && strncasecmp(v, token, tl) == 0)
            return true;
        v = comma ? comma + 1 : end;
    }
    return false;
}

/* One-shot EVP digest, then EVP_EncodeBlock, which writes the base64 text
 * and its NUL. */
int wshs_accept(const char *key, size_t keylen, char out[WSHS_ACCEPT_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) &&
             EVP_DigestUpdate(ctx, key, keylen) &&
             EVP_DigestUpdate(ctx, ws_guid, sizeof ws_guid - 1) &&
             EVP_DigestFinal_ex(ctx, md, &mdlen) && mdlen == 20;

    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -1;
    EVP_EncodeBlock((unsigned char *)out, md, 20);
    return 0;
}

/* §4.1: the key is 16 random bytes, base64-encoded. */
int wshs_make_key(char out[WSHS_KEY_LEN + 1])
{
    unsigned char raw[16];

    if (RAND_bytes(raw, sizeof raw) != 1)
        return -1;
    EVP_EncodeBlock((unsigned char *)out, raw, sizeof raw);
    return 0;
}
