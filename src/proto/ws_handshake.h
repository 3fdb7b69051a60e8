/*
 * ws_handshake: the HTTP side of RFC 6455 §4 for both ends — checking an
 * upgrade request, choosing a sub-protocol, writing the 101 answer; and for
 * the client, writing the request and checking the answer. Pure: parsed
 * heads in, bytes or verdicts out.
 */
#ifndef MOONWS_WS_HANDSHAKE_H
#define MOONWS_WS_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>

#include "../util/buf.h"
#include "http_parse.h"

/* True when the request asks for a WebSocket (Upgrade lists "websocket"). */
bool ws_is_upgrade(const struct http_request *req);

/* Checks an upgrade request. Returns 0 when it is acceptable, else the HTTP
 * status to refuse with (400, or 426 for a version other than 13) and a
 * reason in *why. */
int ws_check_upgrade(const struct http_request *req, const char **why);

/* The first protocol in the client's Sec-WebSocket-Protocol lists (in its
 * order) that the service supports: an index into supported, or -1. */
int ws_select_protocol(const struct http_request *req, char *const *supported, size_t n);

/* Appends the 101 response. protocol and extensions may be NULL; extra is
 * raw header lines ("Name: value\r\n"...) of the application's, or NULL. */
void ws_write_accept(struct buf *out, const struct http_request *req, const char *protocol,
                     const char *extensions, const char *extra, size_t extra_len);

/* True for the header fields the handshake itself writes or reads
 * (Upgrade, Connection, Sec-WebSocket-*): the application may not add them
 * to a 101. */
bool ws_handshake_owns(const char *name, size_t len);

/* Client: appends the upgrade request. protocols may be empty; extra is
 * raw header lines ("Name: value\r\n"...) or NULL; extensions the offer or
 * NULL. */
void ws_write_client_request(struct buf *out, const char *host, const char *target,
                             const char *key, const char *const *protocols, size_t nprot,
                             const char *extra, const char *extensions);

/* Client: checks the server's answer to the request with this key and these
 * offered protocols. Returns NULL when it is a valid 101, else the reason. */
const char *ws_check_accept(const struct http_response *res, const char *key,
                            const char *const *protocols, size_t nprot);

#endif
