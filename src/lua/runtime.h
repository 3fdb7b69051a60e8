/*
 * runtime: the Lua side of a worker, as the rest of the program sees it
 * (no lua.h here): load the services of a folder, answer HTTP and
 * WebSocket traffic through them, shut them down.
 */
#ifndef MOONWS_RUNTIME_H
#define MOONWS_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>

struct lx_rt;
struct worker;
struct http_server;

/* What the command line says about the Lua side. */
struct runtime_options {
    size_t lua_memory;          /* bytes per Lua state: --lua-memory */
    bool unsafe_lua;            /* --unsafe-lua: every service gets the unsafe extras */
};

/* A runtime on worker w for the services in dir; static_root (a realpath)
 * or NULL for --static. */
struct lx_rt *runtime_new(struct worker *w, const char *dir, const char *static_root,
                          const struct runtime_options *opt);
/* Loads every *.lua under the folder. Errors are logged, or printed to
 * stderr when `check` is set (with a line per good service on stdout).
 * Returns the number of files that failed. */
int runtime_load_all(struct lx_rt *rt, bool check);
struct http_server *runtime_http(struct lx_rt *rt);
/* Files under the folder (relative paths) were added, changed or removed,
 * together: each is loaded, reloaded, or its service unloaded. Every new
 * version is compiled and validated first, then the paths of the whole
 * resulting set are checked, then all of it is applied at once — except
 * the files of a conflict, and those that failed: their old versions keep
 * serving and each error is logged with file and line. */
void runtime_files_changed(struct lx_rt *rt, const char *const *files, size_t n);
/* SIGHUP: every file again, and services whose files are gone, as one
 * batch (runtime_files_changed). */
void runtime_reload_all(struct lx_rt *rt);
/* The services folder. */
const char *runtime_dir(const struct lx_rt *rt);
/* Enforces the per-call CPU budget on this thread's handlers. */
void runtime_start_watchdog(struct lx_rt *rt);
void runtime_stop_watchdog(void);
/* Starts the closing handshake (1001) with every WebSocket client. */
void runtime_shutdown(struct lx_rt *rt);
/* Frees the runtime; call worker_free on its worker first. */
void runtime_free(struct lx_rt *rt);

#endif
