#include "inbox.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/buf.h"
#include "../util/clock.h"
#include "../util/limits.h"
#include "../util/log.h"

static int64_t now_ms(void)
{
    return clock_coarse_ns() / 1000000;
}

/* Joins the queue: one exchange makes n the newest node, then the link
 * from the one before. Between the two the consumer sees the queue end at
 * that node; it stops there and this poster's wake-up brings it back. */
static void push(struct inbox *ib, struct inbox_node *n)
{
    atomic_store_explicit(&n->next, NULL, memory_order_relaxed);
    struct inbox_node *prev = atomic_exchange_explicit(&ib->head, n, memory_order_acq_rel);
    atomic_store_explicit(&prev->next, n, memory_order_release);
}

/* The oldest node, or NULL when there is none, or when the next one is
 * still being linked in. Consumer only. */
static struct inbox_node *pop(struct inbox *ib)
{
    struct inbox_node *tail = ib->tail;
    struct inbox_node *next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (tail == &ib->stub) {
        if (!next)
            return NULL;
        ib->tail = tail = next;
        next = atomic_load_explicit(&tail->next, memory_order_acquire);
    }
    if (next) {
        ib->tail = next;
        return tail;
    }
    if (tail != atomic_load_explicit(&ib->head, memory_order_acquire))
        return NULL;
    /* tail is the last node: put the stub behind it so it can leave. */
    push(ib, &ib->stub);
    next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (next) {
        ib->tail = next;
        return tail;
    }
    return NULL;
}

/* Logs the refusals since the last line, when one is due (or now, with
 * force); any thread. The exchange on last_log picks one logger. */
static void log_drops(struct inbox *ib, bool force)
{
    if (!atomic_load_explicit(&ib->unlogged, memory_order_relaxed))
        return;
    int64_t now = now_ms();
    int64_t last = atomic_load_explicit(&ib->last_log, memory_order_relaxed);
    if (!force && last && now - last < (int64_t)(LIM_INBOX_LOG_INTERVAL * 1000))
        return;
    if (!atomic_compare_exchange_strong(&ib->last_log, &last, now))
        return;
    uint64_t n = atomic_exchange(&ib->unlogged, 0);
    if (n)
        log_info("inbox of %s full (%zu bytes): %" PRIu64 " item%s dropped", ib->name, ib->cap, n,
                 n == 1 ? "" : "s");
}

static void release_bytes(struct inbox *ib, const struct inbox_node *n)
{
    atomic_fetch_sub_explicit(&ib->bytes, n->item.bytes + sizeof *n, memory_order_relaxed);
}

static void async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)revents;
    struct inbox *ib = w->data;
    /* What is queued now, not what running items add: those wait. */
    uint64_t ready = atomic_load_explicit(&ib->posted, memory_order_acquire) - ib->taken;
    uint64_t batch = ready < LIM_INBOX_BATCH ? ready : LIM_INBOX_BATCH;
    struct inbox_node *n;
    for (uint64_t i = 0; i < batch && (n = pop(ib)); i++) {
        struct inbox_item it = n->item;
        ib->taken++;
        release_bytes(ib, n);
        free(n);
        it.run(it.arg, ib->ctx);
    }
    /* More than a batch: wake again in the next iteration, after the
     * sockets. (Items behind a node still being linked come with its
     * poster's wake-up.) */
    if (ready > batch)
        ev_async_send(loop, w);
    log_drops(ib, false);
}

void inbox_init(struct inbox *ib, struct ev_loop *loop, const char *name, size_t cap, void *ctx)
{
    memset(ib, 0, sizeof *ib);
    atomic_init(&ib->stub.next, NULL);
    atomic_init(&ib->head, &ib->stub);
    atomic_init(&ib->posted, 0);
    atomic_init(&ib->bytes, 0);
    atomic_init(&ib->dropped, 0);
    atomic_init(&ib->unlogged, 0);
    atomic_init(&ib->last_log, 0);
    atomic_init(&ib->closed, false);
    ib->tail = &ib->stub;
    ib->loop = loop;
    ib->ctx = ctx;
    ib->cap = cap;
    snprintf(ib->name, sizeof ib->name, "%s", name);
    ev_async_init(&ib->async_w, async_cb);
    ib->async_w.data = ib;
    ev_async_start(loop, &ib->async_w);
    ev_unref(loop);
}

static bool post(struct inbox *ib, const struct inbox_item *it, bool capped)
{
    assert(it->run);
    if (atomic_load_explicit(&ib->closed, memory_order_acquire))
        return false;
    size_t cost = it->bytes + sizeof(struct inbox_node);
    size_t was = atomic_fetch_add_explicit(&ib->bytes, cost, memory_order_relaxed);
    if (capped && (cost > ib->cap || was > ib->cap - cost)) {
        atomic_fetch_sub_explicit(&ib->bytes, cost, memory_order_relaxed);
        atomic_fetch_add_explicit(&ib->dropped, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&ib->unlogged, 1, memory_order_relaxed);
        log_drops(ib, false);
        return false;
    }
    struct inbox_node *n = xmalloc(sizeof *n);
    n->item = *it;
    push(ib, n);
    atomic_fetch_add_explicit(&ib->posted, 1, memory_order_release);
    ev_async_send(ib->loop, &ib->async_w);
    return true;
}

bool inbox_post(struct inbox *ib, const struct inbox_item *it)
{
    return post(ib, it, true);
}

bool inbox_post_control(struct inbox *ib, const struct inbox_item *it)
{
    return post(ib, it, false);
}

void inbox_close(struct inbox *ib)
{
    atomic_store_explicit(&ib->closed, true, memory_order_release);
}

void inbox_free(struct inbox *ib)
{
    ev_ref(ib->loop);
    ev_async_stop(ib->loop, &ib->async_w);
    struct inbox_node *n;
    while ((n = pop(ib))) {
        release_bytes(ib, n);
        if (n->item.drop)
            n->item.drop(n->item.arg);
        free(n);
    }
    /* With every poster gone, nothing can be half-linked. */
    assert(ib->tail == atomic_load(&ib->head));
    log_drops(ib, true);
}

uint64_t inbox_dropped(struct inbox *ib)
{
    return atomic_load_explicit(&ib->dropped, memory_order_relaxed);
}

size_t inbox_bytes(struct inbox *ib)
{
    return atomic_load_explicit(&ib->bytes, memory_order_relaxed);
}
