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

/* Binds n listening sockets to host:port (SO_REUSEADDR), one per worker,
 * into fds: one socket alone is bound plainly; a group shares the port
 * through SO_REUSEPORT, the kernel spreading connections over its sockets.
 * The first is bound without SO_REUSEPORT, so a port that anyone holds —
 * another server, or another process's reuseport group — is refused
 * ("address in use") instead of joined; it gets SO_REUSEPORT after its
 * bind, and the others join the port it got (port 0: one free port for
 * all). *port_out gets the bound port. False with a message in err (no
 * socket left open). */
bool listener_bind_group(const char *host, unsigned port, int *fds, unsigned n,
                         unsigned *port_out, char *err, size_t errcap);
/* A listener on loop for a bound socket (it takes fd); host and port for
 * the "listening on" line. Not accepting until listener_start. */
struct listener *listener_new(struct ev_loop *loop, int fd, const char *host, unsigned port);
void listener_start(struct listener *l);
/* Accepts again after a pause at max_connections (the admission's wake
 * hook leads here); nothing when it was not paused. */
void listener_resume(struct listener *l);
/* Stops accepting and closes the socket. */
void listener_close(struct listener *l);

#endif
