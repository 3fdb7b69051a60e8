/*
 * cluster_link's subscriptions: the references workers take on channels
 * (any thread), the (UN)SUBSCRIBE commands they lead to, and the messages
 * that arrive on them (the link's thread). See cluster_link.h.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "../util/buf.h"
#include "../util/xshbuf.h"
#include "cluster_link_impl.h"

static void deliver(struct cluster_link *l, const redisReply *chr, const redisReply *msgr)
{
    /* Once stopping, the workers that on_message posts to are gone. */
    if (l->state == L_STOPPING || chr->type != REDIS_REPLY_STRING ||
        msgr->type != REDIS_REPLY_STRING)
        return;
    enum cluster_chan ch = CLUSTER_CH_TOPIC;
    const char *name = NULL, *err;
    size_t nlen = 0;
    struct cluster_msg m;
    if (!cluster_wire_channel_parse(chr->str, chr->len, l->prefix, l->plen, &ch, &name, &nlen))
        err = "not a channel of this prefix";
    else if (msgr->len > LIM_CLUSTER_MESSAGE_MAX)
        err = "larger than 8388608 bytes";
    else
        err = cluster_wire_decode(msgr->str, msgr->len, ch, &m);
    if (err) {
        COUNT(l, malformed);
        unsigned long k = log_every_hit(&l->bad_log, LIM_CLUSTER_LOG_INTERVAL);
        if (k)
            log_info("cluster: a message on %.*s dropped: %s (%lu since the last such line)",
                     (int)(chr->len < 200 ? chr->len : 200), chr->str, err, k);
        return;
    }
    if (m.origin && m.origin == atomic_load_explicit(&l->node, memory_order_relaxed)) {
        COUNT(l, own_skipped);
        return;
    }
    COUNT(l, received);
    if (!l->on_message)
        return;
    struct xshbuf *xb = xshbuf_new(m.len);
    memcpy(xb->data, m.payload, m.len);
    struct cluster_rx rx = { ch, name, nlen, m.origin, m.kind, m.target, xb };
    l->on_message(l->ctx, &rx);
    xshbuf_unref(xb);
}

/* Every reply of the subscriber once it subscribes: confirmations and
 * messages. */
static void sub_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    struct cluster_link *l = priv;
    redisReply *r = reply;
    if (!r || ac != l->sub)
        return;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = r->element[0]->str;
    if (strcmp(kind, "message") == 0) {
        deliver(l, r->element[1], r->element[2]);
        return;
    }
    if (r->element[2]->type == REDIS_REPLY_INTEGER)
        atomic_store(&l->subscribed, (uint64_t)r->element[2]->integer);
    if (l->state == L_STOPPING)
        cluster_link_sub_quit(l);
}

void cluster_link_send_names(struct cluster_link *l, const char *cmd,
                             const struct cluster_names *ns)
{
    const char *argv[LIM_CLUSTER_SUB_BATCH + 1];
    size_t lens[LIM_CLUSTER_SUB_BATCH + 1];
    for (size_t i = 0; i < ns->n;) {
        int argc = 1;
        argv[0] = cmd;
        lens[0] = strlen(cmd);
        for (; i < ns->n && argc <= LIM_CLUSTER_SUB_BATCH; i++, argc++) {
            argv[argc] = ns->bytes.data + ns->off[i];
            lens[argc] = ns->len[i];
        }
        /* Refused only while the connection is closing: the reconnect
         * subscribes again. */
        redisAsyncCommandArgv(l->sub, sub_cb, l, argc, argv, lens);
    }
}

void cluster_link_sync_chans(struct cluster_link *l)
{
    if (l->state != L_UP || !l->sub)
        return;
    cluster_chans_changes(l->chans, &l->sub_names, &l->unsub_names);
    cluster_link_send_names(l, "SUBSCRIBE", &l->sub_names);
    cluster_link_send_names(l, "UNSUBSCRIBE", &l->unsub_names);
    cluster_names_clear(&l->sub_names);
    cluster_names_clear(&l->unsub_names);
}

/* Any thread: a reference more or less on a channel; the link's thread
 * is woken when Redis must be told. */
static void change_ref(struct cluster_link *l, enum cluster_chan ch, const char *name,
                       size_t nlen, bool ref)
{
    assert(ch != CLUSTER_CH_NODE);
    char small[256];
    size_t len = cluster_wire_channel(small, sizeof small, l->prefix, l->plen, ch, name, nlen);
    char *c = small;
    if (len > sizeof small) {
        c = xmalloc(len);
        cluster_wire_channel(c, len, l->prefix, l->plen, ch, name, nlen);
    }
    bool wake = ref ? cluster_chans_ref(l->chans, c, len) : cluster_chans_unref(l->chans, c, len);
    if (c != small)
        free(c);
    if (wake)
        ev_async_send(l->loop, &l->chans_w);
}

void cluster_link_subscribe(struct cluster_link *l, enum cluster_chan ch, const char *name,
                            size_t nlen)
{
    change_ref(l, ch, name, nlen, true);
}

void cluster_link_unsubscribe(struct cluster_link *l, enum cluster_chan ch, const char *name,
                              size_t nlen)
{
    change_ref(l, ch, name, nlen, false);
}
