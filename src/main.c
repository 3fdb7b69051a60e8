/*
 * moonws: the master — the command line, the TLS context, the listening
 * sockets, the worker table, signals, the folder watcher, and the graceful
 * stop. It runs no connection and no service handler: each worker thread
 * (server/wthread.c) does, with its own loop and Lua state.
 */
#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/cluster_link.h"
#include "lua/runtime.h"
#include "proto/metrics_http.h"
#include "server/reload.h"
#include "server/wthread.h"
#include "transport/admission.h"
#include "transport/dirwatch.h"
#include "transport/inbox.h"
#include "transport/listener.h"
#include "transport/tls.h"
#include "transport/worker.h"
#include "util/buf.h"
#include "util/connid.h"
#include "util/crypto.h"
#include "util/limits.h"
#include "util/log.h"
#include "util/membudget.h"
#include "util/metrics.h"
#include "util/pathcount.h"
#include "util/shdict.h"
#include "util/traffic_log.h"

#define MOONWS_VERSION "0.1.0"
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

static const char usage_text[] =
    "usage: moonws [options] [DIR]\n"
    "Serve every *.lua service under DIR (default ./services).\n"
    "\n"
    "  -l, --listen [HOST:]PORT   plain listener, repeatable (default 0.0.0.0:8080\n"
    "                             unless there are TLS listeners); PORT 0 picks a free port\n"
    "      --tls-listen [HOST:]PORT  TLS listener (wss://, https://), repeatable;\n"
    "                             needs --cert (and --key for PEM)\n"
    "      --cert FILE            PEM certificate chain, or a PKCS#12 store (.p12)\n"
    "      --key FILE             PEM private key\n"
    "      --key-password PASS    password of an encrypted key or of the .p12 store\n"
    "      --key-password-file F  the same, read from the first line of F\n"
    "      --client-ca FILE       require client certificates signed by these CAs\n"
    "  -w, --workers N            worker threads, each with its own loop and Lua state\n"
    "                             (default: the number of CPUs; 1 to 64)\n"
    "      --static DIR           serve files under DIR for plain GET requests\n"
    "      --max-connections N    connections open at once (default: the open-file limit\n"
    "                             less a reserve); at it, accepting pauses until one\n"
    "                             closes; 0 = no limit\n"
    "      --max-connections-per-ip N  connections open at once from one client address\n"
    "                             (default 256); more are reset at once; 0 = no limit\n"
    "      --max-buffered SIZE    memory for unfinished messages and request bodies, in\n"
    "                             bytes or with K, M or G (default 256M); past it the\n"
    "                             connection that would grow is closed (WebSocket 1008,\n"
    "                             HTTP 503); 0 = no limit\n"
    "      --keepalive-timeout S  seconds an idle keep-alive connection, or an answer\n"
    "                             the client does not read on, is kept (default 30)\n"
    "      --redis URL            join a cluster through Redis pub/sub:\n"
    "                             redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] (docs/cluster.md)\n"
    "      --redis-prefix P       the prefix of its channels and keys (default moonws:)\n"
    "      --dict NAME=SIZE       the shared dictionary NAME (moonws.dict) holds SIZE\n"
    "                             bytes (K, M, G suffixes), repeatable\n"
    "      --no-reload            do not watch DIR (SIGHUP still reloads)\n"
    "      --check                load and validate every service, report, exit 0/1\n"
    "      --lua-memory SIZE      memory each worker's Lua state may hold (default 512M;\n"
    "                             K, M, G suffixes, at least 1M); past it a handler fails\n"
    "                             with \"not enough memory\" and its connection closes 1011\n"
    "      --unsafe-lua           give every service io, os.execute/remove/rename/tmpname,\n"
    "                             loadfile, dofile and C modules (a service alone: its\n"
    "                             field sandbox = false)\n"
    "      --log-level LEVEL      error|warn|info|debug (default info)\n"
    "      --log-format FORMAT    text|json (default text)\n"
    "      --idle-timeout S       idle_timeout of services that set none (default 120;\n"
    "                             0 = never)\n"
    "      --handshake-timeout S  seconds for a request to arrive whole (default 10)\n"
    "      --close-timeout S      close_timeout of services that set none: seconds to wait\n"
    "                             for the client's close frame (default 5)\n"
    "      --max-header-size SIZE request line and headers (default 8K; 1K to 64K); past\n"
    "                             it 431\n"
    "      --max-body-size SIZE   request body (default 1M, at most 1G); past it 413\n"
    "      --max-backpressure SIZE  max_backpressure of services that set none (default 1M)\n"
    "      --tls-min-version V    1.2 or 1.3 (default 1.2)\n"
    "      --metrics [HOST:]PORT  Prometheus metrics at /metrics and a health check at\n"
    "                             /healthz on a plain HTTP listener of their own\n"
    "      --access-log FILE      one line per HTTP request and WebSocket connection\n"
    "                             opened and closed, appended to FILE (SIGUSR1 reopens it)\n"
    "  -h, --help                 this text\n"
    "  -v, --version              the version\n"
    "\n"
    "For each listener one line \"moonws: listening on ws://HOST:PORT\" goes to stdout\n"
    "before connections are accepted. SIGTERM/SIGINT: stop accepting, close every\n"
    "WebSocket with 1001, wait up to 5 s, exit 0.\n";

struct options {
    const char *listen[LIM_LISTENERS];
    bool listen_tls[LIM_LISTENERS];
    int nlisten, ntls;
    struct tls_options tls;
    char password[1024];
    const char *dir;
    const char *static_dir;
    bool check;
    bool no_reload;
    long long max_connections;          /* -1: from the open-file limit */
    unsigned max_per_ip;
    size_t max_buffered;
    double keepalive;
    unsigned workers;
    struct runtime_options runtime;
    bool redis;                         /* --redis given */
    struct redis_url redis_url;
    const char *redis_prefix;
    const char *metrics;                /* --metrics [HOST:]PORT, or NULL */
    double handshake_timeout;
    size_t max_head, max_body;
    const char *access_log;
    bool json;                          /* --log-format json */
};

static void usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "moonws: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n\n%s", usage_text);
    exit(2);
}

/* A count: digits only, at most max. */
static bool parse_count(const char *arg, unsigned long long max, unsigned long long *out)
{
    if (!*arg || strspn(arg, "0123456789") != strlen(arg))
        return false;
    errno = 0;
    unsigned long long v = strtoull(arg, NULL, 10);
    if (errno || v > max)
        return false;
    *out = v;
    return true;
}

/* A size in bytes: digits, then K, M or G (powers of 1024) or nothing. */
static bool parse_size(const char *arg, size_t *out)
{
    size_t digits = strspn(arg, "0123456789");
    if (!digits || digits > 15)
        return false;
    unsigned long long v = strtoull(arg, NULL, 10);
    const char *unit = arg + digits;
    int shift = 0;
    if (*unit) {
        static const char units[] = "KMGkmg";
        const char *p = strchr(units, unit[0]);
        if (!p || !*p || unit[1])
            return false;
        shift = 10 * (int)((p - units) % 3 + 1);
    }
    if (v > (SIZE_MAX >> shift))
        return false;
    *out = (size_t)v << shift;
    return true;
}

/* Seconds: a positive number, at most a day. */
static bool parse_seconds(const char *arg, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (end == arg || *end || errno || !(v > 0) || v > 86400)
        return false;
    *out = v;
    return true;
}

/* --dict NAME=SIZE: the dictionary is made now, with its capacity fixed
 * before any service asks for one. */
static void declare_dict(const char *arg)
{
    const char *eq = strchr(arg, '=');
    size_t size;
    if (!eq || !shdict_parse_size(eq + 1, &size))
        usage_error("bad --dict '%s' (NAME=SIZE, SIZE in bytes or with K, M, G: sessions=10M)", arg);
    char name[LIM_DICT_NAME_MAX + 2];
    snprintf(name, sizeof name, "%.*s", (int)(eq - arg), arg);
    struct shdict *d;
    switch (shdict_open(name, size, &d)) {
    case SHDICT_BAD_NAME:
        usage_error("bad --dict '%s': a name is 1 to 64 letters, digits or _ . : -", arg);
        break;
    case SHDICT_TOO_MANY:
        usage_error("--dict %s: too many dictionaries", arg);
        break;
    case SHDICT_CONFLICT:
        usage_error("--dict %s: that dictionary was given another size before", arg);
        break;
    default:
        break;
    }
}

/* -w's default: a worker per online CPU (at most LIM_WORKERS_MAX). */
static unsigned default_workers(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > LIM_WORKERS_MAX ? LIM_WORKERS_MAX : (unsigned)n;
}

static void parse_args(int argc, char **argv, struct options *o)
{
    enum { OPT_STATIC = 256, OPT_NO_RELOAD, OPT_CHECK, OPT_LOG_LEVEL, OPT_LOG_FORMAT,
           OPT_TLS_LISTEN, OPT_CERT, OPT_KEY, OPT_KEY_PASSWORD, OPT_KEY_PASSWORD_FILE,
           OPT_CLIENT_CA, OPT_REDIS, OPT_MAX_CONN, OPT_MAX_PER_IP, OPT_MAX_BUFFERED,
           OPT_KEEPALIVE, OPT_LUA_MEMORY, OPT_UNSAFE_LUA, OPT_DICT, OPT_REDIS_PREFIX,
           OPT_METRICS, OPT_ACCESS_LOG, OPT_IDLE_TIMEOUT, OPT_HANDSHAKE_TIMEOUT,
           OPT_CLOSE_TIMEOUT, OPT_MAX_HEADER, OPT_MAX_BODY, OPT_MAX_BACKPRESSURE, OPT_TLS_MIN };
    static const struct option longopts[] = {
        { "listen", required_argument, NULL, 'l' },
        { "workers", required_argument, NULL, 'w' },
        { "static", required_argument, NULL, OPT_STATIC },
        { "no-reload", no_argument, NULL, OPT_NO_RELOAD },
        { "check", no_argument, NULL, OPT_CHECK },
        { "log-level", required_argument, NULL, OPT_LOG_LEVEL },
        { "log-format", required_argument, NULL, OPT_LOG_FORMAT },
        { "tls-listen", required_argument, NULL, OPT_TLS_LISTEN },
        { "cert", required_argument, NULL, OPT_CERT },
        { "key", required_argument, NULL, OPT_KEY },
        { "key-password", required_argument, NULL, OPT_KEY_PASSWORD },
        { "key-password-file", required_argument, NULL, OPT_KEY_PASSWORD_FILE },
        { "client-ca", required_argument, NULL, OPT_CLIENT_CA },
        { "redis", required_argument, NULL, OPT_REDIS },
        { "redis-prefix", required_argument, NULL, OPT_REDIS_PREFIX },
        { "max-connections", required_argument, NULL, OPT_MAX_CONN },
        { "max-connections-per-ip", required_argument, NULL, OPT_MAX_PER_IP },
        { "max-buffered", required_argument, NULL, OPT_MAX_BUFFERED },
        { "keepalive-timeout", required_argument, NULL, OPT_KEEPALIVE },
        { "lua-memory", required_argument, NULL, OPT_LUA_MEMORY },
        { "unsafe-lua", no_argument, NULL, OPT_UNSAFE_LUA },
        { "dict", required_argument, NULL, OPT_DICT },
        { "metrics", required_argument, NULL, OPT_METRICS },
        { "access-log", required_argument, NULL, OPT_ACCESS_LOG },
        { "idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT },
        { "handshake-timeout", required_argument, NULL, OPT_HANDSHAKE_TIMEOUT },
        { "close-timeout", required_argument, NULL, OPT_CLOSE_TIMEOUT },
        { "max-header-size", required_argument, NULL, OPT_MAX_HEADER },
        { "max-body-size", required_argument, NULL, OPT_MAX_BODY },
        { "max-backpressure", required_argument, NULL, OPT_MAX_BACKPRESSURE },
        { "tls-min-version", required_argument, NULL, OPT_TLS_MIN },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'v' },
        { NULL, 0, NULL, 0 },
    };
    *o = (struct options){ .dir = "services", .max_connections = -1, .workers = default_workers(),
                           .max_per_ip = LIM_CONNECTIONS_PER_IP,
                           .max_buffered = LIM_BUFFERED_DEFAULT, .keepalive = LIM_HTTP_KEEPALIVE,
                           .runtime.lua_memory = LIM_LUA_MEMORY_DEFAULT,
                           .runtime.idle_timeout = LIM_WS_IDLE_DEFAULT,
                           .runtime.close_timeout = LIM_WS_CLOSE_TIMEOUT,
                           .runtime.max_backpressure = LIM_WS_BACKPRESSURE,
                           .handshake_timeout = LIM_HANDSHAKE_TIMEOUT,
                           .max_head = LIM_HTTP_HEAD_MAX, .max_body = LIM_HTTP_BODY_MAX };
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":l:w:hv", longopts, NULL)) != -1) {
        switch (c) {
        case 'l':
            if (o->nlisten == LIM_LISTENERS)
                usage_error("at most %s listeners", STRINGIFY(LIM_LISTENERS));
            o->listen[o->nlisten++] = optarg;
            break;
        case 'w': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end || n < 1 || n > LIM_WORKERS_MAX)
                usage_error("bad worker count '%s' (1 to " STRINGIFY(LIM_WORKERS_MAX) ")", optarg);
            o->workers = (unsigned)n;
            break;
        }
        case OPT_STATIC:
            o->static_dir = optarg;
            break;
        case OPT_NO_RELOAD:
            o->no_reload = true;
            break;
        case OPT_CHECK:
            o->check = true;
            break;
        case OPT_LOG_LEVEL: {
            enum log_level lvl;
            if (!log_parse_level(optarg, &lvl))
                usage_error("bad log level '%s' (error|warn|info|debug)", optarg);
            log_set_level(lvl);
            break;
        }
        case OPT_LOG_FORMAT:
            if (!log_set_format(optarg))
                usage_error("bad log format '%s' (text|json)", optarg);
            o->json = strcmp(optarg, "json") == 0;
            break;
        case OPT_METRICS: {
            char host[64], err[256];
            unsigned port;
            if (!listener_parse(optarg, host, sizeof host, &port, err, sizeof err))
                usage_error("--metrics: %s", err);
            o->metrics = optarg;
            break;
        }
        case OPT_ACCESS_LOG:
            o->access_log = optarg;
            break;
        case OPT_IDLE_TIMEOUT:
            if (strcmp(optarg, "0") != 0 && !parse_seconds(optarg, &o->runtime.idle_timeout))
                usage_error("bad --idle-timeout '%s' (seconds, at most 86400; 0 = never)", optarg);
            if (strcmp(optarg, "0") == 0)
                o->runtime.idle_timeout = 0;
            break;
        case OPT_HANDSHAKE_TIMEOUT:
            if (!parse_seconds(optarg, &o->handshake_timeout))
                usage_error("bad --handshake-timeout '%s' (seconds, more than 0, at most 86400)",
                            optarg);
            break;
        case OPT_CLOSE_TIMEOUT:
            if (!parse_seconds(optarg, &o->runtime.close_timeout) ||
                o->runtime.close_timeout < LIM_WS_CLOSE_TIMEOUT_MIN ||
                o->runtime.close_timeout > LIM_WS_CLOSE_TIMEOUT_MAX)
                usage_error("bad --close-timeout '%s' (seconds, 0.1 to 3600)", optarg);
            break;
        case OPT_MAX_HEADER:
            if (!parse_size(optarg, &o->max_head) || o->max_head < LIM_HTTP_HEAD_MIN ||
                o->max_head > LIM_HTTP_HEAD_CEILING)
                usage_error("bad --max-header-size '%s' (1K to 64K)", optarg);
            break;
        case OPT_MAX_BODY:
            if (!parse_size(optarg, &o->max_body) || o->max_body > LIM_HTTP_BODY_CEILING)
                usage_error("bad --max-body-size '%s' (bytes, or with K, M or G; at most 1G)",
                            optarg);
            break;
        case OPT_MAX_BACKPRESSURE:
            if (!parse_size(optarg, &o->runtime.max_backpressure) || !o->runtime.max_backpressure ||
                o->runtime.max_backpressure > (1ull << 40))
                usage_error("bad --max-backpressure '%s' (bytes, or with K, M or G; 1 to 1T)",
                            optarg);
            break;
        case OPT_TLS_MIN:
            if (strcmp(optarg, "1.2") != 0 && strcmp(optarg, "1.3") != 0)
                usage_error("bad --tls-min-version '%s' (1.2 or 1.3)", optarg);
            o->tls.min_version = strcmp(optarg, "1.3") == 0 ? 13 : 12;
            break;
        case OPT_TLS_LISTEN:
            if (o->nlisten == LIM_LISTENERS)
                usage_error("at most %s listeners", STRINGIFY(LIM_LISTENERS));
            o->listen_tls[o->nlisten] = true;
            o->listen[o->nlisten++] = optarg;
            o->ntls++;
            break;
        case OPT_CERT:
            o->tls.cert = optarg;
            break;
        case OPT_KEY:
            o->tls.key = optarg;
            break;
        case OPT_KEY_PASSWORD:
            snprintf(o->password, sizeof o->password, "%s", optarg);
            o->tls.password = o->password;
            break;
        case OPT_KEY_PASSWORD_FILE: {
            FILE *f = fopen(optarg, "r");
            if (!f || !fgets(o->password, sizeof o->password, f))
                usage_error("cannot read the password file '%s'", optarg);
            fclose(f);
            o->password[strcspn(o->password, "\r\n")] = '\0';
            o->tls.password = o->password;
            break;
        }
        case OPT_CLIENT_CA:
            o->tls.client_ca = optarg;
            break;
        case OPT_MAX_CONN: {
            unsigned long long n;
            if (!parse_count(optarg, 1ull << 30, &n))
                usage_error("bad --max-connections '%s' (a count, 0 = no limit)", optarg);
            o->max_connections = (long long)n;
            break;
        }
        case OPT_MAX_PER_IP: {
            unsigned long long n;
            if (!parse_count(optarg, 1ull << 30, &n))
                usage_error("bad --max-connections-per-ip '%s' (a count, 0 = no limit)", optarg);
            o->max_per_ip = (unsigned)n;
            break;
        }
        case OPT_MAX_BUFFERED:
            if (!parse_size(optarg, &o->max_buffered))
                usage_error("bad --max-buffered '%s' (bytes, or a number with K, M or G; "
                            "0 = no limit)", optarg);
            break;
        case OPT_KEEPALIVE:
            if (!parse_seconds(optarg, &o->keepalive))
                usage_error("bad --keepalive-timeout '%s' (seconds, more than 0, at most 86400)",
                            optarg);
            break;
        case OPT_LUA_MEMORY:
            if (!parse_size(optarg, &o->runtime.lua_memory) ||
                o->runtime.lua_memory < LIM_LUA_MEMORY_MIN)
                usage_error("bad --lua-memory '%s' (a size of at least 1M, like 64M or 2G)",
                            optarg);
            break;
        case OPT_UNSAFE_LUA:
            o->runtime.unsafe_lua = true;
            break;
        case OPT_DICT:
            declare_dict(optarg);
            break;
        case OPT_REDIS: {
            const char *err = redis_url_parse(optarg, &o->redis_url);
            if (err)
                usage_error("--redis: %s", err);
            o->redis = true;
            break;
        }
        case OPT_REDIS_PREFIX: {
            const char *err = cluster_wire_prefix_check(optarg);
            if (err)
                usage_error("--redis-prefix: %s", err);
            o->redis_prefix = optarg;
            break;
        }
        case 'h':
            fputs(usage_text, stdout);
            exit(0);
        case 'v':
            printf("moonws %s\n", MOONWS_VERSION);
            exit(0);
        case ':':
            usage_error("option '%s' needs a value", argv[optind - 1]);
            break;
        default:
            usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        o->dir = argv[optind++];
    if (optind < argc)
        usage_error("unexpected argument '%s' (one services folder only)", argv[optind]);
    if (o->ntls && !o->tls.cert)
        usage_error("%s needs --cert (and --key, or a .p12 store)", "--tls-listen");
    if (!o->ntls && (o->tls.cert || o->tls.key || o->tls.client_ca || o->tls.password ||
                     o->tls.min_version))
        usage_error("%s: TLS options need a --tls-listen listener", "--cert/--key");
    if (o->redis_prefix && !o->redis)
        usage_error("%s needs --redis", "--redis-prefix");
    if (!o->redis_prefix)
        o->redis_prefix = "moonws:";
    if (o->nlisten == 0)
        o->listen[o->nlisten++] = "0.0.0.0:8080";
    /* Every address is checked now, before anything loads. */
    for (int i = 0; i < o->nlisten; i++) {
        char host[64], err[256];
        unsigned port;
        if (!listener_parse(o->listen[i], host, sizeof host, &port, err, sizeof err))
            usage_error("%s", err);
    }
}

/* A folder named on the command line must be there at start: a services
 * folder that does not exist would make a server that answers 404 to
 * everything, which looks like a working server to whoever started it.
 * Says which folder and why on stderr. real (PATH_MAX bytes) receives the
 * resolved path. */
static bool folder_ok(const char *what, const char *dir, char *real)
{
    struct stat st;
    if (!realpath(dir, real) || stat(real, &st) != 0) {
        fprintf(stderr, "moonws: %s %s: %s\n", what, dir, strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "moonws: %s %s: not a folder\n", what, dir);
        return false;
    }
    return true;
}

/* The services folder and --static DIR; static_real receives the static
 * folder's real path, against which every request is checked. */
static bool check_folders(const struct options *o, char *static_real)
{
    char services_real[PATH_MAX];
    return folder_ok("services folder", o->dir, services_real) &&
           (!o->static_dir || folder_ok("--static", o->static_dir, static_real));
}

/* ---- the running server: the master ---- */

static struct {
    struct ev_loop *loop;
    struct tls_server *tls;
    struct admission *adm;
    struct membudget mem;
    struct wthread_addr addrs[LIM_LISTENERS];
    size_t naddrs;
    struct wthread_shared sh;
    struct wthread *workers;
    struct inbox *inboxes[LIM_WORKERS_MAX];
    unsigned nworkers, started, ready;
    struct reload *reload;
    struct metrics *metrics;
    struct metrics_http *mh;    /* --metrics, or NULL */
    struct traffic_log *traffic;
    unsigned ended;             /* worker threads that have ended */
    struct inbox inbox;         /* the workers' answers */
    struct runtime_cluster cluster;     /* --redis: cluster.link is set */
    bool serving, stopping;
    ev_signal sigterm_w, sigint_w, sighup_w, sigusr1_w;
    struct dirwatch *watch;
    const char *dir;
    bool no_reload;
    ev_timer report_w;          /* the tail of rate-limited log lines */
} srv;

static void report_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
    admission_report(srv.adm);
    membudget_report(&srv.mem);
    traffic_log_report(srv.traffic);
}

/* Raises the soft limit of open files to the hard one, and returns it. */
static size_t raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max == RLIM_INFINITY ? (rlim_t)1 << 20 : rl.rlim_max;
        struct rlimit up = { want, rl.rlim_max };
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl.rlim_cur = want;
    }
    return rl.rlim_cur == RLIM_INFINITY ? (size_t)1 << 20 : (size_t)rl.rlim_cur;
}

/* max_connections: as asked, or what the open-file limit leaves after a
 * reserve for listeners, logs, inotify and static files being sent. */
static size_t connection_limit(const struct options *o)
{
    size_t nofile = raise_nofile();
    size_t reserve = nofile / 8 > LIM_FD_RESERVE_MIN ? nofile / 8 : LIM_FD_RESERVE_MIN;
    size_t fit = nofile > reserve ? nofile - reserve : 1;
    if (o->max_connections < 0) {
        log_info("max_connections %zu (the open-file limit %zu less %zu for other files)", fit,
                 nofile, reserve);
        return fit;
    }
    if (o->max_connections == 0)
        log_warn("--max-connections 0: no limit; past the %zu the open-file limit %zu leaves, "
                 "accepting pauses whenever descriptors run out", fit, nofile);
    else if ((size_t)o->max_connections > fit)
        log_warn("--max-connections %lld: the open-file limit %zu leaves %zu for connections; "
                 "past it accepting pauses whenever descriptors run out", o->max_connections,
                 nofile, fit);
    return (size_t)o->max_connections;
}

static void begin_shutdown(const char *why)
{
    if (srv.stopping)
        return;
    srv.stopping = true;
    log_info("%s: closing %zu connections", why, admission_count(srv.adm));
    if (srv.reload)
        reload_stop(srv.reload);
    /* /healthz says so while the workers drain; the loop ends when the
     * last of them has (worker_ended). */
    if (srv.mh)
        metrics_http_drain(srv.mh);
    for (unsigned i = 0; i < srv.started; i++)
        wthread_post_shutdown(&srv.workers[i]);
    if (srv.ended == srv.started)
        ev_break(srv.loop, EVBREAK_ALL);
}

static void worker_ended(struct wthread *t)
{
    (void)t;
    if (++srv.ended == srv.started && srv.stopping)
        ev_break(srv.loop, EVBREAK_ALL);
}

static void reopen_access_log(void)
{
    char err[512];
    if (!traffic_log_reopen(srv.traffic, err, sizeof err))
        log_error("%s", err);
}

static void signal_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)loop;
    (void)revents;
    if (s->signum == SIGUSR1) {
        reopen_access_log();
        return;
    }
    if (s->signum == SIGHUP) {
        reopen_access_log();
        if (srv.serving && !srv.stopping) {
            log_info("SIGHUP: reloading every service");
            reload_all(srv.reload);
        }
        return;
    }
    begin_shutdown(s->signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void files_changed(void *ud, const char *const *paths, size_t n)
{
    (void)ud;
    if (!srv.serving || srv.stopping)
        return;
    reload_files(srv.reload, paths, n);
}

/* The services are loaded on every worker: the listening lines go out,
 * then they accept. */
static void all_loaded(void *ud)
{
    (void)ud;
    /* Watched before the lines go out: whoever reads them may change a
     * file at once. */
    if (!srv.no_reload) {
        char err[256];
        srv.watch = dirwatch_new(srv.loop, srv.dir, ".lua", LIM_RELOAD_QUIET, files_changed, NULL,
                                 err, sizeof err);
        if (!srv.watch)
            log_warn("not watching %s for changes: %s (SIGHUP reloads)", srv.dir, err);
    }
    for (size_t i = 0; i < srv.naddrs; i++) {
        const struct wthread_addr *a = &srv.addrs[i];
        bool v6 = strchr(a->host, ':') != NULL;
        printf("moonws: listening on %s://%s%s%s:%u\n", a->tls ? "wss" : "ws", v6 ? "[" : "",
               a->host, v6 ? "]" : "", a->port);
    }
    if (srv.mh) {
        char url[128];
        metrics_http_url(srv.mh, url, sizeof url);
        printf("moonws: metrics on %s\n", url);
        metrics_http_start(srv.mh);
    }
    fflush(stdout);
    srv.serving = true;
    for (unsigned i = 0; i < srv.nworkers; i++)
        wthread_post_start(&srv.workers[i]);
}

/* Every worker is ready: they load the services, together. */
static void worker_ready(struct wthread *t)
{
    (void)t;
    if (++srv.ready == srv.nworkers && srv.cluster.link)
        runtime_cluster_ready(&srv.cluster);
    if (srv.ready == srv.nworkers && !srv.stopping)
        reload_startup(srv.reload);
}

static void worker_prepared(struct wthread *t, struct runtime_verdict *v)
{
    reload_prepared(srv.reload, t->number, v);
}

static void worker_committed(struct wthread *t, struct runtime_events *e)
{
    reload_committed(srv.reload, t->number, e);
}

/* Every address gets one socket per worker. */
static int bind_listeners(const struct options *o)
{
    for (int i = 0; i < o->nlisten; i++) {
        struct wthread_addr *a = &srv.addrs[srv.naddrs];
        char err[256];
        unsigned port;
        listener_parse(o->listen[i], a->host, sizeof a->host, &port, err, sizeof err);
        if (!listener_bind_group(a->host, port, a->fds, srv.nworkers, &a->port, err, sizeof err)) {
            fprintf(stderr, "moonws: %s\n", err);
            return -1;
        }
        a->tls = o->listen_tls[i];
        srv.naddrs++;
    }
    if (o->metrics) {
        char host[64], err[256];
        unsigned port;
        listener_parse(o->metrics, host, sizeof host, &port, err, sizeof err);
        srv.mh = metrics_http_open(srv.loop, host, port, srv.metrics, NULL, err, sizeof err);
        if (!srv.mh) {
            fprintf(stderr, "moonws: --metrics: %s\n", err);
            return -1;
        }
    }
    return 0;
}

static void close_unused_listeners(void)
{
    for (size_t i = 0; i < srv.naddrs; i++) {
        for (unsigned k = srv.started; k < srv.nworkers; k++)
            close(srv.addrs[i].fds[k]);
    }
}

/* --check: every service is loaded once, on this thread, and reported. */
static int check_services(const struct options *o, const char *static_root)
{
    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    struct worker w;
    worker_init(&w, loop, 0);
    struct lx_rt *rt = runtime_new(&w, o->dir, static_root, &o->runtime, NULL);
    /* The budget holds for a file's top level too. */
    runtime_start_watchdog(rt);
    int failed = reload_check(rt, o->dir);
    worker_free(&w);
    runtime_free(rt);
    runtime_stop_watchdog();
    tls_server_free(srv.tls);
    return failed ? 1 : 0;
}

/* --redis: the link starts before the workers (a password Redis refuses
 * stops us here, exit 2) and waits for its first attempt to end; Redis
 * unreachable, the node starts alone (the link logged it) and joins later.
 * What arrives is handed to the workers once they are all ready. */
static int start_cluster(const struct options *o)
{
    if (!o->redis)
        return 0;
    struct cluster_link_config cfg = { .url = o->redis_url, .prefix = o->redis_prefix };
    runtime_cluster_config(&srv.cluster, &cfg);
    srv.cluster.inboxes = srv.inboxes;
    srv.cluster.n = o->workers;
    char why[LIM_REDIS_URL_MAX + 512];
    if (cluster_link_start(&cfg, &srv.cluster.link, why, sizeof why) == CLUSTER_REFUSED) {
        fprintf(stderr, "moonws: --redis: %s\n", why);
        return -1;
    }
    runtime_cluster_watch(&srv.cluster);
    return 0;
}

static void free_master(void)
{
    if (srv.cluster.link)
        runtime_cluster_stop(&srv.cluster);
    ev_ref(srv.loop);
    ev_timer_stop(srv.loop, &srv.report_w);
    inbox_close(&srv.inbox);
    inbox_free(&srv.inbox);
    reload_free(srv.reload);
    free(srv.workers);
    metrics_http_free(srv.mh);
    metrics_free(srv.metrics);
    traffic_log_close(srv.traffic);
    connid_cleanup();
    pathcount_cleanup();
    admission_free(srv.adm);
    runtime_stop_watchdog();
    tls_server_free(srv.tls);
}

int main(int argc, char **argv)
{
    struct options o;
    parse_args(argc, argv, &o);
    signal(SIGPIPE, SIG_IGN);

    char static_real[PATH_MAX];
    if (!check_folders(&o, static_real))
        return 2;

    if (o.ntls) {
        char err[512];
        srv.tls = tls_server_new(&o.tls, err, sizeof err);
        memset(o.password, 0, sizeof o.password);
        if (!srv.tls) {
            fprintf(stderr, "moonws: %s\n", err);
            return 2;
        }
    }

    /* OpenSSL 3 loads its providers on the first digest: do it now, not
     * in the first client's handshake. */
    char warm[WS_ACCEPT_LEN];
    crypto_ws_accept("moonws", 6, warm);

    const char *static_root = o.static_dir ? static_real : NULL;
    if (o.check)
        return check_services(&o, static_root);

    char err[512];
    srv.traffic = traffic_log_open(o.access_log, o.json, err, sizeof err);
    if (!srv.traffic) {
        fprintf(stderr, "moonws: %s\n", err);
        tls_server_free(srv.tls);
        return 2;
    }
    if (start_cluster(&o) != 0) {
        traffic_log_close(srv.traffic);
        tls_server_free(srv.tls);
        return 2;
    }
    srv.loop = ev_default_loop(EVFLAG_AUTO);
    srv.dir = o.dir;
    srv.metrics = metrics_new(o.workers);
    o.runtime.metrics = srv.metrics;
    srv.no_reload = o.no_reload;
    srv.nworkers = o.workers;
    membudget_init(&srv.mem, o.max_buffered);
    srv.adm = admission_new(connection_limit(&o), o.max_per_ip);
    inbox_init(&srv.inbox, srv.loop, "the master", LIM_INBOX_BYTES, NULL);
    ev_timer_init(&srv.report_w, report_cb, 1.0, 1.0);
    ev_timer_start(srv.loop, &srv.report_w);
    ev_unref(srv.loop);         /* it should not keep the loop alive by itself */
    srv.workers = xcalloc(srv.nworkers, sizeof *srv.workers);
    if (bind_listeners(&o) != 0) {
        free_master();
        return 1;
    }
    srv.sh = (struct wthread_shared){
        .dir = o.dir, .static_root = static_root, .runtime = o.runtime,
        .keepalive = o.keepalive, .handshake_timeout = o.handshake_timeout,
        .max_head = o.max_head, .max_body = o.max_body, .tls = srv.tls, .adm = srv.adm, .mem = &srv.mem,
        .metrics = srv.metrics, .traffic = srv.traffic, .ended = worker_ended,
        .addrs = srv.addrs, .naddrs = srv.naddrs, .nworkers = srv.nworkers,
        .workers = srv.workers, .master = &srv.inbox,
        .peers = { srv.nworkers, srv.inboxes, srv.cluster.link ? &srv.cluster : NULL },
        .ready = worker_ready, .prepared = worker_prepared, .committed = worker_committed,
    };
    for (unsigned i = 0; i < srv.nworkers; i++)
        srv.inboxes[i] = &srv.workers[i].inbox;
    srv.reload = reload_new(o.dir, srv.workers, srv.nworkers, all_loaded, NULL);
    reload_count_into(srv.reload, srv.metrics);
    admission_set_wake(srv.adm, wthread_wake_all, &srv.sh);
    /* Signals are watched before the workers start: whoever reads the
     * "listening" lines may stop us at once. */
    ev_signal_init(&srv.sigterm_w, signal_cb, SIGTERM);
    ev_signal_start(srv.loop, &srv.sigterm_w);
    ev_signal_init(&srv.sigint_w, signal_cb, SIGINT);
    ev_signal_start(srv.loop, &srv.sigint_w);
    ev_signal_init(&srv.sighup_w, signal_cb, SIGHUP);
    ev_signal_start(srv.loop, &srv.sighup_w);
    ev_signal_init(&srv.sigusr1_w, signal_cb, SIGUSR1);
    ev_signal_start(srv.loop, &srv.sigusr1_w);
    for (; srv.started < srv.nworkers; srv.started++) {
        if (!wthread_start(&srv.workers[srv.started], &srv.sh, srv.started + 1)) {
            log_error("cannot start worker %u", srv.started + 1);
            begin_shutdown("startup failed");
            break;
        }
    }
    close_unused_listeners();

    if (!srv.stopping)
        ev_run(srv.loop, 0);

    /* A second SIGTERM while we clean up must not turn exit 0 into death
     * by signal: from here on they wait, blocked, and the process ends. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    ev_signal_stop(srv.loop, &srv.sigterm_w);
    ev_signal_stop(srv.loop, &srv.sigint_w);
    ev_signal_stop(srv.loop, &srv.sighup_w);
    ev_signal_stop(srv.loop, &srv.sigusr1_w);
    dirwatch_free(srv.watch);
    for (unsigned i = 0; i < srv.started; i++)
        wthread_join(&srv.workers[i]);
    /* The workers are gone: the link leaves Redis (what is queued is
     * written, then its lease and counts are deleted). */
    if (srv.cluster.link)
        runtime_cluster_stop(&srv.cluster);
    log_info("stopped");
    /* Nobody posts any more: what is left in the inboxes goes. */
    for (unsigned i = 0; i < srv.started; i++)
        wthread_free(&srv.workers[i]);
    /* Every connection and pooled stream is gone: what the budget still
     * counts would be a leak in its accounting. */
    log_debug("memory for unfinished messages and bodies at exit: %zu bytes held",
              membudget_used(&srv.mem));
    /* Likewise: an id still open or a count still held would be a slip in
     * their bookkeeping. */
    log_debug("at exit: %zu connection ids open, %zu paths counted", connid_count(),
              pathcount_keys());
    bool failed = srv.started < srv.nworkers;
    free_master();
    ev_loop_destroy(srv.loop);
    return failed ? 1 : 0;
}
