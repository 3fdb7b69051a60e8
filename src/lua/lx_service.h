/*
 * Services, for the runtime: loading a file into a candidate (lx_load.c),
 * and a service object's life — installed, replaced, unloaded, freed
 * (lx_service.c). How the protocol layer calls a service's handlers is
 * lx_svc_ops (lx_dispatch.c, declared in lx.h).
 */
#ifndef MOONWS_LX_SERVICE_H
#define MOONWS_LX_SERVICE_H

#include <stdbool.h>
#include <stddef.h>

struct buf;
struct lx_rt;
struct lx_service;

/* ---- lx_load.c ---- */

/* Appends the bytes of dir/file to out, followed by a NUL that is not
 * counted in out->len (lx_service_load_source wants it). False with
 * "file: cannot open: reason" in err. */
bool lx_service_read(const char *dir, const char *file, struct buf *out, char *err, size_t errcap);
/* Compiles, runs and validates the len bytes of src (followed by a NUL)
 * as the service file `file` into a candidate that is not yet serving. Its
 * top level sees the moonws.shared of file, or of shared_of (a service
 * moving from that file to this one). NULL with "file:line: message" in
 * err on any error. */
struct lx_service *lx_service_load_source(struct lx_rt *rt, const char *file, const char *src,
                                          size_t len, const char *shared_of, char *err,
                                          size_t errcap);
/* The same, reading DIR/file. */
struct lx_service *lx_service_load(struct lx_rt *rt, const char *file, const char *shared_of,
                                   char *err, size_t errcap);
/* The handler (enum lx_handler) a table field of this exact name is, or -1. */
int lx_handler_of(const char *name);

/* ---- lx_service.c ---- */

/* A service object for file, holding nothing yet (the loader fills it). */
struct lx_service *lx_service_new(struct lx_rt *rt, const char *file);
/* Frees a service: its Lua references and its C state (the last
 * reference to its svc is gone). */
void lx_service_destroy(struct lx_rt *rt, struct lx_service *ls);
/* Throws a candidate away (its timers cancelled, a moonws.shared its
 * loading created gone). */
void lx_service_discard(struct lx_rt *rt, struct lx_service *ls);
/* Starts serving a candidate at its path; fails when the path is taken. */
bool lx_service_mount(struct lx_rt *rt, struct lx_service *ls, char *err, size_t errcap);
/* A new version (candidate) of a running service takes over: open
 * connections keep their callers and caller.data and get the new handlers;
 * the old version's timers are cancelled; a changed path moves the service
 * with its connections. A candidate from another file (loaded with the
 * service's moonws.shared) moves the service to that file: its name and
 * its moonws.shared follow. The caller has made sure the new path is free (see
 * lx_service_unmount for services that trade paths). The candidate is
 * consumed. */
void lx_service_replace(struct lx_rt *rt, struct lx_service *old, struct lx_service *cand);
/* Takes a running service off its path, connections and all kept, until
 * lx_service_replace mounts it at its new one: how a batch of changes
 * lets services trade paths. */
void lx_service_unmount(struct lx_rt *rt, struct lx_service *ls);
/* The loaded service from file, or NULL. */
struct lx_service *lx_service_find(struct lx_rt *rt, const char *file);
/* Open connections of a service. */
size_t lx_service_open_count(const struct lx_service *ls);
/* Stops serving: unmounts, cancels timers, closes connections 1001 with
 * reason; memory goes when the last connection has. */
void lx_service_unload(struct lx_rt *rt, struct lx_service *ls, const char *reason);

#endif
