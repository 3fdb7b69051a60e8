/*
 * cluster_wire (src/cluster/cluster_wire.h): the envelope moonws nodes put
 * around a message on Redis, what another program may publish without one,
 * and the channel names. Every input is decoded from a heap copy of its
 * exact size, so that ASan catches a read past its end.
 */
#include "check.h"

#include "cluster/cluster_wire.h"
#include "util/limits.h"

static struct cluster_msg m;
static char *copy;

/* Decodes the n bytes of s (from an exact-size copy) on a channel of kind
 * ch; returns the error, NULL when it decoded. */
static const char *decode(const char *s, size_t n, enum cluster_chan ch)
{
    free(copy);
    copy = malloc(n ? n : 1);
    memcpy(copy, s, n);
    return cluster_wire_decode(copy, n, ch, &m);
}

#define DECODE(lit, ch) decode((lit), sizeof(lit) - 1, (ch))

static bool refused(const char *err, const char *want)
{
    if (!err) {
        NOTE("  accepted\n");
        return false;
    }
    if (!strstr(err, want)) {
        NOTE("  \"%s\" does not say \"%s\"\n", err, want);
        return false;
    }
    return true;
}

TEST(head_text_without_target)
{
    char h[CLUSTER_WIRE_HEAD_MAX];
    size_t n = cluster_wire_head(h, 3, CLUSTER_TEXT, 0);
    CHECK_STR(h, n, "MWS1 3 t\n");
}

TEST(head_binary_with_target)
{
    char h[CLUSTER_WIRE_HEAD_MAX];
    size_t n = cluster_wire_head(h, 12, CLUSTER_BINARY, 4399);
    CHECK_STR(h, n, "MWS1 12 b 4399\n");
}

TEST(head_longest_fits)
{
    char h[CLUSTER_WIRE_HEAD_MAX];
    size_t n = cluster_wire_head(h, CLUSTER_NODE_MAX, CLUSTER_BINARY, CLUSTER_ID_MAX);
    CHECK_STR(h, n, "MWS1 4095 b 9007199254740991\n");
    CHECK(n < CLUSTER_WIRE_HEAD_MAX);
}

/* Encodes a header and payload, decodes them back. */
static void round_trip(unsigned origin, enum cluster_kind kind, uint64_t target,
                       enum cluster_chan ch, const char *payload, size_t len)
{
    char buf[256];
    size_t n = cluster_wire_head(buf, origin, kind, target);
    memcpy(buf + n, payload, len);
    const char *err = decode(buf, n + len, ch);
    CHECK(err == NULL);
    if (err)
        NOTE("  %s\n", err);
    CHECK_EQ_INT(m.origin, origin);
    CHECK_EQ_INT(m.kind, kind);
    CHECK_EQ_INT(m.target, target);
    CHECK_MEM(m.payload, m.len, payload, len);
}

TEST(round_trips)
{
    round_trip(1, CLUSTER_TEXT, 0, CLUSTER_CH_TOPIC, "hello", 5);
    round_trip(4095, CLUSTER_TEXT, 0, CLUSTER_CH_SVC, "{\"a\":1}", 7);
    round_trip(7, CLUSTER_BINARY, 0, CLUSTER_CH_TOPIC, "\x00\xff\n\r", 4);
    round_trip(2, CLUSTER_TEXT, 1, CLUSTER_CH_NODE, "x", 1);
    round_trip(2, CLUSTER_BINARY, CLUSTER_ID_MAX, CLUSTER_CH_NODE, "\x80", 1);
    round_trip(0, CLUSTER_TEXT, 0, CLUSTER_CH_TOPIC, "", 0);
}

TEST(payload_may_hold_newlines_and_magic)
{
    round_trip(5, CLUSTER_TEXT, 0, CLUSTER_CH_TOPIC, "MWS1 9 t\nnot a header", 21);
}

TEST(bare_text_from_another_program)
{
    CHECK(DECODE("hello everyone", CLUSTER_CH_TOPIC) == NULL);
    CHECK_EQ_INT(m.origin, 0);
    CHECK_EQ_INT(m.kind, CLUSTER_TEXT);
    CHECK_EQ_INT(m.target, 0);
    CHECK_STR(m.payload, m.len, "hello everyone");
    CHECK(DECODE("{\"event\":\"news\"}", CLUSTER_CH_SVC) == NULL);
    CHECK_STR(m.payload, m.len, "{\"event\":\"news\"}");
}

TEST(bare_empty_payload)
{
    CHECK(decode("", 0, CLUSTER_CH_TOPIC) == NULL);
    CHECK_EQ_INT(m.len, 0);
}

TEST(bare_shorter_than_magic)
{
    CHECK(DECODE("MWS", CLUSTER_CH_TOPIC) == NULL);
    CHECK_STR(m.payload, m.len, "MWS");
    CHECK(DECODE("MWS1", CLUSTER_CH_TOPIC) == NULL);     /* no space: not the magic */
    CHECK_STR(m.payload, m.len, "MWS1");
    CHECK(DECODE("mws1 0 t\nx", CLUSTER_CH_TOPIC) == NULL);  /* the magic is upper-case */
    CHECK_EQ_INT(m.len, 10);
}

TEST(bare_not_utf8_refused)
{
    CHECK(refused(DECODE("\xff\xfe", CLUSTER_CH_TOPIC), "not UTF-8"));
    CHECK(refused(DECODE("caf\xc3", CLUSTER_CH_SVC), "not UTF-8"));   /* cut in a character */
}

TEST(bare_on_node_channel_refused)
{
    CHECK(refused(DECODE("hello", CLUSTER_CH_NODE), "needs an envelope with a target"));
}

TEST(header_without_newline)
{
    CHECK(refused(DECODE("MWS1 0 t", CLUSTER_CH_TOPIC), "no end"));
    CHECK(refused(DECODE("MWS1 ", CLUSTER_CH_TOPIC), "no end"));
}

TEST(header_with_crlf)
{
    CHECK(refused(DECODE("MWS1 0 t\r\nhi", CLUSTER_CH_TOPIC), "\\r\\n"));
}

TEST(origin_range)
{
    CHECK(DECODE("MWS1 0 t\nx", CLUSTER_CH_TOPIC) == NULL);
    CHECK(DECODE("MWS1 4095 t\nx", CLUSTER_CH_TOPIC) == NULL);
    CHECK_EQ_INT(m.origin, 4095);
    CHECK(DECODE("MWS1 0007 t\nx", CLUSTER_CH_TOPIC) == NULL);   /* leading zeros: typed by hand */
    CHECK_EQ_INT(m.origin, 7);
    CHECK(refused(DECODE("MWS1 4096 t\nx", CLUSTER_CH_TOPIC), "origin"));
    CHECK(refused(DECODE("MWS1 99999999999999999999999 t\nx", CLUSTER_CH_TOPIC), "origin"));
    CHECK(refused(DECODE("MWS1 -1 t\nx", CLUSTER_CH_TOPIC), "origin"));
    CHECK(refused(DECODE("MWS1  t\nx", CLUSTER_CH_TOPIC), "origin"));
    CHECK(refused(DECODE("MWS1 \nx", CLUSTER_CH_TOPIC), "origin"));
}

TEST(kind_letters)
{
    CHECK(refused(DECODE("MWS1 0\nx", CLUSTER_CH_TOPIC), "space, then t or b"));
    CHECK(refused(DECODE("MWS1 0x t\nx", CLUSTER_CH_TOPIC), "space, then t or b"));
    CHECK(refused(DECODE("MWS1 0 \nx", CLUSTER_CH_TOPIC), "t (text) or b"));
    CHECK(refused(DECODE("MWS1 0 T\nx", CLUSTER_CH_TOPIC), "t (text) or b"));
    CHECK(refused(DECODE("MWS1 0 text\nx", CLUSTER_CH_TOPIC), "t (text) or b"));
    CHECK(refused(DECODE("MWS1 0  t\nx", CLUSTER_CH_TOPIC), "t (text) or b"));
}

TEST(target_range)
{
    CHECK(DECODE("MWS1 0 t 1\nx", CLUSTER_CH_NODE) == NULL);
    CHECK_EQ_INT(m.target, 1);
    CHECK(DECODE("MWS1 0 t 9007199254740991\nx", CLUSTER_CH_NODE) == NULL);
    CHECK(m.target == CLUSTER_ID_MAX);
    CHECK(refused(DECODE("MWS1 0 t 9007199254740992\nx", CLUSTER_CH_NODE), "target"));
    CHECK(refused(DECODE("MWS1 0 t 0\nx", CLUSTER_CH_NODE), "target"));
    CHECK(refused(DECODE("MWS1 0 t \nx", CLUSTER_CH_NODE), "target"));
    CHECK(refused(DECODE("MWS1 0 t x\nx", CLUSTER_CH_NODE), "target"));
    CHECK(refused(DECODE("MWS1 0 t 12 \nx", CLUSTER_CH_NODE), "more than"));
    CHECK(refused(DECODE("MWS1 0 t 12 3\nx", CLUSTER_CH_NODE), "more than"));
}

TEST(target_only_on_node_channels)
{
    CHECK(refused(DECODE("MWS1 0 t\nx", CLUSTER_CH_NODE), "needs a target"));
    CHECK(refused(DECODE("MWS1 0 t 5\nx", CLUSTER_CH_TOPIC), "node channels only"));
    CHECK(refused(DECODE("MWS1 0 b 5\nx", CLUSTER_CH_SVC), "node channels only"));
}

TEST(text_kind_must_be_utf8)
{
    CHECK(refused(DECODE("MWS1 3 t\n\xc0\xaf", CLUSTER_CH_TOPIC), "UTF-8"));
    CHECK(DECODE("MWS1 3 b\n\xc0\xaf", CLUSTER_CH_TOPIC) == NULL);
    CHECK_EQ_INT(m.kind, CLUSTER_BINARY);
    CHECK_EQ_INT(m.len, 2);
}

TEST(empty_payload_in_envelope)
{
    CHECK(DECODE("MWS1 3 b\n", CLUSTER_CH_TOPIC) == NULL);
    CHECK_EQ_INT(m.len, 0);
}

TEST(channel_names)
{
    char out[64];
    size_t n = cluster_wire_channel(out, sizeof out, "moonws:", 7, CLUSTER_CH_TOPIC, "news", 4);
    CHECK_STR(out, n, "moonws:topic:news");
    n = cluster_wire_channel(out, sizeof out, "moonws:", 7, CLUSTER_CH_SVC, "/chat", 5);
    CHECK_STR(out, n, "moonws:svc:/chat");
    n = cluster_wire_channel(out, sizeof out, "app1/", 5, CLUSTER_CH_NODE, "12", 2);
    CHECK_STR(out, n, "app1/node:12");
}

TEST(channel_name_binary_safe)
{
    char out[64];
    size_t n = cluster_wire_channel(out, sizeof out, "p:", 2, CLUSTER_CH_TOPIC, "a\0b", 3);
    CHECK_MEM(out, n, "p:topic:a\0b", 11);
}

TEST(channel_too_long_for_buffer)
{
    char out[8] = "unset..";
    size_t n = cluster_wire_channel(out, 8, "moonws:", 7, CLUSTER_CH_TOPIC, "news", 4);
    CHECK_EQ_INT(n, 17);
    CHECK_STR(out, 7, "unset..");             /* nothing written */
}

TEST(channel_parse)
{
    enum cluster_chan ch;
    const char *name;
    size_t nlen;
    CHECK(cluster_wire_channel_parse("moonws:topic:news", 17, "moonws:", 7, &ch, &name, &nlen));
    CHECK_EQ_INT(ch, CLUSTER_CH_TOPIC);
    CHECK_STR(name, nlen, "news");
    CHECK(cluster_wire_channel_parse("moonws:svc:/a/b", 15, "moonws:", 7, &ch, &name, &nlen));
    CHECK_EQ_INT(ch, CLUSTER_CH_SVC);
    CHECK_STR(name, nlen, "/a/b");
    CHECK(cluster_wire_channel_parse("moonws:node:3", 13, "moonws:", 7, &ch, &name, &nlen));
    CHECK_EQ_INT(ch, CLUSTER_CH_NODE);
    CHECK_STR(name, nlen, "3");
    CHECK(cluster_wire_channel_parse("moonws:topic:", 13, "moonws:", 7, &ch, &name, &nlen));
    CHECK_EQ_INT(nlen, 0);
}

TEST(channel_parse_refusals)
{
    enum cluster_chan ch;
    const char *name;
    size_t nlen;
    CHECK(!cluster_wire_channel_parse("other:topic:x", 13, "moonws:", 7, &ch, &name, &nlen));
    CHECK(!cluster_wire_channel_parse("moonws:", 7, "moonws:", 7, &ch, &name, &nlen));
    CHECK(!cluster_wire_channel_parse("moonws:topic", 12, "moonws:", 7, &ch, &name, &nlen));
    CHECK(!cluster_wire_channel_parse("moonws:nodes", 12, "moonws:", 7, &ch, &name, &nlen));
    CHECK(!cluster_wire_channel_parse("moon", 4, "moonws:", 7, &ch, &name, &nlen));
}

TEST(prefix_check)
{
    CHECK(cluster_wire_prefix_check("moonws:") == NULL);
    CHECK(cluster_wire_prefix_check("a") == NULL);
    CHECK(refused(cluster_wire_prefix_check(""), "1 to 64"));
    CHECK(refused(cluster_wire_prefix_check("my app:"), "no space"));
    CHECK(refused(cluster_wire_prefix_check("caf\xc3\xa9:"), "printable ASCII"));
    CHECK(refused(cluster_wire_prefix_check("a\tb"), "printable ASCII"));
    char p[LIM_REDIS_PREFIX_MAX + 2];
    memset(p, 'x', sizeof p);
    p[LIM_REDIS_PREFIX_MAX] = '\0';
    CHECK(cluster_wire_prefix_check(p) == NULL);
    p[LIM_REDIS_PREFIX_MAX] = 'x';
    p[LIM_REDIS_PREFIX_MAX + 1] = '\0';
    CHECK(refused(cluster_wire_prefix_check(p), "1 to 64"));
}

int main(int argc, char **argv)
{
    int rc = check_main("test_cluster_wire");
    free(copy);
    return rc;
}
