/*
 * ws_client: a blocking WebSocket client for scripts and tests. It speaks
 * through the same handshake, frame, message and deflate code as the
 * server; every wait is bounded by a timeout.
 */
#ifndef MOONWS_WS_CLIENT_H
#define MOONWS_WS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../util/buf.h"
#include "pmd.h"
#include "ws_msg.h"

/* What receive hands out. */
enum wsc_kind { WSC_TEXT, WSC_BINARY, WSC_PING, WSC_PONG, WSC_CLOSE };

struct wsc_msg {
    uint8_t kind;
    uint16_t code;              /* WSC_CLOSE: the close code (1005 when none) */
    char *data;
    size_t len;
};

struct wsc_options {
    const char *const *protocols;
    size_t nprotocols;
    const char *headers;        /* raw extra header lines, or NULL */
    bool compression;
    struct pmd_offer_opts offer;        /* what to offer when compression is on */
    bool auto_pong;             /* answer pings (they are still reported) */
    double timeout;             /* seconds for connect and handshake */
    size_t max_message;
};

/* How bytes move (plain, or TLS in wsc_tls.c). */
struct wsc_io {
    long (*read)(void *ctx, void *p, size_t n);    /* >0, 0 EOF, -1 errno (EAGAIN) */
    long (*write)(void *ctx, const void *p, size_t n);
    bool (*pending)(void *ctx);
    void (*free)(void *ctx);
};

/* Reads and writes on a plain socket; ctx is the fd. */
extern const struct wsc_io wsc_plain_io;

struct wsc_tls_opts {
    bool verify;                /* check the server's certificate and name */
    const char *ca;             /* PEM CAs to trust instead of the system's */
    const char *cert, *key;     /* a client certificate (mutual TLS) */
    const char *servername;     /* SNI and the name checked; default: the URL's host */
};

/* Runs a TLS handshake on fd within timeout. On success *io and *ctx read
 * and write through TLS; on failure err says why (certificate problems
 * included). */
bool wsc_tls_start(int fd, const char *host, const struct wsc_tls_opts *o, double timeout,
                   const struct wsc_io **io, void **ctx, char *err, size_t errcap);

struct ws_client {
    int fd;
    const struct wsc_io *io;
    void *ioctx;
    struct buf in;              /* bytes read and not yet parsed */
    struct ws_rx rx;
    struct pmd_inflater inf;
    struct pmd_deflater def;
    bool pmd;
    bool auto_pong;
    bool close_sent, close_received, eof;
    struct wsc_msg *q;          /* messages received and not yet handed out */
    size_t qhead, qlen, qcap;
    char *protocol;
    char *extensions;
    int status;
    bool last_compressed;       /* the last message received arrived deflated */
    uint64_t wire_bytes;        /* bytes read from the socket after the handshake */
    struct buf head;            /* the response head, raw */
    char error[256];            /* why the connection failed */
};

/* How the socket of a connection is set up (both optional; for tests). */
struct wsc_sock_opts {
    const char *bind;           /* numeric source address ("127.0.0.2"), or NULL */
    int rcvbuf;                 /* SO_RCVBUF in bytes before connecting (it then stays
                                 * small: no autotuning), 0 = the kernel's */
};

/* Opens a connection to host:port (the fd is non-blocking); so may be
 * NULL. Returns the fd or -1 with a message in err. */
int wsc_tcp_connect(const char *host, unsigned port, double timeout,
                    const struct wsc_sock_opts *so, char *err, size_t errcap);

/* Splits ws://host[:port]/path?query (or wss://, http://, https://). */
bool wsc_parse_url(const char *url, bool *secure, char *host, size_t hostcap, unsigned *port,
                   char *target, size_t targetcap);

/* Runs the handshake over an open fd (with io, plain when NULL). On
 * failure returns false with c->error set and c->status the HTTP status
 * seen (0 when none). */
bool wsc_handshake(struct ws_client *c, const char *hostheader, const char *target,
                   const struct wsc_options *o);

/* Sends a message (compressed when negotiated). */
bool wsc_send(struct ws_client *c, uint8_t opcode, const char *data, size_t len, double timeout);
/* Sends one frame exactly as described (tests of malformed input). */
bool wsc_send_frame(struct ws_client *c, bool fin, uint8_t rsv, uint8_t opcode,
                    const char *data, size_t len, bool mask, double timeout);
/* Sends raw bytes. */
bool wsc_send_raw(struct ws_client *c, const char *data, size_t len, double timeout);

/* Waits up to timeout seconds for the next message. Returns 1 with *m (the
 * caller frees m->data), 0 on timeout, -1 when the connection is over
 * (c->error says why; "closed" after a close handshake). */
int wsc_receive(struct ws_client *c, double timeout, struct wsc_msg *m);

/* Reads what has arrived without waiting and queues its messages for
 * wsc_receive. Returns false once the connection is over (a close frame
 * came, or the peer is gone). */
bool wsc_pump(struct ws_client *c);

/* Sends a close frame (once). */
bool wsc_close(struct ws_client *c, unsigned code, const char *reason, size_t len,
               double timeout);
void wsc_free(struct ws_client *c);

/* Waits for the fd to become readable (POLLIN) or writable; true when
 * ready, false on timeout. */
bool wsc_wait(int fd, bool write, double timeout);

#endif
