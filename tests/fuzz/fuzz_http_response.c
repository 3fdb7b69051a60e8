/*
 * http_parse_response: no read past len, views inside the head, and the
 * verdict is monotonic: every prefix of a head is partial, and bytes
 * appended after an error or a complete head change nothing.
 */
#include "fuzz.h"

#include "proto/http_parse.h"

static int parse(const uint8_t *d, size_t n, struct http_response *res)
{
    char *b = fuzz_dup(d, n);
    int r = http_parse_response(b, n, res);
    free(b);
    return r;
}

static void check_views(const char *b, int r, const struct http_response *res)
{
    const char *end = b + r;
    FUZZ_ASSERT(res->status >= 100 && res->status <= 999);
    FUZZ_ASSERT(res->minor_version >= 0 && res->minor_version <= 9);
    FUZZ_ASSERT(res->reason > b && res->reason + res->reason_len < end);
    FUZZ_ASSERT(res->nheaders <= LIM_HTTP_HEADERS_MAX);
    for (size_t i = 0; i < res->nheaders; i++) {
        const struct http_header *h = &res->headers[i];
        FUZZ_ASSERT(h->name > b && h->name + h->name_len < end && h->name_len > 0);
        FUZZ_ASSERT(h->value >= h->name + h->name_len && h->value + h->value_len < end);
        for (size_t k = 0; k < h->value_len; k++) {
            unsigned char c = (unsigned char)h->value[k];
            FUZZ_ASSERT(c == '\t' || (c >= 0x20 && c != 0x7f));
        }
        if (h->value_len) {
            FUZZ_ASSERT(h->value[0] != ' ' && h->value[0] != '\t');
            FUZZ_ASSERT(h->value[h->value_len - 1] != ' ' && h->value[h->value_len - 1] != '\t');
        }
    }
    FUZZ_ASSERT(r >= 4 && memcmp(end - 4, "\r\n\r\n", 4) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct http_response res;
    char *b = fuzz_dup(data, size);
    int r = http_parse_response(b, size, &res);
    FUZZ_ASSERT(r == HTTP_PARTIAL || r == HTTP_ERROR || r == HTTP_TOO_MANY ||
                (r > 0 && (size_t)r <= size));
    if (r > 0) {
        check_views(b, r, &res);
        static struct http_response again;
        FUZZ_ASSERT(parse(data, (size_t)r, &again) == r);
        FUZZ_ASSERT(parse(data, (size_t)r - 1, &again) == HTTP_PARTIAL);
        FUZZ_ASSERT(parse(data, (size_t)r / 2, &again) == HTTP_PARTIAL);
    } else if (r == HTTP_PARTIAL && size) {
        FUZZ_ASSERT(parse(data, size - 1, &res) == HTTP_PARTIAL);
        FUZZ_ASSERT(parse(data, size / 2, &res) == HTTP_PARTIAL);
    }
    if (r != HTTP_PARTIAL) {
        /* More bytes cannot change a decided verdict. */
        uint8_t *more = malloc(size + 5);
        memcpy(more, data, size);
        memcpy(more + size, "\r\n\r\nX", 5);
        FUZZ_ASSERT(parse(more, size + 5, &res) == r);
        free(more);
    }
    free(b);
    return 0;
}
