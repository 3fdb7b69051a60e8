/*
 * admission: who may connect. Two limits: the connections open at once in
 * the whole process (--max-connections) and from one client address
 * (--max-connections-per-ip).
 *
 * Process-wide and thread-safe from the start, for listeners on every
 * worker thread: the total is a C11 atomic; the table of addresses is
 * behind a mutex held only for a hash lookup (never across a socket call,
 * a log line or a callback).
 *
 * A listener reserves a slot before it calls accept(2). At the limit it
 * stops watching its socket — clients wait in the kernel's backlog, and
 * nothing spins — and calls admission_wait. A connection that ends gives
 * its slot back, and the first to do so after a wait calls the wake hook,
 * on the thread of whoever left: the hook must only signal the listeners'
 * loops (ev_async_send), which then resume.
 *
 * Addresses are counted as they are: an IPv4 address (also when it comes
 * IPv4-mapped over IPv6), or a whole IPv6 address.
 */
#ifndef MOONWS_ADMISSION_H
#define MOONWS_ADMISSION_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct admission;
struct adm_entry;               /* one address and its count */

/* max_total: connections at once (0: no limit); max_per_ip: from one
 * address (0: no limit). */
struct admission *admission_new(size_t max_total, unsigned max_per_ip);
/* Every connection must have left. */
void admission_free(struct admission *a);
/* The hook that wakes waiting listeners (NULL: none); see above. Set it
 * before any listener accepts: it is read without a lock. */
void admission_set_wake(struct admission *a, void (*wake)(void *ud), void *ud);

/* Reserves a slot for a connection about to be accepted. False at
 * max_connections (logged at info, at most once a second): the caller
 * stops accepting and calls admission_wait. */
bool admission_reserve(struct admission *a);
/* Gives back a reserved slot that was not used (accept(2) found nobody,
 * or the server is stopping). */
void admission_unreserve(struct admission *a);
/* Asks for the wake hook once a slot is free. Returns true when one is
 * free already (a connection left meanwhile): accept again at once. */
bool admission_wait(struct admission *a);
/* A listener accepts again after a wait (logged at info, at most once a
 * second: "accepting resumed"). */
void admission_resumed(struct admission *a);

/* Admits the connection accepted on a reserved slot from addr. Returns
 * its entry, for admission_leave when it ends — or NULL when its address
 * already has max_per_ip connections: the slot is given back and the
 * refusal counted, and logged at info at most once a second with the
 * count since the last such line. */
struct adm_entry *admission_enter(struct admission *a, const struct sockaddr *addr);
/* The connection of entry e ended: its slot and its address's count are
 * given back. */
void admission_leave(struct adm_entry *e);

/* Logs the refusals not reported yet, once a second has passed since the
 * last such line (for a timer: the tail of a burst). */
void admission_report(struct admission *a);

/* Connections admitted or reserved now. */
size_t admission_count(const struct admission *a);
size_t admission_max(const struct admission *a);

#endif
