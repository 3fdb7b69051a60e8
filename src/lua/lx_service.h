/*
 * Loading and installing services (lx_service.c), for the runtime.
 */
#ifndef MOONWS_LX_SERVICE_H
#define MOONWS_LX_SERVICE_H

#include <stdbool.h>
#include <stddef.h>

struct lx_rt;
struct lx_service;

/* Compiles, runs and validates DIR/file into a candidate that is not yet
 * serving. Its top level sees the moonws.shared of file, or of shared_of
 * (a service moving from that file to this one). NULL with
 * "file:line: message" in err on any error. */
struct lx_service *lx_service_load(struct lx_rt *rt, const char *file, const char *shared_of,
                                   char *err, size_t errcap);
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
