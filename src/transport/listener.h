/*
 * listener: a listening TCP socket on the loop. Accepted sockets are made
 * non-blocking with TCP_NODELAY and handed to on_accept with the client's
 * address; the listener knows nothing of what is spoken on them.
 *
 * With an admission (admission.h) a slot is reserved before each accept:
 * at max_connections the listener stops watching its socket until
 * listener_resume, and on_accept must turn the slot into an entry
 * (admission_enter) or give it back (admission_unreserve).
 */
#ifndef MOONWS_LISTENER_H
#define MOONWS_LISTENER_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct admission;
struct listener;
typedef void (*listener_accept_fn)(struct listener *l, int fd, const struct sockaddr *addr);

struct listener {
    ev_io io;
    ev_timer pause_w;           /* accepting paused after EMFILE */
    struct ev_loop *loop;
    listener_accept_fn on_accept;
    void *data;                 /* for on_accept */
    struct admission *adm;      /* slots to reserve before accepting, or NULL */
    bool waiting_room;          /* paused at max_connections */
    bool tls;
    char host[64];              /* as given, for the "listening on" line */
    unsigned port;              /* the bound port (the real one for port 0) */
    struct listener *next;
};

/* Splits "[HOST:]PORT" (HOST may be "[v6]"). Returns false with a message
 * in err for a malformed spec. host gets "0.0.0.0" when absent. */
bool listener_parse(const char *spec, char *host, size_t hostcap, unsigned *port,
                    char *err, size_t errcap);

/* Binds and listens (SO_REUSEADDR, SO_REUSEPORT). Returns NULL with a
 * message in err on failure. */
struct listener *listener_open(struct ev_loop *loop, const char *host, unsigned port,
                               char *err, size_t errcap);
void listener_start(struct listener *l);
/* Accepts again after a pause at max_connections (the admission's wake
 * hook leads here); nothing when it was not paused. */
void listener_resume(struct listener *l);
/* Stops accepting and closes the socket. */
void listener_close(struct listener *l);

#endif
