/*
 * Every limit and default of the server, in one place.
 *
 * Each entry says what happens when a peer or a script passes it. Services
 * may override the ones marked (svc) in their table; the rest are fixed.
 */
#ifndef MOONWS_LIMITS_H
#define MOONWS_LIMITS_H

/* HTTP request line plus headers. Past it: 431 and the connection closes.
 * --max-header-size sets it, from LIM_HTTP_HEAD_MIN to
 * LIM_HTTP_HEAD_CEILING (what a connection may leave unparsed: the
 * worker's receive buffer is sized by it). */
#define LIM_HTTP_HEAD_MAX          (8 * 1024)
#define LIM_HTTP_HEAD_MIN          1024
#define LIM_HTTP_HEAD_CEILING      (64 * 1024)
/* The path and query of a request line (whatever --max-header-size says).
 * Past it: 400 "bad request target". */
#define LIM_HTTP_TARGET_MAX        (8 * 1024)
/* Header lines in one request. Past it: 431. */
#define LIM_HTTP_HEADERS_MAX       64
/* A request body (Content-Length or chunked total). Past it: 413.
 * --max-body-size sets it, up to LIM_HTTP_BODY_CEILING. */
#define LIM_HTTP_BODY_MAX          (1024 * 1024)
#define LIM_HTTP_BODY_CEILING      (1024ull * 1024 * 1024)
/* (--handshake-timeout) Seconds for a request to arrive whole (head and
 * body) from its first byte, or from the connection's start. Checked at
 * each sweep. Past it: the socket is dropped ("conn N: request timed out"
 * at debug). */
#define LIM_HANDSHAKE_TIMEOUT      10.0
/* (--keepalive-timeout) Seconds a keep-alive HTTP connection may stay idle
 * between requests, and an answer (a static file too) may wait for its
 * client to read on: a connection whose queued answer the kernel is still
 * taking is not idle. Past it: dropped, with "conn N (ADDR): the client
 * stopped reading its answers: dropped" (or "a static file") at info when
 * an answer was waiting. */
#define LIM_HTTP_KEEPALIVE         30.0
/* Bytes of answers queued for one HTTP connection above which its next
 * pipelined requests are not read (nor parsed) until the queue has
 * drained, for requests no service answers (404s, static files, errors);
 * a service's endpoint uses the service's max_backpressure instead. The
 * queue holds at most this plus one answer. Logged at debug: "conn N: X
 * bytes queued, over max_backpressure: reading paused". */
#define LIM_HTTP_BACKPRESSURE      (1024 * 1024)
/* Pipelined requests of one connection answered in one loop iteration;
 * the rest wait for the next iteration, after every other ready
 * connection has had its turn. */
#define LIM_HTTP_PIPELINE_BATCH    16
/* Seconds a connection we end after an answer (an error, Connection:
 * close, a refused upgrade) keeps reading and discarding what the client
 * still sends, so that our answer is not lost to a TCP reset. Past it:
 * closed. */
#define LIM_HTTP_LINGER            2.0

/* (svc max_message) A WebSocket message after reassembly and inflation.
 * Past it: close 1009, without buffering the excess. */
#define LIM_WS_MESSAGE_DEFAULT     (1024 * 1024)
/* (svc idle_timeout) Seconds without a complete frame from the client (a
 * data, continuation or control frame counts when its last byte arrives;
 * the bytes of an unfinished frame do not); 0 = never. Checked at each
 * sweep (LIM_SWEEP_INTERVAL), so it fires up to that much later. Past it:
 * onIdleTimeout, or close 1001 "idle timeout" without one. */
#define LIM_WS_IDLE_DEFAULT        120.0
/* (svc max_backpressure) Bytes queued for one client and not yet written.
 * Past it: close 1008. */
#define LIM_WS_BACKPRESSURE        (1024 * 1024)
/* (svc close_timeout, --close-timeout) Seconds to wait for the peer's
 * close frame after ours, then drop the connection (onClose hears 1006
 * when it was our close). Checked at each sweep, like idle_timeout. A
 * service or the flag may set 0.1 to 3600 s (out of range: the file is
 * refused / exit 2). */
#define LIM_WS_CLOSE_TIMEOUT       5.0
#define LIM_WS_CLOSE_TIMEOUT_MIN   0.1
#define LIM_WS_CLOSE_TIMEOUT_MAX   3600.0
/* Bytes reserved for a message when a frame header announces its payload:
 * that length, but not more than this (a peer announcing a huge frame must
 * also send it); past it the buffer grows as the bytes arrive. */
#define LIM_WS_FRAME_PREALLOC      (1024 * 1024)

/* (--max-buffered) Bytes the whole process may hold for unfinished work:
 * WebSocket messages being reassembled, the zlib memory of inflate
 * streams, HTTP request bodies being received. 0 = no limit. Past it, the
 * connection that would grow is closed instead: WebSocket close 1008
 * "server busy", HTTP 503; logged at info at most once a second, "memory
 * for unfinished messages and bodies is full (--max-buffered N bytes):
 * closed K connections since the last such line, the last conn ID
 * (WebSocket 1008)". */
#define LIM_BUFFERED_DEFAULT       (256 * 1024 * 1024)

/* (--max-connections-per-ip) Connections open at once from one client
 * address; 0 = no limit. Past it: the new connection is reset at once
 * (before any byte is read), logged at info at most once a second,
 * "max_connections_per_ip (N) reached: refused K connections since the
 * last such line, the last from ADDR". */
#define LIM_CONNECTIONS_PER_IP     256
/* (--max-connections) Connections open at once in the process. The
 * default is the limit of open files (RLIMIT_NOFILE, whose soft limit is
 * raised to the hard one at start) minus a reserve for listeners, log
 * and inotify descriptors, and static files being sent: the larger of
 * LIM_FD_RESERVE_MIN and an eighth of the limit. At it: accepting pauses
 * (the listeners are not watched; clients wait in the kernel's backlog)
 * until a connection closes; logged at info at most once a second each,
 * "max_connections (N) reached: accepting paused (K times since the last
 * such line)" and "accepting resumed: K connections open (max_connections
 * N)". */
#define LIM_FD_RESERVE_MIN         64

/* CPU seconds one handler call may use. Past it: the call is aborted with an
 * error, onError runs, the connection closes 1011. */
#define LIM_HANDLER_CPU            1.0
/* Seconds between the watchdog's looks at each worker's handler call. A
 * call over its budget is interrupted within this much more, and signalled
 * again at this interval for as long as it has not unwound. */
#define LIM_BUDGET_TICK            0.05
/* Seconds an interrupted call may go on without unwinding — it is inside
 * one C function, such as a backtracking string.find, where no hook runs —
 * before the log says once, at warn, "the handler of FILE is stuck inside a
 * C function ...". Nothing more can be done: the call ends (1011) when the
 * function returns. */
#define LIM_BUDGET_STUCK           5.0
/* Coroutines running inside one another (each resumed from the one before).
 * Past it: that resume raises "coroutines nested more than 64 deep". */
#define LIM_LUA_COROUTINES         64

/* Bytes one worker's Lua state may hold (--lua-memory). Past it, inside a
 * handler call: the allocation fails, the handler gets Lua's "not enough
 * memory" error (onError, close 1011; 500 from an endpoint), and the log
 * says "Lua memory of this worker is full" (at info, once a second at
 * most). Between calls the runtime's own pushes (a message, a request
 * table) may pass it by their size: they cannot fail. */
#define LIM_LUA_MEMORY_DEFAULT     (512ULL * 1024 * 1024)
/* The smallest --lua-memory accepted; less: usage, exit 2. (A state with the
 * libraries, the moonws module and one empty service holds about 40 KiB.) */
#define LIM_LUA_MEMORY_MIN         (1024 * 1024)

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

/* Connections accepted per readiness event of a listener, before the loop
 * serves the others. */
#define LIM_ACCEPT_BATCH           64
/* Seconds accepting pauses when the process is out of file descriptors
 * (EMFILE, ENFILE) or memory for sockets: clients wait in the backlog.
 * Logged at warn: "accept: ERROR; pausing new connections for 0.1s". */
#define LIM_ACCEPT_EMFILE_PAUSE    0.1

/* Output is queued in segments of this many bytes (header included);
 * larger writes get a segment of their own size. */
#define LIM_OUT_SEG_BYTES          16384
/* Free data segments a worker keeps for reuse (16 MiB); more are freed. */
#define LIM_OUT_SEG_POOL           1024
/* Free segments that point at a shared block (a broadcast frame), 32
 * bytes each, a worker keeps: a broadcast to 10 000 clients allocates
 * nothing the second time. */
#define LIM_OUT_REF_POOL           16384
/* A WebSocket payload this long or longer, with nothing queued before it,
 * is handed to the kernel from where it lies (the Lua string) instead of
 * being copied into the output first; what the kernel does not take is
 * copied then. Shorter ones are gathered with the rest of the output. */
#define LIM_DIRECT_WRITE           4096
/* Segments handed to one writev(2). */
#define LIM_WRITEV_BATCH           64
/* Bytes of queued output gathered into one SSL_write at most (TLS has no
 * writev). */
#define LIM_TLS_WRITE_GATHER       (256 * 1024)

/* (-w) Worker threads. More: "bad worker count", the usage, exit 2. The
 * worker's index has 6 bits in a connection id (util/connid.h), and the
 * CPU budget's watchdog watches this many runtimes. */
#define LIM_WORKERS_MAX            64

/* -l and --tls-listen listeners together. Past it: "at most 16
 * listeners", the usage, exit 2. */
#define LIM_LISTENERS              16
/* Inflate streams a worker keeps for reuse between compressed messages
 * (connections without client context takeover); more are freed. */
#define LIM_INFLATE_POOL           32

/* Static files: bytes read from disk per refill of a connection's output. */
#define LIM_STATIC_CHUNK           (64 * 1024)

/* Shared dictionaries (moonws.dict, src/util/shdict.h), process-wide. */
/* Dictionaries in the process. Past it: moonws.dict raises "at most 64
 * dictionaries" (logged with the handler's traceback). */
#define LIM_DICTS                  64
/* Bytes of a dictionary's name. Longer: moonws.dict raises. */
#define LIM_DICT_NAME_MAX          64
/* Capacity of a dictionary used before any capacity was given for it
 * (--dict NAME=SIZE or moonws.dict(name, size)). Past any capacity: the
 * least recently used entries are evicted, and a value larger than the
 * whole capacity is refused with nil, "no memory"; each is logged at info at
 * most once per LIM_DICT_LOG_INTERVAL per dictionary, with the count since
 * the last line: "dict NAME: full (C bytes): N live entries evicted to make
 * room", "dict NAME: N values larger than its capacity (C bytes) refused". */
#define LIM_DICT_DEFAULT           (1024 * 1024)
/* Seconds between two log lines of one dictionary about evictions and
 * refused values (each line gives the counts since the last). */
#define LIM_DICT_LOG_INTERVAL      1.0
/* Bytes of a key. Longer: the call raises. */
#define LIM_DICT_KEY_MAX           65535
/* Seconds of a time to live. Longer: the call raises. */
#define LIM_DICT_TTL_MAX           (1e9)
/* Keys dict:keys() returns without an explicit max (0 means all). */
#define LIM_DICT_KEYS_DEFAULT      1024
/* Least recently used entries each write looks at, removing the expired
 * ones among them (stopping at the first live one). */
#define LIM_DICT_SWEEP             3

/* Metrics (src/util/metrics.h, --metrics) and their listener
 * (src/proto/metrics_http.h). */
/* Service paths with series of their own (moonws_connections and every
 * other family labelled by path). A path gets a series when a service is
 * mounted there and keeps it, with its counts, for as long as the process
 * runs unless the slot is needed: a path that no service serves any more
 * and that no open connection counts under gives its slot to a new path
 * (its series leave the output). Past it, with every slot in use: the new
 * path is counted under path="(other)", logged at info (once a second at
 * most, with the count): "metrics: more than 256 service paths: /x is
 * counted as path=\"(other)\" (N such since the last line)". */
#define LIM_METRICS_PATHS          256
/* Routes with series of their own (the route label of
 * moonws_http_requests_total: a service's endpoints and its upgrade), kept
 * and reused like paths. Past it: route="(other)", logged likewise. */
#define LIM_METRICS_ROUTES         1024
/* Distinct statuses counted for one route by one worker. Past it: the
 * status is counted as status="other". */
#define LIM_METRICS_STATUSES       8
/* One handler call in this many (a power of two), chosen at random by each
 * worker, is timed for moonws_handler_duration_seconds: timing every call
 * (two clock reads, about 55 ns here) would cost the echo path a visible
 * share of its 0.7 us per message at 16 in flight. */
#define LIM_METRICS_TIMING_SAMPLE  16
/* Connections to the metrics listener open at once. Past it: a new one is
 * closed at once, logged at info (once a second at most, with the count):
 * "metrics listener: 64 connections open: refused N". */
#define LIM_METRICS_CONNS          64
/* Seconds a metrics connection may take to send a request whole, stay idle
 * between requests, or leave its answer unread. Past it: dropped. */
#define LIM_METRICS_TIMEOUT        10.0

/* Traffic lines (src/util/traffic_log.h): --access-log, and the log at debug. */
/* Bytes of one traffic line, its end included. Each line is one write(2),
 * atomic even into a pipe (PIPE_BUF is 4096 on Linux). Past it: the longest
 * value (a path) is cut to fit, ending in "...". */
#define LIM_TRAFFIC_LINE           4096
/* Seconds between two log lines about traffic lines the access log could
 * not take (a pipe whose reader is behind, a full disk): "access log FILE:
 * N lines lost (REASON)", at warn, with the count since the last. */
#define LIM_TRAFFIC_LOST_INTERVAL  1.0

/* Worker inboxes (src/transport/inbox.h): work posted from other threads. */
/* Bytes queued in one inbox (each item's payload plus its node): what other
 * workers' broadcasts, publishes and sends wait there. Past it: the post is
 * refused (the poster gets false and keeps the payload): that worker's
 * share of a broadcast or publish is dropped, moonws.send returns nil,
 * "busy"; the drops are logged at info at most once per
 * LIM_INBOX_LOG_INTERVAL with the count since the last line: "inbox of
 * worker 2 full (CAP bytes): K items dropped". The master's messages (a
 * reload's phases, shutdown) pass the cap (inbox_post_control). */
#define LIM_INBOX_BYTES            (16 * 1024 * 1024)
/* Items one wake-up of an inbox runs; the rest waits for the next loop
 * iteration, so a busy inbox cannot starve the connections. */
#define LIM_INBOX_BATCH            256
/* Seconds between two log lines about one inbox's drops. */
#define LIM_INBOX_LOG_INTERVAL     1.0

/* The cluster link to Redis (src/cluster/, --redis). */
/* Bytes of a --redis URL. Longer: "moonws: --redis: the URL is longer than
 * 1024 bytes", the usage, exit 2. */
#define LIM_REDIS_URL_MAX          1024
/* Bytes of --redis-prefix. Longer: the usage, exit 2. */
#define LIM_REDIS_PREFIX_MAX       64
/* Bytes of one message on a Redis channel (its envelope and payload).
 * Larger, to publish: refused (the call returns false), counted and logged
 * at info at most once per LIM_CLUSTER_LOG_INTERVAL, "cluster: N messages
 * larger than 8388608 bytes not forwarded"; received: dropped, logged the
 * same way as a malformed message. */
#define LIM_CLUSTER_MESSAGE_MAX    (8 * 1024 * 1024)
/* Bytes of messages on their way to Redis: queued for the link's thread,
 * or written to Redis and not yet confirmed. Past it (Redis is slow, or the
 * link is busy): the publish is refused, counted and logged at info at most
 * once per LIM_CLUSTER_LOG_INTERVAL, "cluster: the queue to Redis is full
 * (16777216 bytes): N messages not forwarded". */
#define LIM_CLUSTER_QUEUE_BYTES    (16 * 1024 * 1024)
/* Seconds between two log lines about refused or malformed messages (each
 * line gives the count since the last). */
#define LIM_CLUSTER_LOG_INTERVAL   1.0
/* Seconds for a connection attempt to Redis: both connections open,
 * authenticated, the database selected and the node number known. Past
 * it: the attempt fails like a refused connection (at startup: "cluster:
 * Redis at HOST:PORT is unreachable (...): running alone until it can
 * join", at warn; later: a retry). */
#define LIM_CLUSTER_CONNECT_TIMEOUT 2.0
/* Reconnection backoff: the delay before attempt k is drawn between half
 * and all of min(MAX, MIN * 2^k) seconds (the jitter keeps nodes that lost
 * Redis together from coming back in step). */
#define LIM_CLUSTER_BACKOFF_MIN    0.1
#define LIM_CLUSTER_BACKOFF_MAX    2.0
/* Seconds between two renewals of the node's lease on its number (also
 * the link's heartbeat). */
#define LIM_CLUSTER_LEASE_REFRESH  1.0
/* Seconds a node's number stays reserved after its last renewal: a node
 * cut off from Redis longer than this may find its number taken when it
 * comes back (logged at error, see docs/cluster.md). */
#define LIM_CLUSTER_LEASE_TTL      60.0
/* Seconds Redis may take to answer the heartbeat. Past it: the link is
 * taken as down ("cluster: lost Redis at HOST:PORT: no answer for 5 s"),
 * and reconnects. */
#define LIM_CLUSTER_REPLY_TIMEOUT  5.0
/* Channels in one SUBSCRIBE or UNSUBSCRIBE command (more are sent in
 * several). */
#define LIM_CLUSTER_SUB_BATCH      256
/* Seconds between two writes of this node's per-path counts (and reads of
 * the other nodes' sum) for moonws.cluster_count. */
#define LIM_CLUSTER_COUNT_INTERVAL 1.0
/* Seconds a node's counts stay in Redis after its last write (a node that
 * died is still counted this long), and the age past which a node's sum of
 * the others is no longer given (the call reports it unknown). */
#define LIM_CLUSTER_COUNT_TTL      3.0
/* Seconds the link waits at shutdown for Redis to confirm what was queued,
 * the unsubscriptions and QUIT. Past it: the connections are closed
 * anyway. */
#define LIM_CLUSTER_QUIT_TIMEOUT   2.0

#endif
