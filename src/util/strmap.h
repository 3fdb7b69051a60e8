/*
 * strmap: a hash map from byte strings to pointers. Keys are copied.
 */
#ifndef MOONWS_STRMAP_H
#define MOONWS_STRMAP_H

#include <stddef.h>

struct strmap_entry;

struct strmap {
    struct strmap_entry **slots;
    size_t nslots;
    size_t count;
};

void *strmap_get(const struct strmap *m, const char *key, size_t len);
/* Sets key to val (replacing any value). */
void strmap_put(struct strmap *m, const char *key, size_t len, void *val);
/* Removes key; returns its value or NULL. */
void *strmap_del(struct strmap *m, const char *key, size_t len);
/* Calls fn for every entry (the map must not change meanwhile). */
void strmap_each(const struct strmap *m, void (*fn)(const char *key, size_t len, void *val,
                                                    void *ud), void *ud);
void strmap_free(struct strmap *m);

#endif
