/*
 * Shared by the libFuzzer targets: the entry point's prototype (the project
 * builds with -Wmissing-prototypes) and an assertion that survives NDEBUG
 * and names the broken property.
 */
#ifndef MOONWS_FUZZ_H
#define MOONWS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond)                                                               \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: property broken: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

/* A copy of exactly n bytes on the heap, so ASan sees a read past n. */
static inline char *fuzz_dup(const void *p, size_t n)
{
    char *d = malloc(n ? n : 1);
    if (n)
        memcpy(d, p, n);
    return d;
}

#endif
