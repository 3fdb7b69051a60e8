/*
 * lx: the Lua runtime of one worker — its lua_State, its services, and the
 * bindings (caller, moonws module, timers) that scripts see.
 *
 * Internal to src/lua: nothing below this layer includes lua.h.
 */
#ifndef MOONWS_LX_H
#define MOONWS_LX_H

#include <lauxlib.h>
#include <lua.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../proto/http_server.h"
#include "../proto/pubsub.h"
#include "../proto/router.h"
#include "../proto/svc.h"
#include "../proto/ws_bcast.h"
#include "../proto/ws_conn.h"
#include "../util/limits.h"

struct worker;
struct metrics;
struct metrics_path_cells;
struct lx_timer;
struct lx_auth;

enum lx_handler {
    H_UPGRADE,
    H_OPEN,
    H_TEXT,
    H_BINARY,
    H_MESSAGE,
    H_PING,
    H_PONG,
    H_IDLE,
    H_CLOSE,
    H_ERROR,
    H_COUNT
};

/* How one HTTP route is guarded: its own auth, none (auth = false), or
 * the service's (neither set). */
struct lx_route_auth {
    struct lx_auth *own;
    bool none;
};

/* A service loaded from one file. */
struct lx_service {
    struct svc svc;             /* svc.rt points back here */
    struct lx_rt *rt;
    char *file;                 /* relative to the services folder: "api/feed.lua" */
    char *name;                 /* for logs: "api/feed" */
    int table_ref;              /* the table the file returned */
    int env_ref;                /* its _ENV */
    int routes_ref;             /* array of route handler functions, or LUA_NOREF */
    int handler[H_COUNT];       /* registry refs, LUA_NOREF when absent */
    char *dispatch_key;         /* `dispatch` field, or NULL */
    int path_line;              /* line of the `path` field; 1 for a path from the file name */
    char *shared_key;           /* whose moonws.shared it has: its file, or a moved file's */
    /* For a candidate: how to undo what its top level did to moonws.shared
     * if it is refused — the table did not exist (created), or a registry
     * ref to a copy of its own fields taken before (shared_undo_ref). */
    bool shared_created;
    int shared_undo_ref;
    struct lx_timer *timers;    /* active timers it created */
    struct lx_auth *auth;       /* its `auth`, or NULL */
    struct lx_route_auth *route_auth;   /* per route (svc.routes), or NULL when none has its own */
    bool mounted;
    bool unsafe;                /* `sandbox = false`: the unsafe extras (lx_sandbox.c) */
};

/* The CPU budget of one runtime (lx_budget.c). The worker thread writes;
 * the watchdog thread reads the atomics; the worker's own signal handler
 * reads everything. */
struct lx_budget {
    pthread_t thread;
    double seconds;                 /* CPU seconds per outermost call */
    _Atomic int depth;              /* calls into Lua under way, nested */
    _Atomic uint64_t seq;           /* the number of the outermost call */
    _Atomic uint64_t interrupted;   /* seq of the call found over budget; 0: none */
    _Atomic uint64_t named;         /* seq of the call `file` names */
    char file[256];                 /* the interrupted call's service, for the log */
    /* Coroutines resumed and not yet returned, innermost last: an
     * interrupt must reach whichever of them runs. */
    lua_State *co_running[LIM_LUA_COROUTINES];
    volatile sig_atomic_t co_depth;
};

/* The memory of one runtime's Lua state (lx_memory.c). */
struct lx_memory {
    size_t used;                    /* bytes the state holds */
    size_t limit;                   /* --lua-memory */
    /* The limit holds: Lua code (or C called from it) runs inside
     * lx_call's protected call, where a failed allocation is an error of
     * that call. Elsewhere an allocation must not fail: it would raise
     * outside any protected call, and Lua would abort the process. */
    bool strict;
    double logged_at;               /* the last "is full" line, rate-limited */
};

struct inbox;
struct lx_batch;

/* The methods of a caller (lx_caller.c): send, sendBinary, ping, pong,
 * close, subscribe, unsubscribe. */
#define LX_CALLER_METHODS 7

/* The runtime of one worker. */

struct lx_rt {
    lua_State *L;
    struct worker *w;           /* its number is w->index + 1 (moonws.worker) */
    unsigned nworkers;          /* workers in the process (moonws.workers) */
    struct inbox *const *peers; /* every worker's inbox, by index; NULL: this one alone */
    struct runtime_cluster *cluster;    /* --redis (runtime.h); NULL: none */
    struct lx_batch *pending;   /* a batch between its two phases (lx_runtime.c) */
    struct router router;
    struct http_server http;
    struct pubsub pubsub;
    char *dir;                  /* the services folder, as given */
    struct lx_service **svcs;   /* loaded services */
    size_t nsvcs, capsvcs;
    struct lx_service *current; /* the service whose code is running */
    /* A file's top level runs: its errors are logged by the loader, and
     * nothing may reach a client (lx_check_serving). */
    bool loading;
    int caller_mt_ref;          /* caller metatable */
    /* The caller's method names as this state interned them (lx_caller.c's
     * table order): its __index knows a method by the address of its name. */
    const char *caller_method_names[LX_CALLER_METHODS];
    int shared_ref;             /* table: file -> moonws.shared of that service */
    int module_ref;             /* the common moonws module table */
    int base_env_ref;           /* the globals every service env reads through to */
    /* Auth refusals logged in the current second (lx_auth.c). */
    double auth_log_since;
    unsigned auth_log_count, auth_log_dropped;
    /* The text message being handled, as the Lua string handed over: it is
     * valid UTF-8, so sending those very bytes back needs no new check. */
    const char *valid_text;
    size_t valid_len;
    /* Timers created outside any service's code. */
    struct lx_timer *orphan_timers;

    bool unsafe_lua;            /* --unsafe-lua: every service gets the unsafe extras */
    struct metrics *metrics;    /* the process's (series ids); NULL: none */
    /* Service fields a table leaves out (runtime_options). */
    struct {
        double idle_timeout, close_timeout;
        size_t max_backpressure;
    } svc_defaults;
    /* The counters handler calls count under while a connection's onClose
     * runs (its path's, not the service's); NULL otherwise. */
    struct metrics_path_cells *call_cells;
    struct lx_budget budget;
    struct lx_memory mem;

    /* Big and seldom used: last, away from what every call touches. */
    /* The worker's compression streams and scratch (its connections'). */
    struct pmd_pool pmd;
    /* caller.query and caller.headers parse the kept upgrade head here. */
    struct http_request head_scratch;
    /* The HTTP server parses the request head it answers here. */
    struct http_request req_scratch;
};

/* ---- lx_call.c: the one way into Lua ---- */

/* Prepares L: the traceback handler at stack index 1. */
void lx_call_init(struct lx_rt *rt);
/* Calls the function below nargs arguments on the stack, as service ls, with
 * the traceback handler, the CPU budget and the memory cap. On error: logs the traceback;
 * when wc is given, runs onError(caller, err) and closes the connection
 * 1011. Leaves nres results on success, nothing on failure (returns false;
 * then *errmsg, when not NULL, gets the message, valid until the next call). */
bool lx_call(struct lx_rt *rt, struct lx_service *ls, struct ws_conn *wc, int nargs, int nres,
             const char **errmsg);

/* ---- lx_budget.c: the CPU budget ---- */

/* Starts the watchdog that interrupts a handler over its CPU budget. */
void lx_watchdog_start(struct lx_rt *rt);
/* The runtime goes: the watchdog no longer looks at it (on its thread,
 * before it is freed). */
void lx_watchdog_forget(struct lx_rt *rt);
/* Stops the watchdog thread (at exit, after every runtime). */
void lx_watchdog_stop(void);
/* Puts the coroutine guard into the state's coroutine library itself, so
 * that every alias of it (a service's copy, package.loaded.coroutine,
 * require "coroutine") runs coroutines where an interrupt reaches them. */
void lx_budget_guard_coroutines(lua_State *L);
/* The call that ran at depth 0 has returned: its hook, if it was
 * interrupted, goes. */
void lx_budget_disarm(struct lx_rt *rt);

/* ---- lx_memory.c: the memory cap ---- */

/* The lua_Alloc of every runtime's state (ud: the struct lx_rt). */
void *lx_memory_alloc(void *ud, void *ptr, size_t osize, size_t nsize);
/* For C code that may run inside a handler's call but outside Lua (a
 * callback of the protocol layer): lifts the cap until lx_memory_restore,
 * returning what to restore. */
bool lx_memory_relax(struct lx_rt *rt);
void lx_memory_restore(struct lx_rt *rt, bool strict);

/* ---- lx_caller.c ---- */

void lx_caller_init(struct lx_rt *rt);
/* Pushes the caller object of wc, creating it on first use. */
void lx_caller_push(struct lx_rt *rt, struct ws_conn *wc);
/* Gives a new connection's caller what its upgrade prepared: a registry
 * ref (released here) to {data, principal} — caller.data from onUpgrade's
 * req.data, caller.auth the auth principal. */
void lx_caller_adopt(struct lx_rt *rt, struct ws_conn *wc, int ref);
/* The connection ended: the caller keeps its data, loses its connection. */
void lx_caller_release(struct lx_rt *rt, struct ws_conn *wc);
/* The (code, reason) arguments of a close at idx, idx + 1, checked as a
 * server's close frame needs them (raises otherwise). */
unsigned lx_close_args(lua_State *L, int idx, const char **reason, size_t *n);
/* True when wc's upgrade asked for exactly this (decoded) path. */
bool lx_conn_opened_at(const struct ws_conn *wc, const char *path, size_t len);
/* Pushes v (string as is, anything else JSON-encoded) as message bytes:
 * returns the opcode to use. Raises for values that cannot be sent. */
uint8_t lx_message_arg(lua_State *L, int idx, const char **p, size_t *len);

/* ---- lx_auth.c ---- */

/* Reads the `auth` table at idx (file names relative to base, read now).
 * On failure returns false with the message in err and in *field the name
 * of the field it is about (for its line). */
bool lx_auth_parse(lua_State *L, int idx, const char *base, struct lx_auth **out,
                   const char **field, char *err, size_t errcap);
void lx_auth_free(struct lx_auth *a);
/* Checks a request's credentials: true with the principal pushed
 * ({kind, subject, claims, scopes}), or false with reply filled (401 or
 * 403, WWW-Authenticate) and the refusal logged. */
bool lx_auth_check(struct lx_rt *rt, const struct lx_auth *a, const struct http_exchange *ex,
                   struct http_reply *reply);
/* For moonws.jwt.verify: the options at idx read as a `jwt` table (plus
 * `scopes`); NULL with the message in err. */
struct lx_auth *lx_auth_jwt_options(lua_State *L, int idx, char *err, size_t errcap);
/* Verifies a token against a's keys and rules: 0 with the principal
 * pushed, else 401 or 403 with a short reason (and the missing scope). */
int lx_auth_verify(lua_State *L, const struct lx_auth *a, const char *token, size_t n,
                   const char **reason, const char **missing);

/* ---- lx_crypto.c ---- */

/* Adds moonws.jwt and moonws.crypto to the module table at idx. */
void lx_crypto_open(lua_State *L, int module);

/* ---- lx_reply.c ---- */

/* Appends the header lines of the table at idx (name = value, or name =
 * list of values: a line each) to out; has_ctype (may be NULL) is set when
 * one is Content-Type. NULL when all is well, else why the table is
 * refused (written into why): a name that is not a token, a value that is
 * not one line, a header the server writes itself (Content-Length,
 * Transfer-Encoding; for an upgrade also Upgrade, Connection,
 * Sec-WebSocket-*). */
const char *lx_reply_headers(lua_State *L, int idx, struct buf *out, bool upgrade, bool *has_ctype,
                             char *why, size_t cap);
/* Adds moonws.binary and moonws.close to the module table at idx. */
void lx_reply_open(lua_State *L, int module);
/* Sends the value a message handler returned (the top of the stack,
 * popped) to wc: nothing for nil or a boolean (what caller:send returns),
 * a string as text, moonws.binary(s) as binary, moonws.close(code, reason)
 * as a close, a table or number as JSON text. A value that cannot be sent
 * fails like an error in `handler`. */
void lx_reply_send(struct lx_rt *rt, struct lx_service *ls, struct ws_conn *wc, const char *handler);

/* ---- lx_sandbox.c: what a service sees ---- */

/* Pushes a shallow copy of the table at idx (raw: no metamethods). */
void lx_push_copy(lua_State *L, int idx);
/* Builds the base every service environment reads through to (after the
 * moonws module exists), and guards the state's own libraries. */
void lx_sandbox_init(struct lx_rt *rt);
/* Gives the environment at env (its `moonws` set) its libraries, package,
 * load, require and metatable; with --unsafe-lua the unsafe extras too. */
void lx_sandbox_fill(struct lx_rt *rt, int env);
/* Adds the unsafe extras to the environment at env (`sandbox = false`):
 * io, os.execute/remove/rename/tmpname, loadfile, dofile, C modules. */
void lx_sandbox_unsafe(struct lx_rt *rt, int env);

/* ---- lx_require.c ---- */

/* Keeps what require needs from the state's own package library. */
void lx_require_init(struct lx_rt *rt);
/* Pushes the require of the environment at env, whose package table is at
 * pkg. */
void lx_require_push(lua_State *L, int env, int pkg);

/* ---- lx_module.c ---- */

/* Builds the common moonws module and the base environment. */
void lx_module_init(struct lx_rt *rt);
/* Pushes a new environment for service ls (own globals, and the
 * moonws.shared kept under ls->shared_key, created when there is none
 * yet: ls->shared_created). */
void lx_env_new(struct lx_rt *rt, struct lx_service *ls);
/* A candidate was refused: moonws.shared gets back the fields it had
 * before the candidate's top level ran (the values themselves are not
 * copies: what was changed inside them stays changed), or goes when the
 * candidate's loading created it. */
void lx_shared_undo(struct lx_rt *rt, struct lx_service *ls);
/* A candidate was accepted: what its top level did to moonws.shared stays. */
void lx_shared_keep(struct lx_rt *rt, struct lx_service *ls);
/* A service moved from one file to another: its moonws.shared is kept
 * under the new name from now on. */
void lx_shared_rename(struct lx_rt *rt, const char *from, const char *to);

/* ---- lx_request.c ---- */

/* Pushes the TLS facts of a connection ({version, cipher, alpn, resumed,
 * subject, issuer}), or nil for a plain one. */
void lx_push_tls(lua_State *L, const struct conn *c);
/* Pushes a request table {method, path, params, query, headers, body,
 * remote, tls}. */
void lx_push_request(lua_State *L, const struct http_exchange *ex);
/* Pushes a table of path parameters (name -> value). */
void lx_push_params(lua_State *L, const struct path_params *params);
/* Pushes a table of a query string's decoded fields. */
void lx_push_query(lua_State *L, const char *q, size_t len);
/* Pushes a table of a request's headers (lower-case names). */
void lx_push_headers(lua_State *L, const struct http_request *req);

/* ---- lx_timer.c ---- */

void lx_timer_init(struct lx_rt *rt);
/* Cancels every timer of a service (unload, reload). */
void lx_timer_cancel_all(struct lx_rt *rt, struct lx_service *ls);
/* Hands the timers of `from` to `to` (a new version taking over). */
void lx_timer_adopt(struct lx_rt *rt, struct lx_service *to, struct lx_service *from);
/* The version of ls is installed: the timers its top level made start. */
void lx_timer_start_deferred(struct lx_rt *rt, struct lx_service *ls);

/* ---- lx_deliver.c: where broadcasts, publishes and sends go ---- */

/* The connections a moonws.* call names by path: every connection of the
 * service mounted at that path (a pattern, "/rooms/:room", names them
 * all), or, for a concrete path that a service's pattern matches
 * ("/rooms/lobby"), the connections of that service opened at that very
 * path. */
struct lx_at {
    struct svc *svc;            /* NULL: no service */
    const char *only;           /* NULL: all of svc's connections */
    size_t only_len;
};

/* What path (NUL-terminated, n bytes) names on this worker. */
struct lx_at lx_at_path(struct lx_rt *rt, const char *path, size_t n);
/* True when wc is open and one of those. */
bool lx_at_has(const struct lx_at *at, struct ws_conn *wc);
/* A broadcast to the connections path names on this worker; returns how
 * many it was queued for. */
size_t lx_broadcast_here(struct lx_rt *rt, const char *path, size_t len, uint8_t opcode,
                         const char *p, size_t n);
/* The same broadcast (or publish, to a topic) on every other worker: one
 * message, shared by reference, queued to their inboxes. */
void lx_deliver_broadcast(struct lx_rt *rt, const char *path, size_t len, uint8_t opcode,
                          const char *p, size_t n);
void lx_deliver_publish(struct lx_rt *rt, const char *topic, size_t len, uint8_t opcode,
                        const char *p, size_t n);
/* moonws.send: to the connection id wherever it lives. QUEUED: queued to
 * its worker, or handed to the cluster link for its node; CLOSED: not open
 * here (or not an id); BUSY: an inbox or the link's queue is full;
 * UNAVAILABLE: the id is another node's and the link to Redis is down. */
enum { LX_SEND_QUEUED, LX_SEND_CLOSED, LX_SEND_BUSY, LX_SEND_UNAVAILABLE };
int lx_deliver_send(struct lx_rt *rt, uint64_t id, uint8_t opcode, const char *p, size_t n);
/* What a message from another worker or another node does on this one:
 * a broadcast to path, a publish to topic, or a send to id (name unused). */
enum lx_deliver_kind { LX_DELIVER_BROADCAST, LX_DELIVER_PUBLISH, LX_DELIVER_SEND };
void lx_deliver_here(struct lx_rt *rt, enum lx_deliver_kind kind, uint64_t id, const char *name,
                     size_t nlen, uint8_t opcode, const char *p, size_t n);

/* ---- lx_cluster.c ---- */

/* pubsub's watcher (ud: the struct runtime_cluster): a topic's channel is
 * subscribed while a connection of this worker is subscribed to it. */
void lx_cluster_topic(void *ud, const char *topic, size_t len, bool first);

/* ---- lx_dict.c ---- */

/* Adds moonws.dict (process-wide shared dictionaries) to the module. */
void lx_dict_init(struct lx_rt *rt);

/* ---- lx_dispatch.c ---- */

/* How the protocol layer calls a Lua service's handlers. */
extern const struct svc_ops lx_svc_ops;

/* Pushes a handler's function (nil when absent). */
static inline void lx_push_handler(struct lx_rt *rt, struct lx_service *ls, enum lx_handler h)
{
    if (ls->handler[h] == LUA_NOREF)
        lua_pushnil(rt->L);
    else
        lua_rawgeti(rt->L, LUA_REGISTRYINDEX, ls->handler[h]);
}

/* Pushes t[key], t at idx, raw. A service's tables are read outside any
 * handler call, where a metamethod would run unprotected and without a
 * budget: their metatables are not consulted. */
static inline int lx_rawfield(lua_State *L, int idx, const char *key)
{
    idx = lua_absindex(L, idx);
    lua_pushstring(L, key);
    return lua_rawget(L, idx);
}

/* The runtime of the state L. */
static inline struct lx_rt *lx_rt_of(lua_State *L)
{
    return *(struct lx_rt **)lua_getextraspace(L);
}

/* The preamble of every binding that reaches clients (sends, broadcast,
 * publish, close, subscribe): raises while a file's top level runs. A
 * version is validated before anything changes, and it may yet be refused
 * — so its top level may not act on connections; `what` names the call. */
static inline void lx_check_serving(lua_State *L, const char *what)
{
    if (lx_rt_of(L)->loading)
        luaL_error(L, "%s cannot be used while the file loads: nothing reaches clients before "
                   "the version is accepted (do it in a handler or in moonws.after(0, fn))", what);
}

#endif
