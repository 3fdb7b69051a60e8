/*
 * dirwatch: tells when files under a folder may have changed, through
 * inotify on the loop (no thread, no polling).
 *
 * Editors save in many ways — in place, truncate then write, a temporary
 * file renamed over, delete then create, vim's backup dance — so events are
 * not reported as they come: each file waits for a quiet period after its
 * last event, and while a writer still has it open (a write seen, its close
 * not yet), up to a few seconds more. Then the callback hears the file's
 * path once; whether it exists is for the callback to look. Folders created
 * later are watched too; a folder removed reports every file known in it.
 */
#ifndef MOONWS_DIRWATCH_H
#define MOONWS_DIRWATCH_H

#include <ev.h>
#include <stddef.h>

/* path is relative to the watched folder ("api/feed.lua"). */
typedef void (*dirwatch_fn)(void *ud, const char *path);

struct dirwatch;

/* Watches dir for files ending in suffix (".lua"); names starting with '.'
 * are ignored. NULL with a message in err when inotify is unavailable. */
struct dirwatch *dirwatch_new(struct ev_loop *loop, const char *dir, const char *suffix,
                              double quiet, dirwatch_fn fn, void *ud, char *err, size_t errcap);
void dirwatch_free(struct dirwatch *dw);

#endif
