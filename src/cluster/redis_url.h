/*
 * redis_url: the parser of the --redis URL, a pure function of its string.
 *
 *   redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]
 *
 * - The scheme is `redis://` (any case). `rediss://` (TLS) and `unix://`
 *   are refused by name: the link speaks plain TCP (Debian 12's hiredis
 *   0.14 has no TLS).
 * - HOST is a name or an IPv4 address, or an IPv6 address in brackets
 *   (`[::1]`), stored without them. A zone (`[fe80::1%25eth0]`) is refused.
 * - PORT is 1..65535; without it, 6379.
 * - USER and PASSWORD are percent-decoded (`%40` for `@`, `%3A` for `:`,
 *   `%2F` for `/`). Raw, an `@` is taken as part of them (the last `@`
 *   ends the user part) and a `:` as part of the password (the first `:`
 *   ends the user name); a raw `/` ends the host part, so it must be
 *   written `%2F` (the parser says so). A user part needs
 *   the `:` (`redis://:secret@host`, `redis://app:secret@host`); the
 *   password may not be empty nor decode to a NUL byte. With USER the link
 *   sends `AUTH USER PASSWORD` (Redis 6 ACLs), without it `AUTH PASSWORD`.
 * - DB is a decimal database number, 0 when absent (`/` alone too). The
 *   parser takes any 0..2147483647 (SELECT's own range): how many the
 *   server has is its `databases` setting (16 by default), and a number it
 *   does not have is refused by SELECT when the link connects, with the
 *   server's own words — a clear error at startup.
 * - No query (`?`), fragment (`#`), spaces or control characters.
 *
 * Pure: no allocation, no state; the result owns its strings (each at most
 * LIM_REDIS_URL_MAX bytes, since the URL is).
 */
#ifndef MOONWS_REDIS_URL_H
#define MOONWS_REDIS_URL_H

#include <stdbool.h>

#include "../util/limits.h"

#define REDIS_URL_DEFAULT_PORT 6379

struct redis_url {
    char host[LIM_REDIS_URL_MAX + 1];
    char user[LIM_REDIS_URL_MAX + 1];       /* "" when none */
    char password[LIM_REDIS_URL_MAX + 1];   /* valid when has_password */
    bool has_password;
    int port;
    int db;
};

/* Parses s into *u. Returns NULL, or a static English sentence saying
 * what is wrong (for "moonws: --redis: <it>" and exit 2); *u is then
 * unspecified. */
const char *redis_url_parse(const char *s, struct redis_url *u);

#endif
