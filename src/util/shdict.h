/*
 * shdict: a shared dictionary — byte-string keys, values that are strings,
 * 64-bit integers, doubles or booleans — with a byte capacity, least
 * recently used eviction past it, and per-key expiry on the monotonic clock.
 * moonws.dict(name) in Lua (src/lua/lx_dict.c) is a handle to one.
 *
 * Thread-safe: every operation is atomic, from any number of threads. Each
 * dictionary has one mutex, held for a hash lookup and a copy of one value,
 * never across a system call, a log line or a call into Lua: a new value is
 * allocated and filled before the lock is taken, log lines are written after
 * it is released. A get moves its entry to the front of the LRU list (the
 * eviction order is exact), which is why reads take the same lock as writes;
 * a read-mostly load pays one uncontended mutex and one hash of the key per
 * get.
 *
 * Accounting: an entry costs SHDICT_ENTRY_OVERHEAD bytes plus its key's
 * length plus, for a string, the string's length (numbers and booleans have
 * no extra bytes). used() is the sum over the entries present, expired ones
 * included until they are removed; it never exceeds the capacity.
 *
 * Expiry is lazy: an expired entry is removed when an operation finds it,
 * when a write looks at the LIM_DICT_SWEEP least recently used entries (it
 * removes the expired ones among them), when room is needed (expired
 * entries at the LRU end go first, and do not count as evictions), or by
 * shdict_flush_expired.
 *
 * Time: every operation takes `now` (clock_ns() of util/clock.h, in nanoseconds), so
 * tests can move the clock; ttl is in seconds, 0 for none.
 *
 * The process-wide registry (shdict_open) holds every dictionary by name:
 * created at the first use of a name and never freed while the process
 * runs, so they outlive Lua states, services and reloads.
 */
#ifndef MOONWS_SHDICT_H
#define MOONWS_SHDICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes an entry costs beyond its key and string value: its record and its
 * slot in the hash table. The process's memory has malloc's own rounding on
 * top. */
#define SHDICT_ENTRY_OVERHEAD 64

struct shdict;

enum shdict_type { SHDICT_NIL, SHDICT_STR, SHDICT_INT, SHDICT_FLOAT, SHDICT_BOOL };

struct shdict_value {
    enum shdict_type type;
    union {
        int64_t i;
        double d;
        bool b;
    };
    const char *str;            /* SHDICT_STR: the bytes (see shdict_get) */
    size_t len;
};

enum shdict_rc {
    SHDICT_OK,
    SHDICT_NOT_FOUND,           /* absent or expired */
    SHDICT_EXISTS,              /* add: a live entry has the key */
    SHDICT_NO_MEMORY,           /* the entry is larger than the whole capacity */
    SHDICT_NOT_NUMBER,          /* incr of a string or boolean */
    SHDICT_OVERFLOW,            /* incr: the integer sum does not fit 64 bits */
    SHDICT_SHORT_BUFFER,        /* get: the string needs out->len bytes */
};

/* The reason as scripts see it: "not found", "exists", "no memory", … */
const char *shdict_strerror(int rc);

/* A dictionary outside the registry (tests, or a caller that owns it):
 * name is for log lines. */
struct shdict *shdict_new(const char *name, size_t capacity);
/* Frees it and everything in it; no other thread may be using it. */
void shdict_free(struct shdict *d);

const char *shdict_name(const struct shdict *d);

struct shdict_stats {
    size_t capacity;
    size_t used;                /* bytes charged for the entries present (Accounting) */
    size_t count;               /* entries present, expired ones not yet removed included */
    uint64_t evictions;         /* live entries evicted to make room, ever */
};
void shdict_stats(struct shdict *d, struct shdict_stats *st);
/* The capacity alone. */
size_t shdict_capacity(struct shdict *d);

/* Copies the live value of key into *out. A string goes into buf when it
 * fits in cap bytes (out->str = buf, out->len its length); otherwise the
 * result is SHDICT_SHORT_BUFFER with out->len the length needed (call again
 * with a larger buffer: the value may have changed meanwhile). Counts as a
 * use for the LRU order. SHDICT_NOT_FOUND when absent or expired. */
int shdict_get(struct shdict *d, const void *key, size_t klen, int64_t now,
               struct shdict_value *out, char *buf, size_t cap);

enum shdict_mode {
    SHDICT_SET,                 /* store, whatever was there */
    SHDICT_ADD,                 /* only when absent or expired: else SHDICT_EXISTS */
    SHDICT_REPLACE,             /* only when present: else SHDICT_NOT_FOUND */
};

/* Stores v under key with a time to live of ttl seconds (0: none), as the
 * most recently used entry. A SHDICT_NIL value deletes the key (SHDICT_SET
 * only). When the dictionary is full, least recently used entries are
 * removed until the new one fits; *forcible (may be NULL) tells whether
 * live ones had to go. An entry larger than the capacity is refused with
 * SHDICT_NO_MEMORY and changes nothing (the old value stays). */
int shdict_store(struct shdict *d, enum shdict_mode mode, const void *key, size_t klen,
                 const struct shdict_value *v, double ttl, int64_t now, bool *forcible);

/* Adds n (SHDICT_INT or SHDICT_FLOAT) to the number under key, atomically,
 * and puts the sum in *out. Two integers add as integers (a sum past 64 bits
 * is SHDICT_OVERFLOW and changes nothing), anything with a float as floats.
 * A missing or expired key: SHDICT_NOT_FOUND without init, else it is
 * created as init + n with a time to live of ttl (0: none); an existing
 * key keeps its time to live. A string or boolean: SHDICT_NOT_NUMBER. */
int shdict_incr(struct shdict *d, const void *key, size_t klen, const struct shdict_value *n,
                const struct shdict_value *init, double ttl, int64_t now,
                struct shdict_value *out, bool *forcible);

/* Removes key; returns whether a live entry was there. */
bool shdict_delete(struct shdict *d, const void *key, size_t klen, int64_t now);

/* The seconds key has left in *left, 0 when it never expires; or
 * SHDICT_NOT_FOUND. */
int shdict_ttl(struct shdict *d, const void *key, size_t klen, int64_t now, double *left);
/* Gives a live key a new time to live (0: none); or SHDICT_NOT_FOUND. */
int shdict_expire(struct shdict *d, const void *key, size_t klen, double ttl, int64_t now);

struct shdict_key {
    const char *p;
    size_t len;
};
/* Up to max (0: every) live keys, most recently used first, as one
 * malloc'd block (the array, then the bytes it points to): free() it. The
 * whole walk happens under the lock, so a large dictionary is better read
 * with a bound. */
struct shdict_key *shdict_keys(struct shdict *d, int64_t now, size_t max, size_t *n);

/* Removes every entry. */
void shdict_flush_all(struct shdict *d);
/* Removes up to max (0: every) expired entries; returns how many. */
size_t shdict_flush_expired(struct shdict *d, int64_t now, size_t max);

/* ---- the process-wide registry ---- */

enum shdict_open_rc {
    SHDICT_OPENED,              /* found, with the capacity asked for (or none asked) */
    SHDICT_CREATED,             /* new */
    SHDICT_SIZED,               /* found at the default capacity, given the one asked for */
    SHDICT_CONFLICT,            /* found, sized before to another capacity: kept.
                                 * Said once per dictionary and capacity asked,
                                 * so a caller can warn without repeating itself */
    SHDICT_BAD_NAME,            /* not 1..LIM_DICT_NAME_MAX of [A-Za-z0-9_.:-] */
    SHDICT_TOO_MANY,            /* LIM_DICTS exist already */
};

/* The dictionary called name, created at its first use. capacity 0 asks
 * for none: a new dictionary gets LIM_DICT_DEFAULT until a capacity is
 * asked for. The first capacity asked for sizes it (least recently used
 * entries go if it shrinks); later different ones are kept out
 * (SHDICT_CONFLICT). *out is the dictionary for the first four results,
 * NULL for the others. */
enum shdict_open_rc shdict_open(const char *name, size_t capacity, struct shdict **out);
/* Frees every dictionary of the registry (at exit; no thread may still use
 * them). */
void shdict_close_all(void);

/* Parses a capacity: decimal digits with an optional K, M or G (powers of
 * 1024, either case). Returns false for anything else, 0, or an overflow. */
bool shdict_parse_size(const char *s, size_t *out);

#endif
