/*
 * wsload: moonws's WebSocket load generator — command line, limits, the
 * global deadline, and dispatch to a mode (wsl_echo.c, wsl_open.c,
 * wsl_bcast.c). Single-threaded on libev; meant to run pinned to its own
 * core, against ws:// or wss://127.0.0.1 only.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "wsl.h"

/* Descriptors kept free beside the connections: stdio, the POST socket,
 * libev's own, /proc reads. */
#define FD_SLACK 64

static const char usage[] =
"usage: wsload MODE -p PORT [options]\n"
"\n"
"Load for a WebSocket server on ws://127.0.0.1:PORT (wss:// with --tls).\n"
"Every run stops by itself and prints one line of key=value pairs on\n"
"stdout.\n"
"\n"
"modes:\n"
"  echo       -c N connections each keep -d D messages of -s S bytes in\n"
"             flight (one more is sent per echo); after -w seconds of\n"
"             warm-up, counts echoes for -t seconds.  -> msgs_per_s\n"
"  latency    -c N connections; an open-loop schedule sends -r R messages/s\n"
"             in total, round-robin; each round trip is timed from its slot\n"
"             in the schedule.  -> p50_us p90_us p99_us p999_us max_us\n"
"  handshake  -c C slots each repeat connect, upgrade, close frame, wait for\n"
"             the server's close; counts upgrades for -t seconds after -w.\n"
"             -> handshakes_per_s\n"
"  broadcast  -c N subscribers on PATH (default /chat); once all are open,\n"
"             -k K times POST a body of -s S bytes to --post-path (default\n"
"             PATH/broadcast) and time it until the last subscriber has it.\n"
"             -> last_ms (median of K), deliveries_per_s = N / last_ms\n"
"  idle       -c N idle connections; the server's RSS (--pid, required)\n"
"             before opening and --settle seconds after all are open.\n"
"             -> bytes_per_conn\n"
"\n"
"options:\n"
"  -p, --port PORT          server port on 127.0.0.1 (required)\n"
"  -P, --path PATH          WebSocket path (default /echo; broadcast /chat)\n"
"      --post-path PATH     broadcast: path of the POST\n"
"      --post-port PORT     broadcast: the POST goes to this port (another\n"
"                           server: a second node of a cluster); default -p\n"
"  -c, --conns N            connections (default 100; handshake: 64 slots)\n"
"  -s, --size BYTES         payload / body size (default 32)\n"
"  -d, --depth D            echo: messages in flight per connection (default 1)\n"
"  -r, --rate R             latency: messages per second in total (required)\n"
"  -t, --duration SEC       measured window (default 5)\n"
"  -w, --warmup SEC         load before the window (default 1)\n"
"  -k, --repeat K           broadcast: rounds (default 5)\n"
"      --open-concurrency N handshakes in progress while opening (default 256)\n"
"      --binary             binary frames (default: text frames of ASCII letters)\n"
"      --deflate            offer 'permessage-deflate; client_max_window_bits'\n"
"                           (idle and handshake only; wsload does not inflate)\n"
"      --tls                TLS on every connection (wss://): TLS 1.2 or 1.3,\n"
"                           full handshakes, the server's certificate NOT\n"
"                           verified (made for self-signed bench certificates);\n"
"                           not in broadcast (its POST is plain HTTP)\n"
"      --protocol NAME      offer Sec-WebSocket-Protocol: NAME (the server may\n"
"                           select it or none; anything else fails the upgrade)\n"
"      --settle SEC         idle: wait before reading the RSS (default 1);\n"
"                           broadcast: before the first POST, wait until no\n"
"                           message has arrived for SEC (default 0.5)\n"
"      --pid PID[,PID...]   the server's processes; their descendants are\n"
"                           added. Enables srv_cpu_* (and is needed by idle)\n"
"      --deadline SEC       hard stop for the whole run (default: derived)\n"
"  -h, --help               this text\n"
"\n"
"Every result line has: mode=, the mode's figures, srv_cpu_us_per_<unit>\n"
"(server CPU time, user+system over its threads, in the window, per message,\n"
"handshake, delivery or connection; '-' without --pid), srv_cpu_util and\n"
"gen_cpu_util (server / wsload CPU seconds per wall second: near 1.0 means\n"
"that side is saturated), ok=1|0 and, on failure, error=reason.\n"
"Echoes are verified (length, content, order) and a bad one fails the run.\n"
"\n"
"exit status: 0 ok, 1 the run failed, 2 usage error.\n";

enum {
    OPT_POST_PATH = 256,
    OPT_POST_PORT,
    OPT_OPEN_CONC,
    OPT_BINARY,
    OPT_DEFLATE,
    OPT_TLS,
    OPT_PROTOCOL,
    OPT_SETTLE,
    OPT_PID,
    OPT_DEADLINE,
};

static const struct option long_opts[] = {
    {"port", required_argument, NULL, 'p'},
    {"path", required_argument, NULL, 'P'},
    {"post-path", required_argument, NULL, OPT_POST_PATH},
    {"post-port", required_argument, NULL, OPT_POST_PORT},
    {"conns", required_argument, NULL, 'c'},
    {"size", required_argument, NULL, 's'},
    {"depth", required_argument, NULL, 'd'},
    {"rate", required_argument, NULL, 'r'},
    {"duration", required_argument, NULL, 't'},
    {"warmup", required_argument, NULL, 'w'},
    {"repeat", required_argument, NULL, 'k'},
    {"open-concurrency", required_argument, NULL, OPT_OPEN_CONC},
    {"binary", no_argument, NULL, OPT_BINARY},
    {"deflate", no_argument, NULL, OPT_DEFLATE},
    {"tls", no_argument, NULL, OPT_TLS},
    {"protocol", required_argument, NULL, OPT_PROTOCOL},
    {"settle", required_argument, NULL, OPT_SETTLE},
    {"pid", required_argument, NULL, OPT_PID},
    {"deadline", required_argument, NULL, OPT_DEADLINE},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const struct {
    const char *name;
    int (*run)(struct wsl_ctx *);
} modes[] = {
    {"echo", wsl_mode_echo},
    {"latency", wsl_mode_latency},
    {"handshake", wsl_mode_handshake},
    {"broadcast", wsl_mode_broadcast},
    {"idle", wsl_mode_idle},
};

/* Usage errors exit 2, apart from failed runs (1). */
static int bad_usage(const char *msg, const char *arg)
{
    fprintf(stderr, "wsload: %s%s%s\n(see wsload --help)\n", msg,
            arg ? ": " : "", arg ? arg : "");
    return 2;
}

/* Whole-string numbers only, within [lo, hi]: a typo must not silently
 * become 0. */
static int parse_ull(const char *s, unsigned long long lo,
                     unsigned long long hi, unsigned long long *out)
{
    char *end;

    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* The same for seconds and rates. */
static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;

    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

/* Raises the soft descriptor limit to the hard one (20 000 on the bench
 * machine) and checks n connections fit under it. */
static int reserve_fds(unsigned n)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)n + FD_SLACK > rl.rlim_cur) {
        fprintf(stderr, "wsload: %u connections need %u descriptors, the limit is %llu\n",
                n, n + FD_SLACK, (unsigned long long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

/* A generous bound on how long the mode can legitimately take. */
static double default_deadline(const struct wsl_opts *o)
{
    double t = 60 + o->warmup + o->duration;

    if (strcmp(o->mode, "broadcast") == 0)
        t += o->settle + o->repeat * (WSL_BCAST_ROUND_TIMEOUT + 1);
    else if (strcmp(o->mode, "idle") == 0)
        t += o->settle;
    else if (strcmp(o->mode, "latency") == 0)
        t += WSL_LAT_DRAIN;
    return t;
}

/* The backstop: whatever the server does, the run ends. */
static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct wsl_ctx *x = w->data;

    (void)revents;
    x->deadline_hit = true;
    fprintf(stderr, "wsload: deadline of %.0f s reached, stopping\n", x->o->deadline);
    ev_break(loop, EVBREAK_ALL);
}

/* Cross-option checks that getopt cannot do. Returns NULL or the problem. */
static const char *check_opts(const struct wsl_opts *o, bool have_size)
{
    bool latency = strcmp(o->mode, "latency") == 0;

    if (o->port <= 0)
        return "--port is required";
    if (latency && o->rate <= 0)
        return "latency needs --rate";
    if (o->deflate && strcmp(o->mode, "idle") != 0 &&
        strcmp(o->mode, "handshake") != 0)
        return "--deflate is for idle and handshake only (wsload does not inflate)";
    if (o->tls && strcmp(o->mode, "broadcast") == 0)
        return "--tls is not for broadcast (its POST speaks plain HTTP)";
    if (strcmp(o->mode, "broadcast") == 0 && o->size < 8)
        return "broadcast needs --size of at least 8 (the round marker)";
    if (o->repeat == 0)
        return "--repeat must be at least 1";
    if (have_size && (strcmp(o->mode, "idle") == 0 ||
                      strcmp(o->mode, "handshake") == 0))
        return "--size means nothing in this mode";
    return NULL;
}

/* Mode first, then options, the checks, descriptors, the server's
 * processes, and the deadline; the mode does the rest. */
int main(int argc, char **argv)
{
    struct wsl_opts o = {
        .size = WSL_DEF_SIZE,
        .depth = WSL_DEF_DEPTH,
        .duration = WSL_DEF_DURATION,
        .warmup = WSL_DEF_WARMUP,
        .repeat = WSL_DEF_REPEAT,
        .open_concurrency = WSL_DEF_OPEN_CONCURRENCY,
        .settle = -1,
    };
    struct wsl_ctx x = {.o = &o};
    unsigned long long u;
    bool have_size = false;
    int ch;

    if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        fputs(usage, stdout);
        return 0;
    }
    if (argc < 2 || argv[1][0] == '-')
        return bad_usage("the first argument is the mode", NULL);
    o.mode = argv[1];
    int (*run)(struct wsl_ctx *) = NULL;
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        if (strcmp(modes[i].name, o.mode) == 0)
            run = modes[i].run;
    if (!run)
        return bad_usage("unknown mode", o.mode);

    optind = 2;
    while ((ch = getopt_long(argc, argv, "p:P:c:s:d:r:t:w:k:h", long_opts, NULL)) != -1) {
        switch (ch) {
        case 'p':
            if (parse_ull(optarg, 1, 65535, &u) < 0)
                return bad_usage("bad --port", optarg);
            o.port = (int)u;
            break;
        case 'P':
            if (optarg[0] != '/' || strlen(optarg) > 400)
                return bad_usage("--path must start with / (and be short)", optarg);
            o.path = optarg;
            break;
        case OPT_POST_PATH:
            if (optarg[0] != '/' || strlen(optarg) > 400)
                return bad_usage("--post-path must start with / (and be short)", optarg);
            o.post_path = optarg;
            break;
        case OPT_POST_PORT:
            if (parse_ull(optarg, 1, 65535, &u) < 0)
                return bad_usage("bad --post-port", optarg);
            o.post_port = (int)u;
            break;
        case 'c':
            if (parse_ull(optarg, 1, WSL_CONNS_MAX, &u) < 0)
                return bad_usage("bad --conns (1..19000)", optarg);
            o.conns = (unsigned)u;
            break;
        case 's':
            if (parse_ull(optarg, 0, WSL_SIZE_MAX, &u) < 0)
                return bad_usage("bad --size (0..16 MiB)", optarg);
            o.size = (size_t)u;
            have_size = true;
            break;
        case 'd':
            if (parse_ull(optarg, 1, 100000, &u) < 0)
                return bad_usage("bad --depth", optarg);
            o.depth = (unsigned)u;
            break;
        case 'r':
            if (parse_double(optarg, 1, 1e8, &o.rate) < 0)
                return bad_usage("bad --rate", optarg);
            break;
        case 't':
            if (parse_double(optarg, 0.1, 3600, &o.duration) < 0)
                return bad_usage("bad --duration", optarg);
            break;
        case 'w':
            if (parse_double(optarg, 0, 3600, &o.warmup) < 0)
                return bad_usage("bad --warmup", optarg);
            break;
        case 'k':
            if (parse_ull(optarg, 1, 1000, &u) < 0)
                return bad_usage("bad --repeat (1..1000)", optarg);
            o.repeat = (unsigned)u;
            break;
        case OPT_OPEN_CONC:
            if (parse_ull(optarg, 1, WSL_CONNS_MAX, &u) < 0)
                return bad_usage("bad --open-concurrency", optarg);
            o.open_concurrency = (unsigned)u;
            break;
        case OPT_BINARY:
            o.binary = true;
            break;
        case OPT_DEFLATE:
            o.deflate = true;
            break;
        case OPT_TLS:
            o.tls = true;
            break;
        case OPT_PROTOCOL:
            if (!optarg[0] || strlen(optarg) > 256 || strpbrk(optarg, " \t\r\n,"))
                return bad_usage("bad --protocol (one token)", optarg);
            o.protocol = optarg;
            break;
        case OPT_SETTLE:
            if (parse_double(optarg, 0, 3600, &o.settle) < 0)
                return bad_usage("bad --settle", optarg);
            break;
        case OPT_PID:
            o.pids = optarg;
            break;
        case OPT_DEADLINE:
            if (parse_double(optarg, 1, 86400, &o.deadline) < 0)
                return bad_usage("bad --deadline", optarg);
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            return bad_usage("bad option", NULL);
        }
    }
    if (optind < argc)
        return bad_usage("unexpected argument", argv[optind]);
    if (o.settle < 0)
        o.settle = strcmp(o.mode, "broadcast") == 0 ? WSL_DEF_BCAST_SETTLE
                                                    : WSL_DEF_IDLE_SETTLE;
    const char *bad = check_opts(&o, have_size);
    if (bad)
        return bad_usage(bad, NULL);
    if (o.deadline == 0)
        o.deadline = default_deadline(&o);

    unsigned conns = o.conns ? o.conns
                   : strcmp(o.mode, "handshake") == 0 ? WSL_DEF_HS_CONCURRENCY
                                                      : WSL_DEF_CONNS;
    if (reserve_fds(conns) < 0)
        return 1;
    if (o.pids) {
        if (procset_init(&x.ps, o.pids) < 0)
            return 2;
        x.have_ps = true;
    }
    signal(SIGPIPE, SIG_IGN);
    x.loop = ev_default_loop(EVFLAG_AUTO);
    if (!x.loop) {
        fprintf(stderr, "wsload: libev has no usable backend\n");
        return 1;
    }
    ev_timer_init(&x.deadline_w, deadline_cb, o.deadline, 0);
    x.deadline_w.data = &x;
    ev_timer_start(x.loop, &x.deadline_w);
    int rc = run(&x);
    ev_timer_stop(x.loop, &x.deadline_w);
    ev_loop_destroy(x.loop);
    return rc;
}
