/*
 * http_static: files under the --static folder for GET and HEAD. Paths that
 * leave the folder — through ".." or through a symbolic link pointing
 * outside — are refused with 403.
 */
#ifndef MOONWS_HTTP_STATIC_H
#define MOONWS_HTTP_STATIC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The outcome of resolving a request path. */
struct static_file {
    int fd;                     /* open file, -1 on failure */
    off_t size;
    const char *content_type;
    int status;                 /* 200, or the error status (403, 404; 503 when the
                                 * process is out of file descriptors) */
};

/* Resolves a percent-decoded path under root (a realpath). */
void static_open(const char *root, const char *path, size_t len, struct static_file *out);

/* The Content-Type for a file name. */
const char *static_content_type(const char *name);

#endif
