#include "htpasswd.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "crypto.h"

struct htpasswd_entry {
    char *user;
    char *hash;
};

struct htpasswd {
    struct htpasswd_entry *e;
    size_t n;
};

/* NULL when hash is a kind we accept, else why not. */
static const char *hash_refused(const char *hash)
{
    static const char *const good[] = { "$2y$", "$2b$", "$2a$", "$6$", "$5$", "$y$", "$7$" };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        if (strncmp(hash, good[i], strlen(good[i])) == 0)
            return NULL;
    }
    if (strncmp(hash, "$apr1$", 6) == 0 || strncmp(hash, "$1$", 3) == 0)
        return "an MD5 hash, which is refused (too fast to guess against): use htpasswd -B";
    if (strncmp(hash, "{SHA}", 5) == 0)
        return "an unsalted SHA-1 hash, which is refused: use htpasswd -B";
    if (hash[0] == '$')
        return "a hash of an unknown kind: use bcrypt (htpasswd -B), sha-512 or yescrypt";
    return "not a crypt hash (plain text or DES crypt are refused): use htpasswd -B";
}

struct htpasswd *htpasswd_parse(const char *text, size_t n, char *err, size_t errcap)
{
    struct htpasswd *h = xcalloc(1, sizeof *h);
    const char *p = text, *end = text + n;
    int line = 0;
    while (p < end) {
        line++;
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        size_t len = (size_t)(le - p);
        if (len && p[len - 1] == '\r')
            len--;
        const char *next = eol ? eol + 1 : end;
        if (len == 0 || p[0] == '#') {
            p = next;
            continue;
        }
        const char *colon = memchr(p, ':', len);
        if (!colon || colon == p) {
            snprintf(err, errcap, "line %d: not \"user:hash\"", line);
            htpasswd_free(h);
            return NULL;
        }
        char *user = xstrndup(p, (size_t)(colon - p));
        char *hash = xstrndup(colon + 1, len - (size_t)(colon - p) - 1);
        const char *why = hash_refused(hash);
        for (size_t i = 0; !why && i < h->n; i++) {
            if (strcmp(h->e[i].user, user) == 0)
                why = "a second line for this user";
        }
        if (why) {
            snprintf(err, errcap, "line %d: user %.64s: %s", line, user, why);
            free(user);
            free(hash);
            htpasswd_free(h);
            return NULL;
        }
        h->e = xrealloc(h->e, (h->n + 1) * sizeof *h->e);
        h->e[h->n].user = user;
        h->e[h->n].hash = hash;
        h->n++;
        p = next;
    }
    if (!h->n) {
        snprintf(err, errcap, "no users in the file");
        htpasswd_free(h);
        return NULL;
    }
    return h;
}

void htpasswd_free(struct htpasswd *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++) {
        free(h->e[i].user);
        OPENSSL_cleanse(h->e[i].hash, strlen(h->e[i].hash));
        free(h->e[i].hash);
    }
    free(h->e);
    free(h);
}

size_t htpasswd_count(const struct htpasswd *h)
{
    return h->n;
}

/* crypt(password, setting) into data; the result or NULL. */
static const char *crypt_with(const char *password, size_t plen, const char *setting,
                              struct crypt_data *data)
{
    /* crypt takes a C string: a password with a NUL in it cannot match. */
    if (memchr(password, '\0', plen))
        return NULL;
    char *pw = xstrndup(password, plen);
    const char *r = crypt_rn(pw, setting, data, (int)sizeof *data);
    OPENSSL_cleanse(pw, plen);
    free(pw);
    return r;
}

bool htpasswd_check(const struct htpasswd *h, const char *user, size_t ulen,
                    const char *password, size_t plen)
{
    const struct htpasswd_entry *e = NULL;
    for (size_t i = 0; i < h->n && !e; i++) {
        if (strlen(h->e[i].user) == ulen && memcmp(h->e[i].user, user, ulen) == 0)
            e = &h->e[i];
    }
    /* An unknown user costs a crypt too, so that the time taken does not
     * tell which users exist. */
    bool known = e != NULL;
    if (!e)
        e = &h->e[0];
    struct crypt_data *data = xcalloc(1, sizeof *data);
    const char *r = crypt_with(password, plen, e->hash, data);
    size_t hl = strlen(e->hash);
    bool ok = known && r && strlen(r) == hl && CRYPTO_memcmp(r, e->hash, hl) == 0;
    OPENSSL_cleanse(data, sizeof *data);
    free(data);
    return ok;
}

bool htpasswd_hash(const char *method, const char *password, size_t plen,
                   char out[HTPASSWD_HASH_MAX])
{
    const char *prefix = strcmp(method, "bcrypt") == 0   ? "$2b$"
                         : strcmp(method, "sha512") == 0   ? "$6$"
                         : strcmp(method, "yescrypt") == 0 ? "$y$"
                                                           : NULL;
    if (!prefix)
        return false;
    unsigned char rnd[32];
    crypto_random(rnd, sizeof rnd);
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    if (!crypt_gensalt_rn(prefix, strcmp(method, "bcrypt") == 0 ? 10 : 0, (const char *)rnd,
                          sizeof rnd, setting, sizeof setting))
        return false;
    struct crypt_data *data = xcalloc(1, sizeof *data);
    const char *r = crypt_with(password, plen, setting, data);
    bool ok = r && r[0] == '$' && strlen(r) < HTPASSWD_HASH_MAX;
    if (ok)
        strcpy(out, r);
    OPENSSL_cleanse(data, sizeof *data);
    free(data);
    return ok;
}
