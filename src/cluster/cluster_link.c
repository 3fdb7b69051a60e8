/*
 * cluster_link's thread and its life: the two connections, AUTH, SELECT,
 * the node number and its lease, the heartbeat, cluster counts, failures
 * and backoff, start and shutdown. Publishing is cluster_link_pub.c,
 * subscriptions cluster_link_sub.c. See cluster_link.h.
 */
#include <hiredis/adapters/libev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../util/buf.h"
#include "../util/clock.h"
#include "../util/crypto.h"
#include "cluster_link_impl.h"

/*
 * Scripts Redis runs for the link (EVAL; standalone Redis: the counts
 * script names keys it computes, which Redis Cluster would refuse).
 *
 * CLAIM takes or renews the lease KEYS[1] on a node number for the token
 * ARGV[1] (ARGV[2] ms): 1 when it is ours now, 0 when another holds it.
 */
static const char CLAIM_SCRIPT[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if v == false or v == ARGV[1] then "
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end "
    "return 0";

/* LEAVE, at shutdown: the lease KEYS[1] if it is still ours (ARGV[1]), the
 * node's counts KEYS[2] and its entry ARGV[2] in the live set KEYS[3]. */
static const char LEAVE_SCRIPT[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end "
    "redis.call('DEL', KEYS[2]) redis.call('ZREM', KEYS[3], ARGV[2]) return 1";

/* COUNT writes this node's counts (ARGV[4..]: path, count...) into
 * PREFIXcounts:NODE for ARGV[3] ms, marks the node live until then in
 * PREFIXcounted (scored by Redis' own clock, so that the nodes' clocks do
 * not matter), forgets the nodes whose time passed, and returns the sum of
 * the other live nodes' counts: path, sum, path, sum... */
static const char COUNT_SCRIPT[] =
    "local p, me, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]) "
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "local mine, live = p .. 'counts:' .. me, p .. 'counted' "
    "redis.call('DEL', mine) "
    "for i = 4, #ARGV - 1, 2 do redis.call('HSET', mine, ARGV[i], ARGV[i + 1]) end "
    "if #ARGV >= 5 then redis.call('PEXPIRE', mine, ttl) end "
    "redis.call('ZADD', live, now + ttl, me) "
    "redis.call('ZREMRANGEBYSCORE', live, '-inf', now) "
    "local sum, out = {}, {} "
    "for _, n in ipairs(redis.call('ZRANGE', live, 0, -1)) do "
    "if n ~= me then "
    "local kv = redis.call('HGETALL', p .. 'counts:' .. n) "
    "for i = 1, #kv, 2 do sum[kv[i]] = (sum[kv[i]] or 0) + tonumber(kv[i + 1]) end "
    "end end "
    "for k, v in pairs(sum) do out[#out + 1] = k out[#out + 1] = v end "
    "return out";

static void link_fail(struct cluster_link *l, const char *why, bool fatal);

static int64_t now_ms(void)
{
    return clock_ns() / 1000000;
}

/* xorshift64*: jitter needs no more than this. */
static uint64_t next_rand(struct cluster_link *l)
{
    l->rng ^= l->rng >> 12;
    l->rng ^= l->rng << 25;
    l->rng ^= l->rng >> 27;
    return l->rng * UINT64_C(2685821657736338717);
}

/* The delay before the next attempt: between half and all of
 * min(MAX, MIN * 2^attempt). */
static double backoff(struct cluster_link *l)
{
    double base = LIM_CLUSTER_BACKOFF_MIN;
    for (unsigned i = 0; i < l->attempt && base < LIM_CLUSTER_BACKOFF_MAX; i++)
        base *= 2;
    if (base > LIM_CLUSTER_BACKOFF_MAX)
        base = LIM_CLUSTER_BACKOFF_MAX;
    double r = (double)(next_rand(l) >> 11) / (double)(UINT64_C(1) << 53);
    return base / 2 + r * base / 2;
}

/* Tells the starter how the first attempt ended (the first time only). */
static void report(struct cluster_link *l, enum cluster_start result, const char *why)
{
    l->reported = true;
    pthread_mutex_lock(&l->start_mu);
    if (!l->start_done) {
        l->start_done = true;
        l->start_result = result;
        snprintf(l->start_why, sizeof l->start_why, "%s", why);
        pthread_cond_signal(&l->start_cv);
    }
    pthread_mutex_unlock(&l->start_mu);
}

static void key_name(struct cluster_link *l, char *out, size_t cap, const char *what,
                     unsigned node)
{
    if (node)
        snprintf(out, cap, "%s%s%u", l->prefix, what, node);
    else
        snprintf(out, cap, "%s%s", l->prefix, what);
}

/* Forgets ac if it is one of the current connections; returns whether it
 * was. */
static bool forget(struct cluster_link *l, const redisAsyncContext *ac)
{
    if (ac == l->pub) {
        l->pub = NULL;
        return true;
    }
    if (ac == l->sub) {
        l->sub = NULL;
        return true;
    }
    return false;
}

/* Frees both connections. Their pending callbacks run with no reply (a
 * PUBLISH counts as not forwarded), seeing them no longer current; one
 * freed from inside its own callback goes when that callback returns. */
static void close_all(struct cluster_link *l)
{
    redisAsyncContext *p = l->pub, *s = l->sub;
    l->pub = l->sub = NULL;
    if (p)
        redisAsyncFree(p);
    if (s)
        redisAsyncFree(s);
}

/* Ends the loop once both connections are gone (shutdown). */
static void finish_if_closed(struct cluster_link *l)
{
    if (!l->pub && !l->sub)
        ev_break(l->loop, EVBREAK_ALL);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct cluster_link *l = ac->data;
    if (status == REDIS_OK)
        return;
    /* hiredis frees ac when this returns. */
    if (forget(l, ac))
        link_fail(l, ac->c.errstr[0] ? ac->c.errstr : "the connection failed", false);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    struct cluster_link *l = ac->data;
    bool current = forget(l, ac);
    if (l->state == L_STOPPING)
        finish_if_closed(l);
    else if (current)
        link_fail(l, ac->c.errstr[0] ? ac->c.errstr : "the connection closed", false);
}

static redisAsyncContext *open_conn(struct cluster_link *l, char *why, size_t cap)
{
    redisAsyncContext *ac = redisAsyncConnect(l->url.host, l->url.port);
    if (!ac) {
        snprintf(why, cap, "out of memory");
        return NULL;
    }
    if (ac->err) {
        snprintf(why, cap, "%s", ac->errstr);
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = l;
    redisLibevAttach(l->loop, ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* A peer gone without a word (a cable, a dead host) is noticed by TCP
     * keepalive on the subscriber, which has nothing to send; the
     * publisher has its heartbeat too. */
    redisEnableKeepAlive(&ac->c);
    return ac;
}

/* Errors that go away by themselves: a Redis loading its data, a busy
 * script, a replica without its master, the client limit. Others (a
 * password, a database, a wrong key type, a read-only replica) need a
 * person. */
static bool transient(const char *err)
{
    static const char *const words[] = { "LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN",
                                         "ERR max number of clients" };
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strncmp(err, words[i], strlen(words[i])) == 0)
            return true;
    return false;
}

/* Redis answered an error to `what`: the attempt fails, for good at
 * startup unless the error is transient. */
static void refused(struct cluster_link *l, const char *what, const redisReply *r)
{
    char why[WHY_MAX];
    if (strncmp(r->str, "NOAUTH", 6) == 0)
        snprintf(why, sizeof why,
                 "Redis at %s wants a password (%.256s): give it in the URL, "
                 "redis://:PASSWORD@HOST:PORT",
                 l->where, r->str);
    else
        snprintf(why, sizeof why, "Redis at %s refused %.64s: %.256s", l->where, what, r->str);
    link_fail(l, why, !transient(r->str));
}

/* The reply to a command of the handshake or the lease on ac: NULL when ac
 * is no longer current (a pending callback of a connection being freed),
 * or when Redis answered an error, which refused() has dealt with. */
static redisReply *answer(redisAsyncContext *ac, void *reply, const char *what)
{
    struct cluster_link *l = ac->data;
    redisReply *r = reply;
    if (!r || (ac != l->pub && ac != l->sub))
        return NULL;
    if (r->type == REDIS_REPLY_ERROR) {
        refused(l, what, r);
        return NULL;
    }
    return r;
}

static void pub_select(struct cluster_link *l);
static void pub_join(struct cluster_link *l);

/* Both connections are ready: the link is up. */
static void maybe_up(struct cluster_link *l)
{
    if (l->state != L_CONNECTING || !l->pub_ready || !l->sub_ready)
        return;
    ev_timer_stop(l->loop, &l->connect_w);
    l->state = L_UP;
    l->attempt = 0;
    l->beat_pending = l->count_pending = false;
    /* The node number was stored before: a publisher that sees up sees it. */
    atomic_store_explicit(&l->up, true, memory_order_release);
    COUNT(l, joins);
    cluster_link_sync_chans(l);

    unsigned node = atomic_load(&l->node);
    uint64_t lost = atomic_load(&l->not_forwarded) - l->not_forwarded_before;
    if (!l->ever_up && lost)
        log_info("cluster: joined Redis at %s as node %u (prefix %s); %llu message%s could not "
                 "be forwarded before",
                 l->where, node, l->prefix, (unsigned long long)lost, PLURAL(lost));
    else if (!l->ever_up)
        log_info("cluster: joined Redis at %s as node %u (prefix %s)", l->where, node, l->prefix);
    else
        log_info("cluster: Redis at %s is back after %.1f s (node %u); %llu message%s "
                 "could not be forwarded meanwhile",
                 l->where, clock_seconds() - l->down_since, node, (unsigned long long)lost,
                 PLURAL(lost));
    l->ever_up = true;
    if (!l->reported)
        report(l, CLUSTER_JOINED, "");
}

static void auth_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)priv;
    struct cluster_link *l = ac->data;
    if (!answer(ac, reply, "the password (AUTH)"))
        return;
    if (ac == l->sub) {
        l->sub_ready = true;
        maybe_up(l);
    } else {
        pub_select(l);
    }
}

/* The subscriber without a password: PING proves it is served. */
static void ping_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)priv;
    struct cluster_link *l = ac->data;
    if (!answer(ac, reply, "PING"))
        return;
    l->sub_ready = true;
    maybe_up(l);
}

static void select_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)priv;
    struct cluster_link *l = ac->data;
    char what[64];
    snprintf(what, sizeof what, "database %d (SELECT)", l->url.db);
    if (answer(ac, reply, what))
        pub_join(l);
}

/* The publisher's steps, each after the one before succeeded (pipelined,
 * an INCR behind a refused AUTH or SELECT would count in database 0):
 * AUTH, SELECT, then the node number. */
static void pub_select(struct cluster_link *l)
{
    if (l->url.db)
        redisAsyncCommand(l->pub, select_cb, NULL, "SELECT %d", l->url.db);
    else
        pub_join(l);
}

static void send_incr(struct cluster_link *l);

static void send_claim(struct cluster_link *l, unsigned node, redisCallbackFn *cb)
{
    char key[LIM_REDIS_PREFIX_MAX + 32], ttl[24];
    key_name(l, key, sizeof key, "lease:", node);
    snprintf(ttl, sizeof ttl, "%lld", (long long)(LIM_CLUSTER_LEASE_TTL * 1000));
    redisAsyncCommand(l->pub, cb, (void *)(uintptr_t)node, "EVAL %s 1 %s %s %s", CLAIM_SCRIPT,
                      key, l->token, ttl);
}

/* The answer to a claim made while connecting (a number from INCR, or
 * this node's own after a reconnect). */
static void claim_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    struct cluster_link *l = ac->data;
    unsigned n = (unsigned)(uintptr_t)priv;
    redisReply *r = answer(ac, reply, "the node's lease (EVAL)");
    if (!r)
        return;
    bool ours = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    if (atomic_load(&l->node) == 0) {
        if (!ours) {
            if (++l->join_tries >= CLUSTER_NODE_MAX) {
                link_fail(l, "every node number (1..4095) is held by a live node", true);
                return;
            }
            send_incr(l);
            return;
        }
        atomic_store(&l->node, n);
        if (l->on_node)
            l->on_node(l->ctx, n);
        /* The node's own channel, referenced for as long as the link lives. */
        char ch[LIM_REDIS_PREFIX_MAX + 32], name[16];
        int nl = snprintf(name, sizeof name, "%u", n);
        size_t cl = cluster_wire_channel(ch, sizeof ch, l->prefix, l->plen, CLUSTER_CH_NODE, name,
                                         (size_t)nl);
        cluster_chans_ref(l->chans, ch, cl);
    } else if (!ours && !l->lease_lost_logged) {
        log_error("cluster: node number %u is held by another node (Redis lost its data while "
                  "this node was away?): connection ids of the two may collide; restart this "
                  "node to take a new number",
                  n);
        l->lease_lost_logged = true;
    }
    l->pub_ready = true;
    maybe_up(l);
}

static void incr_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)priv;
    struct cluster_link *l = ac->data;
    redisReply *r = answer(ac, reply, "INCR of the node counter");
    if (!r)
        return;
    if (r->type != REDIS_REPLY_INTEGER || r->integer < 1) {
        char why[WHY_MAX];
        snprintf(why, sizeof why, "Redis at %s: the node counter %snodes is below 1", l->where,
                 l->prefix);
        link_fail(l, why, true);
        return;
    }
    unsigned n = (unsigned)((uint64_t)(r->integer - 1) % CLUSTER_NODE_MAX) + 1;
    send_claim(l, n, claim_cb);
}

static void send_incr(struct cluster_link *l)
{
    char key[LIM_REDIS_PREFIX_MAX + 16];
    key_name(l, key, sizeof key, "nodes", 0);
    redisAsyncCommand(l->pub, incr_cb, NULL, "INCR %s", key);
}

/* A number from INCR the first time; this node's own, claimed again, after
 * a reconnect. Channels are not per database; these keys are. */
static void pub_join(struct cluster_link *l)
{
    unsigned node = atomic_load(&l->node);
    if (node)
        send_claim(l, node, claim_cb);
    else
        send_incr(l);
}

/* One attempt: both connections, AUTH, SELECT, the node number; replies
 * arrive in the callbacks above (hiredis queues the first commands until
 * the socket is connected). */
static void connect_now(struct cluster_link *l)
{
    char why[WHY_MAX];
    l->state = L_CONNECTING;
    l->pub_ready = l->sub_ready = false;
    l->join_tries = 0;
    ev_timer_set(&l->connect_w, LIM_CLUSTER_CONNECT_TIMEOUT, 0);
    ev_timer_start(l->loop, &l->connect_w);
    if (!(l->pub = open_conn(l, why, sizeof why)) || !(l->sub = open_conn(l, why, sizeof why))) {
        link_fail(l, why, false);
        return;
    }
    if (l->url.has_password) {
        if (l->url.user[0]) {
            redisAsyncCommand(l->pub, auth_cb, NULL, "AUTH %s %s", l->url.user, l->url.password);
            redisAsyncCommand(l->sub, auth_cb, NULL, "AUTH %s %s", l->url.user, l->url.password);
        } else {
            redisAsyncCommand(l->pub, auth_cb, NULL, "AUTH %s", l->url.password);
            redisAsyncCommand(l->sub, auth_cb, NULL, "AUTH %s", l->url.password);
        }
    } else {
        redisAsyncCommand(l->sub, ping_cb, NULL, "PING");
        pub_select(l);
    }
}

static void link_fail(struct cluster_link *l, const char *why, bool fatal)
{
    if (l->state == L_STOPPING) {
        close_all(l);
        finish_if_closed(l);
        return;
    }
    if (l->state == L_DOWN)
        return;                 /* the same fall, told twice */
    bool was_up = l->state == L_UP;
    /* Counted from here on: what publishers refuse once they see the link
     * down, and what is lost in flight below. */
    if (was_up)
        l->not_forwarded_before = atomic_load(&l->not_forwarded);
    l->state = L_DOWN;
    atomic_store(&l->up, false);
    ev_timer_stop(l->loop, &l->connect_w);
    close_all(l);
    cluster_chans_reset(l->chans);

    if (was_up) {
        COUNT(l, drops);
        l->down_since = clock_seconds();
        log_warn("cluster: lost Redis at %s: %s; running alone until it is back", l->where, why);
    } else if (!l->reported) {
        /* The line first: it comes before whatever the starter logs next. */
        if (!fatal)
            log_warn("cluster: Redis at %s is unreachable (%s): running alone until it can join",
                     l->where, why);
        report(l, fatal ? CLUSTER_REFUSED : CLUSTER_ALONE, why);
    } else if (fatal && strcmp(why, l->last_why) != 0) {
        log_error("cluster: %s; retrying", why);
    } else {
        log_debug("cluster: attempt to reach Redis at %s failed: %s", l->where, why);
    }
    snprintf(l->last_why, sizeof l->last_why, "%s", why);

    ev_timer_set(&l->retry_w, backoff(l), 0);
    ev_timer_start(l->loop, &l->retry_w);
    l->attempt++;
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    connect_now(w->data);
}

static void connect_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    char why[64];
    snprintf(why, sizeof why, "no answer within %.0f s", LIM_CLUSTER_CONNECT_TIMEOUT);
    link_fail(w->data, why, false);
}

/* Logs what a rate-limited line has not reported yet (bursts that
 * ended). */
static void flush_logs(struct cluster_link *l)
{
    unsigned long k;
    if ((k = log_every_flush(&l->full_log, LIM_CLUSTER_LOG_INTERVAL)))
        log_info("cluster: the queue to Redis is full (%d bytes): %lu message%s not forwarded",
                 LIM_CLUSTER_QUEUE_BYTES, k, PLURAL(k));
    if ((k = log_every_flush(&l->large_log, LIM_CLUSTER_LOG_INTERVAL)))
        log_info("cluster: %lu message%s larger than %d bytes not forwarded", k, PLURAL(k),
                 LIM_CLUSTER_MESSAGE_MAX);
    if ((k = log_every_flush(&l->bad_log, LIM_CLUSTER_LOG_INTERVAL)))
        log_info("cluster: %lu more malformed message%s dropped", k, PLURAL(k));
    if ((k = log_every_flush(&l->refused_log, LIM_CLUSTER_LOG_INTERVAL)))
        log_info("cluster: Redis refused %lu more command%s", k, PLURAL(k));
}

/* Renewal of the lease while up. */
static void lease_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)priv;
    struct cluster_link *l = ac->data;
    redisReply *r = answer(ac, reply, "the node's lease (EVAL)");
    if (!r)
        return;
    l->beat_pending = false;
    if (r->type == REDIS_REPLY_INTEGER && r->integer == 0 && !l->lease_lost_logged) {
        log_error("cluster: node number %u is now held by another node (this node was cut "
                  "off longer than its lease?): connection ids of the two may collide; "
                  "restart this node to take a new number",
                  atomic_load(&l->node));
        l->lease_lost_logged = true;
    }
}

static void beat_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct cluster_link *l = w->data;
    flush_logs(l);
    if (l->state != L_UP)
        return;
    if (l->beat_pending) {
        if (clock_seconds() - l->beat_sent > LIM_CLUSTER_REPLY_TIMEOUT) {
            char why[64];
            snprintf(why, sizeof why, "no answer for %.0f s", LIM_CLUSTER_REPLY_TIMEOUT);
            link_fail(l, why, false);
        }
        return;
    }
    l->beat_pending = true;
    l->beat_sent = clock_seconds();
    send_claim(l, atomic_load(&l->node), lease_cb);
}

static void count_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)priv;
    struct cluster_link *l = ac->data;
    redisReply *r = reply;
    if (!r || ac != l->pub)
        return;
    l->count_pending = false;
    if (r->type == REDIS_REPLY_ERROR) {
        unsigned long k = log_every_hit(&l->refused_log, LIM_CLUSTER_LOG_INTERVAL);
        if (k)
            log_info("cluster: Redis refused the counts script: %s (%lu since the last such "
                     "line)",
                     r->str, k);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY)
        return;
    struct cluster_count_table *t = cluster_count_table_new();
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *p = r->element[i], *n = r->element[i + 1];
        if (p->type == REDIS_REPLY_STRING && n->type == REDIS_REPLY_INTEGER && n->integer >= 0)
            cluster_count_table_add(t, p->str, p->len, (uint64_t)n->integer);
    }
    cluster_count_cache_swap(&l->count_cache, t, now_ms());
}

static void count_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    struct cluster_link *l = w->data;
    if (l->state != L_UP || !l->counts || l->count_pending)
        return;
    struct cluster_counts c;
    memset(&c, 0, sizeof c);
    l->counts(l->ctx, &c);
    size_t argc = 7 + c.args.n;
    const char **argv = xmalloc(argc * sizeof *argv);
    size_t *lens = xmalloc(argc * sizeof *lens);
    char node[16], ttl[24];
    snprintf(node, sizeof node, "%u", atomic_load(&l->node));
    snprintf(ttl, sizeof ttl, "%lld", (long long)(LIM_CLUSTER_COUNT_TTL * 1000));
    const char *fixed[] = { "EVAL", COUNT_SCRIPT, "0", l->prefix, node, ttl };
    size_t k = 0;
    for (; k < 6; k++) {
        argv[k] = fixed[k];
        lens[k] = strlen(fixed[k]);
    }
    for (size_t i = 0; i < c.args.n; i++, k++) {
        argv[k] = c.args.bytes.data + c.args.off[i];
        lens[k] = c.args.len[i];
    }
    if (redisAsyncCommandArgv(l->pub, count_cb, NULL, (int)k, argv, lens) == REDIS_OK)
        l->count_pending = true;
    free(argv);
    free(lens);
    cluster_names_free(&c.args);
}

static void chans_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop, (void)revents;
    cluster_link_sync_chans(w->data);
}

static void quit_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac, (void)reply, (void)priv;
    /* Redis closes the connection after its answer: on_disconnect. */
}

/* QUIT on the subscriber once hiredis has left subscribed mode (sent
 * before, hiredis 0.14 would take its answer for a message and abort). */
void cluster_link_sub_quit(struct cluster_link *l)
{
    if (!l->sub || l->sub_quit || (l->sub->c.flags & REDIS_SUBSCRIBED))
        return;
    l->sub_quit = true;
    redisAsyncCommand(l->sub, quit_cb, NULL, "QUIT");
}

static void leave(struct cluster_link *l)
{
    if (l->pub) {
        unsigned node = atomic_load(&l->node);
        char lease[LIM_REDIS_PREFIX_MAX + 32], counts[LIM_REDIS_PREFIX_MAX + 32],
            live[LIM_REDIS_PREFIX_MAX + 16], num[16];
        key_name(l, lease, sizeof lease, "lease:", node);
        key_name(l, counts, sizeof counts, "counts:", node);
        key_name(l, live, sizeof live, "counted", 0);
        snprintf(num, sizeof num, "%u", node);
        redisAsyncCommand(l->pub, NULL, NULL, "EVAL %s 3 %s %s %s %s %s", LEAVE_SCRIPT, lease,
                          counts, live, l->token, num);
        redisAsyncCommand(l->pub, quit_cb, NULL, "QUIT");
    }
    if (l->sub) {
        cluster_chans_take_subscribed(l->chans, &l->unsub_names);
        cluster_link_send_names(l, "UNSUBSCRIBE", &l->unsub_names);
        cluster_names_clear(&l->unsub_names);
        cluster_link_sub_quit(l);
    }
}

/* Runs when nothing else is pending: once the queued publishes have been
 * handed to hiredis (ahead of QUIT on the same connection), leaves. */
static void drain_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)revents;
    struct cluster_link *l = w->data;
    if (inbox_bytes(&l->ib) != 0)
        return;
    ev_idle_stop(loop, w);
    leave(l);
    finish_if_closed(l);
}

static void quit_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct cluster_link *l = w->data;
    log_info("cluster: Redis at %s did not confirm the shutdown within %.0f s: closing",
             l->where, LIM_CLUSTER_QUIT_TIMEOUT);
    close_all(l);
    ev_break(loop, EVBREAK_ALL);
}

static void stop_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)revents;
    struct cluster_link *l = w->data;
    inbox_close(&l->ib);
    atomic_store(&l->up, false);
    ev_timer_stop(loop, &l->retry_w);
    ev_timer_stop(loop, &l->connect_w);
    ev_timer_stop(loop, &l->beat_w);
    ev_timer_stop(loop, &l->count_w);
    bool was_up = l->state == L_UP;
    l->state = L_STOPPING;
    if (!was_up) {
        close_all(l);
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    ev_timer_set(&l->quit_w, LIM_CLUSTER_QUIT_TIMEOUT, 0);
    ev_timer_start(loop, &l->quit_w);
    ev_idle_start(loop, &l->drain_w);
}

static void *link_main(void *arg)
{
    struct cluster_link *l = arg;
    struct ev_loop *loop = l->loop;
    inbox_init(&l->ib, loop, "the cluster link", LIM_CLUSTER_QUEUE_BYTES, l);
    ev_async_start(loop, &l->chans_w);
    ev_async_start(loop, &l->stop_w);
    ev_timer_start(loop, &l->beat_w);
    ev_timer_start(loop, &l->count_w);
    connect_now(l);
    ev_run(loop, 0);

    close_all(l);
    ev_async_stop(loop, &l->chans_w);
    ev_async_stop(loop, &l->stop_w);
    ev_timer_stop(loop, &l->retry_w);
    ev_timer_stop(loop, &l->connect_w);
    ev_timer_stop(loop, &l->beat_w);
    ev_timer_stop(loop, &l->count_w);
    ev_timer_stop(loop, &l->quit_w);
    ev_idle_stop(loop, &l->drain_w);
    inbox_free(&l->ib);
    flush_logs(l);
    return NULL;
}

enum cluster_start cluster_link_start(const struct cluster_link_config *cfg,
                                      struct cluster_link **out, char *why, size_t whylen)
{
    *out = NULL;
    struct cluster_link *l = xcalloc(1, sizeof *l);
    l->url = cfg->url;
    snprintf(l->prefix, sizeof l->prefix, "%s", cfg->prefix);
    l->plen = strlen(l->prefix);
    snprintf(l->where, sizeof l->where, strchr(l->url.host, ':') ? "[%s]:%d" : "%s:%d",
             l->url.host, l->url.port);
    unsigned char tok[16];
    crypto_random(tok, sizeof tok);
    for (size_t i = 0; i < sizeof tok; i++)
        snprintf(l->token + 2 * i, 3, "%02x", tok[i]);
    crypto_random(&l->rng, sizeof l->rng);
    l->rng |= 1;
    l->on_message = cfg->on_message;
    l->counts = cfg->counts;
    l->on_node = cfg->on_node;
    l->ctx = cfg->ctx;
    l->chans = cluster_chans_new();
    cluster_count_cache_init(&l->count_cache);
    pthread_mutex_init(&l->start_mu, NULL);
    pthread_cond_init(&l->start_cv, NULL);
    l->state = L_DOWN;

    l->loop = ev_loop_new(EVFLAG_AUTO);
    if (!l->loop) {
        snprintf(why, whylen, "cannot create an event loop");
        cluster_chans_free(l->chans);
        cluster_count_cache_free(&l->count_cache);
        free(l);
        return CLUSTER_REFUSED;
    }
    ev_async_init(&l->chans_w, chans_cb);
    ev_async_init(&l->stop_w, stop_cb);
    ev_init(&l->retry_w, retry_cb);
    ev_init(&l->connect_w, connect_timeout_cb);
    ev_timer_init(&l->beat_w, beat_cb, LIM_CLUSTER_LEASE_REFRESH, LIM_CLUSTER_LEASE_REFRESH);
    ev_timer_init(&l->count_w, count_tick, LIM_CLUSTER_COUNT_INTERVAL, LIM_CLUSTER_COUNT_INTERVAL);
    ev_init(&l->quit_w, quit_timeout_cb);
    ev_idle_init(&l->drain_w, drain_cb);
    l->chans_w.data = l->stop_w.data = l;
    l->retry_w.data = l->connect_w.data = l->beat_w.data = l->count_w.data = l->quit_w.data = l;
    l->drain_w.data = l;

    /* The link's thread takes no signal: they are the master's (and the
     * CPU-budget interrupt the workers'). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&l->thread, NULL, link_main, l);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(why, whylen, "cannot start the link's thread: %s", strerror(rc));
        ev_loop_destroy(l->loop);
        cluster_chans_free(l->chans);
        cluster_count_cache_free(&l->count_cache);
        free(l);
        return CLUSTER_REFUSED;
    }

    /* The first attempt ends by itself within LIM_CLUSTER_CONNECT_TIMEOUT
     * (a name lookup may block the link's thread longer: then the node
     * starts alone, and the link goes on trying). */
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += (time_t)(2 * LIM_CLUSTER_CONNECT_TIMEOUT) + 1;
    pthread_mutex_lock(&l->start_mu);
    while (!l->start_done)
        if (pthread_cond_timedwait(&l->start_cv, &l->start_mu, &deadline) != 0 &&
            !l->start_done) {
            l->start_done = true;
            l->start_result = CLUSTER_ALONE;
            snprintf(l->start_why, sizeof l->start_why, "no answer yet");
        }
    enum cluster_start result = l->start_result;
    snprintf(why, whylen, "%s", l->start_why);
    pthread_mutex_unlock(&l->start_mu);

    if (result == CLUSTER_REFUSED) {
        cluster_link_stop(l);
        return result;
    }
    *out = l;
    return result;
}

void cluster_link_stop(struct cluster_link *l)
{
    ev_async_send(l->loop, &l->stop_w);
    pthread_join(l->thread, NULL);
    ev_loop_destroy(l->loop);
    cluster_chans_free(l->chans);
    cluster_count_cache_free(&l->count_cache);
    cluster_names_free(&l->sub_names);
    cluster_names_free(&l->unsub_names);
    pthread_mutex_destroy(&l->start_mu);
    pthread_cond_destroy(&l->start_cv);
    free(l);
}

unsigned cluster_link_node(const struct cluster_link *l)
{
    return atomic_load(&l->node);
}

bool cluster_link_up(const struct cluster_link *l)
{
    return atomic_load(&l->up);
}

bool cluster_link_count_others(struct cluster_link *l, const char *path, size_t len,
                               uint64_t *n)
{
    return cluster_count_cache_get(&l->count_cache, path, len, now_ms(),
                                   (int64_t)(LIM_CLUSTER_COUNT_TTL * 1000), n);
}

void cluster_link_stats(const struct cluster_link *l, struct cluster_link_stats *st)
{
    st->published = atomic_load(&l->published);
    st->not_forwarded = atomic_load(&l->not_forwarded);
    st->queue_full = atomic_load(&l->queue_full);
    st->too_large = atomic_load(&l->too_large);
    st->received = atomic_load(&l->received);
    st->own_skipped = atomic_load(&l->own_skipped);
    st->malformed = atomic_load(&l->malformed);
    st->drops = atomic_load(&l->drops);
    st->joins = atomic_load(&l->joins);
    st->subscribed = atomic_load(&l->subscribed);
}
