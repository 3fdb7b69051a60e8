/*
 * siphash: SipHash-2-4 (Aumasson and Bernstein, 2012), a keyed 64-bit hash.
 *
 * For hash tables whose keys come from clients: without the secret key an
 * attacker cannot pick keys that all land in one bucket. Pure: no state.
 */
#ifndef MOONWS_SIPHASH_H
#define MOONWS_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/* The hash of p[0..n) under the 16-byte key k. */
uint64_t siphash24(const uint8_t k[16], const void *p, size_t n);

#endif
