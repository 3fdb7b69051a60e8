/*
 * shdict (src/util/shdict.h): values, expiry on a clock the test moves,
 * LRU eviction and the byte accounting, the registry, and atomicity from
 * several threads. Also SipHash-2-4 (src/util/siphash.h) against the
 * paper's vectors.
 */
#include "check.h"

#include <pthread.h>
#include <stdint.h>

#include "util/clock.h"
#include "util/limits.h"
#include "util/shdict.h"
#include "util/siphash.h"

#define SEC 1000000000LL
#define T0 (1000 * SEC)             /* an arbitrary "now" */

static struct shdict_value str(const char *s)
{
    return (struct shdict_value){ .type = SHDICT_STR, .str = s, .len = strlen(s) };
}

static struct shdict_value num_i(int64_t i)
{
    return (struct shdict_value){ .type = SHDICT_INT, .i = i };
}

static struct shdict_value num_d(double d)
{
    return (struct shdict_value){ .type = SHDICT_FLOAT, .d = d };
}

static int set(struct shdict *d, const char *k, struct shdict_value v, double ttl, int64_t now)
{
    return shdict_store(d, SHDICT_SET, k, strlen(k), &v, ttl, now, NULL);
}

/* get as a string ("" when not a string); rc in *rc. */
static char got[256];
static const char *get_str(struct shdict *d, const char *k, int64_t now, int *rc)
{
    struct shdict_value v;
    *rc = shdict_get(d, k, strlen(k), now, &v, got, sizeof got - 1);
    if (*rc != SHDICT_OK || v.type != SHDICT_STR)
        return "";
    got[v.len] = '\0';
    return got;
}

static bool present(struct shdict *d, const char *k, int64_t now)
{
    struct shdict_value v;
    return shdict_get(d, k, strlen(k), now, &v, got, sizeof got) == SHDICT_OK;
}

static struct shdict_stats stats(struct shdict *d)
{
    struct shdict_stats st;
    shdict_stats(d, &st);
    return st;
}

/* The cost of one entry. */
static size_t cost(const char *k, size_t vlen)
{
    return SHDICT_ENTRY_OVERHEAD + strlen(k) + vlen;
}

TEST(siphash_paper_vectors)
{
    uint8_t key[16], msg[15];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 15; i++)
        msg[i] = (uint8_t)i;
    /* Appendix A of the SipHash paper, and the first of the reference
     * implementation's vectors (the empty message). */
    CHECK(siphash24(key, msg, 15) == 0xa129ca6149be45e5ULL);
    CHECK(siphash24(key, msg, 0) == 0x726fdb47dd0e0e31ULL);
    CHECK(siphash24(key, msg, 8) != siphash24(key, msg, 7));
}

TEST(set_get_each_type)
{
    struct shdict *d = shdict_new("t", 4096);
    struct shdict_value v;
    CHECK_EQ_INT(set(d, "s", str("hello"), 0, T0), SHDICT_OK);
    CHECK_EQ_INT(set(d, "i", num_i(-42), 0, T0), SHDICT_OK);
    CHECK_EQ_INT(set(d, "f", num_d(3.0), 0, T0), SHDICT_OK);
    struct shdict_value b = { .type = SHDICT_BOOL, .b = false };
    CHECK_EQ_INT(shdict_store(d, SHDICT_SET, "b", 1, &b, 0, T0, NULL), SHDICT_OK);
    int rc;
    CHECK(strcmp(get_str(d, "s", T0, &rc), "hello") == 0);
    CHECK_EQ_INT(shdict_get(d, "i", 1, T0, &v, NULL, 0), SHDICT_OK);
    CHECK(v.type == SHDICT_INT && v.i == -42);
    /* 3.0 stays a float: Lua tells 3 from 3.0. */
    CHECK_EQ_INT(shdict_get(d, "f", 1, T0, &v, NULL, 0), SHDICT_OK);
    CHECK(v.type == SHDICT_FLOAT && v.d == 3.0);
    CHECK_EQ_INT(shdict_get(d, "b", 1, T0, &v, NULL, 0), SHDICT_OK);
    CHECK(v.type == SHDICT_BOOL && v.b == false);
    CHECK_EQ_INT(shdict_get(d, "nope", 4, T0, &v, NULL, 0), SHDICT_NOT_FOUND);
    /* A new type replaces the old. */
    CHECK_EQ_INT(set(d, "i", str("now a string"), 0, T0), SHDICT_OK);
    CHECK(strcmp(get_str(d, "i", T0, &rc), "now a string") == 0);
    shdict_free(d);
}

TEST(binary_keys_with_nul)
{
    struct shdict *d = shdict_new("t", 4096);
    struct shdict_value a = str("A"), b = str("B"), c = str("C"), v;
    CHECK_EQ_INT(shdict_store(d, SHDICT_SET, "k\0x", 3, &a, 0, T0, NULL), SHDICT_OK);
    CHECK_EQ_INT(shdict_store(d, SHDICT_SET, "k\0y", 3, &b, 0, T0, NULL), SHDICT_OK);
    CHECK_EQ_INT(shdict_store(d, SHDICT_SET, "k", 1, &c, 0, T0, NULL), SHDICT_OK);
    CHECK_EQ_INT(stats(d).count, 3);
    CHECK_EQ_INT(shdict_get(d, "k\0x", 3, T0, &v, got, sizeof got), SHDICT_OK);
    CHECK_STR(v.str, v.len, "A");
    CHECK_EQ_INT(shdict_get(d, "k\0y", 3, T0, &v, got, sizeof got), SHDICT_OK);
    CHECK_STR(v.str, v.len, "B");
    CHECK_EQ_INT(shdict_get(d, "k", 1, T0, &v, got, sizeof got), SHDICT_OK);
    CHECK_STR(v.str, v.len, "C");
    /* Values hold NUL bytes too. */
    struct shdict_value z = { .type = SHDICT_STR, .str = "a\0b\0", .len = 4 };
    CHECK_EQ_INT(shdict_store(d, SHDICT_SET, "z", 1, &z, 0, T0, NULL), SHDICT_OK);
    CHECK_EQ_INT(shdict_get(d, "z", 1, T0, &v, got, sizeof got), SHDICT_OK);
    CHECK_MEM(v.str, v.len, "a\0b\0", 4);
    size_t n;
    struct shdict_key *keys = shdict_keys(d, T0, 0, &n);
    CHECK_EQ_INT(n, 4);
    bool seen_x = false;
    for (size_t i = 0; i < n; i++)
        seen_x = seen_x || (keys[i].len == 3 && memcmp(keys[i].p, "k\0x", 3) == 0);
    CHECK(seen_x);
    free(keys);
    shdict_free(d);
}

TEST(empty_key_and_empty_string)
{
    struct shdict *d = shdict_new("t", 4096);
    struct shdict_value e = str(""), v;
    CHECK_EQ_INT(shdict_store(d, SHDICT_SET, "", 0, &e, 0, T0, NULL), SHDICT_OK);
    CHECK_EQ_INT(shdict_get(d, "", 0, T0, &v, NULL, 0), SHDICT_OK);
    CHECK(v.type == SHDICT_STR && v.len == 0);
    CHECK_EQ_INT(stats(d).used, SHDICT_ENTRY_OVERHEAD);
    shdict_free(d);
}

TEST(get_short_buffer_says_the_length)
{
    struct shdict *d = shdict_new("t", 4096);
    set(d, "k", str("0123456789"), 0, T0);
    char small[4], big[10];
    struct shdict_value v;
    CHECK_EQ_INT(shdict_get(d, "k", 1, T0, &v, small, sizeof small), SHDICT_SHORT_BUFFER);
    CHECK_EQ_INT(v.len, 10);
    CHECK_EQ_INT(shdict_get(d, "k", 1, T0, &v, big, sizeof big), SHDICT_OK);
    CHECK_STR(v.str, v.len, "0123456789");
    shdict_free(d);
}

TEST(set_nil_deletes)
{
    struct shdict *d = shdict_new("t", 4096);
    set(d, "k", str("v"), 0, T0);
    struct shdict_value nil = { .type = SHDICT_NIL };
    CHECK_EQ_INT(shdict_store(d, SHDICT_SET, "k", 1, &nil, 0, T0, NULL), SHDICT_OK);
    CHECK(!present(d, "k", T0));
    CHECK_EQ_INT(stats(d).used, 0);
    /* Deleting what is not there is no error. */
    CHECK_EQ_INT(shdict_store(d, SHDICT_SET, "k", 1, &nil, 0, T0, NULL), SHDICT_OK);
    CHECK(!shdict_delete(d, "k", 1, T0));
    shdict_free(d);
}

TEST(expiry_at_the_exact_deadline)
{
    struct shdict *d = shdict_new("t", 4096);
    set(d, "k", str("v"), 1.0, T0);
    CHECK(present(d, "k", T0 + SEC - 1));
    CHECK(!present(d, "k", T0 + SEC));
    /* The expired entry went when get found it. */
    CHECK_EQ_INT(stats(d).count, 0);
    CHECK_EQ_INT(stats(d).used, 0);
    /* A tiny ttl still expires (never rounds to "no ttl"). */
    set(d, "k", str("v"), 1e-12, T0);
    CHECK(!present(d, "k", T0 + 1));
    shdict_free(d);
}

TEST(ttl_reports_seconds_left)
{
    struct shdict *d = shdict_new("t", 4096);
    double left = -1;
    set(d, "k", str("v"), 1.0, T0);
    CHECK_EQ_INT(shdict_ttl(d, "k", 1, T0 + SEC / 4, &left), SHDICT_OK);
    CHECK(left > 0.7499 && left < 0.7501);
    set(d, "forever", str("v"), 0, T0);
    CHECK_EQ_INT(shdict_ttl(d, "forever", 7, T0, &left), SHDICT_OK);
    CHECK(left == 0);
    CHECK_EQ_INT(shdict_ttl(d, "none", 4, T0, &left), SHDICT_NOT_FOUND);
    CHECK_EQ_INT(shdict_ttl(d, "k", 1, T0 + SEC, &left), SHDICT_NOT_FOUND);
    shdict_free(d);
}

TEST(expire_sets_and_clears_the_ttl)
{
    struct shdict *d = shdict_new("t", 4096);
    set(d, "k", str("v"), 0, T0);
    CHECK_EQ_INT(shdict_expire(d, "k", 1, 2.0, T0), SHDICT_OK);
    CHECK(present(d, "k", T0 + 2 * SEC - 1));
    CHECK_EQ_INT(shdict_expire(d, "k", 1, 0, T0), SHDICT_OK);
    CHECK(present(d, "k", T0 + 100 * SEC));
    CHECK_EQ_INT(shdict_expire(d, "none", 4, 1.0, T0), SHDICT_NOT_FOUND);
    /* A set without ttl clears an old one. */
    set(d, "k", str("v"), 1.0, T0);
    set(d, "k", str("w"), 0, T0);
    CHECK(present(d, "k", T0 + 5 * SEC));
    shdict_free(d);
}

TEST(add_only_when_absent_or_expired)
{
    struct shdict *d = shdict_new("t", 4096);
    struct shdict_value a = str("first"), b = str("second");
    int rc;
    CHECK_EQ_INT(shdict_store(d, SHDICT_ADD, "k", 1, &a, 1.0, T0, NULL), SHDICT_OK);
    CHECK_EQ_INT(shdict_store(d, SHDICT_ADD, "k", 1, &b, 0, T0, NULL), SHDICT_EXISTS);
    CHECK(strcmp(get_str(d, "k", T0, &rc), "first") == 0);
    /* add on an expired key: as if absent. */
    CHECK_EQ_INT(shdict_store(d, SHDICT_ADD, "k", 1, &b, 0, T0 + SEC, NULL), SHDICT_OK);
    CHECK(strcmp(get_str(d, "k", T0 + SEC, &rc), "second") == 0);
    CHECK_EQ_INT(stats(d).count, 1);
    CHECK_EQ_INT(stats(d).used, cost("k", 6));
    shdict_free(d);
}

TEST(replace_only_when_present)
{
    struct shdict *d = shdict_new("t", 4096);
    struct shdict_value a = str("a"), b = str("b");
    int rc;
    CHECK_EQ_INT(shdict_store(d, SHDICT_REPLACE, "k", 1, &a, 0, T0, NULL), SHDICT_NOT_FOUND);
    CHECK(!present(d, "k", T0));
    set(d, "k", a, 1.0, T0);
    CHECK_EQ_INT(shdict_store(d, SHDICT_REPLACE, "k", 1, &b, 0, T0, NULL), SHDICT_OK);
    CHECK(strcmp(get_str(d, "k", T0, &rc), "b") == 0);
    set(d, "j", a, 1.0, T0);
    CHECK_EQ_INT(shdict_store(d, SHDICT_REPLACE, "j", 1, &b, 0, T0 + SEC, NULL), SHDICT_NOT_FOUND);
    shdict_free(d);
}

static int incr(struct shdict *d, const char *k, struct shdict_value n,
                const struct shdict_value *init, double ttl, int64_t now, struct shdict_value *out)
{
    return shdict_incr(d, k, strlen(k), &n, init, ttl, now, out, NULL);
}

TEST(incr_missing_key)
{
    struct shdict *d = shdict_new("t", 4096);
    struct shdict_value out, init = num_i(10);
    CHECK_EQ_INT(incr(d, "c", num_i(1), NULL, 0, T0, &out), SHDICT_NOT_FOUND);
    CHECK(!present(d, "c", T0));
    /* With init a missing key starts at init, then n is added. */
    CHECK_EQ_INT(incr(d, "c", num_i(1), &init, 0, T0, &out), SHDICT_OK);
    CHECK(out.type == SHDICT_INT && out.i == 11);
    CHECK_EQ_INT(incr(d, "c", num_i(1), &init, 0, T0, &out), SHDICT_OK);
    CHECK(out.i == 12);
    CHECK_EQ_INT(stats(d).used, cost("c", 0));
    shdict_free(d);
}

TEST(incr_ttl_applies_to_a_new_key_only)
{
    struct shdict *d = shdict_new("t", 4096);
    struct shdict_value out, init = num_i(0);
    CHECK_EQ_INT(incr(d, "c", num_i(1), &init, 1.0, T0, &out), SHDICT_OK);
    /* An existing key keeps its ttl, whatever this call's ttl. */
    CHECK_EQ_INT(incr(d, "c", num_i(1), &init, 100.0, T0, &out), SHDICT_OK);
    CHECK(out.i == 2);
    double left;
    CHECK_EQ_INT(shdict_ttl(d, "c", 1, T0, &left), SHDICT_OK);
    CHECK(left == 1.0);
    /* Expired: it starts again from init. */
    CHECK_EQ_INT(incr(d, "c", num_i(5), &init, 0, T0 + SEC, &out), SHDICT_OK);
    CHECK(out.i == 5);
    CHECK_EQ_INT(incr(d, "c", num_i(1), NULL, 0, T0 + 100 * SEC, &out), SHDICT_OK);
    CHECK(out.i == 6);
    shdict_free(d);
}

TEST(incr_int_and_float)
{
    struct shdict *d = shdict_new("t", 4096);
    struct shdict_value out;
    set(d, "i", num_i(5), 0, T0);
    CHECK_EQ_INT(incr(d, "i", num_i(2), NULL, 0, T0, &out), SHDICT_OK);
    CHECK(out.type == SHDICT_INT && out.i == 7);
    CHECK_EQ_INT(incr(d, "i", num_d(0.5), NULL, 0, T0, &out), SHDICT_OK);
    CHECK(out.type == SHDICT_FLOAT && out.d == 7.5);
    CHECK_EQ_INT(incr(d, "i", num_i(1), NULL, 0, T0, &out), SHDICT_OK);
    CHECK(out.type == SHDICT_FLOAT && out.d == 8.5);
    struct shdict_value v;
    CHECK_EQ_INT(shdict_get(d, "i", 1, T0, &v, NULL, 0), SHDICT_OK);
    CHECK(v.type == SHDICT_FLOAT && v.d == 8.5);
    struct shdict_value finit = num_d(1.5);
    CHECK_EQ_INT(incr(d, "f", num_i(1), &finit, 0, T0, &out), SHDICT_OK);
    CHECK(out.type == SHDICT_FLOAT && out.d == 2.5);
    shdict_free(d);
}

TEST(incr_overflow_changes_nothing)
{
    struct shdict *d = shdict_new("t", 4096);
    struct shdict_value out, v;
    set(d, "max", num_i(INT64_MAX), 0, T0);
    CHECK_EQ_INT(incr(d, "max", num_i(1), NULL, 0, T0, &out), SHDICT_OVERFLOW);
    CHECK_EQ_INT(shdict_get(d, "max", 3, T0, &v, NULL, 0), SHDICT_OK);
    CHECK(v.type == SHDICT_INT && v.i == INT64_MAX);
    set(d, "min", num_i(INT64_MIN), 0, T0);
    CHECK_EQ_INT(incr(d, "min", num_i(-1), NULL, 0, T0, &out), SHDICT_OVERFLOW);
    /* A float increment does not overflow: it makes a float. */
    CHECK_EQ_INT(incr(d, "max", num_d(1.0), NULL, 0, T0, &out), SHDICT_OK);
    CHECK(out.type == SHDICT_FLOAT);
    /* init + n past 64 bits creates nothing. */
    struct shdict_value init = num_i(INT64_MAX);
    CHECK_EQ_INT(incr(d, "new", num_i(1), &init, 0, T0, &out), SHDICT_OVERFLOW);
    CHECK(!present(d, "new", T0));
    shdict_free(d);
}

TEST(incr_not_a_number)
{
    struct shdict *d = shdict_new("t", 4096);
    struct shdict_value out, init = num_i(0);
    set(d, "s", str("5"), 0, T0);
    CHECK_EQ_INT(incr(d, "s", num_i(1), &init, 0, T0, &out), SHDICT_NOT_NUMBER);
    struct shdict_value b = { .type = SHDICT_BOOL, .b = true };
    shdict_store(d, SHDICT_SET, "b", 1, &b, 0, T0, NULL);
    CHECK_EQ_INT(incr(d, "b", num_i(1), NULL, 0, T0, &out), SHDICT_NOT_NUMBER);
    int rc;
    CHECK(strcmp(get_str(d, "s", T0, &rc), "5") == 0);
    CHECK(strcmp(shdict_strerror(SHDICT_NOT_NUMBER), "not a number") == 0);
    shdict_free(d);
}

TEST(eviction_order_is_least_recently_used)
{
    /* Room for exactly three entries of a one-byte key and a 4-byte value. */
    size_t one = cost("a", 4);
    struct shdict *d = shdict_new("t", 3 * one);
    bool forcible = true;
    struct shdict_value v = str("vvvv");
    CHECK_EQ_INT(shdict_store(d, SHDICT_SET, "a", 1, &v, 0, T0, &forcible), SHDICT_OK);
    CHECK(!forcible);
    set(d, "b", v, 0, T0);
    set(d, "c", v, 0, T0);
    CHECK_EQ_INT(stats(d).used, 3 * one);
    CHECK(present(d, "a", T0));                    /* a get is a use */
    CHECK_EQ_INT(shdict_store(d, SHDICT_SET, "d", 1, &v, 0, T0, &forcible), SHDICT_OK);
    CHECK(forcible);
    CHECK(!present(d, "b", T0));
    struct shdict_value out;
    CHECK_EQ_INT(incr(d, "x", num_i(1), &(struct shdict_value){ .type = SHDICT_INT }, 0, T0, &out),
                 SHDICT_OK);                         /* an incr is a use, and a new entry */
    CHECK(!present(d, "c", T0));
    CHECK(present(d, "a", T0) && present(d, "d", T0) && present(d, "x", T0));
    CHECK_EQ_INT(stats(d).evictions, 2);
    /* Overwriting a key frees its old bytes first: no eviction. */
    CHECK_EQ_INT(shdict_store(d, SHDICT_SET, "a", 1, &v, 0, T0, &forcible), SHDICT_OK);
    CHECK(!forcible);
    CHECK_EQ_INT(stats(d).evictions, 2);
    shdict_free(d);
}

TEST(eviction_of_expired_entries_is_not_forcible)
{
    size_t one = cost("a", 4);
    struct shdict *d = shdict_new("t", 2 * one);
    struct shdict_value v = str("vvvv");
    bool forcible = true;
    set(d, "a", v, 1.0, T0);
    set(d, "b", v, 100.0, T0);
    /* a expired; the sweep of this write takes it (it is at the LRU end),
     * so the new entry fits without forcing anything out. */
    CHECK_EQ_INT(shdict_store(d, SHDICT_SET, "c", 1, &v, 0, T0 + SEC, &forcible), SHDICT_OK);
    CHECK(!forcible);
    CHECK(present(d, "b", T0 + SEC));
    CHECK_EQ_INT(stats(d).evictions, 0);
    shdict_free(d);
}

TEST(sweep_removes_expired_at_the_lru_end_on_write)
{
    struct shdict *d = shdict_new("t", 4096);
    struct shdict_value v = str("v");
    set(d, "old1", v, 1.0, T0);
    set(d, "old2", v, 1.0, T0);
    set(d, "live", v, 0, T0);
    CHECK_EQ_INT(stats(d).count, 3);
    set(d, "new", v, 0, T0 + SEC);
    CHECK_EQ_INT(stats(d).count, 2);
    CHECK_EQ_INT(stats(d).used, cost("live", 1) + cost("new", 1));
    /* The sweep stops at the first live entry: an expired one behind it waits. */
    set(d, "x", v, 1.0, T0 + SEC);
    set(d, "y", v, 0, T0 + 3 * SEC);
    CHECK_EQ_INT(stats(d).count, 4);
    CHECK_EQ_INT(shdict_flush_expired(d, T0 + 3 * SEC, 0), 1);
    CHECK_EQ_INT(stats(d).count, 3);
    shdict_free(d);
}

TEST(accounting_returns_to_zero)
{
    struct shdict *d = shdict_new("t", 1 << 20);
    char k[32], val[64];
    size_t want = 0;
    for (int i = 0; i < 500; i++) {
        snprintf(k, sizeof k, "key%d", i);
        memset(val, 'x', (size_t)(i % 60));
        struct shdict_value v = { .type = SHDICT_STR, .str = val, .len = (size_t)(i % 60) };
        if (i % 3 == 1)
            v = num_i(i);
        CHECK_EQ_INT(shdict_store(d, SHDICT_SET, k, strlen(k), &v, 0, T0, NULL), SHDICT_OK);
        want += cost(k, v.type == SHDICT_STR ? v.len : 0);
    }
    CHECK_EQ_INT(stats(d).used, want);
    CHECK_EQ_INT(stats(d).count, 500);
    for (int i = 0; i < 500; i++) {
        snprintf(k, sizeof k, "key%d", i);
        CHECK(shdict_delete(d, k, strlen(k), T0));
    }
    CHECK_EQ_INT(stats(d).used, 0);
    CHECK_EQ_INT(stats(d).count, 0);
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof k, "again%d", i);
        set(d, k, str("abc"), 0, T0);
    }
    shdict_flush_all(d);
    CHECK_EQ_INT(stats(d).used, 0);
    CHECK_EQ_INT(stats(d).count, 0);
    CHECK(!present(d, "again1", T0));
    shdict_free(d);
}

TEST(value_bigger_than_the_capacity)
{
    struct shdict *d = shdict_new("t", 256);
    set(d, "keep", str("me"), 0, T0);
    char big[300];
    memset(big, 'b', sizeof big);
    struct shdict_value v = { .type = SHDICT_STR, .str = big, .len = sizeof big };
    bool forcible = true;
    CHECK_EQ_INT(shdict_store(d, SHDICT_SET, "k", 1, &v, 0, T0, &forcible), SHDICT_NO_MEMORY);
    CHECK(!forcible);
    CHECK(present(d, "keep", T0));                  /* nothing was evicted for it */
    /* A failed set of a key leaves its old value. */
    CHECK_EQ_INT(shdict_store(d, SHDICT_SET, "keep", 4, &v, 0, T0, NULL), SHDICT_NO_MEMORY);
    int rc;
    CHECK(strcmp(get_str(d, "keep", T0, &rc), "me") == 0);
    /* Exactly the capacity fits, by evicting everything else. */
    v.len = 256 - SHDICT_ENTRY_OVERHEAD - 1;
    CHECK_EQ_INT(shdict_store(d, SHDICT_SET, "k", 1, &v, 0, T0, &forcible), SHDICT_OK);
    CHECK(forcible);
    CHECK_EQ_INT(stats(d).used, 256);
    CHECK(!present(d, "keep", T0));
    /* A key alone can be too large for an incr's new entry. */
    struct shdict *tiny = shdict_new("tiny", SHDICT_ENTRY_OVERHEAD);
    struct shdict_value out, init = num_i(0);
    CHECK_EQ_INT(incr(tiny, "k", num_i(1), &init, 0, T0, &out), SHDICT_NO_MEMORY);
    CHECK_EQ_INT(shdict_incr(tiny, "", 0, &(struct shdict_value){ .type = SHDICT_INT, .i = 1 },
                             &init, 0, T0, &out, NULL),
                 SHDICT_OK);
    shdict_free(tiny);
    shdict_free(d);
}

TEST(keys_max_bounds)
{
    struct shdict *d = shdict_new("t", 4096);
    size_t n = 99;
    struct shdict_key *keys = shdict_keys(d, T0, 0, &n);
    CHECK_EQ_INT(n, 0);
    free(keys);
    set(d, "a", str("1"), 0, T0);
    set(d, "b", str("1"), 1.0, T0);
    set(d, "c", str("1"), 0, T0);
    set(d, "d", str("1"), 0, T0);
    keys = shdict_keys(d, T0, 0, &n);
    CHECK_EQ_INT(n, 4);
    free(keys);
    /* Most recently used first; max bounds the count. */
    keys = shdict_keys(d, T0, 2, &n);
    CHECK_EQ_INT(n, 2);
    CHECK_STR(keys[0].p, keys[0].len, "d");
    CHECK_STR(keys[1].p, keys[1].len, "c");
    free(keys);
    keys = shdict_keys(d, T0, 100, &n);
    CHECK_EQ_INT(n, 4);
    free(keys);
    /* Expired keys are left out, and do not count toward max. */
    keys = shdict_keys(d, T0 + SEC, 3, &n);
    CHECK_EQ_INT(n, 3);
    CHECK_STR(keys[2].p, keys[2].len, "a");
    free(keys);
    keys = shdict_keys(d, T0 + SEC, 1, &n);
    CHECK_EQ_INT(n, 1);
    free(keys);
    shdict_free(d);
}

TEST(flush_expired_counts_and_bounds)
{
    struct shdict *d = shdict_new("t", 4096);
    set(d, "a", str("1"), 1.0, T0);
    set(d, "b", str("1"), 1.0, T0);
    set(d, "c", str("1"), 1.0, T0);
    set(d, "live", str("1"), 0, T0);
    CHECK_EQ_INT(shdict_flush_expired(d, T0, 0), 0);
    CHECK_EQ_INT(shdict_flush_expired(d, T0 + SEC, 2), 2);
    CHECK_EQ_INT(shdict_flush_expired(d, T0 + SEC, 0), 1);
    CHECK_EQ_INT(stats(d).count, 1);
    CHECK_EQ_INT(stats(d).used, cost("live", 1));
    shdict_free(d);
}

TEST(growing_table_keeps_every_key)
{
    struct shdict *d = shdict_new("t", 64 << 20);
    char k[32];
    struct shdict_value v;
    int lost = 0;
    for (int i = 0; i < 20000; i++) {
        snprintf(k, sizeof k, "k%d", i);
        set(d, k, num_i(i), 0, T0);
        /* Read back an earlier key while the table moves underneath. */
        snprintf(k, sizeof k, "k%d", i / 2);
        if (shdict_get(d, k, strlen(k), T0, &v, NULL, 0) != SHDICT_OK || v.i != i / 2)
            lost++;
    }
    CHECK_EQ_INT(lost, 0);
    for (int i = 0; i < 20000; i += 2) {
        snprintf(k, sizeof k, "k%d", i);
        CHECK(shdict_delete(d, k, strlen(k), T0));
    }
    for (int i = 0; i < 20000; i++) {
        snprintf(k, sizeof k, "k%d", i);
        bool ok = shdict_get(d, k, strlen(k), T0, &v, NULL, 0) == SHDICT_OK;
        if (ok != (i % 2 == 1) || (ok && v.i != i))
            lost++;
    }
    CHECK_EQ_INT(lost, 0);
    CHECK_EQ_INT(stats(d).count, 10000);
    shdict_free(d);
}

TEST(parse_size)
{
    size_t n = 0;
    CHECK(shdict_parse_size("100", &n) && n == 100);
    CHECK(shdict_parse_size("512k", &n) && n == 512 * 1024);
    CHECK(shdict_parse_size("10M", &n) && n == 10 * 1024 * 1024);
    CHECK(shdict_parse_size("1G", &n) && n == 1024 * 1024 * 1024);
    CHECK(!shdict_parse_size("", &n));
    CHECK(!shdict_parse_size("0", &n));
    CHECK(!shdict_parse_size("M", &n));
    CHECK(!shdict_parse_size("10MB", &n));
    CHECK(!shdict_parse_size("10X", &n));
    CHECK(!shdict_parse_size("-1", &n));
    CHECK(!shdict_parse_size("1.5M", &n));
    CHECK(!shdict_parse_size("99999999999999999999", &n));
    CHECK(!shdict_parse_size("18014398509481984G", &n));
}

TEST(registry_declarations)
{
    struct shdict *a, *b;
    CHECK_EQ_INT(shdict_open("sessions", 0, &a), SHDICT_CREATED);
    CHECK_EQ_INT(shdict_capacity(a), LIM_DICT_DEFAULT);
    CHECK_EQ_INT(shdict_open("sessions", 0, &b), SHDICT_OPENED);
    CHECK(a == b);
    set(a, "k", str("v"), 0, T0);
    /* The first capacity asked for sizes it; its entries stay. */
    CHECK_EQ_INT(shdict_open("sessions", 8192, &b), SHDICT_SIZED);
    CHECK(a == b && shdict_capacity(a) == 8192 && present(a, "k", T0));
    CHECK_EQ_INT(shdict_open("sessions", 8192, &b), SHDICT_OPENED);
    /* Another capacity is kept out, and said once. */
    CHECK_EQ_INT(shdict_open("sessions", 4096, &b), SHDICT_CONFLICT);
    CHECK(a == b && shdict_capacity(a) == 8192);
    CHECK_EQ_INT(shdict_open("sessions", 4096, &b), SHDICT_OPENED);
    CHECK_EQ_INT(shdict_open("sessions", 2048, &b), SHDICT_CONFLICT);
    /* A capacity given at creation counts as asked for. */
    CHECK_EQ_INT(shdict_open("sized", 2048, &b), SHDICT_CREATED);
    CHECK_EQ_INT(shdict_open("sized", 4096, &b), SHDICT_CONFLICT);
    CHECK_EQ_INT(shdict_open("", 0, &b), SHDICT_BAD_NAME);
    CHECK(b == NULL);
    CHECK_EQ_INT(shdict_open("a b", 0, &b), SHDICT_BAD_NAME);
    char name[LIM_DICT_NAME_MAX + 2];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    CHECK_EQ_INT(shdict_open(name, 0, &b), SHDICT_BAD_NAME);
    name[LIM_DICT_NAME_MAX] = '\0';
    CHECK_EQ_INT(shdict_open(name, 0, &b), SHDICT_CREATED);
    /* A default-sized dictionary that shrinks loses its oldest entries. */
    CHECK_EQ_INT(shdict_open("shrinks", 0, &b), SHDICT_CREATED);
    set(b, "old", str("v"), 0, T0);
    set(b, "new", str("v"), 0, T0);
    CHECK_EQ_INT(shdict_open("shrinks", cost("new", 1), &b), SHDICT_SIZED);
    CHECK(!present(b, "old", T0) && present(b, "new", T0));
    shdict_close_all();
}

TEST(registry_has_a_limit)
{
    char name[32];
    struct shdict *d;
    for (int i = 0; i < LIM_DICTS; i++) {
        snprintf(name, sizeof name, "d%d", i);
        CHECK_EQ_INT(shdict_open(name, 1024, &d), SHDICT_CREATED);
    }
    CHECK_EQ_INT(shdict_open("one-more", 1024, &d), SHDICT_TOO_MANY);
    CHECK(d == NULL);
    CHECK_EQ_INT(shdict_open("d0", 0, &d), SHDICT_OPENED);     /* existing ones still open */
    shdict_close_all();
    CHECK_EQ_INT(shdict_open("one-more", 1024, &d), SHDICT_CREATED);
    shdict_close_all();
}

/* ---- threads ---- */

#define THREADS 4
#define INCRS 100000

struct worker_arg {
    struct shdict *d;
    int id;
    long torn, bad;
};

static void *incr_thread(void *p)
{
    struct worker_arg *a = p;
    struct shdict_value one = num_i(1), zero = num_i(0), out;
    for (int i = 0; i < INCRS; i++) {
        if (shdict_incr(a->d, "hits", 4, &one, &zero, 0, clock_ns(), &out, NULL) != SHDICT_OK)
            a->bad++;
    }
    return NULL;
}

TEST(incr_from_four_threads_is_exact)
{
    struct shdict *d = shdict_new("t", 4096);
    pthread_t t[THREADS];
    struct worker_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (struct worker_arg){ .d = d, .id = i };
        pthread_create(&t[i], NULL, incr_thread, &args[i]);
    }
    long bad = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        bad += args[i].bad;
    }
    CHECK_EQ_INT(bad, 0);
    struct shdict_value v;
    CHECK_EQ_INT(shdict_get(d, "hits", 4, clock_ns(), &v, NULL, 0), SHDICT_OK);
    CHECK(v.type == SHDICT_INT);
    CHECK_EQ_INT(v.i, THREADS * INCRS);
    shdict_free(d);
}

/* Each value is one byte repeated: a torn copy would mix two. */
static void *mixed_thread(void *p)
{
    struct worker_arg *a = p;
    unsigned seed = (unsigned)a->id * 7919u + 1;
    char k[16], val[200], buf[200];
    for (int i = 0; i < 50000; i++) {
        seed = seed * 1103515245u + 12345u;
        unsigned r = seed >> 8;
        snprintf(k, sizeof k, "k%u", r % 300);
        int64_t now = clock_ns();
        switch (r % 7) {
        case 0:
        case 1: {
            size_t len = 1 + (r >> 10) % sizeof val;
            memset(val, 'a' + a->id, len);
            struct shdict_value v = { .type = SHDICT_STR, .str = val, .len = len };
            if (shdict_store(a->d, SHDICT_SET, k, strlen(k), &v, (r & 1) ? 0.001 : 0, now,
                             NULL) != SHDICT_OK)
                a->bad++;
            break;
        }
        case 2:
            shdict_delete(a->d, k, strlen(k), now);
            break;
        case 3: {
            struct shdict_value one = num_i(1), zero = num_i(0), out;
            int rc = shdict_incr(a->d, k, strlen(k), &one, &zero, 0, now, &out, NULL);
            if (rc != SHDICT_OK && rc != SHDICT_NOT_NUMBER)
                a->bad++;
            break;
        }
        case 4: {
            size_t n;
            free(shdict_keys(a->d, now, 50, &n));
            break;
        }
        default: {
            struct shdict_value v;
            int rc = shdict_get(a->d, k, strlen(k), now, &v, buf, sizeof buf);
            if (rc == SHDICT_OK && v.type == SHDICT_STR) {
                for (size_t j = 1; j < v.len; j++)
                    a->torn += buf[j] != buf[0];
            } else if (rc != SHDICT_OK && rc != SHDICT_NOT_FOUND) {
                a->bad++;
            }
        }
        }
    }
    return NULL;
}

TEST(set_get_delete_from_several_threads)
{
    /* Small enough that the threads keep evicting each other's entries. */
    struct shdict *d = shdict_new("t", 16 * 1024);
    pthread_t t[THREADS];
    struct worker_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (struct worker_arg){ .d = d, .id = i };
        pthread_create(&t[i], NULL, mixed_thread, &args[i]);
    }
    long torn = 0, bad = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        torn += args[i].torn;
        bad += args[i].bad;
    }
    CHECK_EQ_INT(torn, 0);
    CHECK_EQ_INT(bad, 0);
    CHECK(stats(d).used <= 16 * 1024);
    /* The accounting still matches what is there. */
    size_t n;
    int64_t before = 0;                         /* a time when nothing had expired */
    struct shdict_key *keys = shdict_keys(d, before, 0, &n);
    size_t want = 0;
    char buf[256];
    for (size_t i = 0; i < n; i++) {
        struct shdict_value v;
        CHECK_EQ_INT(shdict_get(d, keys[i].p, keys[i].len, before, &v, buf, sizeof buf), SHDICT_OK);
        want += SHDICT_ENTRY_OVERHEAD + keys[i].len + (v.type == SHDICT_STR ? v.len : 0);
    }
    free(keys);
    CHECK_EQ_INT(n, stats(d).count);
    CHECK_EQ_INT(stats(d).used, want);
    shdict_flush_all(d);
    CHECK_EQ_INT(stats(d).used, 0);
    shdict_free(d);
}

int main(int argc, char **argv)
{
    return check_main("test_shdict");
}
