/*
 * cluster_chans: the Redis channels this process needs, counted by
 * reference, and what the link must send to make Redis agree.
 *
 * Any thread takes and drops references; the link's thread alone asks for
 * the changes due and sends them (SUBSCRIBE for a channel with references
 * and not subscribed on the current connection, UNSUBSCRIBE for one
 * without references that is). A channel referenced and dropped before the
 * link looked costs nothing on the wire. One mutex guards the table, held
 * for a hash lookup or for copying the names due — never across a socket
 * call or a callback.
 */
#ifndef MOONWS_CLUSTER_CHANS_H
#define MOONWS_CLUSTER_CHANS_H

#include <stdbool.h>
#include <stddef.h>

#include "../util/buf.h"

struct cluster_chans;

/* A list of names, copied: for one (UN)SUBSCRIBE command or several. */
struct cluster_names {
    struct buf bytes;           /* the names, back to back */
    size_t *off, *len;
    size_t n, cap;
};

void cluster_names_add(struct cluster_names *ns, const char *name, size_t len);
void cluster_names_clear(struct cluster_names *ns);
void cluster_names_free(struct cluster_names *ns);

struct cluster_chans *cluster_chans_new(void);
/* Frees the table, references or not (the link is gone). */
void cluster_chans_free(struct cluster_chans *t);

/* One more reference on a channel. Returns true when the link has a change
 * to make for it now (wake the link's thread). */
bool cluster_chans_ref(struct cluster_chans *t, const char *name, size_t len);
/* One reference less; the channel must have one. Returns as above. */
bool cluster_chans_unref(struct cluster_chans *t, const char *name, size_t len);

/* The link's thread: appends the channels to subscribe to sub and those to
 * unsubscribe from to unsub, and counts them as done. */
void cluster_chans_changes(struct cluster_chans *t, struct cluster_names *sub,
                           struct cluster_names *unsub);
/* The link's thread, on a new connection: nothing is subscribed on it;
 * every referenced channel is due again (the next changes list them). */
void cluster_chans_reset(struct cluster_chans *t);
/* The link's thread, at shutdown: appends every channel subscribed on the
 * current connection and counts it unsubscribed. */
void cluster_chans_take_subscribed(struct cluster_chans *t, struct cluster_names *out);

/* Channels with at least one reference. */
size_t cluster_chans_referenced(struct cluster_chans *t);

#endif
