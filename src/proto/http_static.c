#include "http_static.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
    const char *ext;
    const char *type;
} mime_types[] = {
    { "html", "text/html; charset=utf-8" },
    { "htm", "text/html; charset=utf-8" },
    { "css", "text/css; charset=utf-8" },
    { "js", "text/javascript; charset=utf-8" },
    { "mjs", "text/javascript; charset=utf-8" },
    { "json", "application/json" },
    { "map", "application/json" },
    { "txt", "text/plain; charset=utf-8" },
    { "md", "text/markdown; charset=utf-8" },
    { "xml", "application/xml" },
    { "svg", "image/svg+xml" },
    { "png", "image/png" },
    { "jpg", "image/jpeg" },
    { "jpeg", "image/jpeg" },
    { "gif", "image/gif" },
    { "webp", "image/webp" },
    { "ico", "image/x-icon" },
    { "wasm", "application/wasm" },
    { "woff", "font/woff" },
    { "woff2", "font/woff2" },
    { "pdf", "application/pdf" },
};

const char *static_content_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot && !strchr(dot, '/')) {
        for (size_t i = 0; i < sizeof mime_types / sizeof mime_types[0]; i++) {
            if (strcasecmp(dot + 1, mime_types[i].ext) == 0)
                return mime_types[i].type;
        }
    }
    return "application/octet-stream";
}

/* True when a "/"-separated path has a ".." segment. */
static bool has_dotdot(const char *p, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        bool seg_start = i == 0 || p[i - 1] == '/';
        if (seg_start && p[i] == '.' && p[i + 1] == '.' && (i + 2 == len || p[i + 2] == '/'))
            return true;
    }
    return false;
}

void static_open(const char *root, const char *path, size_t len, struct static_file *out)
{
    out->fd = -1;
    out->status = 404;
    if (memchr(path, '\0', len) || has_dotdot(path, len)) {
        out->status = 403;
        return;
    }
    char full[PATH_MAX];
    int n = snprintf(full, sizeof full, "%s/%.*s", root, (int)len, path);
    if (n < 0 || (size_t)n >= sizeof full)
        return;
    struct stat st;
    if (stat(full, &st) == 0 && S_ISDIR(st.st_mode)) {
        if ((size_t)n + sizeof "/index.html" > sizeof full)
            return;
        strcat(full, "/index.html");
    }
    /* Resolve links, then insist the result is still inside the root. */
    char real[PATH_MAX];
    if (!realpath(full, real))
        return;
    size_t rl = strlen(root);
    if (strncmp(real, root, rl) != 0 || (real[rl] != '/' && real[rl] != '\0')) {
        out->status = 403;
        return;
    }
    /* O_NONBLOCK: opening a FIFO must not stop the loop (it is then
     * refused as not a regular file). */
    int fd = open(real, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
    if (fd < 0) {
        /* Out of descriptors is our state, not the file's. */
        out->status = errno == EMFILE || errno == ENFILE ? 503 : 403;
        return;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return;
    }
    out->fd = fd;
    out->size = st.st_size;
    out->content_type = static_content_type(real);
    out->status = 200;
}
