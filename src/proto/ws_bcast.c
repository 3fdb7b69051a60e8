/*
 * Broadcast frames: one message for many connections, encoded once.
 */
#include "ws_bcast.h"

#include <string.h>

#include "../transport/conn.h"
#include "../util/metrics.h"
#include "../util/shbuf.h"
#include "ws_conn.h"

static struct shbuf *build_frame(uint8_t opcode, uint8_t rsv, const char *p, size_t n)
{
    size_t hl = ws_frame_header_len(n, false);
    struct shbuf *b = shbuf_new(hl + n);
    ws_frame_header_write((uint8_t *)b->data, true, rsv, opcode, n, NULL);
    memcpy(b->data + hl, p, n);
    return b;
}

void ws_bcast_init(struct ws_bcast *b, uint8_t opcode, const char *data, size_t len)
{
    memset(b, 0, sizeof *b);
    b->opcode = opcode;
    b->data = data;
    b->len = len;
}

/* Finds or builds the compressed frame shared by receivers without context
 * takeover that use z's settings. *frame is NULL when compressing does not
 * pay. Returns false when the cache of settings is full. */
static bool shared_deflated(struct ws_bcast *b, struct ws_pmd *z, struct metrics_path_cells *wc_mc,
                            struct shbuf **frame)
{
    for (unsigned i = 0; i < b->nz; i++) {
        if (b->z[i].window_bits == z->def.window_bits && b->z[i].level == z->def.level) {
            *frame = b->z[i].frame;
            return true;
        }
    }
    if (b->nz == sizeof b->z / sizeof b->z[0])
        return false;
    struct buf *zb = &z->def.pool->scratch;
    zb->len = 0;
    pmd_deflate(&z->def, b->data, b->len, zb);
    /* Compressed once for all who share it: counted once. */
    metrics_deflated(wc_mc, b->len, zb->len);
    *frame = zb->len < b->len ? build_frame(b->opcode, WS_RSV1, zb->data, zb->len) : NULL;
    b->z[b->nz].window_bits = z->def.window_bits;
    b->z[b->nz].level = (uint8_t)z->def.level;
    b->z[b->nz].frame = *frame;
    b->nz++;
    return true;
}

/* The run of receivers counted so far goes into its path's counters. */
static void count_run(struct ws_bcast *b)
{
    if (b->run_n) {
        metrics_add(&b->run_mc->msgs_out[b->opcode == WS_OP_BINARY], b->run_n);
        metrics_add(&b->run_mc->bytes_out[b->opcode == WS_OP_BINARY], b->run_n * b->len);
    }
    b->run_n = 0;
}

/* One receiver more: its own figures now, its path's with the run. */
static void count_receiver(struct ws_bcast *b, struct ws_conn *wc)
{
    if (wc->mc != b->run_mc) {
        count_run(b);
        b->run_mc = wc->mc;
    }
    b->run_n++;
    struct ws_traffic *f = ws_traffic(wc);
    if (f) {
        f->msgs_out++;
        f->bytes_out += b->len;
    }
}

bool ws_bcast_send(struct ws_bcast *b, struct ws_conn *wc)
{
    if (!ws_can_send(wc))
        return false;
    struct ws_pmd *z = ws_pmd_of(wc);
    if (z && b->len >= z->threshold) {
        struct shbuf *f;
        /* With context takeover each receiver's stream is its own. */
        if (!z->def.reset_each_message || !shared_deflated(b, z, wc->mc, &f))
            return ws_send(wc, b->opcode, b->data, b->len);
        if (f) {
            count_receiver(b, wc);
            conn_write_shared(wc->c, f);
            return true;
        }
    }
    if (!b->plain)
        b->plain = build_frame(b->opcode, 0, b->data, b->len);
    count_receiver(b, wc);
    conn_write_shared(wc->c, b->plain);
    return true;
}

void ws_bcast_done(struct ws_bcast *b)
{
    count_run(b);
    if (b->plain)
        shbuf_unref(b->plain);
    for (unsigned i = 0; i < b->nz; i++) {
        if (b->z[i].frame)
            shbuf_unref(b->z[i].frame);
    }
}
