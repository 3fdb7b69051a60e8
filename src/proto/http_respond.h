/*
 * http_respond: writing an HTTP/1.1 response on a connection — whole
 * answers, and the one-line error answers after which the connection ends.
 * Used by the HTTP server and by the WebSocket upgrade (a refused upgrade
 * is an HTTP answer).
 */
#ifndef MOONWS_HTTP_RESPOND_H
#define MOONWS_HTTP_RESPOND_H

#include <stdbool.h>
#include <stddef.h>

struct conn;

/* Writes a complete response. extra is raw header lines or NULL; the body is
 * left out for HEAD (head_only) but its length is still announced. */
void http_respond(struct conn *c, int status, const char *extra, size_t extra_len,
                  const char *body, size_t len, bool head_only, bool close);

/* An error answer with a one-line text body, after which the connection
 * ends (lingering LIM_HTTP_LINGER). extra is raw header lines or NULL.
 * Returns the body's length (for the traffic line). */
size_t http_respond_error(struct conn *c, int status, const char *why, const char *extra);

/* The reason phrase of a status ("Not Found"). */
const char *http_status_text(int status);

#endif
