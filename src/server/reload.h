/*
 * reload: the master's side of loading services — at startup, when files
 * change, on SIGHUP — as one two-phase commit over every worker, so that
 * every worker serves the same version of every file.
 *
 * The master reads each file's bytes once and sends the same bytes to
 * every worker: PREPARE — each worker loads and validates its candidates
 * and says, per file, ok (with the path it would serve) or why not; then
 * COMMIT — a file is applied only if every worker prepared it (and with
 * the same path); otherwise every worker discards it, with the reason of
 * the first worker that refused it, and the old version keeps serving
 * everywhere. Each worker applies the rest (path settling is the same
 * given the same inputs) and reports the outcome as log events, which the
 * master writes once, with the connections of every worker added up.
 * Workers serve between the phases. One batch runs at a time; changes that
 * come meanwhile wait and go together in the next.
 */
#ifndef MOONWS_RELOAD_H
#define MOONWS_RELOAD_H

#include <stdbool.h>
#include <stddef.h>

#include "../lua/runtime.h"

struct wthread;
struct reload;

/* For the workers of the table (n of them), over the services folder dir.
 * done(ud) runs once the startup batch is committed. */
struct reload *reload_new(const char *dir, struct wthread *workers, unsigned n,
                          void (*done)(void *ud), void *ud);
/* Every file under the folder, as the startup batch. */
void reload_startup(struct reload *r);
/* These files (relative paths) changed: a batch now, or with the next. */
void reload_files(struct reload *r, const char *const *files, size_t n);
/* SIGHUP: every file there is and every file served, as one batch. */
void reload_all(struct reload *r);
/* Counts every file a batch after the startup applies, refuses or
 * removes in m's moonws_reloads_total (the master's decision, once per
 * file, whatever the number of workers). */
struct metrics;
void reload_count_into(struct reload *r, struct metrics *m);
/* A worker's answers (they take the arrays): its verdicts on the batch
 * being prepared, its events once it committed. */
void reload_prepared(struct reload *r, unsigned worker, struct runtime_verdict *v);
void reload_committed(struct reload *r, unsigned worker, struct runtime_events *e);
/* Shutdown: answers from now on are dropped, no batch starts. */
void reload_stop(struct reload *r);
/* After every worker is joined. */
void reload_free(struct reload *r);

/* --check: every file under dir loaded on rt (this thread's runtime) as
 * the startup would; "ok FILE -> PATH" on stdout for each that loads, its
 * error on stderr for each that does not. Returns how many failed. */
int reload_check(struct lx_rt *rt, const char *dir);

#endif
