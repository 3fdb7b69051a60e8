#include "ws_msg.h"

#include <string.h>

#include "../util/limits.h"
#include "../util/membudget.h"
#include "pmd.h"

#define FAIL(c, r) do { err->code = (c); err->reason = (r); return -1; } while (0)

/* The budget refused memory for the message: not a protocol error, but the
 * connection cannot go on with its message either. */
static bool busy(struct ws_rx_error *err)
{
    err->code = WS_CLOSE_POLICY;
    err->reason = "server busy";
    err->busy = true;
    return false;
}

void ws_rx_free(struct ws_rx *rx, struct membudget *mem)
{
    membudget_buf_free(mem, &rx->msg);
}

uint32_t ws_rx_msg_zlen(const struct ws_rx *rx)
{
    return rx->msg_deflated ? rx->inf->msg_zlen : 0;
}

void ws_close_payload_parse(const char *data, size_t len, unsigned *code,
                            const char **reason, size_t *reason_len)
{
    if (len < 2) {
        *code = WS_CLOSE_NO_STATUS;
        *reason = "";
        *reason_len = 0;
        return;
    }
    *code = (unsigned)(uint8_t)data[0] << 8 | (uint8_t)data[1];
    *reason = data + 2;
    *reason_len = len - 2;
}

/* §5.5.1: an empty close, or a code a peer may send plus a UTF-8 reason. */
static bool check_close(const char *p, size_t len, struct ws_rx_error *err)
{
    if (len == 0)
        return true;
    if (len == 1) {
        err->code = WS_CLOSE_PROTOCOL;
        err->reason = "close frame with a 1-byte payload";
        return false;
    }
    unsigned code = (unsigned)(uint8_t)p[0] << 8 | (uint8_t)p[1];
    if (!ws_close_code_valid(code)) {
        err->code = WS_CLOSE_PROTOCOL;
        err->reason = "invalid close code";
        return false;
    }
    if (!utf8_valid(p + 2, len - 2)) {
        err->code = WS_CLOSE_INVALID_DATA;
        err->reason = "close reason is not UTF-8";
        return false;
    }
    return true;
}

/* Ends the message: checks that text ended on a character boundary and
 * hands it over. Returns -1 (err set), 0 to stop, 1 to go on. */
static int deliver(struct ws_rx *rx, struct membudget *mem, char *data, size_t len,
                   const struct ws_rx_events *ev, void *ctx, struct ws_rx_error *err)
{
    uint8_t op = rx->msg_op;
    rx->msg_op = 0;
    if (op == WS_OP_TEXT && !utf8_complete(rx->utf8)) {
        err->code = WS_CLOSE_INVALID_DATA;
        err->reason = "text message is not UTF-8";
        return -1;
    }
    bool go_on = ev->message(ctx, op, data, len);
    membudget_buf_free(mem, &rx->msg);
    return go_on ? 1 : 0;
}

/* Takes payload bytes of the current data frame (already unmasked): checks
 * and stores them, inflating them first when the message is compressed. */
static bool take_payload(struct ws_rx *rx, struct membudget *mem, const char *p, size_t n,
                         struct ws_rx_error *err)
{
    size_t before = rx->msg.len;
    int rc = PMD_OK;
    if (rx->msg_deflated) {
        rx->msg_zdata = rx->msg_zdata || n > 0;
        rc = pmd_inflate(rx->inf, p, n, &rx->msg, rx->max_message, mem);
    } else {
        if (!membudget_buf_reserve(mem, &rx->msg, n, rx->max_message))
            return busy(err);
        memcpy(rx->msg.data + rx->msg.len, p, n);
        rx->msg.len += n;
    }
    /* Whatever came out is checked first, so the close code does not
     * depend on how the bytes were split into reads. */
    if (rx->msg_op == WS_OP_TEXT && rx->msg.len > before &&
        !utf8_feed(&rx->utf8, rx->msg.data + before, rx->msg.len - before)) {
        err->code = WS_CLOSE_INVALID_DATA;
        err->reason = "text message is not UTF-8";
        return false;
    }
    if (rc == PMD_BUSY)
        return busy(err);
    if (rc != PMD_OK) {
        err->code = rc == PMD_TOO_BIG ? WS_CLOSE_TOO_BIG : WS_CLOSE_INVALID_DATA;
        err->reason = rc == PMD_TOO_BIG ? "message too big" : "corrupt compressed data";
        return false;
    }
    return true;
}

/* The last payload byte of a data frame arrived. For the final frame of a
 * compressed message the deflate stream is closed first (RFC 7692 §7.2.2),
 * unless no payload came at all: the tail alone is not deflate data (zlib
 * would take it for the start of a stored block and a kept stream would
 * break on the next message), so that message is "" and the stream is
 * left as it was. */
static int frame_done(struct ws_rx *rx, struct membudget *mem, const struct ws_rx_events *ev,
                      void *ctx, struct ws_rx_error *err)
{
    rx->in_frame = false;
    rx->frames++;
    if (!rx->frame_fin)
        return 1;
    if (rx->msg_deflated && rx->msg_zdata) {
        static const char tail[4] = { 0x00, 0x00, (char)0xff, (char)0xff };
        if (!take_payload(rx, mem, tail, sizeof tail, err))
            return -1;
        if (!pmd_inflate_end_message(rx->inf)) {
            err->code = WS_CLOSE_INVALID_DATA;
            err->reason = "corrupt compressed data";
            return -1;
        }
    }
    return deliver(rx, mem, rx->msg.data, rx->msg.len, ev, ctx, err);
}

ssize_t ws_rx_feed(struct ws_rx *rx, struct membudget *mem, char *data, size_t n,
                   const struct ws_rx_events *ev, void *ctx, struct ws_rx_error *err)
{
    size_t off = 0;
    err->busy = false;
    while (off < n) {
        if (rx->in_frame) {
            size_t take = n - off < rx->remaining ? n - off : (size_t)rx->remaining;
            char *p = data + off;
            if (!rx->client)
                rx->phase = (uint8_t)ws_mask((uint8_t *)p, (uint8_t *)p, take, rx->mask, rx->phase);
            off += take;
            rx->remaining -= take;
            if (!take_payload(rx, mem, p, take, err))
                return -1;
            if (rx->remaining == 0) {
                int r = frame_done(rx, mem, ev, ctx, err);
                if (r <= 0)
                    return r < 0 ? -1 : (ssize_t)off;
            }
            continue;
        }

        struct ws_frame_header h;
        int hl = ws_frame_parse((uint8_t *)data + off, n - off, &h);
        if (hl == WS_FRAME_PARTIAL)
            return (ssize_t)off;
        if (hl == WS_FRAME_ERROR)
            FAIL(WS_CLOSE_PROTOCOL, "frame length over 2^63");
        if (h.masked == rx->client)
            FAIL(WS_CLOSE_PROTOCOL, rx->client ? "masked frame from the server"
                                               : "unmasked frame from the client");
        if (h.opcode > WS_OP_BINARY && h.opcode != WS_OP_CLOSE && h.opcode != WS_OP_PING &&
            h.opcode != WS_OP_PONG)
            FAIL(WS_CLOSE_PROTOCOL, "reserved opcode");

        if (ws_opcode_is_control(h.opcode)) {
            if (h.rsv)
                FAIL(WS_CLOSE_PROTOCOL, "reserved bits set on a control frame");
            if (!h.fin)
                FAIL(WS_CLOSE_PROTOCOL, "fragmented control frame");
            if (h.len > WS_CONTROL_MAX)
                FAIL(WS_CLOSE_PROTOCOL, "control frame over 125 bytes");
            /* Control frames are small: wait until one is here whole. */
            if (n - off < (size_t)hl + h.len)
                return (ssize_t)off;
            char *p = data + off + hl;
            if (h.masked)
                ws_mask((uint8_t *)p, (uint8_t *)p, h.len, h.mask, 0);
            if (h.opcode == WS_OP_CLOSE && !check_close(p, h.len, err))
                return -1;
            off += (size_t)hl + h.len;
            rx->frames++;
            if (!ev->control(ctx, h.opcode, p, h.len))
                return (ssize_t)off;
            continue;
        }

        bool rsv1 = h.rsv & WS_RSV1;
        if ((h.rsv & ~WS_RSV1) || (rsv1 && !rx->inf))
            FAIL(WS_CLOSE_PROTOCOL, "reserved bits set without a negotiated extension");
        if (h.opcode == WS_OP_CONT) {
            if (!rx->msg_op)
                FAIL(WS_CLOSE_PROTOCOL, "continuation frame without a message");
            if (rsv1)
                FAIL(WS_CLOSE_PROTOCOL, "RSV1 on a continuation frame");
        } else {
            if (rx->msg_op)
                FAIL(WS_CLOSE_PROTOCOL, "new message inside a fragmented one");
            rx->msg_op = h.opcode;
            rx->msg_deflated = rsv1;
            rx->msg_zdata = false;
            if (rsv1)
                rx->inf->msg_zlen = 0;
            rx->utf8 = 0;
        }
        if (rx->msg_deflated) {
            uint32_t zl = rx->inf->msg_zlen;
            rx->inf->msg_zlen = h.len < UINT32_MAX - zl ? zl + (uint32_t)h.len : UINT32_MAX;
        }
        /* Uncompressed payload counts as it is; compressed payload is
         * checked as it inflates. */
        if (!rx->msg_deflated && h.len > rx->max_message - rx->msg.len)
            FAIL(WS_CLOSE_TOO_BIG, "message too big");
        off += (size_t)hl;

        /* The common case: a whole unfragmented message is in the buffer.
         * Unmask it in place and hand it over without a copy. */
        if (h.opcode != WS_OP_CONT && h.fin && !rsv1 && n - off >= h.len) {
            char *p = data + off;
            if (h.masked)
                ws_mask((uint8_t *)p, (uint8_t *)p, h.len, h.mask, 0);
            off += h.len;
            rx->frames++;
            if (h.opcode == WS_OP_TEXT && !utf8_feed(&rx->utf8, p, h.len))
                FAIL(WS_CLOSE_INVALID_DATA, "text message is not UTF-8");
            int r = deliver(rx, mem, p, h.len, ev, ctx, err);
            if (r <= 0)
                return r < 0 ? -1 : (ssize_t)off;
            continue;
        }

        rx->in_frame = true;
        rx->frame_fin = h.fin;
        rx->remaining = h.len;
        rx->phase = 0;
        memcpy(rx->mask, h.mask, 4);
        /* Reserve for the announced payload, but not more than a megabyte
         * up front: a peer announcing a huge frame must also send it. The
         * budget is asked here, so a message it cannot hold fails at its
         * frame header, before any of the payload is kept. */
        if (!rx->msg_deflated && h.len &&
            !membudget_buf_reserve(mem, &rx->msg,
                                   h.len < LIM_WS_FRAME_PREALLOC ? h.len : LIM_WS_FRAME_PREALLOC,
                                   rx->max_message)) {
            busy(err);
            return -1;
        }
        if (h.len == 0) {
            int r = frame_done(rx, mem, ev, ctx, err);
            if (r <= 0)
                return r < 0 ? -1 : (ssize_t)off;
        }
    }
    return (ssize_t)off;
}
