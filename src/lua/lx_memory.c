/*
 * The memory cap of a worker's Lua state: its allocator counts what the
 * state holds and refuses to grow it past --lua-memory, so that a script
 * gets Lua's "not enough memory" error (after an emergency collection)
 * instead of the process growing.
 *
 * Where the cap holds is chosen, because a failed allocation raises an
 * error and an error outside any protected call makes Lua abort the
 * process: the cap holds only while mem.strict is set, which lx_call does
 * around its lua_pcall and nowhere else. What the runtime itself pushes
 * before a call (the message string, the caller, a request table) and reads
 * after it never fails: it may take the state past the cap by that much,
 * and the next allocation inside a call fails until the collector has got
 * it back. C code that runs inside a call but outside Lua — a callback of
 * the protocol layer, reached through a send that closed a connection —
 * lifts the cap while it pushes (lx_memory_relax).
 *
 * The count is per state, so per worker: services share it, and one
 * service that keeps what it took (in its globals, in moonws.shared) leaves
 * less for the others. There is no per-service figure, because an
 * allocation belongs to no service in particular: strings are interned
 * once for the whole state, and a table one service made can be held by
 * another (through the caller.data of a connection it found with
 * moonws.connections), so counting each allocation against the service
 * that was running would blame the wrong one.
 */
#include <stdlib.h>

#include "../util/clock.h"
#include "../util/log.h"
#include "lx.h"

#define MiB (1024.0 * 1024.0)

static double now_coarse(void)
{
    return (double)clock_coarse_ns() / 1e9;
}

/* The allocation is refused: one log line a second at most (a script
 * can fail as often as it likes). */
static void refused(struct lx_rt *rt, size_t want)
{
    double now = now_coarse();
    if (now - rt->mem.logged_at < 1.0 && rt->mem.logged_at != 0)
        return;
    rt->mem.logged_at = now;
    log_info("Lua memory of this worker is full (%.0f MiB, --lua-memory): %zu bytes refused "
             "to %s, which gets \"not enough memory\"", (double)rt->mem.limit / MiB, want,
             rt->current ? rt->current->file : "a timer of no service");
}

void *lx_memory_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct lx_rt *rt = ud;
    struct lx_memory *m = &rt->mem;
    if (!ptr)
        osize = 0;              /* then it holds the kind of object, not a size */
    if (nsize == 0) {
        free(ptr);
        m->used -= osize;
        return NULL;
    }
    /* Lua counts on shrinking never failing: only growth is checked. */
    if (nsize > osize && m->strict && (m->used > m->limit || nsize - osize > m->limit - m->used)) {
        refused(rt, nsize);
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (p)
        m->used = m->used - osize + nsize;
    return p;
}

bool lx_memory_relax(struct lx_rt *rt)
{
    bool strict = rt->mem.strict;
    rt->mem.strict = false;
    return strict;
}

void lx_memory_restore(struct lx_rt *rt, bool strict)
{
    rt->mem.strict = strict;
}
