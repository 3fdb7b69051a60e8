/*
 * dirwatch: tells when files under a folder may have changed, through
 * inotify on the loop (no thread, no polling).
 *
 * Editors save in many ways — in place, truncate then write, a temporary
 * file renamed over, delete then create, vim's backup dance — so events are
 * not reported as they come: each file waits for a quiet period after its
 * last event, and while a writer still has it open (a write seen, its close
 * not yet), up to a few seconds more. Then it is ready; and since changes
 * to several files may belong together (two services swapping paths, a
 * folder renamed), ready files also wait until no other changed file is
 * still settling (at most those few seconds), and the callback hears all
 * of them at once, each path once; whether a file exists is for the
 * callback to look. Folders created later are watched too; a folder
 * removed or moved out of the tree reports every file known in it, and its
 * watches go.
 */
#ifndef MOONWS_DIRWATCH_H
#define MOONWS_DIRWATCH_H

#include <ev.h>
#include <stddef.h>

/* A batch of changed files: n paths relative to the watched folder
 * ("api/feed.lua"), sorted, each once; valid during the call. */
typedef void (*dirwatch_fn)(void *ud, const char *const *paths, size_t n);

struct dirwatch;

/* Watches dir for files ending in suffix (".lua"); names starting with '.'
 * are ignored. NULL with a message in err when inotify is unavailable. */
struct dirwatch *dirwatch_new(struct ev_loop *loop, const char *dir, const char *suffix,
                              double quiet, dirwatch_fn fn, void *ud, char *err, size_t errcap);
void dirwatch_free(struct dirwatch *dw);

#endif
