/*
 * pubsub: topics and their subscribers on one worker. A publish encodes its
 * frame once (ws_bcast) and queues it on every subscriber by reference.
 * Membership is kept on both sides, with indexes, so joining, leaving and a
 * connection's departure cost O(1) per topic whatever the topic's size.
 */
#ifndef MOONWS_PUBSUB_H
#define MOONWS_PUBSUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../util/strmap.h"

struct ws_conn;

struct pubsub {
    struct strmap topics;       /* name -> struct topic */
    /* Told when a topic gets its first subscriber on this worker (first)
     * and when it loses its last (or the table is freed with it): the
     * cluster link subscribes to a topic's channel meanwhile. NULL: nobody. */
    void (*watch)(void *ud, const char *topic, size_t len, bool first);
    void *watch_ud;
};

/* Returns false when wc was already subscribed. */
bool pubsub_join(struct pubsub *ps, struct ws_conn *wc, const char *topic, size_t len);
/* Returns false when wc was not subscribed. */
bool pubsub_leave(struct pubsub *ps, struct ws_conn *wc, const char *topic, size_t len);
/* Takes wc out of every topic: its owner (the runtime) does so when the
 * connection ends, before it is freed. */
void pubsub_leave_all(struct ws_conn *wc);
/* Sends to every subscriber; returns how many it was queued for. */
size_t pubsub_publish(struct pubsub *ps, const char *topic, size_t tlen, uint8_t opcode,
                      const char *data, size_t len);
/* Subscribers of a topic. */
size_t pubsub_count(const struct pubsub *ps, const char *topic, size_t len);
void pubsub_free(struct pubsub *ps);

#endif
