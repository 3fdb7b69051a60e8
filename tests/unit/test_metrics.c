/*
 * metrics (src/util/metrics.h): the exposition text byte by byte, label
 * escaping, histogram buckets, the life of series (shared, kept, retired,
 * overflow), statuses per route, and counts from several threads summing
 * exactly while a scraper reads. Threads only count; the checks run on the
 * test's own thread after they are joined (check.h is not thread-safe).
 */
#include "check.h"

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "util/limits.h"
#include "util/metrics.h"

/* What every render ends with when nothing was reloaded. */
#define TAIL_NO_RELOADS(workers)                                                              \
    "# HELP moonws_reloads_total Service files reloaded: applied (ok), refused with the old " \
    "version kept (error), removed.\n"                                                        \
    "# TYPE moonws_reloads_total counter\n"                                                   \
    "moonws_reloads_total{result=\"ok\"} 0\n"                                                 \
    "moonws_reloads_total{result=\"error\"} 0\n"                                              \
    "moonws_reloads_total{result=\"removed\"} 0\n"                                            \
    "# HELP moonws_workers Worker threads.\n"                                                 \
    "# TYPE moonws_workers gauge\n"                                                           \
    "moonws_workers " workers "\n"

static void render(struct metrics *m, struct buf *out)
{
    out->len = 0;
    metrics_render(m, NULL, out);
}

/* The shape rules of the format, whatever the content: every line ends in
 * \n; a family's HELP comes first, then its TYPE, then its samples, all
 * together; a family appears once; counters end in _total; a sample is
 * name, optional {labels}, a space and a number. */
static void check_exposition(const struct buf *b)
{
    CHECK(b->len > 0 && b->data[b->len - 1] == '\n');
    char seen[64][96];
    int nseen = 0;
    char current[96] = "", type[16] = "";
    const char *p = b->data, *end = b->data + b->len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!CHECK(nl))
            return;
        char line[1024];
        size_t n = (size_t)(nl - p) < sizeof line - 1 ? (size_t)(nl - p) : sizeof line - 1;
        memcpy(line, p, n);
        line[n] = '\0';
        p = nl + 1;
        char name[96];
        if (strncmp(line, "# HELP ", 7) == 0) {
            CHECK(sscanf(line + 7, "%95s", name) == 1);
            for (int i = 0; i < nseen; i++) {
                if (!CHECK(strcmp(seen[i], name) != 0))
                    NOTE("family %s appears twice\n", name);
            }
            if (nseen < 64)
                snprintf(seen[nseen++], sizeof seen[0], "%s", name);
            snprintf(current, sizeof current, "%s", name);
            type[0] = '\0';
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            CHECK(sscanf(line + 7, "%95s %15s", name, type) == 2);
            CHECK(strcmp(name, current) == 0);
            CHECK(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                  strcmp(type, "histogram") == 0);
            if (strcmp(type, "counter") == 0) {
                size_t l = strlen(name);
                CHECK(l > 6 && strcmp(name + l - 6, "_total") == 0);
            }
            continue;
        }
        /* a sample of the current family */
        if (!CHECK(type[0] != '\0')) {
            NOTE("sample before its TYPE: %s\n", line);
            continue;
        }
        size_t nl_ = strcspn(line, "{ ");
        snprintf(name, sizeof name, "%.*s", (int)nl_, line);
        bool ok = strcmp(name, current) == 0;
        if (strcmp(type, "histogram") == 0) {
            size_t cl = strlen(current);
            ok = strncmp(name, current, cl) == 0 &&
                 (strcmp(name + cl, "_bucket") == 0 || strcmp(name + cl, "_sum") == 0 ||
                  strcmp(name + cl, "_count") == 0);
        }
        if (!CHECK(ok))
            NOTE("sample %s outside its family %s\n", line, current);
        const char *v = line + nl_;
        if (*v == '{') {
            /* labels: key="value" pairs, escapes inside values */
            v++;
            while (*v && *v != '}') {
                while (*v >= 'a' && *v <= 'z')
                    v++;
                CHECK(v[0] == '=' && v[1] == '"');
                v += 2;
                while (*v && *v != '"')
                    v += *v == '\\' ? 2 : 1;
                CHECK(*v == '"');
                v++;
                if (*v == ',')
                    v++;
            }
            CHECK(*v == '}');
            v++;
        }
        CHECK(*v == ' ');
        char *e;
        strtod(v + 1, &e);
        if (!CHECK(e != v + 1 && *e == '\0'))
            NOTE("bad value in: %s\n", line);
    }
}

TEST(empty_registry_shows_reloads_and_workers)
{
    struct metrics *m = metrics_new(3);
    struct buf b = { 0 };
    render(m, &b);
    CHECK_STR(b.data, b.len, TAIL_NO_RELOADS("3"));
    check_exposition(&b);
    buf_free(&b);
    metrics_free(m);
}

TEST(one_path_every_family_byte_by_byte)
{
    struct metrics *m = metrics_new(2);
    int id = metrics_path_acquire(m, "/chat");
    CHECK(id > 0);
    struct metrics_path_cells *p0 = metrics_path_cells(metrics_worker(m, 0), id);
    struct metrics_path_cells *p1 = metrics_path_cells(metrics_worker(m, 1), id);
    metrics_conn_opened(p0);
    metrics_conn_opened(p0);
    metrics_conn_opened(p1);
    metrics_message_in(p0, METRICS_TEXT, 5);
    metrics_message_in(p1, METRICS_TEXT, 7);
    metrics_message_in(p1, METRICS_BINARY, 100);
    metrics_message_out(p0, METRICS_TEXT, 5);
    metrics_message_out(p0, METRICS_BINARY, 3);
    metrics_close(p0, 1000);
    metrics_close(p1, 4001);
    metrics_conn_closed(p0);
    metrics_handler_call(p0, true, false);
    metrics_handler_call(p0, false, false);
    metrics_handler_call(p1, false, true);
    metrics_handler_timed(p0, 1500);            /* 1.5 us */
    metrics_handler_timed(p1, 2000000);         /* 2 ms */
    metrics_backpressure_close(p1);
    metrics_deflated(p0, 1000, 300);
    metrics_inflated(p1, 200, 900);
    metrics_reload(m, METRICS_RELOAD_OK);
    metrics_reload(m, METRICS_RELOAD_ERROR);
    metrics_reload(m, METRICS_RELOAD_ERROR);

    struct buf b = { 0 };
    render(m, &b);
    const char *want =
        "# HELP moonws_connections WebSocket connections open now, by the service path they "
        "opened on.\n"
        "# TYPE moonws_connections gauge\n"
        "moonws_connections{path=\"/chat\"} 2\n"
        "# HELP moonws_connections_opened_total WebSocket connections opened, by the service "
        "path they opened on.\n"
        "# TYPE moonws_connections_opened_total counter\n"
        "moonws_connections_opened_total{path=\"/chat\"} 3\n"
        "# HELP moonws_handler_calls_total Calls into a service's Lua: every handler, endpoint "
        "and timer function.\n"
        "# TYPE moonws_handler_calls_total counter\n"
        "moonws_handler_calls_total{path=\"/chat\"} 3\n"
        "# HELP moonws_handler_errors_total Handler calls that failed: a Lua error, or over the "
        "CPU budget or the memory cap.\n"
        "# TYPE moonws_handler_errors_total counter\n"
        "moonws_handler_errors_total{path=\"/chat\"} 2\n"
        "# HELP moonws_handler_budget_exceeded_total Handler calls stopped for using more than "
        "their CPU budget.\n"
        "# TYPE moonws_handler_budget_exceeded_total counter\n"
        "moonws_handler_budget_exceeded_total{path=\"/chat\"} 1\n"
        "# HELP moonws_backpressure_closes_total Connections closed 1008 for having more than "
        "max_backpressure bytes queued.\n"
        "# TYPE moonws_backpressure_closes_total counter\n"
        "moonws_backpressure_closes_total{path=\"/chat\"} 1\n"
        "# HELP moonws_deflate_input_bytes_total Message bytes given to permessage-deflate to "
        "send.\n"
        "# TYPE moonws_deflate_input_bytes_total counter\n"
        "moonws_deflate_input_bytes_total{path=\"/chat\"} 1000\n"
        "# HELP moonws_deflate_output_bytes_total Compressed bytes permessage-deflate made of "
        "them.\n"
        "# TYPE moonws_deflate_output_bytes_total counter\n"
        "moonws_deflate_output_bytes_total{path=\"/chat\"} 300\n"
        "# HELP moonws_inflate_input_bytes_total Compressed message bytes received.\n"
        "# TYPE moonws_inflate_input_bytes_total counter\n"
        "moonws_inflate_input_bytes_total{path=\"/chat\"} 200\n"
        "# HELP moonws_inflate_output_bytes_total Message bytes they inflated to.\n"
        "# TYPE moonws_inflate_output_bytes_total counter\n"
        "moonws_inflate_output_bytes_total{path=\"/chat\"} 900\n"
        "# HELP moonws_messages_received_total WebSocket messages received, by kind.\n"
        "# TYPE moonws_messages_received_total counter\n"
        "moonws_messages_received_total{path=\"/chat\",kind=\"text\"} 2\n"
        "moonws_messages_received_total{path=\"/chat\",kind=\"binary\"} 1\n"
        "# HELP moonws_messages_sent_total WebSocket messages sent (each receiver of a broadcast "
        "counts), by kind.\n"
        "# TYPE moonws_messages_sent_total counter\n"
        "moonws_messages_sent_total{path=\"/chat\",kind=\"text\"} 1\n"
        "moonws_messages_sent_total{path=\"/chat\",kind=\"binary\"} 1\n"
        "# HELP moonws_message_bytes_received_total Payload bytes of the messages received, "
        "after inflation, by kind.\n"
        "# TYPE moonws_message_bytes_received_total counter\n"
        "moonws_message_bytes_received_total{path=\"/chat\",kind=\"text\"} 12\n"
        "moonws_message_bytes_received_total{path=\"/chat\",kind=\"binary\"} 100\n"
        "# HELP moonws_message_bytes_sent_total Payload bytes of the messages sent, before "
        "compression, by kind.\n"
        "# TYPE moonws_message_bytes_sent_total counter\n"
        "moonws_message_bytes_sent_total{path=\"/chat\",kind=\"text\"} 5\n"
        "moonws_message_bytes_sent_total{path=\"/chat\",kind=\"binary\"} 3\n"
        "# HELP moonws_closes_total WebSocket connections ended, by the close code their onClose "
        "heard (1005: none given, 1006: dropped; 3xxx and 4xxx: the application's).\n"
        "# TYPE moonws_closes_total counter\n"
        "moonws_closes_total{path=\"/chat\",code=\"1000\"} 1\n"
        "moonws_closes_total{path=\"/chat\",code=\"4xxx\"} 1\n"
        "# HELP moonws_handler_duration_seconds Wall time of outermost handler calls; one call in "
        "16 is timed, chosen at random.\n"
        "# TYPE moonws_handler_duration_seconds histogram\n"
        "moonws_handler_duration_seconds_bucket{path=\"/chat\",le=\"1e-05\"} 1\n"
        "moonws_handler_duration_seconds_bucket{path=\"/chat\",le=\"0.0001\"} 1\n"
        "moonws_handler_duration_seconds_bucket{path=\"/chat\",le=\"0.001\"} 1\n"
        "moonws_handler_duration_seconds_bucket{path=\"/chat\",le=\"0.01\"} 2\n"
        "moonws_handler_duration_seconds_bucket{path=\"/chat\",le=\"0.1\"} 2\n"
        "moonws_handler_duration_seconds_bucket{path=\"/chat\",le=\"1\"} 2\n"
        "moonws_handler_duration_seconds_bucket{path=\"/chat\",le=\"+Inf\"} 2\n"
        "moonws_handler_duration_seconds_sum{path=\"/chat\"} 0.002001500\n"
        "moonws_handler_duration_seconds_count{path=\"/chat\"} 2\n"
        "# HELP moonws_reloads_total Service files reloaded: applied (ok), refused with the old "
        "version kept (error), removed.\n"
        "# TYPE moonws_reloads_total counter\n"
        "moonws_reloads_total{result=\"ok\"} 1\n"
        "moonws_reloads_total{result=\"error\"} 2\n"
        "moonws_reloads_total{result=\"removed\"} 0\n"
        "# HELP moonws_workers Worker threads.\n"
        "# TYPE moonws_workers gauge\n"
        "moonws_workers 2\n";
    CHECK_STR(b.data, b.len, want);
    check_exposition(&b);
    buf_free(&b);
    metrics_path_release(m, id);
    metrics_free(m);
}

/* Only the series line of one family, to look at one label's rendering. */
static bool find_line(const struct buf *b, const char *prefix, char *out, size_t cap)
{
    const char *p = b->data, *end = b->data + b->len;
    size_t pl = strlen(prefix);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break;
        if ((size_t)(nl - p) >= pl && memcmp(p, prefix, pl) == 0) {
            snprintf(out, cap, "%.*s", (int)(nl - p), p);
            return true;
        }
        p = nl + 1;
    }
    return false;
}

TEST(label_values_escaped)
{
    struct metrics *m = metrics_new(1);
    int id = metrics_path_acquire(m, "/a\"b\\c\nd");
    metrics_conn_opened(metrics_path_cells(metrics_worker(m, 0), id));
    struct buf b = { 0 };
    render(m, &b);
    char line[256];
    CHECK(find_line(&b, "moonws_connections{", line, sizeof line));
    CHECK_STR(line, strlen(line), "moonws_connections{path=\"/a\\\"b\\\\c\\nd\"} 1");
    check_exposition(&b);

    struct buf e = { 0 };
    metrics_escape_label(&e, "/caf\xc3\xa9");             /* valid UTF-8: as it is */
    CHECK_STR(e.data, e.len, "/caf\xc3\xa9");
    e.len = 0;
    metrics_escape_label(&e, "/x\xff\xc3");                /* not UTF-8: U+FFFD each */
    CHECK_STR(e.data, e.len, "/x\xef\xbf\xbd\xef\xbf\xbd");
    e.len = 0;
    metrics_escape_label(&e, "");
    CHECK_EQ_INT(e.len, 0);
    buf_free(&e);
    buf_free(&b);
    metrics_path_release(m, id);
    metrics_free(m);
}

TEST(duration_bucket_bounds)
{
    CHECK_EQ_INT(metrics_duration_bucket(0), 0);
    CHECK_EQ_INT(metrics_duration_bucket(10000), 0);           /* le 1e-05 includes 10 us */
    CHECK_EQ_INT(metrics_duration_bucket(10001), 1);
    CHECK_EQ_INT(metrics_duration_bucket(100000), 1);
    CHECK_EQ_INT(metrics_duration_bucket(100001), 2);
    CHECK_EQ_INT(metrics_duration_bucket(1000000), 2);
    CHECK_EQ_INT(metrics_duration_bucket(10000000), 3);
    CHECK_EQ_INT(metrics_duration_bucket(100000000), 4);
    CHECK_EQ_INT(metrics_duration_bucket(1000000000), 5);
    CHECK_EQ_INT(metrics_duration_bucket(1000000001), 6);      /* +Inf */
    CHECK_EQ_INT(metrics_duration_bucket(UINT64_MAX), 6);
}

TEST(sum_of_durations_is_exact_seconds)
{
    struct metrics *m = metrics_new(1);
    int id = metrics_path_acquire(m, "/t");
    struct metrics_path_cells *p = metrics_path_cells(metrics_worker(m, 0), id);
    metrics_handler_timed(p, 3000000000ull);            /* 3 s: +Inf */
    metrics_handler_timed(p, 7);
    struct buf b = { 0 };
    render(m, &b);
    char line[256];
    CHECK(find_line(&b, "moonws_handler_duration_seconds_sum{", line, sizeof line));
    CHECK_STR(line, strlen(line), "moonws_handler_duration_seconds_sum{path=\"/t\"} 3.000000007");
    CHECK(find_line(&b, "moonws_handler_duration_seconds_bucket{path=\"/t\",le=\"1\"}", line,
                    sizeof line));
    CHECK_STR(line, strlen(line), "moonws_handler_duration_seconds_bucket{path=\"/t\",le=\"1\"} 1");
    CHECK(find_line(&b, "moonws_handler_duration_seconds_bucket{path=\"/t\",le=\"+Inf\"}", line,
                    sizeof line));
    CHECK_STR(line, strlen(line),
              "moonws_handler_duration_seconds_bucket{path=\"/t\",le=\"+Inf\"} 2");
    buf_free(&b);
    metrics_path_release(m, id);
    metrics_free(m);
}

TEST(series_sorted_by_label)
{
    struct metrics *m = metrics_new(1);
    int b_ = metrics_path_acquire(m, "/b");
    int a = metrics_path_acquire(m, "/a");
    int root = metrics_path_acquire(m, "/");
    struct buf b = { 0 };
    render(m, &b);
    const char *want = "# HELP moonws_connections WebSocket connections open now, by the service "
                       "path they opened on.\n"
                       "# TYPE moonws_connections gauge\n"
                       "moonws_connections{path=\"/\"} 0\n"
                       "moonws_connections{path=\"/a\"} 0\n"
                       "moonws_connections{path=\"/b\"} 0\n";
    CHECK(b.len > strlen(want) && memcmp(b.data, want, strlen(want)) == 0);
    check_exposition(&b);
    buf_free(&b);
    metrics_path_release(m, a);
    metrics_path_release(m, b_);
    metrics_path_release(m, root);
    metrics_free(m);
}

TEST(one_label_one_series_shared_by_holders)
{
    struct metrics *m = metrics_new(2);
    int w1 = metrics_path_acquire(m, "/chat");          /* worker 1's copy of the service */
    int w2 = metrics_path_acquire(m, "/chat");          /* worker 2's */
    CHECK_EQ_INT(w1, w2);
    CHECK(metrics_path_acquire(m, "/other") != w1);
    metrics_path_release(m, w1);
    metrics_path_release(m, w2);
    metrics_free(m);
}

/* Released, a series stays, counts and all, and a service back at its
 * path finds it. */
TEST(released_series_kept_until_its_slot_is_needed)
{
    struct metrics *m = metrics_new(1);
    int id = metrics_path_acquire(m, "/gone");
    struct metrics_path_cells *p = metrics_path_cells(metrics_worker(m, 0), id);
    metrics_conn_opened(p);
    metrics_conn_closed(p);
    metrics_path_release(m, id);
    struct buf b = { 0 };
    render(m, &b);
    char line[256];
    CHECK(find_line(&b, "moonws_connections_opened_total{", line, sizeof line));
    CHECK_STR(line, strlen(line), "moonws_connections_opened_total{path=\"/gone\"} 1");
    CHECK_EQ_INT(metrics_path_acquire(m, "/gone"), id);
    metrics_conn_opened(p);
    render(m, &b);
    CHECK(find_line(&b, "moonws_connections_opened_total{", line, sizeof line));
    CHECK_STR(line, strlen(line), "moonws_connections_opened_total{path=\"/gone\"} 2");
    metrics_path_release(m, id);
    buf_free(&b);
    metrics_free(m);
}

/* The table full: an idle series (no holder, no open connection) gives its
 * slot to a new path and starts again from zero; a series with an open
 * connection is never taken; with none to take, the new path counts under
 * path="(other)". */
TEST(full_table_retires_idle_series_then_overflows)
{
    struct metrics *m = metrics_new(2);
    int ids[METRICS_PATH_SLOTS];
    char name[32];
    for (int i = METRICS_PATH_FIXED; i < METRICS_PATH_SLOTS; i++) {
        snprintf(name, sizeof name, "/p%d", i);
        ids[i] = metrics_path_acquire(m, name);
        CHECK_EQ_INT(ids[i], i);
    }
    /* /p1: released, but a connection on worker 1 is still open */
    struct metrics_path_cells *busy = metrics_path_cells(metrics_worker(m, 1), ids[1]);
    metrics_conn_opened(busy);
    metrics_path_release(m, ids[1]);
    /* /p2: released, its connection closed */
    struct metrics_path_cells *idle = metrics_path_cells(metrics_worker(m, 0), ids[2]);
    metrics_conn_opened(idle);
    metrics_message_in(idle, METRICS_TEXT, 10);
    metrics_conn_closed(idle);
    metrics_path_release(m, ids[2]);

    int fresh = metrics_path_acquire(m, "/fresh");
    CHECK_EQ_INT(fresh, ids[2]);
    CHECK_EQ_INT(atomic_load(&idle->opened), 0);
    CHECK_EQ_INT(atomic_load(&idle->msgs_in[METRICS_TEXT]), 0);
    struct buf b = { 0 };
    render(m, &b);
    char line[256];
    CHECK(!find_line(&b, "moonws_connections{path=\"/p2\"}", line, sizeof line));
    CHECK(find_line(&b, "moonws_connections{path=\"/fresh\"}", line, sizeof line));
    CHECK(find_line(&b, "moonws_connections{path=\"/p1\"}", line, sizeof line));
    CHECK_STR(line, strlen(line), "moonws_connections{path=\"/p1\"} 1");

    /* now nothing is idle: /p1 still has its connection */
    int over = metrics_path_acquire(m, "/one-too-many");
    CHECK_EQ_INT(over, METRICS_PATH_OTHER);
    metrics_conn_opened(metrics_path_cells(metrics_worker(m, 0), over));
    render(m, &b);
    CHECK(find_line(&b, "moonws_connections{path=\"(other)\"}", line, sizeof line));
    CHECK_STR(line, strlen(line), "moonws_connections{path=\"(other)\"} 1");
    check_exposition(&b);
    metrics_path_release(m, over);                      /* a no-op for (other) */

    /* /p1's connection closes: it can go now */
    metrics_conn_closed(busy);
    CHECK_EQ_INT(metrics_path_acquire(m, "/late"), ids[1]);
    buf_free(&b);
    metrics_free(m);
}

TEST(close_codes_counted_by_code_and_class)
{
    struct metrics *m = metrics_new(1);
    int id = metrics_path_acquire(m, "/c");
    struct metrics_path_cells *p = metrics_path_cells(metrics_worker(m, 0), id);
    unsigned codes[] = { 1006, 1000, 1000, 1015, 3000, 3999, 4999, 999, 2000, 5000, 1016 };
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++)
        metrics_close(p, codes[i]);
    struct buf b = { 0 };
    render(m, &b);
    const char *want = "# TYPE moonws_closes_total counter\n"
                       "moonws_closes_total{path=\"/c\",code=\"1000\"} 2\n"
                       "moonws_closes_total{path=\"/c\",code=\"1006\"} 1\n"
                       "moonws_closes_total{path=\"/c\",code=\"1015\"} 1\n"
                       "moonws_closes_total{path=\"/c\",code=\"3xxx\"} 2\n"
                       "moonws_closes_total{path=\"/c\",code=\"4xxx\"} 1\n"
                       "# HELP moonws_handler_duration_seconds";
    b.data[b.len - 1] = '\0';
    if (!CHECK(strstr(b.data, want)))
        NOTE("%s\n", b.data);
    b.data[b.len - 1] = '\n';
    buf_free(&b);
    metrics_path_release(m, id);
    metrics_free(m);
}

TEST(http_statuses_by_route_across_workers)
{
    struct metrics *m = metrics_new(2);
    int r = metrics_route_acquire(m, "POST /chat/broadcast");
    CHECK(r > METRICS_ROUTE_NONE);
    struct metrics_worker *w0 = metrics_worker(m, 0), *w1 = metrics_worker(m, 1);
    metrics_http_request(w0, r, 200);
    metrics_http_request(w1, r, 500);
    metrics_http_request(w1, r, 200);
    metrics_http_request(w0, METRICS_ROUTE_NONE, 404);
    metrics_http_request(w0, METRICS_ROUTE_STATIC, 200);
    /* a ninth distinct status on one worker goes to "other" */
    for (int s = 0; s < LIM_METRICS_STATUSES; s++)
        metrics_http_request(w1, METRICS_ROUTE_OTHER, 300 + s);
    metrics_http_request(w1, METRICS_ROUTE_OTHER, 399);
    metrics_http_request(w1, METRICS_ROUTE_OTHER, 300);
    struct buf b = { 0 };
    render(m, &b);
    const char *want =
        "# HELP moonws_http_requests_total HTTP requests answered, upgrades included, by route "
        "and status.\n"
        "# TYPE moonws_http_requests_total counter\n"
        "moonws_http_requests_total{route=\"(none)\",status=\"404\"} 1\n"
        "moonws_http_requests_total{route=\"(other)\",status=\"300\"} 2\n"
        "moonws_http_requests_total{route=\"(other)\",status=\"301\"} 1\n"
        "moonws_http_requests_total{route=\"(other)\",status=\"302\"} 1\n"
        "moonws_http_requests_total{route=\"(other)\",status=\"303\"} 1\n"
        "moonws_http_requests_total{route=\"(other)\",status=\"304\"} 1\n"
        "moonws_http_requests_total{route=\"(other)\",status=\"305\"} 1\n"
        "moonws_http_requests_total{route=\"(other)\",status=\"306\"} 1\n"
        "moonws_http_requests_total{route=\"(other)\",status=\"307\"} 1\n"
        "moonws_http_requests_total{route=\"(other)\",status=\"other\"} 1\n"
        "moonws_http_requests_total{route=\"(static)\",status=\"200\"} 1\n"
        "moonws_http_requests_total{route=\"POST /chat/broadcast\",status=\"200\"} 2\n"
        "moonws_http_requests_total{route=\"POST /chat/broadcast\",status=\"500\"} 1\n";
    CHECK(b.len > strlen(want) && memcmp(b.data, want, strlen(want)) == 0);
    if (b.len <= strlen(want) || memcmp(b.data, want, strlen(want)) != 0)
        NOTE("%.*s\n", (int)b.len, b.data);
    check_exposition(&b);
    buf_free(&b);
    metrics_route_release(m, r);
    metrics_free(m);
}

/* Routes past the cap count under route="(other)"; a released route gives
 * its slot to the next (no connection holds a route). */
TEST(routes_overflow_and_reuse)
{
    struct metrics *m = metrics_new(1);
    char name[48];
    int first = -1, last = -1;
    for (int i = METRICS_ROUTE_FIXED; i < METRICS_ROUTE_SLOTS; i++) {
        snprintf(name, sizeof name, "GET /r%d", i);
        last = metrics_route_acquire(m, name);
        if (first < 0)
            first = last;
        CHECK_EQ_INT(last, i);
    }
    CHECK_EQ_INT(metrics_route_acquire(m, "GET /over"), METRICS_ROUTE_OTHER);
    metrics_http_request(metrics_worker(m, 0), first, 200);
    metrics_route_release(m, first);
    int again = metrics_route_acquire(m, "GET /new");
    CHECK_EQ_INT(again, first);
    /* its counts started again */
    struct buf b = { 0 };
    render(m, &b);
    char line[128];
    CHECK(!find_line(&b, "moonws_http_requests_total{route=\"GET /new\"", line, sizeof line));
    buf_free(&b);
    metrics_free(m);
}

TEST(sampling_rate_is_one_in_sample)
{
    struct metrics *m = metrics_new(2);
    for (unsigned w = 0; w < 2; w++) {
        struct metrics_worker *mw = metrics_worker(m, w);
        int hits = 0, n = LIM_METRICS_TIMING_SAMPLE * 10000;
        for (int i = 0; i < n; i++)
            hits += metrics_sample(mw);
        /* xorshift32: within 5% of 1 in LIM_METRICS_TIMING_SAMPLE */
        CHECK(hits > 9500 && hits < 10500);
        NOTE("worker %u: %d hits of %d\n", w, hits, n);
    }
    metrics_free(m);
}

TEST(process_figures_from_proc)
{
    struct metrics_process p;
    CHECK(metrics_process_read(&p));
    CHECK(p.open_fds >= 3);             /* at least stdin, stdout, stderr */
    CHECK(p.max_fds > 0);
    CHECK(p.resident_bytes > 0 && p.virtual_bytes >= p.resident_bytes);
    time_t now = time(NULL);
    CHECK(p.start_time > (double)now - 3600 && p.start_time <= (double)now + 1);
    CHECK(p.cpu_seconds >= 0);
    struct metrics *m = metrics_new(1);
    struct buf b = { 0 };
    metrics_render(m, &p, &b);
    char line[128];
    CHECK(find_line(&b, "process_open_fds ", line, sizeof line));
    CHECK(find_line(&b, "process_resident_memory_bytes ", line, sizeof line));
    CHECK(find_line(&b, "process_start_time_seconds ", line, sizeof line));
    CHECK(find_line(&b, "process_cpu_seconds_total ", line, sizeof line));
    CHECK(find_line(&b, "process_max_fds ", line, sizeof line));
    check_exposition(&b);
    buf_free(&b);
    metrics_free(m);
}

/* ---- threads ---- */

#define THREADS 4
#define ROUNDS 200000

struct writer {
    struct metrics *m;
    unsigned index;
    int path, route;
};

static void *write_counts(void *arg)
{
    struct writer *wr = arg;
    struct metrics_worker *mw = metrics_worker(wr->m, wr->index);
    struct metrics_path_cells *p = metrics_path_cells(mw, wr->path);
    for (int i = 0; i < ROUNDS; i++) {
        metrics_conn_opened(p);
        metrics_message_in(p, METRICS_TEXT, 3);
        metrics_message_out(p, METRICS_BINARY, 5);
        metrics_handler_call(p, true, false);
        if (metrics_sample(mw))
            metrics_handler_timed(p, 1);
        metrics_close(p, 1000);
        metrics_conn_closed(p);
        if (i % 16 == 0)
            metrics_http_request(mw, wr->route, 200 + (i / 16) % 3);
        if (i % 1000 == 0)
            metrics_reload(wr->m, METRICS_RELOAD_OK);
    }
    return NULL;
}

struct scraper {
    struct metrics *m;
    _Atomic bool stop;
    long renders;
    bool went_down;                 /* a counter read lower than before */
};

/* Scrapes while the writers count: every value it reads is one the
 * counter had, so opened_total never goes down between scrapes. */
static void *scrape(void *arg)
{
    struct scraper *s = arg;
    struct buf b = { 0 };
    unsigned long long last = 0;
    while (!atomic_load(&s->stop)) {
        b.len = 0;
        metrics_render(s->m, NULL, &b);
        buf_append(&b, "", 1);
        const char *at = strstr(b.data, "moonws_connections_opened_total{path=\"/load\"} ");
        if (at) {
            unsigned long long v = strtoull(at + strlen("moonws_connections_opened_total{path="
                                                        "\"/load\"} "),
                                            NULL, 10);
            s->went_down |= v < last;
            last = v;
        }
        s->renders++;
    }
    buf_free(&b);
    return NULL;
}

TEST(threads_count_exactly_while_scraped)
{
    struct metrics *m = metrics_new(THREADS);
    int path = metrics_path_acquire(m, "/load");
    int route = metrics_route_acquire(m, "GET /load/x");
    struct scraper sc = { .m = m };
    pthread_t st, th[THREADS];
    struct writer wr[THREADS];
    CHECK(pthread_create(&st, NULL, scrape, &sc) == 0);
    for (unsigned i = 0; i < THREADS; i++) {
        wr[i] = (struct writer){ m, i, path, route };
        CHECK(pthread_create(&th[i], NULL, write_counts, &wr[i]) == 0);
    }
    for (unsigned i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    atomic_store(&sc.stop, true);
    pthread_join(st, NULL);
    CHECK(sc.renders > 0);
    CHECK(!sc.went_down);

    struct buf b = { 0 };
    render(m, &b);
    char line[256], want[256];
    long long total = (long long)THREADS * ROUNDS;
#define EXPECT(prefix, value)                                                                  \
    do {                                                                                       \
        snprintf(want, sizeof want, "%s %lld", prefix, (long long)(value));                    \
        if (CHECK(find_line(&b, prefix " ", line, sizeof line)))                               \
            CHECK_STR(line, strlen(line), want);                                               \
    } while (0)
    EXPECT("moonws_connections{path=\"/load\"}", 0);
    EXPECT("moonws_connections_opened_total{path=\"/load\"}", total);
    EXPECT("moonws_handler_calls_total{path=\"/load\"}", total);
    EXPECT("moonws_messages_received_total{path=\"/load\",kind=\"text\"}", total);
    EXPECT("moonws_messages_sent_total{path=\"/load\",kind=\"binary\"}", total);
    EXPECT("moonws_message_bytes_received_total{path=\"/load\",kind=\"text\"}", 3 * total);
    EXPECT("moonws_message_bytes_sent_total{path=\"/load\",kind=\"binary\"}", 5 * total);
    EXPECT("moonws_closes_total{path=\"/load\",code=\"1000\"}", total);
    /* 200000 / 16 = 12500 requests per thread, statuses 200, 201, 202 in turn */
    EXPECT("moonws_http_requests_total{route=\"GET /load/x\",status=\"200\"}", THREADS * 4167);
    EXPECT("moonws_http_requests_total{route=\"GET /load/x\",status=\"201\"}", THREADS * 4167);
    EXPECT("moonws_http_requests_total{route=\"GET /load/x\",status=\"202\"}", THREADS * 4166);
    EXPECT("moonws_reloads_total{result=\"ok\"}", THREADS * (ROUNDS / 1000));
#undef EXPECT
    check_exposition(&b);
    buf_free(&b);
    metrics_route_release(m, route);
    metrics_path_release(m, path);
    metrics_free(m);
}

/* Services mounting and moving on several workers at once, while a scraper
 * reads: acquire and release keep the references right. */
static void *churn(void *arg)
{
    struct writer *wr = arg;
    char name[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(name, sizeof name, "/s%d", i % 40);
        int id = metrics_path_acquire(wr->m, name);
        struct metrics_path_cells *p = metrics_path_cells(metrics_worker(wr->m, wr->index), id);
        metrics_conn_opened(p);
        metrics_conn_closed(p);
        metrics_path_release(wr->m, id);
    }
    return NULL;
}

TEST(acquire_and_release_from_threads)
{
    struct metrics *m = metrics_new(THREADS);
    struct scraper sc = { .m = m };
    pthread_t st, th[THREADS];
    struct writer wr[THREADS];
    CHECK(pthread_create(&st, NULL, scrape, &sc) == 0);
    for (unsigned i = 0; i < THREADS; i++) {
        wr[i] = (struct writer){ m, i, 0, 0 };
        CHECK(pthread_create(&th[i], NULL, churn, &wr[i]) == 0);
    }
    for (unsigned i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    atomic_store(&sc.stop, true);
    pthread_join(st, NULL);
    /* 40 paths, each opened 50 times by each thread: none retired (the
     * table never filled), so each holds every count */
    struct buf b = { 0 };
    render(m, &b);
    char line[128];
    CHECK(find_line(&b, "moonws_connections_opened_total{path=\"/s7\"} ", line, sizeof line));
    CHECK_STR(line, strlen(line), "moonws_connections_opened_total{path=\"/s7\"} 200");
    buf_free(&b);
    metrics_free(m);
}

int main(int argc, char **argv)
{
    return check_main("test_metrics");
}
