/*
 * ws_upgrade: answering an HTTP request that asks for a WebSocket.
 */
#ifndef MOONWS_WS_UPGRADE_H
#define MOONWS_WS_UPGRADE_H

#include <stdbool.h>

struct conn;
struct svc;
struct http_exchange;
struct pmd_pool;

/* Answers an upgrade request for svc on c: checks it, negotiates, runs the
 * service's gate (svc->ops->upgrade: auth, onUpgrade), writes the 101 and
 * switches c to WebSocket (ws_conn_start), then runs onOpen. pool is the
 * worker's (compression streams and scratch). Returns false when it
 * answered with a refusal instead. */
bool ws_conn_accept(struct conn *c, struct svc *svc, const struct http_exchange *ex,
                    struct pmd_pool *pool);

#endif
