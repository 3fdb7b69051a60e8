/*
 * Every limit and default of the server, in one place.
 *
 * Each entry says what happens when a peer or a script passes it. Services
 * may override the ones marked (svc) in their table; the rest are fixed.
 */
#ifndef MOONWS_LIMITS_H
#define MOONWS_LIMITS_H

/* HTTP request line plus headers. Past it: 431 and the connection closes. */
#define LIM_HTTP_HEAD_MAX          (8 * 1024)
/* Header lines in one request. Past it: 431. */
#define LIM_HTTP_HEADERS_MAX       64
/* A request body (Content-Length or chunked total). Past it: 413. */
#define LIM_HTTP_BODY_MAX          (1024 * 1024)
/* Seconds for a request to arrive whole (head and body) from its first
 * byte, or from the connection's start. Past it: the socket is dropped. */
#define LIM_HANDSHAKE_TIMEOUT      10.0
/* Seconds a keep-alive HTTP connection may stay idle between requests, and
 * a static file may wait for its client to read on. Past it: dropped. */
#define LIM_HTTP_KEEPALIVE         30.0

/* (svc max_message) A WebSocket message after reassembly and inflation.
 * Past it: close 1009, without buffering the excess. */
#define LIM_WS_MESSAGE_DEFAULT     (1024 * 1024)
/* (svc idle_timeout) Seconds without a frame from the client; 0 = never.
 * Past it: onIdleTimeout, or close 1001 without one. */
#define LIM_WS_IDLE_DEFAULT        120.0
/* (svc max_backpressure) Bytes queued for one client and not yet written.
 * Past it: close 1008. */
#define LIM_WS_BACKPRESSURE        (1024 * 1024)
/* Seconds to wait for the peer's close frame after ours, then drop. */
#define LIM_WS_CLOSE_TIMEOUT       5.0

/* CPU seconds one handler call may use. Past it: the call is aborted with an
 * error, onError runs, the connection closes 1011. */
#define LIM_HANDLER_CPU            1.0

/* Parameters (":name" segments) in one service or route path. Past it:
 * the file is refused at load with FILE:LINE. */
#define LIM_PATH_PARAMS            8

/* Bytes of a key, secret, JWK set or password file named by a service's
 * `auth`. Past it: the file is refused at load with FILE:LINE. */
#define LIM_AUTH_FILE_MAX          (1024 * 1024)
/* Auth refusals logged per second and worker (each at info, with its
 * reason). Past it: one line says so, and the next refusal after that
 * second logs how many were not logged. */
#define LIM_AUTH_LOG_PER_SEC       20

/* Bytes moonws.crypto.random returns at once. Past it: the call raises. */
#define LIM_CRYPTO_RANDOM_MAX      65536

/* Client: bytes of a refused upgrade's body quoted in connect's error
 * message (the rest is not read). */
#define LIM_CLIENT_REFUSAL_BODY    160

/* Arrays and objects inside one another in JSON, decoded (onMessage,
 * moonws.json.decode: an error, so onMessage's connection closes 1003) or
 * encoded (an error: a table that contains itself ends here too). */
#define LIM_JSON_DEPTH             256

/* Seconds between sweeps of all connections for the timeouts above. */
#define LIM_SWEEP_INTERVAL         0.5
/* Seconds a changed service file must stay quiet (and closed by its writer,
 * see below) before it is reloaded. Files that change while others are
 * still settling are reloaded together, as one batch. */
#define LIM_RELOAD_QUIET           0.1
/* Seconds a service file may stay open for writing (created or written,
 * and not closed since), counted from its first event, before it is loaded
 * as it is, with the warning "FILE: still being written after 3 s; loading
 * it as it is" (its writer's close reloads it again). Also the longest a
 * file ready to load waits for the other files of its batch. */
#define LIM_RELOAD_WRITER_WAIT     3.0

/* Seconds the server waits for close frames at shutdown (SIGTERM/SIGINT). */
#define LIM_SHUTDOWN_GRACE         5.0

/* Bytes read from a socket at once into the loop's shared receive buffer. */
#define LIM_READ_CHUNK             (64 * 1024)

/* Static files: bytes read from disk per refill of a connection's output. */
#define LIM_STATIC_CHUNK           (64 * 1024)

#endif
