/*
 * redis_url_parse (src/cluster/redis_url.h): every form of the --redis URL
 * it takes, with its defaults, and every way it refuses one, by its
 * message.
 */
#include "check.h"

#include "cluster/redis_url.h"

static struct redis_url u;

/* Parses s, which must be accepted. */
static bool ok(const char *s)
{
    const char *err = redis_url_parse(s, &u);
    if (err)
        NOTE("  %s: %s\n", s, err);
    return err == NULL;
}

/* Parses s, which must be refused with a message containing want. */
static bool refused(const char *s, const char *want)
{
    const char *err = redis_url_parse(s, &u);
    if (!err) {
        NOTE("  %s: accepted\n", s);
        return false;
    }
    if (!strstr(err, want)) {
        NOTE("  %s: \"%s\" does not say \"%s\"\n", s, err, want);
        return false;
    }
    return true;
}

TEST(host_alone_gets_the_defaults)
{
    CHECK(ok("redis://localhost"));
    CHECK_STR(u.host, strlen(u.host), "localhost");
    CHECK_EQ_INT(u.port, 6379);
    CHECK_EQ_INT(u.db, 0);
    CHECK(!u.has_password);
    CHECK_EQ_INT(strlen(u.user), 0);
}

TEST(scheme_in_any_case)
{
    CHECK(ok("REDIS://Host.Example"));
    CHECK_STR(u.host, strlen(u.host), "Host.Example");
}

TEST(ipv4_and_port)
{
    CHECK(ok("redis://127.0.0.1:7000"));
    CHECK_STR(u.host, strlen(u.host), "127.0.0.1");
    CHECK_EQ_INT(u.port, 7000);
}

TEST(port_bounds)
{
    CHECK(ok("redis://h:1"));
    CHECK_EQ_INT(u.port, 1);
    CHECK(ok("redis://h:65535"));
    CHECK_EQ_INT(u.port, 65535);
    CHECK(refused("redis://h:0", "bad port"));
    CHECK(refused("redis://h:65536", "bad port"));
    CHECK(refused("redis://h:99999999999999999999", "bad port"));
    CHECK(refused("redis://h:", "bad port"));
    CHECK(refused("redis://h:-1", "bad port"));
    CHECK(refused("redis://h:63a", "bad port"));
    CHECK(refused("redis://h:1:2", "in brackets"));
}

TEST(ipv6_in_brackets)
{
    CHECK(ok("redis://[::1]"));
    CHECK_STR(u.host, strlen(u.host), "::1");
    CHECK_EQ_INT(u.port, 6379);
    CHECK(ok("redis://[2001:db8::7]:6380/3"));
    CHECK_STR(u.host, strlen(u.host), "2001:db8::7");
    CHECK_EQ_INT(u.port, 6380);
    CHECK_EQ_INT(u.db, 3);
    CHECK(ok("redis://[::ffff:127.0.0.1]:6379"));
    CHECK_STR(u.host, strlen(u.host), "::ffff:127.0.0.1");
}

TEST(ipv6_refusals)
{
    CHECK(refused("redis://[::1", "closing bracket"));
    CHECK(refused("redis://[]", "bad IPv6"));
    CHECK(refused("redis://[not:an:address]", "bad IPv6"));
    CHECK(refused("redis://[127.0.0.1]", "bad IPv6"));
    CHECK(refused("redis://[fe80::1%25eth0]", "zones"));
    CHECK(refused("redis://[::1]x", "only :PORT"));
    CHECK(refused("redis://[::1]:", "bad port"));
    CHECK(refused("redis://::1", "in brackets"));
    CHECK(refused("redis://2001:db8::7:6379", "in brackets"));
}

TEST(password_alone)
{
    CHECK(ok("redis://:s3cret@h"));
    CHECK(u.has_password);
    CHECK_STR(u.password, strlen(u.password), "s3cret");
    CHECK_EQ_INT(strlen(u.user), 0);
    CHECK_STR(u.host, strlen(u.host), "h");
}

TEST(user_and_password)
{
    CHECK(ok("redis://app:pw@h:6380/2"));
    CHECK_STR(u.user, strlen(u.user), "app");
    CHECK_STR(u.password, strlen(u.password), "pw");
    CHECK_EQ_INT(u.port, 6380);
    CHECK_EQ_INT(u.db, 2);
}

TEST(password_percent_decoded)
{
    CHECK(ok("redis://:p%40ss%3Aw%2Fo%25rd%20x@h"));
    CHECK_STR(u.password, strlen(u.password), "p@ss:w/o%rd x");
    CHECK(ok("redis://:%e2%82%ac@h"));              /* lower-case hex, UTF-8 bytes */
    CHECK_STR(u.password, strlen(u.password), "\xe2\x82\xac");
    CHECK(ok("redis://us%65r:x@h"));
    CHECK_STR(u.user, strlen(u.user), "user");
}

TEST(raw_at_and_colon_in_password)
{
    /* The last '@' ends the user part; the first ':' ends the user name. */
    CHECK(ok("redis://:a@b@h"));
    CHECK_STR(u.password, strlen(u.password), "a@b");
    CHECK_STR(u.host, strlen(u.host), "h");
    CHECK(ok("redis://u:a:b@h"));
    CHECK_STR(u.user, strlen(u.user), "u");
    CHECK_STR(u.password, strlen(u.password), "a:b");
}

TEST(raw_slash_in_password_is_named)
{
    CHECK(refused("redis://:a/b@h", "%2F"));
}

TEST(bad_percent_escapes)
{
    CHECK(refused("redis://:ab%4@h", "bad percent escape in the password"));
    CHECK(refused("redis://:ab%@h", "bad percent escape in the password"));
    CHECK(refused("redis://:ab%zz@h", "bad percent escape in the password"));
    CHECK(refused("redis://:ab%00cd@h", "%00"));
    CHECK(refused("redis://u%0:x@h", "bad percent escape in the user name"));
    CHECK(refused("redis://u%00:x@h", "user name contains %00"));
}

TEST(user_part_needs_a_colon)
{
    CHECK(refused("redis://secret@h", "needs a colon"));
}

TEST(empty_password_refused)
{
    CHECK(refused("redis://:@h", "password is empty"));
    CHECK(refused("redis://app:@h", "password is empty"));
}

TEST(database_number)
{
    CHECK(ok("redis://h/0"));
    CHECK_EQ_INT(u.db, 0);
    CHECK(ok("redis://h/15"));
    CHECK_EQ_INT(u.db, 15);
    CHECK(ok("redis://h/"));                 /* "/" alone: db 0 */
    CHECK_EQ_INT(u.db, 0);
    /* The server knows how many it has (SELECT refuses the rest). */
    CHECK(ok("redis://h/2147483647"));
    CHECK_EQ_INT(u.db, 2147483647);
    CHECK(refused("redis://h/2147483648", "bad database"));
    CHECK(refused("redis://h/-1", "bad database"));
    CHECK(refused("redis://h/x", "bad database"));
    CHECK(refused("redis://h/1/", "bad database"));
    CHECK(refused("redis://h//1", "bad database"));
    CHECK(refused("redis://h:6379/1/2", "bad database"));
}

TEST(no_host)
{
    CHECK(refused("redis://", "no host"));
    CHECK(refused("redis://:6379", "no host"));
    CHECK(refused("redis://:pw@", "no host"));
    CHECK(refused("redis:///0", "no host"));
}

TEST(bad_host_characters)
{
    CHECK(refused("redis://ho!st", "bad host"));
    CHECK(refused("redis://h%41", "bad host"));
    CHECK(refused("redis://h]", "bad host"));
}

TEST(other_schemes_refused_by_name)
{
    CHECK(refused("rediss://h", "TLS"));
    CHECK(refused("unix:///run/redis.sock", "Unix sockets"));
    CHECK(refused("redis+unix:///run/redis.sock", "Unix sockets"));
    CHECK(refused("http://h", "must start with redis://"));
    CHECK(refused("h:6379", "must start with redis://"));
    CHECK(refused("", "must start with redis://"));
    CHECK(refused("redis:/h", "must start with redis://"));
}

TEST(no_query_or_fragment)
{
    CHECK(refused("redis://h?db=1", "query"));
    CHECK(refused("redis://h/1#x", "fragment"));
    CHECK(refused("redis://:p?w@h", "query"));       /* a raw ? even in a password */
}

TEST(spaces_and_controls_refused)
{
    CHECK(refused("redis://h ost", "space"));
    CHECK(refused(" redis://h", "space"));
    CHECK(refused("redis://h\t", "control"));
    CHECK(refused("redis://h\x7f", "control"));
}

TEST(length_limit)
{
    char s[LIM_REDIS_URL_MAX + 2];
    memcpy(s, "redis://", 8);
    memset(s + 8, 'a', sizeof s - 9);
    s[LIM_REDIS_URL_MAX] = '\0';                  /* exactly the limit: taken */
    CHECK(ok(s));
    CHECK_EQ_INT(strlen(u.host), LIM_REDIS_URL_MAX - 8);
    s[LIM_REDIS_URL_MAX] = 'a';
    s[LIM_REDIS_URL_MAX + 1] = '\0';              /* one more */
    CHECK(refused(s, "longer than 1024"));
}

TEST(longest_password_fits)
{
    /* The fields hold what the longest URL can carry. */
    char s[LIM_REDIS_URL_MAX + 1];
    size_t n = 0;
    n += (size_t)snprintf(s, sizeof s, "redis://:");
    size_t pw = LIM_REDIS_URL_MAX - n - 2;
    memset(s + n, 'p', pw);
    n += pw;
    memcpy(s + n, "@h", 3);
    CHECK_EQ_INT(strlen(s), LIM_REDIS_URL_MAX);
    CHECK(ok(s));
    CHECK_EQ_INT(strlen(u.password), pw);
}

int main(int argc, char **argv)
{
    return check_main("test_redis_url");
}
