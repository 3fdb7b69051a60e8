#include "pmd.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "../util/limits.h"
#include "../util/log.h"
#include "../util/membudget.h"

#define EXT_NAME "permessage-deflate"
#define MAX_PARAMS 8
#define INFLATE_CHUNK (64 * 1024)       /* the most a first guess at the output takes */
#define INFLATE_FIRST_MIN 256           /* the least */

/* ---- Sec-WebSocket-Extensions syntax (RFC 6455 §9.1) ---- */

struct ext_param {
    const char *name;
    size_t nlen;
    const char *val;            /* NULL when the parameter has no value */
    size_t vlen;
    /* A quoted value with escapes, unescaped (val points here). Every
     * value permessage-deflate knows is 1 or 2 digits: a longer one is
     * invalid anyway, and refused. */
    char unescaped[8];
};

static bool is_tchar(char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

static const char *skip_token(const char *p, const char *end)
{
    while (p < end && is_tchar(*p))
        p++;
    return p;
}

/* Skips to just past the next comma outside a quoted string. */
static const char *skip_element(const char *p, const char *end)
{
    bool quoted = false;
    for (; p < end; p++) {
        if (quoted && *p == '\\' && p + 1 < end)
            p++;
        else if (*p == '"')
            quoted = !quoted;
        else if (*p == ',' && !quoted)
            return p + 1;
    }
    return end;
}

/*
 * Reads one element "name *(; param[=value])" at *pp. Returns 1 with the
 * element, 0 at the end of the value, -1 for a malformed element (skipped).
 * Quoted values are returned without their quotes and unescaped, and must
 * then be a token (RFC 6455 §9.1).
 */
static int ext_next(const char **pp, const char *end, const char **name, size_t *nlen,
                    struct ext_param *ps, size_t *np)
{
    const char *p = skip_ws(*pp, end);
    while (p < end && *p == ',')
        p = skip_ws(p + 1, end);
    if (p == end) {
        *pp = p;
        return 0;
    }
    const char *start = p;
    *name = p;
    p = skip_token(p, end);
    *nlen = (size_t)(p - *name);
    *np = 0;
    if (*nlen == 0)
        goto bad;
    for (;;) {
        p = skip_ws(p, end);
        if (p == end || *p == ',') {
            *pp = p < end ? p + 1 : p;
            return 1;
        }
        if (*p != ';' || *np == MAX_PARAMS)
            goto bad;
        p = skip_ws(p + 1, end);
        struct ext_param *e = &ps[(*np)++];
        e->name = p;
        p = skip_token(p, end);
        e->nlen = (size_t)(p - e->name);
        e->val = NULL;
        e->vlen = 0;
        if (e->nlen == 0)
            goto bad;
        p = skip_ws(p, end);
        if (p < end && *p == '=') {
            p = skip_ws(p + 1, end);
            if (p < end && *p == '"') {
                const char *v = ++p;
                bool escaped = false;
                for (; p < end && *p != '"'; p++) {
                    if (*p == '\\') {
                        escaped = true;
                        if (++p == end)
                            break;
                    }
                }
                if (p == end)
                    goto bad;
                e->val = v;
                e->vlen = (size_t)(p - v);
                p++;
                if (escaped) {
                    size_t k = 0;
                    for (const char *q = v; q < e->val + e->vlen; q++) {
                        if (*q == '\\')
                            q++;
                        if (k == sizeof e->unescaped)
                            goto bad;
                        e->unescaped[k++] = *q;
                    }
                    e->val = e->unescaped;
                    e->vlen = k;
                }
                if (skip_token(e->val, e->val + e->vlen) != e->val + e->vlen)
                    goto bad;
            } else {
                e->val = p;
                p = skip_token(p, end);
                e->vlen = (size_t)(p - e->val);
            }
            if (e->vlen == 0)
                goto bad;
        }
    }
bad:
    *pp = skip_element(start, end);
    return -1;
}

static bool name_is(const char *s, size_t n, const char *want)
{
    return n == strlen(want) && strncasecmp(s, want, n) == 0;
}

/* A window-bits value: 1*DIGIT without leading zero, 8..15 (§7.1.2). */
static int window_bits_value(const char *v, size_t n)
{
    if (n == 1 && v[0] >= '8' && v[0] <= '9')
        return v[0] - '0';
    if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
        return 10 + v[1] - '0';
    return -1;
}

/* The four parameters as an offer or a response states them. */
struct pmd_offer {
    bool snct, cnct;
    int smwb;                   /* -1 absent, else 8..15 */
    int cmwb;                   /* -1 absent, 0 present without value, else 8..15 */
};

/* Reads the parameters of one element; false when one is unknown,
 * duplicated, or has a value where none belongs (or none where one must). */
static bool read_params(const struct ext_param *ps, size_t np, struct pmd_offer *o)
{
    *o = (struct pmd_offer){ false, false, -1, -1 };
    for (size_t i = 0; i < np; i++) {
        const struct ext_param *e = &ps[i];
        if (name_is(e->name, e->nlen, "server_no_context_takeover")) {
            if (e->val || o->snct)
                return false;
            o->snct = true;
        } else if (name_is(e->name, e->nlen, "client_no_context_takeover")) {
            if (e->val || o->cnct)
                return false;
            o->cnct = true;
        } else if (name_is(e->name, e->nlen, "server_max_window_bits")) {
            if (!e->val || o->smwb != -1 || (o->smwb = window_bits_value(e->val, e->vlen)) < 0)
                return false;
        } else if (name_is(e->name, e->nlen, "client_max_window_bits")) {
            if (o->cmwb != -1)
                return false;
            o->cmwb = e->val ? window_bits_value(e->val, e->vlen) : 0;
            if (o->cmwb < 0)
                return false;
        } else {
            return false;
        }
    }
    return true;
}

static int imin(int a, int b)
{
    return a < b ? a : b;
}

/* printf-style append to out (cap bytes) at *len; output that does not fit
 * is cut, never written past the end. */
static void append(char *out, size_t cap, size_t *len, const char *fmt, int v)
    __attribute__((format(printf, 4, 0)));
static void append(char *out, size_t cap, size_t *len, const char *fmt, int v)
{
    if (*len >= cap)
        return;
    int n = snprintf(out + *len, cap - *len, fmt, v);
    if (n > 0)
        *len = *len + (size_t)n < cap ? *len + (size_t)n : cap - 1;
}

/* The elements of every Sec-WebSocket-Extensions value (one per header
 * line), read as the one list they make together. */
struct ext_walk {
    const char *const *values;
    const size_t *lens;
    size_t n, line;
    const char *p, *end;
};

/* The next element: 1 for a well-formed permessage-deflate one (its
 * parameters in *o), -1 for anything else (malformed, another extension,
 * bad parameters), 0 after the last. */
static int ext_walk_next(struct ext_walk *w, struct pmd_offer *o)
{
    for (;;) {
        if (w->p) {
            const char *name;
            size_t nlen, np;
            struct ext_param ps[MAX_PARAMS];
            int r = ext_next(&w->p, w->end, &name, &nlen, ps, &np);
            if (r > 0)
                return name_is(name, nlen, EXT_NAME) && read_params(ps, np, o) ? 1 : -1;
            if (r < 0)
                return -1;
        }
        if (w->line == w->n)
            return 0;
        w->p = w->values[w->line];
        w->end = w->p + w->lens[w->line++];
    }
}

bool pmd_server_negotiate(const struct pmd_conf *conf, const char *const *values,
                          const size_t *lens, size_t n, struct pmd_params *out,
                          char *resp, size_t respcap)
{
    int wb = conf->window_bits;
    struct ext_walk w = { values, lens, n, 0, NULL, NULL };
    struct pmd_offer o;
    int r;
    while ((r = ext_walk_next(&w, &o)) != 0) {
        if (r < 0)
            continue;               /* declined: the next offer may do */
        /* Acceptable: answer with what will be in force. Either side's
         * no_context_takeover may be stated by the server unasked. */
        out->server_no_context_takeover = o.snct || !conf->context_takeover;
        out->client_no_context_takeover = o.cnct || !conf->context_takeover;
        out->server_max_window_bits = (uint8_t)(o.smwb > 0 ? imin(o.smwb, wb) : wb);
        /* Without the parameter in the offer we may not limit the
         * client, which may then use the full window. */
        out->client_max_window_bits =
            (uint8_t)(o.cmwb == -1 ? 15 : imin(o.cmwb > 0 ? o.cmwb : 15, wb));
        size_t len = 0;
        if (respcap)
            resp[0] = '\0';
        append(resp, respcap, &len, EXT_NAME, 0);
        if (out->server_no_context_takeover)
            append(resp, respcap, &len, "; server_no_context_takeover", 0);
        if (out->client_no_context_takeover)
            append(resp, respcap, &len, "; client_no_context_takeover", 0);
        /* The server's window is stated when asked about, and when it is
         * smaller than the client would assume (RFC 7692 §7.1.2.1). */
        if (o.smwb > 0 || out->server_max_window_bits < 15)
            append(resp, respcap, &len, "; server_max_window_bits=%d",
                   out->server_max_window_bits);
        if (o.cmwb != -1)
            append(resp, respcap, &len, "; client_max_window_bits=%d",
                   out->client_max_window_bits);
        return true;
    }
    return false;
}

void pmd_client_offer(const struct pmd_offer_opts *o, char *out, size_t cap)
{
    size_t len = 0;
    if (cap)
        out[0] = '\0';
    append(out, cap, &len, EXT_NAME, 0);
    if (o->server_no_context_takeover)
        append(out, cap, &len, "; server_no_context_takeover", 0);
    if (o->client_no_context_takeover)
        append(out, cap, &len, "; client_no_context_takeover", 0);
    if (o->server_max_window_bits)
        append(out, cap, &len, "; server_max_window_bits=%d", o->server_max_window_bits);
    if (o->client_max_window_bits > 0)
        append(out, cap, &len, "; client_max_window_bits=%d", o->client_max_window_bits);
    else if (o->client_max_window_bits == 0)
        append(out, cap, &len, "; client_max_window_bits", 0);
}

bool pmd_client_accept(const struct pmd_offer_opts *offer, const char *const *values,
                       const size_t *lens, size_t n, struct pmd_params *out)
{
    /* We offered one extension: one element in all the lines together. */
    struct ext_walk w = { values, lens, n, 0, NULL, NULL };
    struct pmd_offer o;
    if (ext_walk_next(&w, &o) != 1 || ext_walk_next(&w, &o) != 0)
        return false;
    /* server_max_window_bits: required when offered, at most what we asked. */
    if (offer->server_max_window_bits &&
        (o.smwb < 0 || o.smwb > offer->server_max_window_bits))
        return false;
    /* client_max_window_bits: only when offered, with a value, not above ours. */
    if (o.cmwb == 0 || (o.cmwb > 0 && (offer->client_max_window_bits < 0 ||
                                       (offer->client_max_window_bits > 0 &&
                                        o.cmwb > offer->client_max_window_bits))))
        return false;
    /* Without the server's server_no_context_takeover we must expect the
     * server to keep its context, which we can always follow. */
    if (offer->server_no_context_takeover && !o.snct)
        return false;
    out->server_no_context_takeover = o.snct;
    out->client_no_context_takeover = o.cnct || offer->client_no_context_takeover;
    out->server_max_window_bits = (uint8_t)(o.smwb > 0 ? o.smwb : 15);
    out->client_max_window_bits = (uint8_t)(o.cmwb > 0 ? o.cmwb
                                            : offer->client_max_window_bits > 0
                                                ? offer->client_max_window_bits : 15);
    return true;
}

/* ---- streams ---- */

/* zlib cannot deflate raw data with a 256-byte window; with 9 bits its
 * longest distance is 512 - 262 = 250 bytes, so a peer limited to 8 bits
 * can still inflate everything it sends. */
static int deflate_bits(int wb)
{
    return wb < 9 ? 9 : wb;
}

static int mem_level_for(int wb)
{
    int m = wb - 7;
    return m < 1 ? 1 : m > 8 ? 8 : m;
}

static z_stream *deflater_new(int wb, int level, int mem_level)
{
    z_stream *z = xcalloc(1, sizeof *z);
    if (deflateInit2(z, level, Z_DEFLATED, -deflate_bits(wb), mem_level, Z_DEFAULT_STRATEGY) !=
        Z_OK) {
        log_error("zlib deflateInit2 failed (window %d, level %d)", wb, level);
        abort();
    }
    return z;
}

/* zlib's allocations for an inflate stream, counted by the budget in
 * opaque (membudget_alloc keeps each block's size for the free). */
static voidpf budget_zalloc(voidpf opaque, uInt items, uInt size)
{
    if (size && items > SIZE_MAX / size)
        return Z_NULL;
    return membudget_alloc(opaque, (size_t)items * size);
}

static void budget_zfree(voidpf opaque, voidpf p)
{
    membudget_free(opaque, p);
}

/* An inflate stream of wb window bits whose memory counts against mem:
 * from the pool when one there counts against the same budget. NULL when
 * the budget refuses it. */
static z_stream *inflater_get(struct pmd_pool *pool, int wb, struct membudget *mem)
{
    int bits = wb < 9 ? 9 : wb;
    if (pool && pool->ninflaters) {
        z_stream *z = pool->inflaters[--pool->ninflaters];
        if (z->opaque == (voidpf)mem && inflateReset2(z, -bits) == Z_OK)
            return z;
        inflateEnd(z);
        free(z);
    }
    z_stream *z = xcalloc(1, sizeof *z);
    if (mem) {
        z->zalloc = budget_zalloc;
        z->zfree = budget_zfree;
        z->opaque = mem;
    }
    int rc = inflateInit2(z, -bits);
    if (rc == Z_MEM_ERROR && mem) {
        free(z);
        return NULL;
    }
    if (rc != Z_OK) {
        log_error("zlib inflateInit2 failed (window %d)", bits);
        abort();
    }
    return z;
}

static void inflater_put(struct pmd_pool *pool, z_stream *z)
{
    if (pool && pool->ninflaters < LIM_INFLATE_POOL) {
        pool->inflaters[pool->ninflaters++] = z;
        return;
    }
    inflateEnd(z);
    free(z);
}

void pmd_init(const struct pmd_params *p, const struct pmd_conf *conf, bool server,
              struct pmd_pool *pool, struct pmd_inflater *inf, struct pmd_deflater *def)
{
    *inf = (struct pmd_inflater){
        .pool = pool,
        .window_bits = server ? p->client_max_window_bits : p->server_max_window_bits,
        .reset_each_message =
            server ? p->client_no_context_takeover : p->server_no_context_takeover,
    };
    *def = (struct pmd_deflater){
        .pool = pool,
        .window_bits = server ? p->server_max_window_bits : p->client_max_window_bits,
        .level = conf->level,
        .reset_each_message =
            server ? p->server_no_context_takeover : p->client_no_context_takeover,
    };
}

void pmd_free(struct pmd_inflater *inf, struct pmd_deflater *def)
{
    if (inf && inf->z) {
        if (inf->reset_each_message) {
            inflater_put(inf->pool, inf->z);
        } else {
            inflateEnd(inf->z);
            free(inf->z);
        }
        inf->z = NULL;
    }
    if (def && def->z) {
        deflateEnd(def->z);
        free(def->z);
        def->z = NULL;
    }
}

int pmd_inflate(struct pmd_inflater *inf, const char *in, size_t n, struct buf *out,
                size_t max, struct membudget *out_mem)
{
    if (!inf->z && !(inf->z = inflater_get(inf->pool, inf->window_bits, inf->mem)))
        return PMD_BUSY;
    z_stream *z = inf->z;
    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)n;
    if (inf->ended)
        inf->after_end += n;
    /* Room for one byte past max, so a bomb is caught as it passes; no
     * limit at all must not wrap to a room of 0 (an endless loop). */
    size_t limit = max < SIZE_MAX ? max + 1 : SIZE_MAX;
    /* Small messages get small buffers: the output is first guessed at a
     * few times the input, and the free space already there is used
     * before the buffer grows (doubling, in buf_reserve_within). */
    size_t guess = n < INFLATE_CHUNK / 4 ? 4 * n : INFLATE_CHUNK;
    if (guess < INFLATE_FIRST_MIN)
        guess = INFLATE_FIRST_MIN;
    for (;;) {
        size_t room = limit - out->len;
        if (out->cap == out->len &&
            !membudget_buf_reserve(out_mem, out, guess < room ? guess : room, limit))
            return PMD_BUSY;
        size_t chunk = out->cap - out->len;
        if (chunk > room)
            chunk = room;
        if (chunk > UINT_MAX)
            chunk = UINT_MAX;
        z->next_out = (Bytef *)out->data + out->len;
        z->avail_out = (uInt)chunk;
        int rc = inflate(z, Z_SYNC_FLUSH);
        out->len += chunk - z->avail_out;
        if (out->len > max)
            return PMD_TOO_BIG;
        if (rc == Z_STREAM_END) {
            /* A final block (BFINAL) ends this stream; what follows, if
             * anything, starts a new one. */
            inflateReset(z);
            inf->ended = true;
            inf->after_end = z->avail_in;
        } else if (rc == Z_BUF_ERROR) {
            if (z->avail_in == 0)
                return PMD_OK;  /* all input used, nothing more to write */
        } else if (rc == Z_MEM_ERROR) {
            return PMD_BUSY;    /* the window, allocated at the first need */
        } else if (rc != Z_OK) {
            return PMD_CORRUPT;
        }
        if (z->avail_in == 0 && z->avail_out != 0)
            return PMD_OK;
    }
}

/*
 * After the tail, a complete message leaves inflate() waiting for the next
 * block header: zlib then sets bit 128 of data_type (mode TYPE, see
 * inf_leave in inflate.c). Truncated data leaves it inside a block, which
 * inflate() cannot tell from data still to come. A sender may also end the
 * message with a final block and nothing after it (RFC 7692 §7.2.3.4
 * without its 00): then the stream ended and only our tail followed (or
 * the end fell on the tail's last byte), and the fresh stream, which holds
 * the tail half-read, is reset for the next message.
 */
bool pmd_inflate_end_message(struct pmd_inflater *inf)
{
    z_stream *z = inf->z;
    bool clean = true;
    if (z) {
        if (inf->ended && (inf->after_end == 0 || inf->after_end == 4)) {
            if (inf->after_end)
                inflateReset(z);
        } else {
            clean = (z->data_type & 128) != 0;
        }
    }
    inf->ended = false;
    if (inf->reset_each_message && z) {
        inflater_put(inf->pool, z);
        inf->z = NULL;
    }
    return clean;
}

void pmd_deflate(struct pmd_deflater *def, const char *in, size_t n, struct buf *out)
{
    z_stream *z;
    if (def->reset_each_message) {
        /* One stream for every connection of the pool with these settings
         * (without a pool, the connection's own), reset after each
         * message: memLevel 8, the fastest, since it is held once. */
        int wb = deflate_bits(def->window_bits);
        void **slot = def->pool ? &def->pool->shared_def[wb - 9][def->level] : &def->z;
        if (!*slot)
            *slot = deflater_new(wb, def->level, 8);
        z = *slot;
    } else {
        if (!def->z)
            def->z = deflater_new(def->window_bits, def->level, mem_level_for(def->window_bits));
        z = def->z;
    }
    size_t start = out->len;
    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)n;
    do {
        size_t chunk = n / 2 + 64;
        z->next_out = (Bytef *)buf_reserve(out, chunk);
        z->avail_out = (uInt)chunk;
        deflate(z, Z_SYNC_FLUSH);
        out->len += chunk - z->avail_out;
    } while (z->avail_out == 0);
    /* A sync flush ends in the empty stored block 00 00 ff ff, which the
     * receiver adds back (RFC 7692 §7.2.1). */
    if (out->len - start >= 4 && memcmp(out->data + out->len - 4, "\0\0\xff\xff", 4) == 0)
        out->len -= 4;
    /* An empty message on a kept stream right after a flush: zlib has
     * nothing to write. An empty payload would make the receiver feed a
     * bare 00 00 ff ff; 00 (the header of an empty stored block, RFC 7692
     * §7.2.3.6) inflates to nothing and leaves both streams in step. */
    if (out->len == start)
        buf_append(out, "", 1);
    if (def->reset_each_message)
        deflateReset(z);
}

void pmd_pool_free(struct pmd_pool *pool)
{
    for (int i = 0; i < 7; i++) {
        for (int j = 0; j < 10; j++) {
            z_stream *z = pool->shared_def[i][j];
            if (z) {
                deflateEnd(z);
                free(z);
                pool->shared_def[i][j] = NULL;
            }
        }
    }
    while (pool->ninflaters) {
        z_stream *z = pool->inflaters[--pool->ninflaters];
        inflateEnd(z);
        free(z);
    }
    buf_free(&pool->scratch);
}
