/*
 * wsl_tls: the client side of TLS for wsload's connections (OpenSSL 3),
 * non-blocking on an fd the caller owns and polls.
 *
 * It knows nothing of WebSocket or of the loop: each call moves what it
 * can and says which readiness (read or write) it needs before it can go
 * on; wsl_client waits for that and calls again. TLS 1.2 or 1.3, whichever
 * the server prefers (1.3 with both servers benchmarked), full handshakes
 * only (no session resumption), and no certificate verification — see
 * wt_ctx_new.
 */
#ifndef BENCH_WSL_TLS_H
#define BENCH_WSL_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct ssl_ctx_st;
struct ssl_st;

/* What a call needs before it can go on. */
enum wt_want { WT_WANT_READ = 1, WT_WANT_WRITE = 2 };

/* Results of wt_read and wt_write besides a byte count. */
#define WT_EOF 0
#define WT_AGAIN (-1)           /* nothing moved; wait for *want */
#define WT_ERROR (-2)           /* the session is dead; *err says why */

/* The one context of a pool. NULL with a message on stderr. */
struct ssl_ctx_st *wt_ctx_new(void);
void wt_ctx_free(struct ssl_ctx_st *ctx);

/* A client session on a connected socket; NULL when OpenSSL cannot make
 * one. The session does not own fd: wt_free leaves it open. */
struct ssl_st *wt_new(struct ssl_ctx_st *ctx, int fd);
void wt_free(struct ssl_st *s);

/* One step of the handshake: 1 done, 0 wait for *want, -1 failed (*err). */
int wt_handshake(struct ssl_st *s, enum wt_want *want, const char **err);

/*
 * Reads up to n bytes of plaintext, record after record while OpenSSL
 * holds bytes already read from the socket, so that one readiness event
 * costs one read(2) as on a plain socket. Returns the bytes read, WT_EOF,
 * WT_AGAIN or WT_ERROR; with bytes, *want is set when the next read must
 * wait for writability (a renegotiation or key update answered while the
 * socket was full), and *more when p filled up while OpenSSL still held
 * plaintext: the caller must call again without waiting, since the socket
 * will not become readable for bytes already taken from it.
 */
ssize_t wt_read(struct ssl_st *s, uint8_t *p, size_t n, enum wt_want *want,
                bool *more, const char **err);

/*
 * Writes p[0..n) as records until done or blocked. Returns the bytes
 * written — fewer than n when blocked, with *want set — or WT_ERROR. After
 * a block the next call must start with the same bytes (they may have
 * moved in memory).
 */
ssize_t wt_write(struct ssl_st *s, const uint8_t *p, size_t n,
                 enum wt_want *want, const char **err);

/* "TLSv1.3/TLS_AES_256_GCM_SHA384": the session's version and cipher, in
 * OpenSSL's static strings joined in a static buffer. */
const char *wt_describe(struct ssl_st *s);

#endif
