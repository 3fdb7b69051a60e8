/*
 * pmd: permessage-deflate (RFC 7692) — negotiation on both sides and the
 * per-message compression streams. Pure: buffers in, buffers out, and no
 * state of its own — what streams share is in a pool their owner passes in.
 *
 * Memory policy. zlib state exists only for connections that negotiated the
 * extension, and only where context takeover forces it:
 *  - without server context takeover, outgoing messages are compressed by a
 *    deflate stream shared by every connection of the pool (one worker's)
 *    and reset after each message, so a connection holds no deflate state
 *    at all, and a broadcast can be compressed once for every such
 *    connection;
 *  - without client context takeover, an inflate stream is taken from the
 *    pool when a compressed message starts and given back when it ends, so
 *    an idle connection holds none.
 * With context takeover the streams are the connection's own, sized by the
 * negotiated window bits (memLevel follows the window). Without a pool (the
 * client) the streams are always the connection's own, reset after each
 * message where no context is taken over.
 */
#ifndef MOONWS_PMD_H
#define MOONWS_PMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../util/buf.h"
#include "../util/limits.h"

/* A service's compression settings (docs/reference.md, "Compression": the `compression` field). */
struct pmd_conf {
    bool enabled;
    uint8_t window_bits;        /* 8..15: the server's LZ77 window, and the client's
                                 * when it offers client_max_window_bits */
    bool context_takeover;      /* keep compression context between messages */
    int level;                  /* zlib level 0..9 for outgoing messages */
    size_t threshold;           /* messages shorter than this go uncompressed */
};

#define PMD_CONF_DEFAULT { true, 15, false, 1, 64 }

/* What one connection negotiated. */
struct pmd_params {
    bool server_no_context_takeover;
    bool client_no_context_takeover;
    uint8_t server_max_window_bits;     /* 8..15 */
    uint8_t client_max_window_bits;     /* 8..15 */
};

/*
 * Server side. Walks every offer in the client's Sec-WebSocket-Extensions
 * values (one per header line; n values), accepts the first acceptable
 * permessage-deflate offer and writes the response value into resp.
 * Malformed, duplicated or unknown parameters decline that offer only.
 * Returns false when nothing was accepted.
 */
bool pmd_server_negotiate(const struct pmd_conf *conf, const char *const *values,
                          const size_t *lens, size_t n, struct pmd_params *out,
                          char *resp, size_t respcap);

/* What a client offers. */
struct pmd_offer_opts {
    bool server_no_context_takeover;
    bool client_no_context_takeover;
    int server_max_window_bits;         /* 0: not offered, else 8..15 */
    int client_max_window_bits;         /* -1: not offered, 0: offered without a value */
};

#define PMD_OFFER_DEFAULT { false, false, 0, 0 }

/* Client side: the offer to send. */
void pmd_client_offer(const struct pmd_offer_opts *o, char *out, size_t cap);
/* Client side: checks the server's answer to that offer, every
 * Sec-WebSocket-Extensions value of the response (one per header line; n
 * values). Returns false (the client must fail the connection, RFC 6455
 * §4.1) unless they hold exactly one element, a permessage-deflate the
 * offer allowed. */
bool pmd_client_accept(const struct pmd_offer_opts *o, const char *const *values,
                       const size_t *lens, size_t n, struct pmd_params *out);

/* Result codes of pmd_inflate. */
#define PMD_OK 0
#define PMD_TOO_BIG 1           /* inflated size passed the limit */
#define PMD_CORRUPT 2           /* not a valid deflate stream */
#define PMD_BUSY 3              /* a memory budget refused the stream or the output */

struct membudget;

/* What the streams of one worker's connections share. One thread uses it:
 * the worker that owns it (its runtime) passes it to pmd_init for each
 * connection, and frees it with pmd_pool_free once they are all gone. */
struct pmd_pool {
    void *shared_def[7][10];    /* z_stream *: deflaters without takeover, [window bits - 9][level] */
    void *inflaters[LIM_INFLATE_POOL];  /* z_stream *: inflaters between messages */
    unsigned ninflaters;
    /* Not pmd's: a buffer for the pool's user, for one compressed payload
     * at a time (ws_conn compresses a message here before its frame header
     * is known). */
    struct buf scratch;
};

/* The receiving stream of one connection. */
struct pmd_inflater {
    void *z;                    /* z_stream *, NULL between messages without takeover */
    struct pmd_pool *pool;      /* where it goes between messages, or NULL */
    /* Counts the stream's zlib memory (state and window) while it exists,
     * pooled or not (NULL: not counted). Set after pmd_init. */
    struct membudget *mem;
    uint8_t window_bits;
    bool reset_each_message;
    /* A final (BFINAL) block ended the stream during this message, and
     * after_end bytes were fed after it. */
    bool ended;
    /* Compressed payload bytes of the message (its frames' lengths, kept
     * by ws_rx for the metrics, valid in its message callback); stops at
     * UINT32_MAX, which max_message keeps out of reach of any message that
     * is not a stream of empty blocks. Here rather than in ws_rx so that
     * connections without compression do not carry it (it fits this
     * struct's padding). */
    uint32_t msg_zlen;
    size_t after_end;
};

/* The sending stream of one connection. */
struct pmd_deflater {
    void *z;                    /* own z_stream *: with takeover, or without a pool */
    struct pmd_pool *pool;      /* its shared stream without takeover, or NULL */
    uint8_t window_bits;
    int level;
    bool reset_each_message;
};

/* Sets up the streams for one connection; `server` tells which side we are;
 * pool (NULL: none) is where streams without context takeover come from.
 * Nothing is allocated until the first compressed message. */
void pmd_init(const struct pmd_params *p, const struct pmd_conf *conf, bool server,
              struct pmd_pool *pool, struct pmd_inflater *inf, struct pmd_deflater *def);
/* Releases what the connection's streams hold (a pooled one goes back to
 * its pool). Either may be NULL. */
void pmd_free(struct pmd_inflater *inf, struct pmd_deflater *def);

/* Inflates n bytes of a message's compressed payload, appending to out;
 * fails once out would pass max bytes (PMD_TOO_BIG). out grows through
 * out_mem (membudget_buf_reserve; NULL: not counted): PMD_BUSY when it or
 * inf->mem refuses memory. */
int pmd_inflate(struct pmd_inflater *inf, const char *in, size_t n, struct buf *out,
                size_t max, struct membudget *out_mem);
/* The message ended (its 00 00 ff ff tail was fed, last). Returns false
 * when the compressed data was truncated: the stream did not stop between
 * two blocks (or right after a final block). Either way, without takeover
 * the stream goes back to the pool. */
bool pmd_inflate_end_message(struct pmd_inflater *inf);

/* Compresses a whole message, appending the payload (the trailing
 * 00 00 ff ff removed) to out. The payload is never empty: an empty
 * message is at least the byte 00. */
void pmd_deflate(struct pmd_deflater *def, const char *in, size_t n, struct buf *out);

/* Releases a pool's shared deflaters and pooled inflaters (giving the
 * pooled ones' memory back to their budget) and its scratch buffer. Every
 * connection that used it must be gone. */
void pmd_pool_free(struct pmd_pool *pool);

#endif
