#include "redis_url.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "../util/hex.h"

/* Percent-decodes p[0..n) into out (NUL-terminated; it has room, decoding
 * never grows). Returns NULL or what is wrong, in words about `what`. */
static const char *decode(const char *p, size_t n, char *out, const char *bad_escape,
                          const char *nul)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '%') {
            out[o++] = p[i];
            continue;
        }
        if (n - i < 3 || hex_digit(p[i + 1]) < 0 || hex_digit(p[i + 2]) < 0)
            return bad_escape;
        char c = (char)(hex_digit(p[i + 1]) << 4 | hex_digit(p[i + 2]));
        if (c == '\0')
            return nul;
        out[o++] = c;
        i += 2;
    }
    out[o] = '\0';
    return NULL;
}

/* Decimal digits p[0..n) as a number no larger than max; -1 when they are
 * not all digits, none, or too large. */
static long long number(const char *p, size_t n, long long max)
{
    if (n == 0)
        return -1;
    long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
        if (v > max)
            return -1;
    }
    return v;
}

/* A host name or IPv4 address: letters, digits, '-', '.', '_' (RFC 3986's
 * unreserved characters less '~', which no resolver takes). */
static bool name_ok(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.' || c == '_';
        if (!ok)
            return false;
    }
    return true;
}

const char *redis_url_parse(const char *s, struct redis_url *u)
{
    memset(u, 0, sizeof *u);
    u->port = REDIS_URL_DEFAULT_PORT;

    size_t len = strlen(s);
    if (len > LIM_REDIS_URL_MAX)
        return "the URL is longer than 1024 bytes";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == 0x7f)
            return "the URL contains a space or a control character";
    }
    if (strncasecmp(s, "rediss://", 9) == 0)
        return "rediss:// (Redis over TLS) is not supported: use redis:// (a TLS tunnel such "
               "as stunnel can carry it)";
    if (strncasecmp(s, "unix:", 5) == 0 || strncasecmp(s, "redis+unix:", 11) == 0)
        return "Unix sockets are not supported: use redis://HOST:PORT";
    if (strncasecmp(s, "redis://", 8) != 0)
        return "the URL must start with redis:// (redis://[[USER]:PASSWORD@]HOST[:PORT][/DB])";

    const char *p = s + 8, *end = s + len;
    if (strpbrk(p, "?#"))
        return "the URL may not have a query (?) or a fragment (#)";

    /* The authority ends at the first '/'; what follows is the database. */
    const char *slash = memchr(p, '/', (size_t)(end - p));
    const char *auth_end = slash ? slash : end;

    /* The last '@' of the authority ends the user part, so that a raw '@'
     * in a password still works. */
    const char *at = NULL;
    for (const char *q = p; q < auth_end; q++)
        if (*q == '@')
            at = q;
    if (!at && slash && memchr(slash, '@', (size_t)(end - slash)))
        return "a / in the user name or password must be written %2F";
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon)
            return "the part before @ needs a colon: redis://:PASSWORD@HOST or "
                   "redis://USER:PASSWORD@HOST";
        const char *err = decode(p, (size_t)(colon - p), u->user,
                                 "bad percent escape in the user name (%XX, two hex digits)",
                                 "the user name contains %00");
        if (err)
            return err;
        if (colon + 1 == at)
            return "the password is empty (leave out the PASSWORD@ part for none)";
        err = decode(colon + 1, (size_t)(at - colon - 1), u->password,
                     "bad percent escape in the password (%XX, two hex digits)",
                     "the password contains %00");
        if (err)
            return err;
        u->has_password = true;
        p = at + 1;
    }

    /* Host, and the port after it. */
    const char *host_end, *port_at = NULL;
    if (p < auth_end && *p == '[') {
        const char *close = memchr(p, ']', (size_t)(auth_end - p));
        if (!close)
            return "an IPv6 address needs its closing bracket: redis://[::1]:6379";
        size_t hl = (size_t)(close - p - 1);
        if (memchr(p + 1, '%', hl))
            return "IPv6 zones (%25 in the address) are not supported";
        memcpy(u->host, p + 1, hl);
        u->host[hl] = '\0';
        unsigned char a6[16];
        if (hl == 0 || inet_pton(AF_INET6, u->host, a6) != 1)
            return "bad IPv6 address in brackets";
        host_end = close + 1;
        if (host_end < auth_end) {
            if (*host_end != ':')
                return "after an IPv6 address in brackets only :PORT may follow";
            port_at = host_end + 1;
        }
    } else {
        const char *colon = memchr(p, ':', (size_t)(auth_end - p));
        if (colon && memchr(colon + 1, ':', (size_t)(auth_end - colon - 1)))
            return "an IPv6 address must be written in brackets: redis://[::1]:6379";
        host_end = colon ? colon : auth_end;
        if (colon)
            port_at = colon + 1;
        size_t hl = (size_t)(host_end - p);
        if (hl == 0)
            return "the URL has no host";
        if (!name_ok(p, hl))
            return "bad host: a name, an IPv4 address, or an IPv6 address in brackets";
        memcpy(u->host, p, hl);
        u->host[hl] = '\0';
    }
    if (port_at) {
        long long port = number(port_at, (size_t)(auth_end - port_at), 65535);
        if (port < 1)
            return "bad port: a number from 1 to 65535 after the colon";
        u->port = (int)port;
    }

    /* The database: nothing, "/", or "/N". */
    if (slash && slash + 1 < end) {
        long long db = number(slash + 1, (size_t)(end - slash - 1), 2147483647);
        if (db < 0)
            return "bad database: /N with N a number from 0 (and no more path)";
        u->db = (int)db;
    }
    return NULL;
}
