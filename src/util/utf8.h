/*
 * utf8: an incremental UTF-8 validator (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF).
 *
 * The state survives across calls, so a message can be validated fragment by
 * fragment as bytes arrive, and the first invalid byte is reported at once
 * (RFC 6455 §8.1 "fail fast") even when the sequence started in an earlier
 * fragment.
 */
#ifndef MOONWS_UTF8_H
#define MOONWS_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Zero is the start state and the "complete" state. */
typedef uint32_t utf8_state;

/* Feeds n bytes. Returns false as soon as a byte cannot continue a valid
 * sequence; the state is then meaningless. */
bool utf8_feed(utf8_state *st, const void *p, size_t n);

/* True when the bytes fed so far end on a character boundary. */
static inline bool utf8_complete(utf8_state st)
{
    return st == 0;
}

/* Validates a whole string at once. */
bool utf8_valid(const void *p, size_t n);

#endif
