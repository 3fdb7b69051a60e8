/*
 * cluster_wire: what moonws nodes say to each other on Redis channels —
 * the channel names and the message format, encoded and decoded. Pure: no
 * allocation, no state. docs/cluster.md is the user's account of the same
 * format (another program may publish into moonws with it).
 *
 * Channels (PREFIX is --redis-prefix, "moonws:" by default):
 *   PREFIX topic:NAME    moonws.publish(NAME, v): every subscriber of NAME
 *   PREFIX svc:PATH      moonws.broadcast(PATH, v): every client of PATH
 *   PREFIX node:N        moonws.send(id, v) to a connection of node N
 *
 * A message is an envelope — one header line, then the payload:
 *
 *   MWS1 ORIGIN KIND[ TARGET]\n PAYLOAD
 *
 *   ORIGIN  the publishing node's number in decimal, 0 for "not a moonws
 *           node" (another program)
 *   KIND    t (text: the payload must be UTF-8) or b (binary)
 *   TARGET  the connection id in decimal: on node channels, and only there
 *
 * or, when it does not begin with the five bytes "MWS1 ", the bare
 * payload: a text message (UTF-8) from origin 0, on a topic or service
 * channel. A payload that begins with "MWS1 " must be sent in an envelope.
 * moonws itself always sends envelopes.
 */
#ifndef MOONWS_CLUSTER_WIRE_H
#define MOONWS_CLUSTER_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Node numbers are 1..CLUSTER_NODE_MAX (0: none, or another program).
 * CLUSTER_NODE_BITS is what a connection id spends on its node. */
#define CLUSTER_NODE_BITS 12
#define CLUSTER_NODE_MAX ((1u << CLUSTER_NODE_BITS) - 1)
/* Connection ids stay exact in a double (JavaScript, JSON readers). */
#define CLUSTER_ID_MAX ((UINT64_C(1) << 53) - 1)
/* A connection id carries its node's number in its top CLUSTER_NODE_BITS
 * bits (of 53), so that a send finds the node without a lookup; the lower
 * 41 bits are the process's own (a sequence and the worker). Node 0: an id
 * handed out before the node joined, reachable from its own node only. */
#define CLUSTER_ID_NODE_SHIFT (53 - CLUSTER_NODE_BITS)

static inline unsigned cluster_id_node(uint64_t id)
{
    return (unsigned)(id >> CLUSTER_ID_NODE_SHIFT);
}

/* "MWS1 4095 t 9007199254740991\n" is the longest header. */
#define CLUSTER_WIRE_HEAD_MAX 32

enum cluster_kind { CLUSTER_TEXT, CLUSTER_BINARY };
enum cluster_chan { CLUSTER_CH_TOPIC, CLUSTER_CH_SVC, CLUSTER_CH_NODE };

struct cluster_msg {
    unsigned origin;            /* 0: another program */
    enum cluster_kind kind;
    uint64_t target;            /* node channels: the connection id; else 0 */
    const char *payload;        /* a view into the decoded bytes */
    size_t len;
};

/* Writes the header of a message (origin, kind, and target when it is not
 * 0) into out; returns its length. The payload follows it on the wire. */
size_t cluster_wire_head(char out[CLUSTER_WIRE_HEAD_MAX], unsigned origin,
                         enum cluster_kind kind, uint64_t target);

/* Decodes p[0..n), received on a channel of kind ch. Returns NULL with *m
 * filled (its payload points into p), or a static sentence saying what is
 * wrong: a malformed header, a number out of range, a target missing on a
 * node channel or present elsewhere, a bare payload on a node channel, a
 * text payload that is not UTF-8. */
const char *cluster_wire_decode(const char *p, size_t n, enum cluster_chan ch,
                                struct cluster_msg *m);

/* Writes PREFIX KIND:NAME into out when it fits in cap bytes; returns its
 * length either way (no NUL is written). */
size_t cluster_wire_channel(char *out, size_t cap, const char *prefix, size_t plen,
                            enum cluster_chan ch, const char *name, size_t nlen);

/* Splits a channel name c[0..n): false when it does not begin with prefix
 * and a known kind; else *ch and the name after "KIND:" (possibly empty). */
bool cluster_wire_channel_parse(const char *c, size_t n, const char *prefix, size_t plen,
                                enum cluster_chan *ch, const char **name, size_t *nlen);

/* NULL when prefix may be a --redis-prefix (1 to LIM_REDIS_PREFIX_MAX
 * printable ASCII characters, no space), else what is wrong. */
const char *cluster_wire_prefix_check(const char *prefix);

#endif
