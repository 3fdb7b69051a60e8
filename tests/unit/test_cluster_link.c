/*
 * cluster_link (src/cluster/cluster_link.h) against a real redis-server:
 * each test starts its own on a free loopback port (--save '' --appendonly
 * no), stops it by PID at the end, and kills it if the test process dies
 * (PR_SET_PDEATHSIG). Several links in this one process play the nodes.
 *
 * The links' threads only record what they receive (under a mutex); the
 * checks run on the test's thread (check.h is not thread-safe). Nothing
 * sleeps a fixed time: every wait polls for its condition with a deadline.
 * The test program itself talks to Redis with hiredis' blocking API, as
 * another program would, and runs redis-cli for the documented example.
 */
#include "check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cluster/cluster_link.h"
#include "util/limits.h"
#include "util/log.h"

/* ---- time ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void nap(void)
{
    struct timespec ts = { 0, 5 * 1000 * 1000 };
    nanosleep(&ts, NULL);
}

/* Polls cond(arg) until it holds or timeout seconds passed. */
static bool wait_for(bool (*cond)(void *), void *arg, double timeout)
{
    double end = now_s() + timeout;
    while (!cond(arg)) {
        if (now_s() > end)
            return cond(arg);
        nap();
    }
    return true;
}

/* ---- redis-server ---- */

#define MAX_SERVERS 16
static pid_t started[MAX_SERVERS];

static void kill_all_servers(void)
{
    for (int i = 0; i < MAX_SERVERS; i++)
        if (started[i] > 0) {
            kill(started[i], SIGKILL);
            waitpid(started[i], NULL, 0);
            started[i] = 0;
        }
}

static void track(pid_t pid, bool add)
{
    for (int i = 0; i < MAX_SERVERS; i++)
        if (add ? started[i] == 0 : started[i] == pid) {
            started[i] = add ? pid : 0;
            return;
        }
}

/* A free port on 127.0.0.1 (the kernel's pick, released at once). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
        close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* A blocking connection of the test's own; NULL when Redis does not
 * answer PING (yet). */
static redisContext *rconnect(int port, const char *pass)
{
    struct timeval tv = { 1, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, (struct timeval){ 5, 0 });
    if (pass) {
        redisReply *r = redisCommand(c, "AUTH %s", pass);
        if (r)
            freeReplyObject(r);
    }
    redisReply *r = redisCommand(c, "PING");
    bool ok = r && r->type == REDIS_REPLY_STATUS;
    if (r)
        freeReplyObject(r);
    if (!ok) {
        redisFree(c);
        return NULL;
    }
    return c;
}

struct server {
    pid_t pid;
    int port;
    const char *pass;
};

/* Starts redis-server on port and waits until it answers. */
static bool server_start(struct server *s, int port, const char *pass)
{
    s->port = port;
    s->pass = pass;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 1);
        dup2(devnull, 2);
        const char *argv[16] = { "redis-server", "--port", portstr, "--bind", "127.0.0.1",
                                 "--save", "", "--appendonly", "no", "--daemonize", "no" };
        int n = 11;
        if (pass) {
            argv[n++] = "--requirepass";
            argv[n++] = pass;
        }
        argv[n] = NULL;
        execvp("redis-server", (char **)argv);
        _exit(127);
    }
    if (pid < 0)
        return false;
    s->pid = pid;
    track(pid, true);
    double end = now_s() + 10;
    while (now_s() < end) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            track(pid, false);
            s->pid = 0;
            fprintf(stderr, "redis-server exited (status %d): is it installed? "
                            "(scripts/deps test installs it)\n", status);
            return false;
        }
        redisContext *c = rconnect(port, pass);
        if (c) {
            redisFree(c);
            return true;
        }
        nap();
    }
    return false;
}

static void server_signal(struct server *s, int sig)
{
    if (s->pid > 0)
        kill(s->pid, sig);
}

/* Kills it at once (SIGKILL): as a crash would. */
static void server_kill(struct server *s)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    track(s->pid, false);
    s->pid = 0;
}

/* The polite end: SIGTERM, and SIGKILL after 5 s. */
static void server_stop(struct server *s)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGCONT);
    kill(s->pid, SIGTERM);
    double end = now_s() + 5;
    while (waitpid(s->pid, NULL, WNOHANG) == 0) {
        if (now_s() > end) {
            server_kill(s);
            return;
        }
        nap();
    }
    track(s->pid, false);
    s->pid = 0;
}

/* An integer answer of a command of the test's own; -1 on any failure. */
static long long rint_cmd(struct server *s, const char *fmt, ...)
{
    redisContext *c = rconnect(s->port, s->pass);
    if (!c)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    long long v = -1;
    if (r && r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else if (r && r->type == REDIS_REPLY_STRING)
        v = strtoll(r->str, NULL, 10);
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return v;
}

/* Subscribers of a channel, as Redis counts them (PUBSUB NUMSUB). */
static long long numsub(struct server *s, const char *channel)
{
    redisContext *c = rconnect(s->port, s->pass);
    if (!c)
        return -1;
    redisReply *r = redisCommand(c, "PUBSUB NUMSUB %s", channel);
    long long v = -1;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_INTEGER)
        v = r->element[1]->integer;
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return v;
}

struct numsub_want {
    struct server *s;
    const char *channel;
    long long n;
};

static bool numsub_is(void *arg)
{
    struct numsub_want *w = arg;
    return numsub(w->s, w->channel) == w->n;
}

static bool wait_numsub(struct server *s, const char *channel, long long n)
{
    struct numsub_want w = { s, channel, n };
    bool ok = wait_for(numsub_is, &w, 10);
    if (!ok)
        NOTE("  PUBSUB NUMSUB %s: %lld, not %lld\n", channel, numsub(s, channel), n);
    return ok;
}

/* Publishes raw bytes as another program would. */
static long long raw_publish(struct server *s, const char *channel, const void *p, size_t n)
{
    return rint_cmd(s, "PUBLISH %s %b", channel, p, n);
}

/* ---- nodes: a link and what it received ---- */

struct got {
    enum cluster_chan chan;
    char name[64];
    unsigned origin;
    enum cluster_kind kind;
    uint64_t target;
    size_t len;
    char *data;
};

struct node {
    struct cluster_link *l;
    pthread_mutex_t mu;
    struct got *msgs;
    size_t n, cap;
    bool wrong_thread;
    bool started;               /* node_start ran, node_stop not yet */
    pthread_t main_thread;
    /* counts reported to the cluster */
    const char *paths[4];
    uint64_t counts[4];
};

static void on_message(void *ctx, const struct cluster_rx *rx)
{
    struct node *nd = ctx;
    pthread_mutex_lock(&nd->mu);
    if (pthread_equal(pthread_self(), nd->main_thread))
        nd->wrong_thread = true;
    if (nd->n == nd->cap) {
        nd->cap = nd->cap ? nd->cap * 2 : 64;
        nd->msgs = realloc(nd->msgs, nd->cap * sizeof *nd->msgs);
    }
    struct got *g = &nd->msgs[nd->n++];
    g->chan = rx->chan;
    snprintf(g->name, sizeof g->name, "%.*s", (int)rx->name_len, rx->name);
    g->origin = rx->origin;
    g->kind = rx->kind;
    g->target = rx->target;
    g->len = rx->payload->len;
    g->data = malloc(g->len + 1);
    memcpy(g->data, rx->payload->data, g->len);
    g->data[g->len] = '\0';
    pthread_mutex_unlock(&nd->mu);
}

static void on_counts(void *ctx, struct cluster_counts *out)
{
    struct node *nd = ctx;
    for (int i = 0; i < 4 && nd->paths[i]; i++)
        cluster_counts_add(out, nd->paths[i], strlen(nd->paths[i]), nd->counts[i]);
}

static char url_buf[256];

static const char *url_of(int port, const char *userinfo, const char *db)
{
    snprintf(url_buf, sizeof url_buf, "redis://%s127.0.0.1:%d%s", userinfo ? userinfo : "", port,
             db ? db : "");
    return url_buf;
}

/* Starts a node's link on url; why gets the reason of a REFUSED. */
static enum cluster_start node_start(struct node *nd, const char *url, bool counts, char *why,
                                     size_t whylen)
{
    pthread_mutex_init(&nd->mu, NULL);
    nd->started = true;
    nd->main_thread = pthread_self();
    struct cluster_link_config cfg;
    memset(&cfg, 0, sizeof cfg);
    const char *err = redis_url_parse(url, &cfg.url);
    if (err) {
        snprintf(why, whylen, "%s", err);
        return CLUSTER_REFUSED;
    }
    cfg.prefix = "moonws:";
    cfg.on_message = on_message;
    cfg.counts = counts ? on_counts : NULL;
    cfg.ctx = nd;
    return cluster_link_start(&cfg, &nd->l, why, whylen);
}

static bool node_join(struct node *nd, int port)
{
    char why[512] = "";
    enum cluster_start st = node_start(nd, url_of(port, NULL, NULL), false, why, sizeof why);
    if (st != CLUSTER_JOINED)
        NOTE("  node_join: %d (%s)\n", st, why);
    return st == CLUSTER_JOINED;
}

static void node_stop(struct node *nd)
{
    if (!nd->started)
        return;
    nd->started = false;
    if (nd->l)
        cluster_link_stop(nd->l);
    nd->l = NULL;
    for (size_t i = 0; i < nd->n; i++)
        free(nd->msgs[i].data);
    free(nd->msgs);
    nd->msgs = NULL;
    nd->n = nd->cap = 0;
    pthread_mutex_destroy(&nd->mu);
}

static size_t received(struct node *nd)
{
    pthread_mutex_lock(&nd->mu);
    size_t n = nd->n;
    pthread_mutex_unlock(&nd->mu);
    return n;
}

/* How many messages with this payload the node received. */
static size_t copies(struct node *nd, const char *payload)
{
    size_t k = 0;
    pthread_mutex_lock(&nd->mu);
    for (size_t i = 0; i < nd->n; i++)
        if (nd->msgs[i].len == strlen(payload) && memcmp(nd->msgs[i].data, payload, nd->msgs[i].len) == 0)
            k++;
    pthread_mutex_unlock(&nd->mu);
    return k;
}

struct copies_want {
    struct node *nd;
    const char *payload;
};

static bool has_copy(void *arg)
{
    struct copies_want *w = arg;
    return copies(w->nd, w->payload) > 0;
}

static bool wait_copy(struct node *nd, const char *payload)
{
    struct copies_want w = { nd, payload };
    bool ok = wait_for(has_copy, &w, 10);
    if (!ok)
        NOTE("  \"%s\" never arrived\n", payload);
    return ok;
}

static bool is_up(void *arg)
{
    return cluster_link_up(((struct node *)arg)->l);
}

static bool is_down(void *arg)
{
    return !cluster_link_up(((struct node *)arg)->l);
}

static struct cluster_link_stats stats_of(struct node *nd)
{
    struct cluster_link_stats st;
    cluster_link_stats(nd->l, &st);
    return st;
}

static bool own_skipped_and_published_3(void *arg)
{
    struct cluster_link_stats st = stats_of(arg);
    return st.own_skipped == 3 && st.published == 3;
}

static bool pub_text(struct node *nd, const char *topic, const char *s)
{
    return cluster_link_publish(nd->l, CLUSTER_CH_TOPIC, topic, strlen(topic), CLUSTER_TEXT, s,
                                strlen(s));
}

/* ---- the log, captured ---- */

static int saved_stderr = -1;
static char log_path[64];

static void capture_log(void)
{
    snprintf(log_path, sizeof log_path, "/tmp/test_cluster_link.%d.log", (int)getpid());
    int fd = open(log_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    fflush(stderr);
    saved_stderr = dup(2);
    dup2(fd, 2);
    close(fd);
}

/* Restores stderr, copies what was captured to it, and returns it. */
static char *release_log(void)
{
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    FILE *f = fopen(log_path, "r");
    static char text[65536];
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    text[n] = '\0';
    if (f)
        fclose(f);
    unlink(log_path);
    fputs(text, stderr);
    return text;
}

/* ---- the tests ---- */

/* A redis-server of the test's own and, joined to it, nodes a and b (as
 * many as asked). */
struct fix {
    struct server s;
    int port;
    struct node a, b;
};

static bool fix_up(struct fix *f, int nodes)
{
    memset(f, 0, sizeof *f);
    f->port = free_port();
    if (!CHECK(server_start(&f->s, f->port, NULL)))
        return false;
    return (nodes < 1 || CHECK(node_join(&f->a, f->port))) &&
           (nodes < 2 || CHECK(node_join(&f->b, f->port)));
}

static void fix_down(struct fix *f)
{
    node_stop(&f->a);
    node_stop(&f->b);
    server_stop(&f->s);
}

TEST(nodes_get_distinct_numbers_and_leases)
{
    struct fix f;
    if (fix_up(&f, 2)) {
        unsigned na = cluster_link_node(f.a.l), nb = cluster_link_node(f.b.l);
        CHECK(na >= 1 && na <= CLUSTER_NODE_MAX);
        CHECK(nb >= 1 && nb <= CLUSTER_NODE_MAX);
        CHECK(na != nb);
        CHECK_EQ_INT(rint_cmd(&f.s, "GET moonws:nodes"), 2);
        long long ttl = rint_cmd(&f.s, "PTTL moonws:lease:%u", na);
        CHECK(ttl > 0 && ttl <= (long long)(LIM_CLUSTER_LEASE_TTL * 1000));
        /* Each node listens on its own channel. */
        char ch[32];
        snprintf(ch, sizeof ch, "moonws:node:%u", na);
        CHECK(wait_numsub(&f.s, ch, 1));
    }
    fix_down(&f);
}

TEST(publish_reaches_the_other_node_once_and_not_itself)
{
    struct fix f;
    if (fix_up(&f, 2)) {
        cluster_link_subscribe(f.a.l, CLUSTER_CH_TOPIC, "news", 4);
        cluster_link_subscribe(f.b.l, CLUSTER_CH_TOPIC, "news", 4);
        CHECK(wait_numsub(&f.s, "moonws:topic:news", 2));
        CHECK(pub_text(&f.a, "news", "hello"));
        static const char bin[] = { 0, 1, 2, (char)0xff };
        CHECK(cluster_link_publish(f.a.l, CLUSTER_CH_TOPIC, "news", 4, CLUSTER_BINARY, bin,
                                   sizeof bin));
        CHECK(pub_text(&f.a, "news", "end"));
        CHECK(wait_copy(&f.b, "end"));
        CHECK(wait_for(own_skipped_and_published_3, &f.a, 10));
        CHECK_EQ_INT(copies(&f.b, "hello"), 1);
        CHECK_EQ_INT(received(&f.b), 3);
        pthread_mutex_lock(&f.b.mu);
        if (CHECK(f.b.n == 3)) {
            CHECK_EQ_INT(f.b.msgs[0].chan, CLUSTER_CH_TOPIC);
            CHECK_STR(f.b.msgs[0].name, strlen(f.b.msgs[0].name), "news");
            CHECK_EQ_INT(f.b.msgs[0].origin, cluster_link_node(f.a.l));
            CHECK_EQ_INT(f.b.msgs[0].kind, CLUSTER_TEXT);
            CHECK_EQ_INT(f.b.msgs[1].kind, CLUSTER_BINARY);
            CHECK_MEM(f.b.msgs[1].data, f.b.msgs[1].len, bin, sizeof bin);
        }
        CHECK(!f.b.wrong_thread);
        pthread_mutex_unlock(&f.b.mu);
        /* A never hands its own messages on. */
        CHECK_EQ_INT(received(&f.a), 0);
        CHECK_EQ_INT(stats_of(&f.a).own_skipped, 3);
        CHECK_EQ_INT(stats_of(&f.a).published, 3);
    }
    fix_down(&f);
}

TEST(order_per_publisher_is_kept)
{
    struct fix f;
    if (fix_up(&f, 2)) {
        cluster_link_subscribe(f.b.l, CLUSTER_CH_TOPIC, "seq", 3);
        CHECK(wait_numsub(&f.s, "moonws:topic:seq", 1));
        char m[16];
        for (int i = 0; i < 2000; i++) {
            snprintf(m, sizeof m, "%d", i);
            CHECK(pub_text(&f.a, "seq", m));
        }
        CHECK(wait_copy(&f.b, "1999"));
        pthread_mutex_lock(&f.b.mu);
        CHECK_EQ_INT(f.b.n, 2000);
        size_t bad = 0;
        for (size_t i = 0; i < f.b.n; i++)
            bad += (size_t)atoi(f.b.msgs[i].data) != i;
        CHECK_EQ_INT(bad, 0);
        pthread_mutex_unlock(&f.b.mu);
    }
    fix_down(&f);
}

TEST(service_channel_and_node_channel)
{
    struct fix f;
    if (fix_up(&f, 2)) {
        cluster_link_subscribe(f.b.l, CLUSTER_CH_SVC, "/chat", 5);
        CHECK(wait_numsub(&f.s, "moonws:svc:/chat", 1));
        CHECK(cluster_link_publish(f.a.l, CLUSTER_CH_SVC, "/chat", 5, CLUSTER_TEXT, "to all", 6));
        unsigned nb = cluster_link_node(f.b.l);
        uint64_t id = (uint64_t)nb << CLUSTER_ID_NODE_SHIFT | 4242;
        CHECK(cluster_id_node(id) == nb);
        CHECK(cluster_link_send(f.a.l, nb, id, CLUSTER_TEXT, "just you", 8));
        CHECK(wait_copy(&f.b, "just you"));
        CHECK(wait_copy(&f.b, "to all"));
        pthread_mutex_lock(&f.b.mu);
        for (size_t i = 0; i < f.b.n; i++) {
            struct got *g = &f.b.msgs[i];
            if (strcmp(g->data, "to all") == 0) {
                CHECK_EQ_INT(g->chan, CLUSTER_CH_SVC);
                CHECK_STR(g->name, strlen(g->name), "/chat");
                CHECK_EQ_INT(g->target, 0);
            } else {
                CHECK_EQ_INT(g->chan, CLUSTER_CH_NODE);
                CHECK(g->target == id);
                CHECK_EQ_INT(g->origin, cluster_link_node(f.a.l));
            }
        }
        pthread_mutex_unlock(&f.b.mu);
        CHECK_EQ_INT(received(&f.a), 0);
    }
    fix_down(&f);
}

static bool subscribed_to_one(void *arg)
{
    return stats_of(arg).subscribed == 1;
}

TEST(subscriptions_are_counted_by_reference)
{
    struct fix f;
    if (fix_up(&f, 2)) {
        /* Two workers want "t": one SUBSCRIBE. */
        cluster_link_subscribe(f.a.l, CLUSTER_CH_TOPIC, "t", 1);
        cluster_link_subscribe(f.a.l, CLUSTER_CH_TOPIC, "t", 1);
        CHECK(wait_numsub(&f.s, "moonws:topic:t", 1));
        /* One lets go: still subscribed. A later change ("probe") shows
         * the link has looked at its table since. */
        cluster_link_unsubscribe(f.a.l, CLUSTER_CH_TOPIC, "t", 1);
        cluster_link_subscribe(f.a.l, CLUSTER_CH_TOPIC, "probe", 5);
        CHECK(wait_numsub(&f.s, "moonws:topic:probe", 1));
        CHECK_EQ_INT(numsub(&f.s, "moonws:topic:t"), 1);
        CHECK(pub_text(&f.b, "t", "still"));
        CHECK(wait_copy(&f.a, "still"));
        /* The last one lets go: UNSUBSCRIBE; nothing arrives any more. */
        cluster_link_unsubscribe(f.a.l, CLUSTER_CH_TOPIC, "t", 1);
        CHECK(wait_numsub(&f.s, "moonws:topic:t", 0));
        CHECK(pub_text(&f.b, "t", "gone"));
        CHECK(pub_text(&f.b, "probe", "after"));
        CHECK(wait_copy(&f.a, "after"));
        CHECK_EQ_INT(copies(&f.a, "gone"), 0);
        /* Taken and dropped between two looks: nothing on the wire, and
         * the table is left as it was. */
        for (int i = 0; i < 100; i++) {
            cluster_link_subscribe(f.a.l, CLUSTER_CH_TOPIC, "flicker", 7);
            cluster_link_unsubscribe(f.a.l, CLUSTER_CH_TOPIC, "flicker", 7);
        }
        cluster_link_unsubscribe(f.a.l, CLUSTER_CH_TOPIC, "probe", 5);
        CHECK(wait_numsub(&f.s, "moonws:topic:probe", 0));
        CHECK_EQ_INT(numsub(&f.s, "moonws:topic:flicker"), 0);
        /* Only the node's own channel is left (as Redis' last answer says). */
        CHECK(wait_for(subscribed_to_one, &f.a, 10));
    }
    fix_down(&f);
}

/* Runs redis-cli with these arguments (as the docs show it); true when it
 * exited 0. */
static bool redis_cli(int port, const char *const *args)
{
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 1);
        const char *argv[16] = { "redis-cli", "-h", "127.0.0.1", "-p", portstr };
        int n = 5;
        for (; *args && n < 15; args++)
            argv[n++] = *args;
        argv[n] = NULL;
        execvp("redis-cli", (char **)argv);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static bool malformed_thrice(void *arg)
{
    return stats_of(arg).malformed >= 3;
}

TEST(another_program_publishes_in)
{
    struct fix f;
    if (fix_up(&f, 1)) {
        cluster_link_subscribe(f.a.l, CLUSTER_CH_TOPIC, "news", 4);
        CHECK(wait_numsub(&f.s, "moonws:topic:news", 1));
        /* docs/cluster.md: a bare payload is text from origin 0. */
        const char *bare[] = { "PUBLISH", "moonws:topic:news", "{\"headline\":\"hi\"}", NULL };
        CHECK(redis_cli(f.port, bare));
        CHECK(wait_copy(&f.a, "{\"headline\":\"hi\"}"));
        /* An envelope: binary, to one connection. */
        char env[64], ch[32];
        unsigned na = cluster_link_node(f.a.l);
        snprintf(ch, sizeof ch, "moonws:node:%u", na);
        snprintf(env, sizeof env, "MWS1 0 b %llu\nbytes",
                 (unsigned long long)((uint64_t)na << CLUSTER_ID_NODE_SHIFT | 7));
        const char *enveloped[] = { "PUBLISH", ch, env, NULL };
        CHECK(redis_cli(f.port, enveloped));
        CHECK(wait_copy(&f.a, "bytes"));
        pthread_mutex_lock(&f.a.mu);
        for (size_t i = 0; i < f.a.n; i++) {
            CHECK_EQ_INT(f.a.msgs[i].origin, 0);
            if (strcmp(f.a.msgs[i].data, "bytes") == 0)
                CHECK_EQ_INT(f.a.msgs[i].kind, CLUSTER_BINARY);
            else
                CHECK_EQ_INT(f.a.msgs[i].kind, CLUSTER_TEXT);
        }
        pthread_mutex_unlock(&f.a.mu);

        /* Malformed: dropped, counted, logged (rate-limited); the link goes on. */
        capture_log();
        raw_publish(&f.s, "moonws:topic:news", "MWS1 x t\nhi", 11);
        raw_publish(&f.s, "moonws:topic:news", "\xff\xfe", 2);
        raw_publish(&f.s, ch, "no envelope", 11);
        bool all = wait_for(malformed_thrice, &f.a, 10);
        const char *log = release_log();
        CHECK(all);
        CHECK(strstr(log, "a message on moonws:topic:news dropped: the envelope's origin") != NULL);
        raw_publish(&f.s, "moonws:topic:news", "fine", 4);
        CHECK(wait_copy(&f.a, "fine"));
        CHECK_EQ_INT(stats_of(&f.a).malformed, 3);
    }
    fix_down(&f);
}

TEST(redis_restart_resubscribes_without_duplicates)
{
    struct fix f;
    struct node c = { 0 };
    if (fix_up(&f, 2)) {
        unsigned na = cluster_link_node(f.a.l), nb = cluster_link_node(f.b.l);
        cluster_link_subscribe(f.b.l, CLUSTER_CH_TOPIC, "news", 4);
        cluster_link_subscribe(f.a.l, CLUSTER_CH_SVC, "/chat", 5);
        CHECK(wait_numsub(&f.s, "moonws:topic:news", 1));
        CHECK(wait_numsub(&f.s, "moonws:svc:/chat", 1));

        capture_log();
        server_kill(&f.s);
        bool down = wait_for(is_down, &f.a, 10) && wait_for(is_down, &f.b, 10);
        /* Local delivery is the caller's; what goes to Redis meanwhile is
         * refused at once and counted. */
        uint64_t before = stats_of(&f.a).not_forwarded;
        int refused = 0;
        for (int i = 0; i < 5; i++)
            refused += !pub_text(&f.a, "news", "while down");
        uint64_t after = stats_of(&f.a).not_forwarded;

        bool restarted = server_start(&f.s, f.port, NULL);
        bool up = restarted && wait_for(is_up, &f.a, 15) && wait_for(is_up, &f.b, 15);
        /* Redis lost its counter: a new node must not take A's or B's number. */
        bool c_joined = up && node_join(&c, f.port);
        const char *log = release_log();

        CHECK(down);
        CHECK_EQ_INT(refused, 5);
        CHECK_EQ_INT(after - before, 5);
        CHECK(restarted);
        CHECK(up);
        CHECK(strstr(log, "cluster: lost Redis at 127.0.0.1:") != NULL);
        CHECK(strstr(log, "5 messages could not be forwarded meanwhile") != NULL);
        CHECK_EQ_INT(stats_of(&f.a).drops, 1);
        CHECK_EQ_INT(stats_of(&f.a).joins, 2);
        /* The numbers are kept; the new node gets another. */
        CHECK_EQ_INT(cluster_link_node(f.a.l), na);
        CHECK_EQ_INT(cluster_link_node(f.b.l), nb);
        if (CHECK(c_joined)) {
            unsigned nc = cluster_link_node(c.l);
            CHECK(nc != na && nc != nb && nc != 0);
        }
        /* Every channel needed is subscribed again, once. */
        CHECK(wait_numsub(&f.s, "moonws:topic:news", 1));
        CHECK(wait_numsub(&f.s, "moonws:svc:/chat", 1));
        CHECK(pub_text(&f.a, "news", "after"));
        CHECK(cluster_link_publish(f.b.l, CLUSTER_CH_SVC, "/chat", 5, CLUSTER_TEXT, "back", 4));
        CHECK(pub_text(&f.a, "news", "end"));
        CHECK(wait_copy(&f.b, "end"));
        CHECK(wait_copy(&f.a, "back"));
        CHECK_EQ_INT(copies(&f.b, "after"), 1);
        CHECK_EQ_INT(copies(&f.b, "while down"), 0);
        CHECK_EQ_INT(received(&f.b), 2);
        CHECK_EQ_INT(received(&f.a), 1);
    }
    node_stop(&c);
    fix_down(&f);
}

TEST(wrong_or_missing_password_is_refused_clearly)
{
    struct server s = { 0 };
    int port = free_port();
    if (!CHECK(server_start(&s, port, "s3cret")))
        return;
    char why[512];
    struct node n = { 0 };
    CHECK_EQ_INT(node_start(&n, url_of(port, ":wrong@", NULL), false, why, sizeof why),
                 CLUSTER_REFUSED);
    CHECK(n.l == NULL);
    CHECK(strstr(why, "refused the password (AUTH)") != NULL);
    CHECK(strstr(why, "WRONGPASS") != NULL);
    node_stop(&n);

    CHECK_EQ_INT(node_start(&n, url_of(port, NULL, NULL), false, why, sizeof why),
                 CLUSTER_REFUSED);
    CHECK(strstr(why, "wants a password") != NULL);
    node_stop(&n);

    CHECK_EQ_INT(node_start(&n, url_of(port, ":s3cret@", NULL), false, why, sizeof why),
                 CLUSTER_JOINED);
    node_stop(&n);
    /* Redis 6 ACL form: the default user. */
    CHECK_EQ_INT(node_start(&n, url_of(port, "default:s3cret@", NULL), false, why, sizeof why),
                 CLUSTER_JOINED);
    node_stop(&n);
    server_stop(&s);

    /* A password for a Redis that has none. */
    port = free_port();
    if (!CHECK(server_start(&s, port, NULL)))
        return;
    CHECK_EQ_INT(node_start(&n, url_of(port, ":extra@", NULL), false, why, sizeof why),
                 CLUSTER_REFUSED);
    CHECK(strstr(why, "refused the password") != NULL);
    node_stop(&n);
    server_stop(&s);
}

TEST(database_is_selected_or_refused)
{
    struct server s = { 0 };
    int port = free_port();
    if (!CHECK(server_start(&s, port, NULL)))
        return;
    char why[512];
    struct node n = { 0 };
    CHECK_EQ_INT(node_start(&n, url_of(port, NULL, "/99"), false, why, sizeof why),
                 CLUSTER_REFUSED);
    CHECK(strstr(why, "refused database 99 (SELECT)") != NULL);
    node_stop(&n);
    CHECK_EQ_INT(node_start(&n, url_of(port, NULL, "/3"), false, why, sizeof why),
                 CLUSTER_JOINED);
    /* The keys are in db 3; db 0 has none. */
    CHECK_EQ_INT(rint_cmd(&s, "EXISTS moonws:nodes"), 0);
    redisContext *c = rconnect(port, NULL);
    if (CHECK(c != NULL)) {
        redisReply *r = redisCommand(c, "SELECT 3");
        freeReplyObject(r);
        r = redisCommand(c, "GET moonws:nodes");
        CHECK(r && r->type == REDIS_REPLY_STRING && strcmp(r->str, "1") == 0);
        freeReplyObject(r);
        redisFree(c);
    }
    node_stop(&n);
    server_stop(&s);
}

TEST(unreachable_at_start_runs_alone_then_joins)
{
    int port = free_port();
    char why[512];
    struct node n = { 0 };
    capture_log();
    enum cluster_start st = node_start(&n, url_of(port, NULL, NULL), false, why, sizeof why);
    const char *log = release_log();
    CHECK_EQ_INT(st, CLUSTER_ALONE);
    CHECK(strstr(log, "is unreachable") != NULL);
    CHECK(strstr(log, "running alone until it can join") != NULL);
    if (!CHECK(n.l != NULL))
        return;
    /* Alone: no number, nothing forwarded, but subscriptions are kept. */
    CHECK_EQ_INT(cluster_link_node(n.l), 0);
    CHECK(!pub_text(&n, "news", "lost"));
    CHECK_EQ_INT(stats_of(&n).not_forwarded, 1);
    cluster_link_subscribe(n.l, CLUSTER_CH_TOPIC, "news", 4);

    struct server s = { 0 };
    if (CHECK(server_start(&s, port, NULL))) {
        CHECK(wait_for(is_up, &n, 15));
        CHECK(cluster_link_node(n.l) >= 1);
        CHECK(wait_numsub(&s, "moonws:topic:news", 1));
        raw_publish(&s, "moonws:topic:news", "joined", 6);
        CHECK(wait_copy(&n, "joined"));
    }
    node_stop(&n);
    server_stop(&s);
}

static bool queue_filled(void *arg)
{
    return stats_of(arg).queue_full > 0;
}

struct calls_want {
    struct node *nd;
    uint64_t calls;
};

static bool all_accounted(void *arg)
{
    struct calls_want *w = arg;
    struct cluster_link_stats st = stats_of(w->nd);
    return st.published + st.not_forwarded + st.queue_full == w->calls;
}

TEST(slow_redis_never_blocks_and_is_dropped)
{
    struct fix f;
    if (fix_up(&f, 1)) {
        capture_log();
        server_signal(&f.s, SIGSTOP);
        /* Redis takes nothing: the queue fills, and publish returns false
         * at once instead of waiting. */
        static char big[64 * 1024];
        memset(big, 'x', sizeof big);
        int refused = 0, calls = 0;
        double end = now_s() + 20;
        while (!queue_filled(&f.a) && now_s() < end) {
            calls++;
            refused += !cluster_link_publish(f.a.l, CLUSTER_CH_TOPIC, "big", 3, CLUSTER_TEXT, big,
                                             sizeof big);
        }
        bool full = queue_filled(&f.a);
        /* No answer to the heartbeat: the link gives up on this Redis. */
        bool down = wait_for(is_down, &f.a, LIM_CLUSTER_REPLY_TIMEOUT + 5);
        server_signal(&f.s, SIGCONT);
        bool up = wait_for(is_up, &f.a, 15);
        const char *log = release_log();
        CHECK(full);
        CHECK(refused >= 1);
        CHECK(calls <= LIM_CLUSTER_QUEUE_BYTES / (int)sizeof big + 1);
        CHECK(down);
        CHECK(up);
        CHECK(strstr(log, "the queue to Redis is full (16777216 bytes)") != NULL);
        CHECK(strstr(log, "no answer for 5 s") != NULL);
        /* What was written and never confirmed counts as not forwarded:
         * every call is accounted for, once. */
        struct calls_want w = { &f.a, (uint64_t)calls };
        CHECK(wait_for(all_accounted, &w, 10));
    }
    fix_down(&f);
}

TEST(too_large_is_refused)
{
    struct fix f;
    if (fix_up(&f, 1)) {
        char *big = calloc(1, LIM_CLUSTER_MESSAGE_MAX);
        capture_log();
        bool ok = cluster_link_publish(f.a.l, CLUSTER_CH_TOPIC, "t", 1, CLUSTER_BINARY, big,
                                       LIM_CLUSTER_MESSAGE_MAX);
        const char *log = release_log();
        CHECK(!ok);
        CHECK_EQ_INT(stats_of(&f.a).too_large, 1);
        CHECK(strstr(log, "1 message larger than 8388608 bytes not forwarded") != NULL);
        free(big);
    }
    fix_down(&f);
}

struct count_want {
    struct node *nd;
    const char *path;
    uint64_t n;
};

static bool count_is(void *arg)
{
    struct count_want *w = arg;
    uint64_t n;
    return cluster_link_count_others(w->nd->l, w->path, strlen(w->path), &n) && n == w->n;
}

static bool wait_count(struct node *nd, const char *path, uint64_t n)
{
    struct count_want w = { nd, path, n };
    bool ok = wait_for(count_is, &w, 10);
    if (!ok)
        NOTE("  count of %s never became %llu\n", path, (unsigned long long)n);
    return ok;
}

TEST(counts_of_the_other_nodes)
{
    struct server s = { 0 };
    int port = free_port();
    if (!CHECK(server_start(&s, port, NULL)))
        return;
    char why[512];
    struct node a = { .paths = { "/chat", "/feed" }, .counts = { 3, 1 } };
    struct node b = { .paths = { "/chat" }, .counts = { 2 } };
    struct node c = { .paths = { "/chat" }, .counts = { 5 } };
    if (CHECK(node_start(&a, url_of(port, NULL, NULL), true, why, sizeof why) == CLUSTER_JOINED) &&
        CHECK(node_start(&b, url_of(port, NULL, NULL), true, why, sizeof why) == CLUSTER_JOINED) &&
        CHECK(node_start(&c, url_of(port, NULL, NULL), true, why, sizeof why) == CLUSTER_JOINED)) {
        CHECK(wait_count(&a, "/chat", 7));
        CHECK(wait_count(&b, "/chat", 8));
        CHECK(wait_count(&b, "/feed", 1));
        CHECK(wait_count(&a, "/feed", 0));        /* nobody else counts it */
        CHECK(wait_count(&c, "/nowhere", 0));
        /* A node that leaves takes its counts with it. */
        unsigned nc = cluster_link_node(c.l);
        CHECK_EQ_INT(rint_cmd(&s, "EXISTS moonws:counts:%u", nc), 1);
        node_stop(&c);
        CHECK(wait_count(&a, "/chat", 2));
        CHECK_EQ_INT(rint_cmd(&s, "EXISTS moonws:counts:%u", nc), 0);
    }
    node_stop(&a);
    node_stop(&b);
    node_stop(&c);
    server_stop(&s);
}

TEST(no_figure_without_counts_or_link)
{
    int port = free_port();
    char why[512];
    struct node n = { 0 };
    uint64_t v = 99;
    if (CHECK(node_start(&n, url_of(port, NULL, NULL), true, why, sizeof why) == CLUSTER_ALONE))
        CHECK(!cluster_link_count_others(n.l, "/chat", 5, &v));
    node_stop(&n);
}

/* Clients connected to Redis, less the one asking. */
static long long clients(struct server *s)
{
    redisContext *c = rconnect(s->port, s->pass);
    if (!c)
        return -1;
    redisReply *r = redisCommand(c, "CLIENT LIST");
    long long n = -1;
    if (r && r->type == REDIS_REPLY_STRING) {
        n = 0;
        for (const char *p = r->str; (p = strchr(p, '\n')); p++)
            n++;
        n--;
    }
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return n;
}

struct clients_want {
    struct server *s;
    long long n;
};

static bool clients_are(void *arg)
{
    struct clients_want *w = arg;
    return clients(w->s) == w->n;
}

TEST(stop_writes_what_was_queued_then_leaves)
{
    struct fix f;
    if (fix_up(&f, 2)) {
        unsigned na = cluster_link_node(f.a.l);
        cluster_link_subscribe(f.b.l, CLUSTER_CH_TOPIC, "last", 4);
        cluster_link_subscribe(f.a.l, CLUSTER_CH_TOPIC, "last", 4);
        CHECK(wait_numsub(&f.s, "moonws:topic:last", 2));
        CHECK_EQ_INT(clients(&f.s), 4);
        char m[16];
        for (int i = 0; i < 500; i++) {
            snprintf(m, sizeof m, "m%d", i);
            pub_text(&f.a, "last", m);
        }
        node_stop(&f.a);
        /* Everything queued was written before QUIT. */
        CHECK(wait_copy(&f.b, "m499"));
        CHECK_EQ_INT(received(&f.b), 500);
        /* Both its connections are gone, its channels and lease with them. */
        struct clients_want w = { &f.s, 2 };
        CHECK(wait_for(clients_are, &w, 10));
        CHECK_EQ_INT(numsub(&f.s, "moonws:topic:last"), 1);
        CHECK_EQ_INT(rint_cmd(&f.s, "EXISTS moonws:lease:%u", na), 0);
    }
    fix_down(&f);
}

TEST(stop_while_alone)
{
    int port = free_port();
    char why[512];
    struct node n = { 0 };
    capture_log();
    enum cluster_start st = node_start(&n, url_of(port, NULL, NULL), false, why, sizeof why);
    release_log();
    CHECK_EQ_INT(st, CLUSTER_ALONE);
    cluster_link_subscribe(n.l, CLUSTER_CH_TOPIC, "x", 1);
    CHECK(!pub_text(&n, "x", "lost"));
    node_stop(&n);
}

int main(int argc, char **argv)
{
    atexit(kill_all_servers);
    signal(SIGPIPE, SIG_IGN);
    int rc = check_main("test_cluster_link");
    kill_all_servers();
    return rc;
}
