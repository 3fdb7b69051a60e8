/*
 * check: the unit-test harness, a header and nothing else.
 *
 * A test is a function declared with TEST(name); a constructor registers it,
 * so a file's main is just `return check_main("test_x");`. CHECK* macros
 * count a failure, print file:line and go on (the test keeps running, so one
 * run shows every broken case); a test with any failed check is a failed
 * case. Printing stops after CHECK_PRINT_MAX failures per test so a broken
 * loop does not drown the log. The last line of a run is the summary that
 * tests/tests.mk collects:
 *   test_x: 12 cases, 0 failed, 3456 checks
 */
#ifndef MOONWS_TEST_CHECK_H
#define MOONWS_TEST_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_MAX_TESTS 256
#define CHECK_PRINT_MAX 8

struct check_state {
    const char *names[CHECK_MAX_TESTS];
    void (*fns[CHECK_MAX_TESTS])(void);
    size_t ntests;
    const char *current;
    unsigned long checks;
    unsigned long failures;     /* of the current test */
};

static inline struct check_state *check_state(void)
{
    static struct check_state st;
    return &st;
}

static inline void check_register(const char *name, void (*fn)(void))
{
    struct check_state *st = check_state();
    if (st->ntests == CHECK_MAX_TESTS) {
        fprintf(stderr, "check.h: more than %d tests, raise CHECK_MAX_TESTS\n", CHECK_MAX_TESTS);
        abort();
    }
    st->names[st->ntests] = name;
    st->fns[st->ntests++] = fn;
}

#define TEST(name)                                                                        \
    static void name(void);                                                               \
    __attribute__((constructor)) static void name##_register(void)                       \
    {                                                                                     \
        check_register(#name, name);                                                      \
    }                                                                                     \
    static void name(void)

/* Records one check; returns ok so callers can bail out of a loop. */
static inline bool check_record(bool ok, const char *file, int line, const char *what)
{
    struct check_state *st = check_state();
    st->checks++;
    if (ok)
        return true;
    if (st->failures++ < CHECK_PRINT_MAX)
        fprintf(stderr, "%s:%d: %s: %s\n", file, line, st->current, what);
    else if (st->failures == CHECK_PRINT_MAX + 1)
        fprintf(stderr, "%s:%d: %s: (further failures not printed)\n", file, line,
                st->current);
    return false;
}

/* Context for the failure just reported; quiet once printing stopped. */
#define NOTE(...)                                                                         \
    do {                                                                                  \
        if (check_state()->failures <= CHECK_PRINT_MAX)                                   \
            fprintf(stderr, __VA_ARGS__);                                                 \
    } while (0)

#define CHECK(cond) check_record((cond) ? true : false, __FILE__, __LINE__, "CHECK(" #cond ")")

/* Prints both values on failure. */
static inline bool check_eq_int(long long a, long long b, const char *file, int line,
                                const char *ea, const char *eb)
{
    if (a == b)
        return check_record(true, file, line, "");
    char what[512];
    snprintf(what, sizeof what, "CHECK_EQ_INT(%s, %s): %lld != %lld", ea, eb, a, b);
    return check_record(false, file, line, what);
}

#define CHECK_EQ_INT(a, b) \
    check_eq_int((long long)(a), (long long)(b), __FILE__, __LINE__, #a, #b)

static inline void check_hex(char *out, size_t cap, const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t o = 0;
    if (cap)
        out[0] = '\0';         /* nothing to show: an empty string, not garbage */
    for (size_t i = 0; i < n && o + 4 < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%02x", b[i]);
    if (o + 4 >= cap && cap >= 4)
        memcpy(out + cap - 4, "...", 4);
}

/* Compares two byte strings of possibly different lengths; on failure prints
 * the lengths, the first differing offset and the bytes from there. */
static inline bool check_mem(const void *a, size_t alen, const void *b, size_t blen,
                             const char *file, int line, const char *ea, const char *eb)
{
    if (alen == blen && (alen == 0 || memcmp(a, b, alen) == 0))
        return check_record(true, file, line, "");
    size_t i = 0;
    const unsigned char *pa = a, *pb = b;
    while (i < alen && i < blen && pa[i] == pb[i])
        i++;
    char ha[72], hb[72], what[512];
    check_hex(ha, sizeof ha, pa + i, alen - i);
    check_hex(hb, sizeof hb, pb + i, blen - i);
    snprintf(what, sizeof what, "CHECK_MEM(%s, %s): lengths %zu/%zu, differ at %zu: %s vs %s",
             ea, eb, alen, blen, i, ha, hb);
    return check_record(false, file, line, what);
}

#define CHECK_MEM(a, alen, b, blen) \
    check_mem((a), (alen), (b), (blen), __FILE__, __LINE__, #a, #b)

/* CHECK_MEM against a string literal or C string. */
#define CHECK_STR(a, alen, s) check_mem((a), (alen), (s), strlen(s), __FILE__, __LINE__, #a, #s)

/* Runs every registered test (or only those named on the command line) and
 * prints the summary line. Returns the process exit status. */
static inline int check_main_args(const char *suite, int argc, char **argv)
{
    struct check_state *st = check_state();
    size_t ran = 0, failed = 0;
    for (size_t i = 0; i < st->ntests; i++) {
        bool wanted = argc <= 1;
        for (int a = 1; a < argc; a++)
            wanted = wanted || strcmp(argv[a], st->names[i]) == 0;
        if (!wanted)
            continue;
        st->current = st->names[i];
        st->failures = 0;
        st->fns[i]();
        ran++;
        if (st->failures) {
            failed++;
            fprintf(stderr, "FAIL %s.%s (%lu failed checks)\n", suite, st->names[i],
                    st->failures);
        }
    }
    fflush(stderr);
    printf("%s: %zu cases, %zu failed, %lu checks\n", suite, ran, failed, st->checks);
    return failed ? 1 : 0;
}

#define check_main(suite) check_main_args((suite), argc, argv)

#endif
