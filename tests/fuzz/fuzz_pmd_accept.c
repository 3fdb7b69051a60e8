/*
 * pmd_client_accept on arbitrary answers to an offer chosen by the input:
 * whatever it accepts stays inside what was offered (RFC 7692 §7.1).
 *
 * Input: 2 bytes of offer, then the Sec-WebSocket-Extensions value.
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

    char *v = fuzz_dup(data + 2, size - 2);
    struct pmd_params p;
    if (pmd_client_accept(&o, v, size - 2, &p)) {
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
    free(v);
    return 0;
}
