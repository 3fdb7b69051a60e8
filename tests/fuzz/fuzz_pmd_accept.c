/*
 * pmd_client_accept on arbitrary answers to an offer chosen by the input:
 * whatever it accepts stays inside what was offered (RFC 7692 §7.1).
 *
 * Input: 2 bytes of offer, then the Sec-WebSocket-Extensions values of
 * the answer separated by '\n' (at most 8 header lines).
 */
#include "fuzz.h"

#include "proto/pmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    struct pmd_offer_opts o;
    o.server_no_context_takeover = data[0] & 1;
    o.client_no_context_takeover = data[0] & 2;
    unsigned s = (data[0] >> 2) % 9;            /* 0: not offered, else 7 + s */
    o.server_max_window_bits = s ? (int)(7 + s) : 0;
    unsigned c = data[1] % 10;                  /* 0: not offered, 1: no value */
    o.client_max_window_bits = c == 0 ? -1 : c == 1 ? 0 : (int)(6 + c);

    char offer[256];
    pmd_client_offer(&o, offer, sizeof offer);
    FUZZ_ASSERT(strncmp(offer, "permessage-deflate", 18) == 0);

    const char *vals[8];
    size_t lens[8], n = 0;
    const char *q = (const char *)data + 2, *end = (const char *)data + size;
    while (n < 8) {
        const char *nl = memchr(q, '\n', (size_t)(end - q));
        vals[n] = q;
        lens[n++] = (size_t)((nl ? nl : end) - q);
        if (!nl)
            break;
        q = nl + 1;
    }
    /* Each value in its own exact-size block: reads past its length trap. */
    char *own[8];
    for (size_t i = 0; i < n; i++) {
        own[i] = fuzz_dup(vals[i], lens[i]);
        vals[i] = own[i];
    }
    struct pmd_params p;
    if (pmd_client_accept(&o, vals, lens, n, &p)) {
        FUZZ_ASSERT(p.server_max_window_bits >= 8 && p.server_max_window_bits <= 15);
        FUZZ_ASSERT(p.client_max_window_bits >= 8 && p.client_max_window_bits <= 15);
        FUZZ_ASSERT(!o.server_no_context_takeover || p.server_no_context_takeover);
        FUZZ_ASSERT(!o.client_no_context_takeover || p.client_no_context_takeover);
        FUZZ_ASSERT(!o.server_max_window_bits ||
                    p.server_max_window_bits <= o.server_max_window_bits);
        FUZZ_ASSERT(o.client_max_window_bits <= 0 ||
                    p.client_max_window_bits <= o.client_max_window_bits);
        /* A server cannot limit a client that did not offer it. */
        FUZZ_ASSERT(o.client_max_window_bits >= 0 || p.client_max_window_bits == 15);
    }
    for (size_t i = 0; i < n; i++)
        free(own[i]);
    return 0;
}
