#include "cluster_wire.h"

#include <stdio.h>
#include <string.h>

#include "../util/limits.h"
#include "../util/utf8.h"

#define MAGIC "MWS1 "
#define MAGIC_LEN 5

static const char *const chan_names[] = { "topic:", "svc:", "node:" };

size_t cluster_wire_head(char out[CLUSTER_WIRE_HEAD_MAX], unsigned origin,
                         enum cluster_kind kind, uint64_t target)
{
    char k = kind == CLUSTER_BINARY ? 'b' : 't';
    int n = target ? snprintf(out, CLUSTER_WIRE_HEAD_MAX, MAGIC "%u %c %llu\n", origin, k,
                              (unsigned long long)target)
                   : snprintf(out, CLUSTER_WIRE_HEAD_MAX, MAGIC "%u %c\n", origin, k);
    return (size_t)n;
}

/* Reads a decimal number at *p (before end) up to the first byte that is
 * not a digit, no larger than max. Returns false when there is no digit
 * or it is too large. */
static bool read_number(const char **p, const char *end, uint64_t max, uint64_t *out)
{
    const char *q = *p;
    uint64_t v = 0;
    while (q < end && *q >= '0' && *q <= '9') {
        v = v * 10 + (uint64_t)(*q - '0');
        if (v > max)
            return false;
        q++;
    }
    if (q == *p)
        return false;
    *p = q;
    *out = v;
    return true;
}

const char *cluster_wire_decode(const char *p, size_t n, enum cluster_chan ch,
                                struct cluster_msg *m)
{
    memset(m, 0, sizeof *m);
    if (n < MAGIC_LEN || memcmp(p, MAGIC, MAGIC_LEN) != 0) {
        /* A bare payload, from another program. */
        if (ch == CLUSTER_CH_NODE)
            return "a message to a node channel needs an envelope with a target: "
                   "MWS1 0 t ID\\n...";
        if (!utf8_valid(p, n))
            return "a message without an envelope is text, and this one is not UTF-8 "
                   "(binary needs MWS1 0 b\\n...)";
        m->kind = CLUSTER_TEXT;
        m->payload = p;
        m->len = n;
        return NULL;
    }
    const char *q = p + MAGIC_LEN, *end = p + n;
    const char *nl = memchr(q, '\n', (size_t)(end - q));
    if (!nl)
        return "the envelope's header line has no end (\\n)";
    if (nl > q && nl[-1] == '\r')
        return "the envelope's header line ends with \\r\\n: it must end with \\n alone";

    uint64_t origin;
    if (!read_number(&q, nl, CLUSTER_NODE_MAX, &origin))
        return "the envelope's origin must be a node number from 0 to 4095";
    if (q == nl || *q++ != ' ')
        return "the envelope needs one space, then t or b, after the origin";
    if (q == nl || (*q != 't' && *q != 'b'))
        return "the envelope's kind must be t (text) or b (binary)";
    m->kind = *q++ == 'b' ? CLUSTER_BINARY : CLUSTER_TEXT;
    uint64_t target = 0;
    if (q < nl) {
        if (*q++ != ' ')
            return "the envelope's kind must be t (text) or b (binary)";
        if (!read_number(&q, nl, CLUSTER_ID_MAX, &target) || target == 0)
            return "the envelope's target must be a connection id from 1 to 2^53-1";
        if (q != nl)
            return "the envelope's header line has more than origin, kind and target";
    }
    if (ch == CLUSTER_CH_NODE && !target)
        return "a message to a node channel needs a target connection id: MWS1 0 t ID\\n...";
    if (ch != CLUSTER_CH_NODE && target)
        return "a target connection id belongs on node channels only";

    m->origin = (unsigned)origin;
    m->target = target;
    m->payload = nl + 1;
    m->len = (size_t)(end - nl - 1);
    if (m->kind == CLUSTER_TEXT && !utf8_valid(m->payload, m->len))
        return "a text message (t) must be UTF-8";
    return NULL;
}

size_t cluster_wire_channel(char *out, size_t cap, const char *prefix, size_t plen,
                            enum cluster_chan ch, const char *name, size_t nlen)
{
    const char *kind = chan_names[ch];
    size_t klen = strlen(kind), len = plen + klen + nlen;
    if (len <= cap) {
        memcpy(out, prefix, plen);
        memcpy(out + plen, kind, klen);
        if (nlen)
            memcpy(out + plen + klen, name, nlen);
    }
    return len;
}

bool cluster_wire_channel_parse(const char *c, size_t n, const char *prefix, size_t plen,
                                enum cluster_chan *ch, const char **name, size_t *nlen)
{
    if (n < plen || memcmp(c, prefix, plen) != 0)
        return false;
    c += plen;
    n -= plen;
    for (size_t i = 0; i < sizeof chan_names / sizeof chan_names[0]; i++) {
        size_t klen = strlen(chan_names[i]);
        if (n >= klen && memcmp(c, chan_names[i], klen) == 0) {
            *ch = (enum cluster_chan)i;
            *name = c + klen;
            *nlen = n - klen;
            return true;
        }
    }
    return false;
}

const char *cluster_wire_prefix_check(const char *prefix)
{
    size_t n = strlen(prefix);
    if (n == 0 || n > LIM_REDIS_PREFIX_MAX)
        return "the prefix must have 1 to 64 characters";
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)prefix[i] <= ' ' || (unsigned char)prefix[i] >= 0x7f)
            return "the prefix may hold printable ASCII characters only, and no space";
    return NULL;
}
