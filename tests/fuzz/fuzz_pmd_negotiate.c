/*
 * pmd_server_negotiate on arbitrary Sec-WebSocket-Extensions values. When
 * it accepts, the response is a NUL-terminated string inside resp that a
 * client which offered everything accepts, and both sides then agree on
 * what is in force (the client may assume a larger server window).
 *
 * Input: 1 byte of service settings, then header values separated by '\n'
 * (at most 8).
 */
#include "fuzz.h"

#include "proto/pmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct pmd_conf conf = PMD_CONF_DEFAULT;
    conf.context_takeover = data[0] & 1;
    conf.window_bits = (uint8_t)(8 + ((data[0] >> 1) & 7));

    char *copy = fuzz_dup(data + 1, size - 1);
    const char *vals[8];
    size_t lens[8], n = 0;
    const char *p = copy, *end = copy + size - 1;
    while (n < 8) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        vals[n] = p;
        lens[n++] = (size_t)((nl ? nl : end) - p);
        if (!nl)
            break;
        p = nl + 1;
    }
    /* Each value in its own exact-size block: reads past its length trap. */
    char *own[8];
    for (size_t i = 0; i < n; i++) {
        own[i] = fuzz_dup(vals[i], lens[i]);
        vals[i] = own[i];
    }

    struct pmd_params sp;
    char resp[256];
    memset(resp, '#', sizeof resp);
    if (pmd_server_negotiate(&conf, vals, lens, n, &sp, resp, sizeof resp)) {
        size_t rl = strnlen(resp, sizeof resp);
        FUZZ_ASSERT(rl < sizeof resp);
        FUZZ_ASSERT(sp.server_max_window_bits >= 8 && sp.server_max_window_bits <= 15);
        FUZZ_ASSERT(sp.client_max_window_bits >= 8 && sp.client_max_window_bits <= 15);
        FUZZ_ASSERT(sp.server_max_window_bits <= conf.window_bits);
        FUZZ_ASSERT(conf.context_takeover ||
                    (sp.server_no_context_takeover && sp.client_no_context_takeover));
        struct pmd_offer_opts all = { false, false, 0, 0 };
        struct pmd_params cp;
        const char *rv = resp;
        FUZZ_ASSERT(pmd_client_accept(&all, &rv, &rl, 1, &cp));
        FUZZ_ASSERT(cp.server_no_context_takeover == sp.server_no_context_takeover);
        FUZZ_ASSERT(cp.client_no_context_takeover == sp.client_no_context_takeover);
        FUZZ_ASSERT(cp.client_max_window_bits == sp.client_max_window_bits);
        FUZZ_ASSERT(cp.server_max_window_bits >= sp.server_max_window_bits);
    }
    for (size_t i = 0; i < n; i++)
        free(own[i]);
    free(copy);
    return 0;
}
