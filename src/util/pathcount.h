/*
 * pathcount: the process-wide counts of open connections by path, for
 * moonws.count. Every worker adds and takes away as its connections open
 * and close; any worker reads.
 *
 * A key is a service's path ("/chat", "/rooms/:room"), or for a service
 * whose path holds parameters also that path, a NUL, and the concrete path
 * a connection was opened at ("/rooms/:room\0/rooms/lobby"). An entry goes
 * when its count is back to 0, so the table holds only paths with open
 * connections, whatever paths clients ask for.
 *
 * Thread-safe: sharded, a mutex per shard held for one hash lookup.
 */
#ifndef MOONWS_PATHCOUNT_H
#define MOONWS_PATHCOUNT_H

#include <stdbool.h>
#include <stddef.h>

/* Watches keys coming and going: fn(ud, key, len, true) when a key gets a
 * count (from 0), fn(ud, key, len, false) when it is back to 0. It runs
 * on the thread that changed the count, under the key's shard mutex (so
 * the calls for one key come in order): it must not block nor count. Set
 * once, before any thread counts (the cluster link subscribes to a
 * service's channel while the process has connections there). */
void pathcount_watch(void (*fn)(void *ud, const char *key, size_t len, bool present), void *ud);

/* Calls fn(ud, key, len, count) for every key with a count now, one shard
 * at a time under its mutex (fn must not count). */
void pathcount_each(void (*fn)(void *ud, const char *key, size_t len, long count), void *ud);

/* Adds delta (+1, -1, or a service's share when it moves) to key. */
void pathcount_add(const char *key, size_t len, long delta);
/* The count of key now (0 when none). */
long pathcount_get(const char *key, size_t len);
/* Keys with a count now (for tests and the exit check). */
size_t pathcount_keys(void);
/* Frees the tables (at exit). */
void pathcount_cleanup(void);

#endif
