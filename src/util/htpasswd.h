/*
 * htpasswd: a password file of "user:hash" lines, as `htpasswd -B` writes
 * them, checked with libxcrypt's crypt_rn. Only slow, salted hashes are
 * accepted: bcrypt ($2y$, $2b$, $2a$), sha-512 and sha-256 crypt ($6$,
 * $5$), yescrypt ($y$) and scrypt ($7$). Apache's MD5 ($apr1$), SHA-1
 * ({SHA}), DES crypt and plain text are refused when the file is read.
 *
 * Pure: text in, a table out; no files, no state beyond the table.
 */
#ifndef MOONWS_HTPASSWD_H
#define MOONWS_HTPASSWD_H

#include <stdbool.h>
#include <stddef.h>

struct htpasswd;

/* Parses the text of a password file (blank lines and # comments are
 * skipped). NULL with "line N: why" in err. */
struct htpasswd *htpasswd_parse(const char *text, size_t n, char *err, size_t errcap);
void htpasswd_free(struct htpasswd *h);
size_t htpasswd_count(const struct htpasswd *h);

/* True when user is in the file and password matches its hash. Costs one
 * crypt: milliseconds, by design of the hashes. */
bool htpasswd_check(const struct htpasswd *h, const char *user, size_t ulen,
                    const char *password, size_t plen);

/* A new hash of password with a fresh salt: method "bcrypt" (cost 10),
 * "sha512" or "yescrypt". False when the method is unknown or crypt
 * fails. out needs HTPASSWD_HASH_MAX bytes. */
#define HTPASSWD_HASH_MAX 256
bool htpasswd_hash(const char *method, const char *password, size_t plen,
                   char out[HTPASSWD_HASH_MAX]);

#endif
