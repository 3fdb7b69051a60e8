/*
 * Where moonws.broadcast, publish and send go: to this worker's own
 * connections at once, to the other workers through their inboxes, and
 * with --redis to the other nodes through the cluster link (one copy per
 * process, handed over by the calling worker: cluster_link.h).
 *
 * A message for the other workers crosses threads once, by reference: one
 * xshbuf (util/xshbuf.h, an atomic count) holds what it names (a path, a
 * topic or an id), its opcode and its payload, and each other worker's
 * inbox gets an item holding one reference. Each worker then builds (and
 * compresses) the frame once for all of its own clients (ws_bcast) and
 * drops its reference. An inbox is FIFO per poster, so what one worker
 * sends reaches each other worker in the order it was sent. Nothing here
 * holds a lock while a socket is written. An inbox over its byte cap
 * refuses the item: it is dropped there, counted and logged (inbox.c).
 */
#include <string.h>

#include "../cluster/cluster_link.h"
#include "../transport/inbox.h"
#include "../transport/worker.h"
#include "../util/connid.h"
#include "../util/xshbuf.h"
#include "lx.h"
#include "runtime.h"

struct lx_at lx_at_path(struct lx_rt *rt, const char *path, size_t n)
{
    struct router *r = &rt->router;
    struct lx_at at = { router_find_mounted(r, path), NULL, 0 };
    if (!at.svc && (at.svc = router_find(r, path, n, NULL)) != NULL && strchr(at.svc->path, ':')) {
        at.only = path;
        at.only_len = n;
    }
    return at;
}

bool lx_at_has(const struct lx_at *at, struct ws_conn *wc)
{
    return ws_is_open(wc) && (!at->only || lx_conn_opened_at(wc, at->only, at->only_len));
}

size_t lx_broadcast_here(struct lx_rt *rt, const char *path, size_t len, uint8_t opcode,
                         const char *p, size_t n)
{
    struct lx_at at = lx_at_path(rt, path, len);
    size_t count = 0;
    if (at.svc) {
        struct ws_bcast b;
        ws_bcast_init(&b, opcode, p, n);
        /* Connections leave this list only when freed, after the loop
         * iteration, so a close during the walk does not break it. */
        for (struct ws_conn *wc = at.svc->conns; wc; wc = wc->svc_next)
            count += lx_at_has(&at, wc) && ws_bcast_send(&b, wc);
        ws_bcast_done(&b);
    }
    return count;
}

/* ---- messages for the other workers ---- */

/* At the start of the xshbuf's bytes; then the name (nlen bytes and a
 * NUL), then the payload. */
struct head {
    uint64_t id;                /* DELIVER_SEND */
    size_t len;                 /* the payload's */
    uint32_t nlen;              /* the path's or topic's */
    uint8_t kind, opcode;
};

static struct xshbuf *message(int kind, uint64_t id, const char *name, size_t nlen,
                              uint8_t opcode, const char *p, size_t n)
{
    struct xshbuf *b = xshbuf_new(sizeof(struct head) + nlen + 1 + n);
    struct head h = { .id = id, .len = n, .nlen = (uint32_t)nlen, .kind = (uint8_t)kind,
                      .opcode = opcode };
    memcpy(b->data, &h, sizeof h);
    char *at = b->data + sizeof h;
    if (nlen)
        memcpy(at, name, nlen);
    at[nlen] = '\0';
    if (n)
        memcpy(at + nlen + 1, p, n);
    return b;
}

void lx_deliver_here(struct lx_rt *rt, enum lx_deliver_kind kind, uint64_t id, const char *name,
                     size_t nlen, uint8_t opcode, const char *p, size_t n)
{
    switch (kind) {
    case LX_DELIVER_BROADCAST:
        lx_broadcast_here(rt, name, nlen, opcode, p, n);
        break;
    case LX_DELIVER_PUBLISH:
        pubsub_publish(&rt->pubsub, name, nlen, opcode, p, n);
        break;
    case LX_DELIVER_SEND: {
        /* Open when it was sent; it may have closed since. */
        struct ws_conn *wc = connid_find(id);
        if (wc)
            ws_send(wc, opcode, p, n);
        break;
    }
    }
}

/* On the receiving worker (ctx: its runtime). */
static void run_message(void *arg, void *ctx)
{
    struct xshbuf *b = arg;
    struct head h;
    memcpy(&h, b->data, sizeof h);
    const char *name = b->data + sizeof h;
    lx_deliver_here(ctx, h.kind, h.id, name, h.nlen, h.opcode, name + h.nlen + 1, h.len);
    xshbuf_unref(b);
}

static void drop_message(void *arg)
{
    xshbuf_unref(arg);
}

static bool post(struct lx_rt *rt, unsigned to, struct xshbuf *b)
{
    struct inbox_item it = { .run = run_message, .drop = drop_message,
                             .arg = xshbuf_ref(b), .bytes = b->len };
    if (inbox_post(rt->peers[to], &it))
        return true;
    xshbuf_unref(b);
    return false;
}

/* To every worker but this one. */
static void post_all(struct lx_rt *rt, struct xshbuf *b)
{
    for (unsigned i = 0; i < rt->nworkers; i++) {
        if (i != rt->w->index)
            post(rt, i, b);
    }
    xshbuf_unref(b);
}

static enum cluster_kind kind_of(uint8_t opcode)
{
    return opcode == WS_OP_BINARY ? CLUSTER_BINARY : CLUSTER_TEXT;
}

/* The copy for the other nodes goes once per process, whatever the number
 * of workers; a refusal (the link down, its queue full) is the link's to
 * count and log: local delivery goes on regardless. */
void lx_deliver_broadcast(struct lx_rt *rt, const char *path, size_t len, uint8_t opcode,
                          const char *p, size_t n)
{
    if (rt->nworkers > 1)
        post_all(rt, message(LX_DELIVER_BROADCAST, 0, path, len, opcode, p, n));
    if (rt->cluster)
        cluster_link_publish(rt->cluster->link, CLUSTER_CH_SVC, path, len, kind_of(opcode), p, n);
}

void lx_deliver_publish(struct lx_rt *rt, const char *topic, size_t len, uint8_t opcode,
                        const char *p, size_t n)
{
    if (rt->nworkers > 1)
        post_all(rt, message(LX_DELIVER_PUBLISH, 0, topic, len, opcode, p, n));
    if (rt->cluster)
        cluster_link_publish(rt->cluster->link, CLUSTER_CH_TOPIC, topic, len, kind_of(opcode),
                             p, n);
}

/* An id of another node (its top bits, docs/cluster.md) goes to that
 * node's channel: QUEUED means handed to the link, not delivered. Ids of
 * node 0 (made before this node had its number) and of this node are
 * local. */
static int send_to_node(struct lx_rt *rt, unsigned node, uint64_t id, uint8_t opcode,
                        const char *p, size_t n)
{
    struct cluster_link *l = rt->cluster->link;
    if (!cluster_link_up(l))
        return LX_SEND_UNAVAILABLE;
    return cluster_link_send(l, node, id, kind_of(opcode), p, n) ? LX_SEND_QUEUED : LX_SEND_BUSY;
}

int lx_deliver_send(struct lx_rt *rt, uint64_t id, uint8_t opcode, const char *p, size_t n)
{
    if (id == 0 || id > CLUSTER_ID_MAX)
        return LX_SEND_CLOSED;
    unsigned node = connid_node(id);
    if (rt->cluster && node && node != cluster_link_node(rt->cluster->link))
        return send_to_node(rt, node, id, opcode, p, n);
    unsigned owner = connid_worker(id);
    struct ws_conn *wc = connid_find(id);
    if (!wc || owner >= rt->nworkers)
        return LX_SEND_CLOSED;
    if (owner == rt->w->index)
        return ws_send(wc, opcode, p, n) ? LX_SEND_QUEUED : LX_SEND_CLOSED;
    /* Another worker's: only it may follow the pointer. */
    struct xshbuf *b = message(LX_DELIVER_SEND, id, NULL, 0, opcode, p, n);
    bool ok = post(rt, owner, b);
    xshbuf_unref(b);
    return ok ? LX_SEND_QUEUED : LX_SEND_BUSY;
}
