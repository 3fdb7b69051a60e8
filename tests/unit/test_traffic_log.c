/*
 * traffic_log (src/util/traffic_log.h): the lines byte by byte in both
 * formats, odd paths and remotes (escaped, cut, every JSON line valid and
 * every value read back as it was), and the access-log file: whole lines
 * from several threads, reopening for rotation while they write, a pipe
 * whose reader is behind (lines lost, never a blocked writer), and the log
 * at debug.
 */
#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/limits.h"
#include "util/log.h"
#include "util/traffic_log.h"
#include "util/utf8.h"

#define TS "2026-12-01T10:00:00.123Z"

static size_t fmt(char *out, const struct traffic *t, bool json)
{
    return traffic_format(out, LIM_TRAFFIC_LINE, t, "info", json, TS);
}

static const struct traffic http_req = {
    .event = TRAFFIC_HTTP, .conn = 7, .remote = "127.0.0.1:40000",
    .method = "GET", .method_len = 3, .path = "/chat/who", .path_len = 9,
    .status = 200, .bytes = 17, .us = 312,
};

TEST(http_line_text)
{
    char line[LIM_TRAFFIC_LINE];
    size_t n = fmt(line, &http_req, false);
    CHECK_STR(line, n, TS " [info] http conn=7 remote=127.0.0.1:40000 method=GET path=/chat/who "
                          "status=200 bytes=17 us=312 secure=false\n");
}

TEST(http_line_json)
{
    char line[LIM_TRAFFIC_LINE];
    size_t n = fmt(line, &http_req, true);
    CHECK_STR(line, n, "{\"ts\":\"" TS "\",\"level\":\"info\",\"msg\":\"http\",\"conn\":7,"
                       "\"remote\":\"127.0.0.1:40000\",\"method\":\"GET\",\"path\":\"/chat/who\","
                       "\"status\":200,\"bytes\":17,\"us\":312,\"secure\":false}\n");
}

static const struct traffic ws_open = {
    .event = TRAFFIC_WS_OPEN, .worker = 2, .conn = 12, .remote = "[::1]:5000",
    .path = "/rooms/lobby", .path_len = 12, .protocol = "json", .secure = true,
};

static const struct traffic ws_close = {
    .event = TRAFFIC_WS_CLOSE, .conn = 12, .remote = "10.0.0.1:1", .path = "/chat",
    .path_len = 5, .code = 1006, .us = 1234567, .msgs_in = 10, .bytes_in = 320,
    .msgs_out = 12, .bytes_out = 400,
};

TEST(websocket_lines_text)
{
    char line[LIM_TRAFFIC_LINE];
    size_t n = traffic_format(line, sizeof line, &ws_open, "debug", false, TS);
    CHECK_STR(line, n, TS " [debug] [w2] ws-open conn=12 remote=[::1]:5000 path=/rooms/lobby "
                          "protocol=json secure=true\n");
    n = fmt(line, &ws_close, false);
    CHECK_STR(line, n, TS " [info] ws-close conn=12 remote=10.0.0.1:1 path=/chat secure=false "
                          "code=1006 us=1234567 in_msgs=10 in_bytes=320 out_msgs=12 "
                          "out_bytes=400\n");
}

TEST(websocket_lines_json)
{
    char line[LIM_TRAFFIC_LINE];
    size_t n = traffic_format(line, sizeof line, &ws_open, "debug", true, TS);
    CHECK_STR(line, n, "{\"ts\":\"" TS "\",\"level\":\"debug\",\"msg\":\"ws-open\",\"worker\":2,"
                       "\"conn\":12,\"remote\":\"[::1]:5000\",\"path\":\"/rooms/lobby\","
                       "\"protocol\":\"json\",\"secure\":true}\n");
    n = fmt(line, &ws_close, true);
    CHECK_STR(line, n, "{\"ts\":\"" TS "\",\"level\":\"info\",\"msg\":\"ws-close\",\"conn\":12,"
                       "\"remote\":\"10.0.0.1:1\",\"path\":\"/chat\",\"protocol\":null,"
                       "\"secure\":false,\"code\":1006,\"us\":1234567,\"in_msgs\":10,"
                       "\"in_bytes\":320,\"out_msgs\":12,\"out_bytes\":400}\n");
}

static struct traffic with_path(const char *p, size_t n)
{
    struct traffic t = http_req;
    t.path = p;
    t.path_len = n;
    return t;
}

struct path_case {
    const char *path;
    size_t len;
    const char *want;           /* as the line writes it */
};

/* Each case's path as its line writes it: between the path's key and the
 * status that follows it. */
static void check_paths(const struct path_case *cases, size_t n, bool json)
{
    const char *key = json ? "\"path\":" : " path=", *next = json ? ",\"status\":" : " status=";
    for (size_t i = 0; i < n; i++) {
        struct traffic t = with_path(cases[i].path, cases[i].len);
        char line[LIM_TRAFFIC_LINE], got[256] = "";
        size_t len = fmt(line, &t, json);
        const char *a = memmem(line, len, key, strlen(key));
        const char *b = a ? memmem(a, len - (size_t)(a - line), next, strlen(next)) : NULL;
        if (a && b)
            snprintf(got, sizeof got, "%.*s", (int)(b - a - (ptrdiff_t)strlen(key)),
                     a + strlen(key));
        if (!CHECK_STR(got, strlen(got), cases[i].want))
            NOTE("case %zu\n", i);
        CHECK(memchr(line, '\n', len) == line + len - 1);
    }
}

TEST(odd_paths_in_text)
{
    static const struct path_case cases[] = {
        { "/a b", 4, "\"/a b\"" },
        { "/q\"x", 4, "\"/q\\\"x\"" },
        { "/b\\s", 4, "\"/b\\\\s\"" },
        { "/k=v", 4, "\"/k=v\"" },
        { "/n\nl\r\t", 6, "\"/n\\nl\\r\\t\"" },
        { "/c\x01\x7f\xff", 5, "\"/c\\x01\\x7f\\xff\"" },
        { "/caf\xc3\xa9", 6, "\"/caf\\xc3\\xa9\"" },
        { "", 0, "\"\"" },
        { "/with\0nul", 9, "\"/with\\x00nul\"" },
        { "/plain-_.~:@!$&'()*+,;%20", 25, "/plain-_.~:@!$&'()*+,;%20" },
    };
    check_paths(cases, sizeof cases / sizeof *cases, false);
    /* an odd remote is quoted too */
    struct traffic t = http_req;
    t.remote = "";
    char line[LIM_TRAFFIC_LINE];
    size_t n = fmt(line, &t, false);
    CHECK(memmem(line, n, " remote=\"\" ", 11));
}

TEST(odd_paths_in_json)
{
    static const struct path_case cases[] = {
        { "/q\"x\\y", 6, "\"/q\\\"x\\\\y\"" },
        { "/n\nl\r\t\x01\x1f\x7f", 9, "\"/n\\nl\\r\\t\\u0001\\u001f\\u007f\"" },
        { "/caf\xc3\xa9/\xe2\x82\xac", 10, "\"/caf\xc3\xa9/\xe2\x82\xac\"" },
        { "/bad\xff\xc3", 6, "\"/bad\\u00ff\\u00c3\"" },
        { "/with\0nul", 9, "\"/with\\u0000nul\"" },
        { "", 0, "\"\"" },
    };
    check_paths(cases, sizeof cases / sizeof *cases, true);
}

/* ---- a strict JSON reader (RFC 8259), for validity and for reading values back ---- */

struct jp {
    const char *p, *end;
    bool ok;
};

static void ws(struct jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                        : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* A string; its bytes (with \u00XX as the byte XX, and \uXXXX above as
 * UTF-8) go to out when out is not NULL. */
static void jstring(struct jp *j, struct buf *out)
{
    if (j->p >= j->end || *j->p != '"') {
        j->ok = false;
        return;
    }
    j->p++;
    while (j->p < j->end && *j->p != '"') {
        unsigned char c = (unsigned char)*j->p;
        if (c < 0x20) {
            j->ok = false;
            return;
        }
        if (c != '\\') {
            if (out)
                buf_append(out, j->p, 1);
            j->p++;
            continue;
        }
        if (j->end - j->p < 2) {
            j->ok = false;
            return;
        }
        char e = j->p[1];
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e && simple) {
            static const char repl[] = "\"\\/\b\f\n\r\t";
            if (out)
                buf_append(out, &repl[simple - "\"\\/bfnrt"], 1);
            j->p += 2;
            continue;
        }
        if (e != 'u' || j->end - j->p < 6) {
            j->ok = false;
            return;
        }
        int v = 0;
        for (int k = 2; k < 6; k++) {
            int h = hexval(j->p[k]);
            if (h < 0) {
                j->ok = false;
                return;
            }
            v = v * 16 + h;
        }
        if (out && v <= 0xff) {
            char byte = (char)v;
            buf_append(out, &byte, 1);
        }
        j->p += 6;
    }
    if (j->p >= j->end) {
        j->ok = false;
        return;
    }
    j->p++;
}

static void jvalue(struct jp *j, int depth);

static void jnumber(struct jp *j)
{
    const char *s = j->p;
    if (j->p < j->end && *j->p == '-')
        j->p++;
    if (j->p < j->end && *j->p == '0')
        j->p++;
    else if (j->p < j->end && *j->p >= '1' && *j->p <= '9')
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    else
        j->ok = false;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (!(j->p < j->end && *j->p >= '0' && *j->p <= '9'))
            j->ok = false;
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    }
    if (j->p == s)
        j->ok = false;
}

static void jvalue(struct jp *j, int depth)
{
    ws(j);
    if (j->p >= j->end || depth > 8) {
        j->ok = false;
        return;
    }
    char c = *j->p;
    if (c == '{') {
        j->p++;
        ws(j);
        if (j->p < j->end && *j->p == '}') {
            j->p++;
            return;
        }
        for (;;) {
            ws(j);
            jstring(j, NULL);
            ws(j);
            if (!j->ok || j->p >= j->end || *j->p != ':') {
                j->ok = false;
                return;
            }
            j->p++;
            jvalue(j, depth + 1);
            ws(j);
            if (!j->ok || j->p >= j->end) {
                j->ok = false;
                return;
            }
            if (*j->p == '}') {
                j->p++;
                return;
            }
            if (*j->p != ',') {
                j->ok = false;
                return;
            }
            j->p++;
        }
    }
    if (c == '"') {
        jstring(j, NULL);
        return;
    }
    static const char *const words[] = { "true", "false", "null" };
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(words[i]);
        if ((size_t)(j->end - j->p) >= l && memcmp(j->p, words[i], l) == 0) {
            j->p += l;
            return;
        }
    }
    jnumber(j);
}

/* The line is one valid JSON object followed by \n alone. */
static bool json_line_valid(const char *line, size_t n)
{
    if (n == 0 || line[n - 1] != '\n' || memchr(line, '\n', n - 1))
        return false;
    if (!utf8_valid(line, n))
        return false;
    struct jp j = { line, line + n - 1, true };
    if (j.p >= j.end || *j.p != '{')
        return false;
    jvalue(&j, 0);
    ws(&j);
    return j.ok && j.p == j.end;
}

/* The string member key of a JSON line, decoded. */
static bool json_member(const char *line, size_t n, const char *key, struct buf *out)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *a = memmem(line, n, pat, strlen(pat));
    if (!a)
        return false;
    struct jp j = { a + strlen(pat), line + n, true };
    out->len = 0;
    jstring(&j, out);
    return j.ok;
}

/* The text value of key, unquoted and unescaped. */
static bool text_member(const char *line, size_t n, const char *key, struct buf *out)
{
    char pat[64];
    snprintf(pat, sizeof pat, " %s=", key);
    const char *a = memmem(line, n, pat, strlen(pat));
    if (!a)
        return false;
    const char *p = a + strlen(pat), *end = line + n;
    out->len = 0;
    if (*p != '"') {
        while (p < end && *p != ' ' && *p != '\n')
            buf_append(out, p++, 1);
        return true;
    }
    for (p++; p < end && *p != '"'; p++) {
        if (*p != '\\') {
            buf_append(out, p, 1);
            continue;
        }
        char e = *++p, byte;
        if (e == 'x') {
            byte = (char)(hexval(p[1]) * 16 + hexval(p[2]));
            p += 2;
        } else {
            byte = e == 'n' ? '\n' : e == 'r' ? '\r' : e == 't' ? '\t' : e;
        }
        buf_append(out, &byte, 1);
    }
    return p < end;
}

TEST(json_reader_refuses_what_it_should)
{
    /* the checker itself must be able to say no */
    CHECK(json_line_valid("{\"a\":1}\n", 8));
    CHECK(!json_line_valid("{\"a\":1}", 7));
    CHECK(!json_line_valid("{\"a\":\"x\ny\"}\n", 12));
    CHECK(!json_line_valid("{\"a\":\"\x01\"}\n", 10));
    CHECK(!json_line_valid("{\"a\":\"\\x01\"}\n", 13));
    CHECK(!json_line_valid("{\"a\":\"\xff\"}\n", 10));
    CHECK(!json_line_valid("{\"a\":01}\n", 9));
    CHECK(!json_line_valid("{\"a\":1,}\n", 9));
}

/* xorshift: the same inputs on every run */
static uint32_t rnd_state = 2463534242u;
static uint32_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 17;
    rnd_state ^= rnd_state << 5;
    return rnd_state;
}

TEST(random_paths_read_back_from_both_formats)
{
    struct buf got = { 0 };
    for (int i = 0; i < 3000; i++) {
        char path[300];
        size_t len = rnd() % sizeof path;
        int flavour = i % 3;
        for (size_t k = 0; k < len; k++) {
            uint32_t r = rnd();
            /* any byte; printable ASCII; ASCII with the characters that need escapes */
            path[k] = flavour == 0 ? (char)r : flavour == 1 ? (char)(0x20 + r % 95)
                                                            : "a/ \"\\=\n\t%"[r % 10];
        }
        struct traffic t = with_path(path, len);
        t.remote = i % 2 ? "[2001:db8::1]:443" : "192.0.2.1:80";
        t.worker = (unsigned)(i % 3);
        char line[LIM_TRAFFIC_LINE];
        size_t n = fmt(line, &t, true);
        if (!CHECK(json_line_valid(line, n)))
            NOTE("case %d: %.*s", i, (int)n, line);
        CHECK(json_member(line, n, "path", &got));
        if (!CHECK_MEM(got.data, got.len, path, len))
            NOTE("case %d\n", i);
        n = fmt(line, &t, false);
        CHECK(memchr(line, '\n', n) == line + n - 1);
        CHECK(text_member(line, n, "path", &got));
        if (!CHECK_MEM(got.data, got.len, path, len))
            NOTE("case %d: %.*s", i, (int)n, line);
    }
    buf_free(&got);
}

TEST(long_values_cut_to_the_line_cap)
{
    static char path[10000], method[600], remote[300], proto[600];
    static const char *const fills[] = { "a", "\xff", "\xc3\xa9", "\"" };
    struct buf got = { 0 };
    for (size_t f = 0; f < sizeof fills / sizeof *fills; f++) {
        size_t fl = strlen(fills[f]);
        for (size_t k = 0; k + fl <= sizeof path; k += fl)
            memcpy(path + k, fills[f], fl);
        memset(method, 'M', sizeof method);
        memset(remote, '9', sizeof remote - 1);
        remote[sizeof remote - 1] = '\0';
        memset(proto, 'p', sizeof proto - 1);
        proto[sizeof proto - 1] = '\0';
        size_t plen = sizeof path - sizeof path % fl;
        for (int e = 0; e < 3; e++) {
            struct traffic t = with_path(path, plen);
            t.event = (enum traffic_event)e;
            t.method = method;
            t.method_len = sizeof method;
            t.remote = remote;
            t.protocol = proto;
            t.worker = 64;
            t.conn = UINT64_MAX;
            t.us = t.bytes = t.msgs_in = t.bytes_in = t.msgs_out = t.bytes_out = UINT64_MAX;
            t.code = 4999;
            t.status = 599;
            for (int json = 0; json < 2; json++) {
                char line[LIM_TRAFFIC_LINE + 16];
                memset(line, 'Z', sizeof line);
                size_t n = traffic_format(line, LIM_TRAFFIC_LINE, &t, "debug", json, TS);
                CHECK(n <= LIM_TRAFFIC_LINE);
                CHECK(line[LIM_TRAFFIC_LINE] == 'Z');           /* nothing past the cap */
                CHECK(line[n - 1] == '\n' && memchr(line, '\n', n) == line + n - 1);
                if (json) {
                    if (!CHECK(json_line_valid(line, n)))
                        NOTE("fill %zu event %d: %.*s\n", f, e, 200, line + n - 200);
                    CHECK(json_member(line, n, "path", &got));
                } else {
                    CHECK(text_member(line, n, "path", &got));
                }
                /* a prefix of the path, then "..." */
                if (!CHECK(got.len > 400 && got.len < plen))
                    NOTE("fill %zu event %d json %d: %zu bytes of the path\n", f, e, json, got.len);
                CHECK(got.len >= 3 && memcmp(got.data + got.len - 3, "...", 3) == 0);
                CHECK(got.len >= 3 && memcmp(got.data, path, got.len - 3) == 0);
                /* every field is still there */
                CHECK(memmem(line, n, json ? "\"secure\":" : " secure=", json ? 9 : 8));
            }
        }
    }
    buf_free(&got);
}

/* ---- the file ---- */

static char tmpdir[64];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/moonws-traffic-XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);
}

static void tmp_path(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

/* Every line of file: valid JSON; their conn numbers marked in seen. */
static long check_file_lines(const char *file, unsigned char *seen, size_t nseen)
{
    FILE *f = fopen(file, "r");
    if (!CHECK(f))
        return -1;
    static char line[LIM_TRAFFIC_LINE + 2];
    long n = 0;
    struct buf got = { 0 };
    while (fgets(line, sizeof line, f)) {
        size_t len = strlen(line);
        n++;
        if (!CHECK(json_line_valid(line, len))) {
            NOTE("%s line %ld: %s", file, n, line);
            continue;
        }
        const char *c = strstr(line, "\"conn\":");
        unsigned long long id = c ? strtoull(c + 7, NULL, 10) : 0;
        if (CHECK(id < nseen))
            CHECK(seen[id]++ == 0);
    }
    buf_free(&got);
    fclose(f);
    return n;
}

#define WRITERS 4
#define LINES 2000

struct writer {
    struct traffic_log *tl;
    unsigned id;
};

static void *write_lines(void *arg)
{
    struct writer *w = arg;
    char path[200];
    memset(path, 'x', sizeof path);
    for (unsigned i = 0; i < LINES; i++) {
        struct traffic t = with_path(path, 20 + i % 180);
        t.conn = w->id * LINES + i;
        t.worker = w->id + 1;
        traffic_log_write(w->tl, &t);
    }
    return NULL;
}

static void start_writers(struct traffic_log *tl, pthread_t *th, struct writer *w)
{
    for (unsigned i = 0; i < WRITERS; i++) {
        w[i] = (struct writer){ tl, i };
        CHECK(pthread_create(&th[i], NULL, write_lines, &w[i]) == 0);
    }
}

TEST(whole_lines_from_several_threads)
{
    make_tmpdir();
    char file[128], err[256];
    tmp_path(file, sizeof file, "access.log");
    struct traffic_log *tl = traffic_log_open(file, true, err, sizeof err);
    if (!CHECK(tl))
        return;
    CHECK(traffic_log_wanted(tl));
    pthread_t th[WRITERS];
    struct writer w[WRITERS];
    start_writers(tl, th, w);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ_INT(traffic_log_lost(tl), 0);
    traffic_log_close(tl);
    static unsigned char seen[WRITERS * LINES];
    memset(seen, 0, sizeof seen);
    CHECK_EQ_INT(check_file_lines(file, seen, sizeof seen), WRITERS * LINES);
    struct stat st;
    CHECK(stat(file, &st) == 0 && (st.st_mode & 0777) == (0640 & ~(unsigned)umask(022)));
    umask(022);
    unlink(file);
    rmdir(tmpdir);
}

TEST(reopen_while_threads_write)
{
    make_tmpdir();
    char file[128], err[256];
    tmp_path(file, sizeof file, "access.log");
    struct traffic_log *tl = traffic_log_open(file, true, err, sizeof err);
    if (!CHECK(tl))
        return;
    pthread_t th[WRITERS];
    struct writer w[WRITERS];
    start_writers(tl, th, w);
    /* rotate five times while they write, as logrotate with SIGHUP would */
    char rotated[5][160];
    for (int r = 0; r < 5; r++) {
        usleep(2000);
        snprintf(rotated[r], sizeof rotated[r], "%s.%d", file, r);
        CHECK(rename(file, rotated[r]) == 0);
        CHECK(traffic_log_reopen(tl, err, sizeof err));
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(th[i], NULL);
    traffic_log_close(tl);
    static unsigned char seen[WRITERS * LINES];
    memset(seen, 0, sizeof seen);
    long total = check_file_lines(file, seen, sizeof seen);
    for (int r = 0; r < 5; r++) {
        total += check_file_lines(rotated[r], seen, sizeof seen);
        unlink(rotated[r]);
    }
    /* every line whole, once, in one of the files */
    CHECK_EQ_INT(total, WRITERS * LINES);
    unlink(file);
    rmdir(tmpdir);
}

TEST(reopen_failure_keeps_the_old_file)
{
    make_tmpdir();
    char file[128], err[256];
    tmp_path(file, sizeof file, "access.log");
    struct traffic_log *tl = traffic_log_open(file, false, err, sizeof err);
    if (!CHECK(tl))
        return;
    int keep = open(file, O_RDONLY);
    unlink(file);
    rmdir(tmpdir);                      /* nowhere to open it again */
    CHECK(!traffic_log_reopen(tl, err, sizeof err));
    CHECK(strstr(err, "cannot open it again: No such file or directory"));
    traffic_log_write(tl, &http_req);
    CHECK_EQ_INT(traffic_log_lost(tl), 0);
    char line[LIM_TRAFFIC_LINE];
    ssize_t n = read(keep, line, sizeof line);
    CHECK(n > 0 && memmem(line, (size_t)n, "] http conn=7 ", 14));
    close(keep);
    traffic_log_close(tl);
}

TEST(open_errors_say_why)
{
    char err[256];
    CHECK(!traffic_log_open("/nonexistent-moonws/access.log", false, err, sizeof err));
    CHECK_STR(err, strlen(err),
              "access log /nonexistent-moonws/access.log: No such file or directory");
    make_tmpdir();
    char fifo[128];
    tmp_path(fifo, sizeof fifo, "fifo");
    CHECK(mkfifo(fifo, 0600) == 0);
    CHECK(!traffic_log_open(fifo, false, err, sizeof err));
    CHECK(strstr(err, ": a pipe with no reader"));
    unlink(fifo);
    rmdir(tmpdir);
}

/* A pipe whose reader reads nothing: writers go on, lines are lost and
 * counted; what the reader gets is whole lines. (A writer that blocked
 * would hang the test: the alarm ends it.) */
TEST(full_pipe_loses_lines_and_never_blocks)
{
    make_tmpdir();
    char fifo[128], err[256];
    tmp_path(fifo, sizeof fifo, "fifo");
    CHECK(mkfifo(fifo, 0600) == 0);
    int rd = open(fifo, O_RDONLY | O_NONBLOCK);
    struct traffic_log *tl = traffic_log_open(fifo, false, err, sizeof err);
    if (!CHECK(tl))
        return;
    alarm(60);
    int sent = 0;
    for (; sent < 20000; sent++)
        traffic_log_write(tl, &http_req);
    alarm(0);
    uint64_t lost = traffic_log_lost(tl);
    CHECK(lost > 0 && lost < (uint64_t)sent);
    struct buf all = { 0 };
    ssize_t r;
    while ((r = read(rd, buf_reserve(&all, 65536), 65536)) > 0)
        all.len += (size_t)r;
    char line[LIM_TRAFFIC_LINE];
    size_t one = traffic_format(line, sizeof line, &http_req, "info", false, TS);
    /* every line the same length: whole lines only */
    CHECK(all.len > 0 && all.len % one == 0);
    CHECK_EQ_INT(all.len / one + lost, sent);
    buf_free(&all);
    traffic_log_close(tl);
    close(rd);
    unlink(fifo);
    rmdir(tmpdir);
}

TEST(lines_reach_the_log_at_debug_only)
{
    char err[256];
    struct traffic_log *tl = traffic_log_open(NULL, false, err, sizeof err);
    if (!CHECK(tl))
        return;
    CHECK(!traffic_log_wanted(tl));             /* at info, with no file: nothing to do */
    make_tmpdir();
    char file[128];
    tmp_path(file, sizeof file, "stderr");
    int saved = dup(STDERR_FILENO);
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, STDERR_FILENO);
    close(fd);
    log_set_level(LOG_DEBUG);
    bool wanted = traffic_log_wanted(tl);
    traffic_log_write(tl, &ws_open);
    log_set_level(LOG_INFO);
    dup2(saved, STDERR_FILENO);
    close(saved);
    CHECK(wanted);
    char got[LIM_TRAFFIC_LINE] = "";
    FILE *f = fopen(file, "r");
    CHECK(f && fgets(got, sizeof got, f));
    if (f)
        fclose(f);
    CHECK(strstr(got, "Z [debug] [w2] ws-open conn=12 remote=[::1]:5000 path=/rooms/lobby"));
    unlink(file);
    rmdir(tmpdir);
    traffic_log_close(tl);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    return check_main("test_traffic_log");
}
