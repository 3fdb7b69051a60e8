/*
 * pmd (src/proto/pmd.h): RFC 7692 negotiation on both sides and the
 * compression streams.
 */
#include "check.h"

#include <stdint.h>
#include <zlib.h>

#include "proto/pmd.h"

/* The streams without context takeover come from here, as from a worker's. */
static struct pmd_pool pool;

/* ---- negotiation, server side ---- */

static bool negotiate1(const struct pmd_conf *conf, const char *offer, struct pmd_params *out,
                       char *resp, size_t cap)
{
    const char *vals[1] = { offer };
    size_t lens[1] = { strlen(offer) };
    memset(out, 0xAA, sizeof *out);
    return pmd_server_negotiate(conf, vals, lens, 1, out, resp, cap);
}

static struct pmd_conf conf_of(bool takeover, uint8_t wb)
{
    struct pmd_conf c = PMD_CONF_DEFAULT;
    c.context_takeover = takeover;
    c.window_bits = wb;
    return c;
}

/* A response value as a client reads it (RFC 7692 §7.1): absent window
 * parameters mean 15. Returns false for anything it does not expect. */
struct resp_view {
    bool snct, cnct;
    int smwb, cmwb;             /* -1 when not stated */
};

static bool read_resp(const char *s, struct resp_view *v)
{
    *v = (struct resp_view){ false, false, -1, -1 };
    static const char name[] = "permessage-deflate";
    if (strncmp(s, name, sizeof name - 1) != 0)
        return false;
    s += sizeof name - 1;
    while (*s) {
        if (strncmp(s, "; ", 2) != 0)
            return false;
        s += 2;
        int val, used = 0;
        if (strncmp(s, "server_no_context_takeover", 26) == 0 && !v->snct) {
            v->snct = true;
            s += 26;
        } else if (strncmp(s, "client_no_context_takeover", 26) == 0 && !v->cnct) {
            v->cnct = true;
            s += 26;
        } else if (sscanf(s, "server_max_window_bits=%d%n", &val, &used) == 1 && v->smwb < 0) {
            v->smwb = val;
            s += used;
        } else if (sscanf(s, "client_max_window_bits=%d%n", &val, &used) == 1 && v->cmwb < 0) {
            v->cmwb = val;
            s += used;
        } else {
            return false;
        }
    }
    return true;
}

TEST(negotiate_default_conf_plain_offer)
{
    struct pmd_conf conf = PMD_CONF_DEFAULT;
    struct pmd_params p;
    char resp[256];
    CHECK(negotiate1(&conf, "permessage-deflate", &p, resp, sizeof resp));
    CHECK_STR(resp, strlen(resp),
              "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    CHECK(p.server_no_context_takeover);
    CHECK(p.client_no_context_takeover);
    CHECK_EQ_INT(p.server_max_window_bits, 15);
    CHECK_EQ_INT(p.client_max_window_bits, 15);
    /* The browsers' offer. */
    CHECK(negotiate1(&conf, "permessage-deflate; client_max_window_bits", &p, resp,
                     sizeof resp));
    CHECK_STR(resp, strlen(resp),
              "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
              "client_max_window_bits=15");
    /* With takeover allowed, nothing needs saying. */
    struct pmd_conf tk = conf_of(true, 15);
    CHECK(negotiate1(&tk, "permessage-deflate", &p, resp, sizeof resp));
    CHECK_STR(resp, strlen(resp), "permessage-deflate");
    CHECK(!p.server_no_context_takeover);
    CHECK(!p.client_no_context_takeover);
}

/* Builds an offer from its parts; smwb 0 = absent; cmwb -1 absent, 0 no value. */
static void build_offer(char *o, size_t cap, bool snct, bool cnct, int smwb, int cmwb,
                        int order)
{
    char parts[4][48];
    size_t np = 0;
    if (snct)
        snprintf(parts[np++], sizeof parts[0], "server_no_context_takeover");
    if (cnct)
        snprintf(parts[np++], sizeof parts[0], "client_no_context_takeover");
    if (smwb)
        snprintf(parts[np++], sizeof parts[0], "server_max_window_bits=%d", smwb);
    if (cmwb == 0)
        snprintf(parts[np++], sizeof parts[0], "client_max_window_bits");
    else if (cmwb > 0)
        snprintf(parts[np++], sizeof parts[0], "client_max_window_bits=%d", cmwb);
    size_t n = (size_t)snprintf(o, cap, "permessage-deflate");
    for (size_t i = 0; i < np; i++) {
        /* order rotates the parameters and varies the spacing. */
        size_t k = (i + (size_t)order) % np;
        n += (size_t)snprintf(o + n, cap - n, order & 1 ? ";%s" : " ; %s", parts[k]);
    }
}

TEST(negotiate_every_parameter_combination)
{
    char offer[256], resp[256];
    for (int snct = 0; snct < 2; snct++)
        for (int cnct = 0; cnct < 2; cnct++)
            for (int smwb = 7; smwb <= 15; smwb++)           /* 7: absent */
                for (int cmwb = -1; cmwb <= 15; cmwb++) {
                    if (cmwb > 0 && cmwb < 8)
                        continue;
                    for (int tk = 0; tk < 2; tk++)
                        for (uint8_t wb = 8; wb <= 15; wb++) {
                            int sm = smwb == 7 ? 0 : smwb;
                            build_offer(offer, sizeof offer, snct, cnct, sm, cmwb, wb);
                            struct pmd_conf conf = conf_of(tk, wb);
                            struct pmd_params p;
                            if (!CHECK(negotiate1(&conf, offer, &p, resp, sizeof resp))) {
                                NOTE("  declined: %s\n", offer);
                                continue;
                            }
                            struct resp_view v;
                            if (!CHECK(read_resp(resp, &v))) {
                                NOTE("  response: %s\n", resp);
                                continue;
                            }
                            bool ok = true;
                            /* What was asked is granted. */
                            ok = CHECK(!snct || p.server_no_context_takeover) && ok;
                            ok = CHECK(!cnct || p.client_no_context_takeover) && ok;
                            ok = CHECK(!sm || p.server_max_window_bits <= sm) && ok;
                            ok = CHECK(cmwb <= 0 || p.client_max_window_bits <= cmwb) && ok;
                            /* The service's limits hold where it may impose them. */
                            ok = CHECK(p.server_max_window_bits <= wb) && ok;
                            ok = CHECK(cmwb < 0 || p.client_max_window_bits <= wb) && ok;
                            ok = CHECK(tk || (p.server_no_context_takeover &&
                                              p.client_no_context_takeover)) && ok;
                            /* The response states what is in force. */
                            ok = CHECK_EQ_INT(v.snct, p.server_no_context_takeover) && ok;
                            ok = CHECK_EQ_INT(v.cnct, p.client_no_context_takeover) && ok;
                            ok = CHECK_EQ_INT(v.cmwb < 0 ? 15 : v.cmwb,
                                              p.client_max_window_bits) && ok;
                            /* A server window stated, or one the client's 15 covers. */
                            ok = CHECK(v.smwb < 0 || v.smwb == p.server_max_window_bits) && ok;
                            /* server_max_window_bits must be answered when offered,
                             * client_max_window_bits only when offered. */
                            ok = CHECK(!sm || v.smwb >= 0) && ok;
                            ok = CHECK(cmwb >= 0 || v.cmwb < 0) && ok;
                            if (!ok)
                                NOTE("  offer \"%s\" conf takeover=%d bits=%d -> \"%s\"\n",
                                        offer, tk, wb, resp);
                        }
                }
}

TEST(negotiate_response_states_server_window)
{
    /* A service limited to a 10-bit window, a client that did not ask:
     * the server compresses with 10 bits, so the answer must say so
     * (RFC 7692 §7.1.2.1 lets the server state it unasked). */
    struct pmd_conf conf = conf_of(false, 10);
    struct pmd_params p;
    char resp[256];
    CHECK(negotiate1(&conf, "permessage-deflate", &p, resp, sizeof resp));
    struct resp_view v;
    CHECK(read_resp(resp, &v));
    if (!CHECK_EQ_INT(v.smwb < 0 ? 15 : v.smwb, p.server_max_window_bits))
        NOTE("  response \"%s\" but server_max_window_bits %d in force\n", resp,
                p.server_max_window_bits);
}

TEST(negotiate_exact_responses)
{
    struct pmd_conf tk15 = conf_of(true, 15), tk10 = conf_of(true, 10);
    struct pmd_params p;
    char resp[256];
    CHECK(negotiate1(&tk15, "permessage-deflate; server_max_window_bits=10", &p, resp,
                     sizeof resp));
    CHECK_STR(resp, strlen(resp), "permessage-deflate; server_max_window_bits=10");
    CHECK_EQ_INT(p.server_max_window_bits, 10);
    CHECK(negotiate1(&tk10, "permessage-deflate; server_max_window_bits=12", &p, resp,
                     sizeof resp));
    CHECK_STR(resp, strlen(resp), "permessage-deflate; server_max_window_bits=10");
    CHECK(negotiate1(&tk10, "permessage-deflate; client_max_window_bits=12", &p, resp,
                     sizeof resp));
    /* a server window under 15 is stated even when not asked about */
    CHECK_STR(resp, strlen(resp),
              "permessage-deflate; server_max_window_bits=10; client_max_window_bits=10");
    CHECK_EQ_INT(p.client_max_window_bits, 10);
    CHECK(negotiate1(&tk15, "permessage-deflate; client_max_window_bits=9", &p, resp,
                     sizeof resp));
    CHECK_STR(resp, strlen(resp), "permessage-deflate; client_max_window_bits=9");
    CHECK(negotiate1(&tk15,
                     "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
                     &p, resp, sizeof resp));
    CHECK_STR(resp, strlen(resp),
              "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    CHECK(negotiate1(&tk15, "permessage-deflate;client_no_context_takeover", &p, resp,
                     sizeof resp));
    CHECK_STR(resp, strlen(resp), "permessage-deflate; client_no_context_takeover");
    CHECK(!p.server_no_context_takeover);
    CHECK(p.client_no_context_takeover);
}

TEST(negotiate_first_offer_unacceptable)
{
    struct pmd_conf conf = conf_of(true, 15);
    struct pmd_params p;
    char resp[256];
    CHECK(negotiate1(&conf,
                     "permessage-deflate; server_max_window_bits=16, "
                     "permessage-deflate; server_max_window_bits=12",
                     &p, resp, sizeof resp));
    CHECK_EQ_INT(p.server_max_window_bits, 12);
    CHECK(negotiate1(&conf,
                     "x-webkit-deflate-frame, permessage-deflate; bogus, "
                     "permessage-deflate; client_max_window_bits=11, permessage-deflate",
                     &p, resp, sizeof resp));
    CHECK_EQ_INT(p.client_max_window_bits, 11);
    CHECK_STR(resp, strlen(resp), "permessage-deflate; client_max_window_bits=11");
    /* Only unacceptable ones: declined. */
    CHECK(!negotiate1(&conf, "permessage-deflate; a, permessage-deflate; b=1, foo", &p, resp,
                      sizeof resp));
    CHECK(!negotiate1(&conf, "x-webkit-deflate-frame", &p, resp, sizeof resp));
    CHECK(!negotiate1(&conf, "permessage-deflatex", &p, resp, sizeof resp));
}

TEST(negotiate_offers_over_several_header_values)
{
    struct pmd_conf conf = conf_of(true, 15);
    struct pmd_params p;
    char resp[256];
    const char *vals[3] = { "foo; bar=1", "permessage-deflate; server_max_window_bits=99",
                            "permessage-deflate; server_max_window_bits=9" };
    size_t lens[3] = { strlen(vals[0]), strlen(vals[1]), strlen(vals[2]) };
    CHECK(pmd_server_negotiate(&conf, vals, lens, 3, &p, resp, sizeof resp));
    CHECK_EQ_INT(p.server_max_window_bits, 9);
    CHECK_STR(resp, strlen(resp), "permessage-deflate; server_max_window_bits=9");
    CHECK(!pmd_server_negotiate(&conf, vals, lens, 2, &p, resp, sizeof resp));
    CHECK(!pmd_server_negotiate(&conf, vals, lens, 0, &p, resp, sizeof resp));
    /* Values are (pointer, length): bytes past the length are not read. */
    char buf[] = "permessage-deflate; server_max_window_bits=9XYZ";
    const char *v1[1] = { buf };
    size_t l1[1] = { strlen(buf) - 3 };
    CHECK(pmd_server_negotiate(&conf, v1, l1, 1, &p, resp, sizeof resp));
    CHECK_EQ_INT(p.server_max_window_bits, 9);
    l1[0] = strlen("permessage-deflate; server_max_window_bits=");
    CHECK(!pmd_server_negotiate(&conf, v1, l1, 1, &p, resp, sizeof resp));
}

TEST(negotiate_quoted_values)
{
    struct pmd_conf conf = conf_of(true, 15);
    struct pmd_params p;
    char resp[256];
    CHECK(negotiate1(&conf, "permessage-deflate; server_max_window_bits=\"10\"", &p, resp,
                     sizeof resp));
    CHECK_EQ_INT(p.server_max_window_bits, 10);
    CHECK(negotiate1(&conf, "permessage-deflate; client_max_window_bits=\"12\"", &p, resp,
                     sizeof resp));
    CHECK_EQ_INT(p.client_max_window_bits, 12);
    /* The answer is never quoted. */
    CHECK(strchr(resp, '"') == NULL);
    static const char *const bad[] = {
        "permessage-deflate; server_max_window_bits=\"\"",
        "permessage-deflate; server_max_window_bits=\"10",
        "permessage-deflate; server_max_window_bits=\"10\"x",
        "permessage-deflate; server_max_window_bits=\"010\"",
        "permessage-deflate; server_no_context_takeover=\"\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (!CHECK(!negotiate1(&conf, bad[i], &p, resp, sizeof resp)))
            NOTE("  accepted: %s\n", bad[i]);
    }
    /* A quoted comma does not split offers. */
    CHECK(!negotiate1(&conf, "permessage-deflate; x=\"a, permessage-deflate\"", &p, resp,
                      sizeof resp));
    CHECK(negotiate1(&conf, "permessage-deflate; x=\"a,b\", permessage-deflate", &p, resp,
                     sizeof resp));
}

TEST(negotiate_quoted_values_with_escapes)
{
    /* RFC 6455 §9.1: a quoted-string value must be a token after
     * unescaping, so "1\5" is 15. */
    struct pmd_conf conf = conf_of(true, 15);
    struct pmd_params p;
    char resp[256];
    CHECK(negotiate1(&conf, "permessage-deflate; client_max_window_bits=\"1\\5\"", &p, resp,
                     sizeof resp));
    CHECK_EQ_INT(p.client_max_window_bits, 15);
    CHECK_STR(resp, strlen(resp), "permessage-deflate; client_max_window_bits=15");
    CHECK(negotiate1(&conf, "permessage-deflate; server_max_window_bits=\"1\\0\"", &p, resp,
                     sizeof resp));
    CHECK_EQ_INT(p.server_max_window_bits, 10);
    CHECK(negotiate1(&conf, "permessage-deflate; server_max_window_bits=\"\\9\"", &p, resp,
                     sizeof resp));
    CHECK_EQ_INT(p.server_max_window_bits, 9);
    CHECK(negotiate1(&conf, "permessage-deflate; server_max_window_bits=\"\\1\\1\"", &p, resp,
                     sizeof resp));
    CHECK_EQ_INT(p.server_max_window_bits, 11);
    static const struct {
        const char *offer;
        bool closed;            /* the quoted string ends: the next offer is read */
    } bad[] = {
        { "permessage-deflate; server_max_window_bits=\"1\\\"", false }, /* quote escaped */
        { "permessage-deflate; server_max_window_bits=\"1\\", false },
        { "permessage-deflate; server_max_window_bits=\"\\\"", false },
        { "permessage-deflate; server_max_window_bits=\"1\\0\\0\"", true },  /* 100 */
        { "permessage-deflate; server_max_window_bits=\"1\\ 0\"", true },    /* not a token */
        { "permessage-deflate; server_max_window_bits=\"1\\\"0\"", true },
        { "permessage-deflate; server_max_window_bits=\"1\\,0\"", true },
        { "permessage-deflate; server_max_window_bits=\"\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0"
          "\\0\\0\\0\\0\\0\\0\\01\\0\"", true },                             /* long */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (!CHECK(!negotiate1(&conf, bad[i].offer, &p, resp, sizeof resp)))
            NOTE("  accepted: %s\n", bad[i].offer);
        if (!bad[i].closed)
            continue;
        /* ... and only that offer. */
        char two[256];
        snprintf(two, sizeof two, "%s, permessage-deflate; server_max_window_bits=12",
                 bad[i].offer);
        if (CHECK(negotiate1(&conf, two, &p, resp, sizeof resp)))
            CHECK_EQ_INT(p.server_max_window_bits, 12);
    }
    /* The client reads answers the same way. */
    static const struct pmd_offer_opts offer = PMD_OFFER_DEFAULT;
    const char *v = "permessage-deflate; client_max_window_bits=\"1\\2\"";
    size_t l = strlen(v);
    CHECK(pmd_client_accept(&offer, &v, &l, 1, &p));
    CHECK_EQ_INT(p.client_max_window_bits, 12);
}

TEST(negotiate_bad_window_values_decline_the_offer)
{
    struct pmd_conf conf = conf_of(true, 15);
    struct pmd_params p;
    char resp[256];
    static const char *const vals[] = { "0",  "7",   "16",  "99", "08", "010", "015", "-9",
                                        "+9", "1a",  "9.0", "",   " ",  "8 8", "256", "4294967304" };
    for (int which = 0; which < 2; which++)
        for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
            char offer[128];
            snprintf(offer, sizeof offer, "permessage-deflate; %s_max_window_bits=%s",
                     which ? "client" : "server", vals[i]);
            if (!CHECK(!negotiate1(&conf, offer, &p, resp, sizeof resp)))
                NOTE("  accepted: %s\n", offer);
            /* ... and only that offer. */
            strcat(offer, ", permessage-deflate");
            if (CHECK(negotiate1(&conf, offer, &p, resp, sizeof resp)))
                CHECK_STR(resp, strlen(resp), "permessage-deflate");
        }
    /* server_max_window_bits needs a value. */
    CHECK(!negotiate1(&conf, "permessage-deflate; server_max_window_bits", &p, resp,
                      sizeof resp));
}

TEST(negotiate_duplicated_or_unknown_parameters)
{
    struct pmd_conf conf = conf_of(true, 15);
    struct pmd_params p;
    char resp[256];
    static const char *const bad[] = {
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; client_max_window_bits; client_max_window_bits",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=true",
        "permessage-deflate; unknown",
        "permessage-deflate; unknown=1",
        "permessage-deflate; server_max_window_bit=10",
        "permessage-deflate; server_no_context_takeover; x-extra",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (!CHECK(!negotiate1(&conf, bad[i], &p, resp, sizeof resp)))
            NOTE("  accepted: %s\n", bad[i]);
    }
}

TEST(negotiate_garbage)
{
    struct pmd_conf conf = conf_of(true, 15);
    struct pmd_params p;
    char resp[256];
    static const char *const bad[] = {
        "", ",", ",,,", ";", "; permessage-deflate", "permessage-deflate;",
        "permessage-deflate; ", "permessage-deflate;;", "permessage-deflate x",
        "permessage-deflate;=1", "permessage-deflate; =", "\"permessage-deflate\"",
        "permessage-deflate; server_max_window_bits=", "permessage-deflate; a b",
        "permessage deflate", "permessage-deflate; server_max_window_bits==10",
        "\x01permessage-deflate", "permessage-deflate\x7f",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (!CHECK(!negotiate1(&conf, bad[i], &p, resp, sizeof resp)))
            NOTE("  accepted: \"%s\" -> \"%s\"\n", bad[i], resp);
    }
    static const char *const good[] = {
        "permessage-deflate,", ", permessage-deflate", "  permessage-deflate  ",
        "permessage-deflate\t;\tclient_max_window_bits", "permessage-deflate ;server_max_window_bits = 10",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        if (!CHECK(negotiate1(&conf, good[i], &p, resp, sizeof resp)))
            NOTE("  declined: \"%s\"\n", good[i]);
    }
}

TEST(negotiate_small_respcap_no_overflow)
{
    /* The response may be longer than resp: it must be cut, never written
     * past respcap (snprintf semantics). */
    struct pmd_conf conf = conf_of(false, 15);
    const char *offer = "permessage-deflate; server_max_window_bits=10; client_max_window_bits";
    for (size_t cap = 1; cap <= 130; cap++) {
        char resp[512];
        memset(resp, '#', sizeof resp);
        struct pmd_params p;
        negotiate1(&conf, offer, &p, resp, cap);
        size_t k = cap;
        while (k < sizeof resp && resp[k] == '#')
            k++;
        if (!CHECK_EQ_INT(k, sizeof resp)) {
            NOTE("  respcap %zu: byte %zu written\n", cap, k);
            break;
        }
    }
}

/* ---- negotiation, client side ---- */

static const struct pmd_offer_opts offer_default = PMD_OFFER_DEFAULT;

static bool accept1(const struct pmd_offer_opts *o, const char *value, struct pmd_params *out)
{
    memset(out, 0xAA, sizeof *out);
    size_t len = strlen(value);
    return pmd_client_accept(o, &value, &len, 1, out);
}

TEST(client_offer_strings)
{
    char out[256];
    pmd_client_offer(&offer_default, out, sizeof out);
    CHECK_STR(out, strlen(out), "permessage-deflate; client_max_window_bits");
    struct pmd_offer_opts o = { true, true, 10, 12 };
    pmd_client_offer(&o, out, sizeof out);
    CHECK_STR(out, strlen(out),
              "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
              "server_max_window_bits=10; client_max_window_bits=12");
    o = (struct pmd_offer_opts){ false, false, 0, -1 };
    pmd_client_offer(&o, out, sizeof out);
    CHECK_STR(out, strlen(out), "permessage-deflate");
}

TEST(client_accepts_what_it_offered)
{
    struct pmd_params p;
    CHECK(accept1(&offer_default, "permessage-deflate", &p));
    CHECK(!p.server_no_context_takeover);
    CHECK(!p.client_no_context_takeover);
    CHECK_EQ_INT(p.server_max_window_bits, 15);
    CHECK_EQ_INT(p.client_max_window_bits, 15);
    CHECK(accept1(&offer_default, "permessage-deflate; client_max_window_bits=9", &p));
    CHECK_EQ_INT(p.client_max_window_bits, 9);
    /* The server may state these unasked. */
    CHECK(accept1(&offer_default,
                  "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                  "server_max_window_bits=11",
                  &p));
    CHECK(p.server_no_context_takeover);
    CHECK(p.client_no_context_takeover);
    CHECK_EQ_INT(p.server_max_window_bits, 11);
    CHECK(accept1(&offer_default, "permessage-deflate; server_max_window_bits=\"8\"", &p));
    CHECK_EQ_INT(p.server_max_window_bits, 8);
    /* Our own client_no_context_takeover holds without an answer. */
    struct pmd_offer_opts o = { false, true, 0, -1 };
    CHECK(accept1(&o, "permessage-deflate", &p));
    CHECK(p.client_no_context_takeover);
}

TEST(client_refuses_what_it_did_not_offer)
{
    struct pmd_params p;
    struct pmd_offer_opts none = { false, false, 0, -1 };
    struct pmd_offer_opts all = { true, true, 10, 12 };
    /* client_max_window_bits not offered. */
    CHECK(!accept1(&none, "permessage-deflate; client_max_window_bits=10", &p));
    /* ... offered, answered without a value, or above ours. */
    CHECK(!accept1(&offer_default, "permessage-deflate; client_max_window_bits", &p));
    CHECK(!accept1(&all, "permessage-deflate; server_no_context_takeover; "
                         "server_max_window_bits=10; client_max_window_bits=13", &p));
    CHECK(accept1(&all, "permessage-deflate; server_no_context_takeover; "
                        "server_max_window_bits=10; client_max_window_bits=12", &p));
    /* server_max_window_bits offered: must be answered, not above ours. */
    CHECK(!accept1(&all, "permessage-deflate; server_no_context_takeover", &p));
    CHECK(!accept1(&all, "permessage-deflate; server_no_context_takeover; "
                         "server_max_window_bits=11", &p));
    CHECK(accept1(&all, "permessage-deflate; server_no_context_takeover; "
                        "server_max_window_bits=8", &p));
    CHECK_EQ_INT(p.server_max_window_bits, 8);
    /* server_no_context_takeover offered: must be answered. */
    CHECK(!accept1(&all, "permessage-deflate; server_max_window_bits=10", &p));
    /* Malformed, duplicated, unknown, another extension, more than one. */
    static const char *const bad[] = {
        "", "permessage-deflate;", "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; foo", "x-webkit-deflate-frame",
        "permessage-deflate, permessage-deflate", "permessage-deflate, foo",
        "permessage-deflate x", "permessage-deflate; server_max_window_bits=\"10",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (!CHECK(!accept1(&offer_default, bad[i], &p)))
            NOTE("  accepted: \"%s\"\n", bad[i]);
    }
}

/* The answer's header lines as pmd_client_accept takes them. */
static bool accept_lines(const char *const *lines, size_t n, struct pmd_params *out)
{
    size_t lens[8];
    for (size_t i = 0; i < n; i++)
        lens[i] = strlen(lines[i]);
    memset(out, 0xAA, sizeof *out);
    return pmd_client_accept(&offer_default, lines, lens, n, out);
}

TEST(client_reads_every_extensions_line)
{
    /* RFC 6455 §4.1: an extension we did not offer fails the connection,
     * on whichever header line it comes. */
    struct pmd_params p;
    static const char *const two_exts[] = { "permessage-deflate", "x-foo" };
    CHECK(!accept_lines(two_exts, 2, &p));
    static const char *const foo_first[] = { "x-foo", "permessage-deflate" };
    CHECK(!accept_lines(foo_first, 2, &p));
    static const char *const twice[] = { "permessage-deflate", "permessage-deflate" };
    CHECK(!accept_lines(twice, 2, &p));
    static const char *const bad_second[] = { "permessage-deflate", "permessage-deflate;" };
    CHECK(!accept_lines(bad_second, 2, &p));
    static const char *const empty[] = { "", " , " };
    CHECK(!accept_lines(empty, 2, &p));
    CHECK(!accept_lines(empty, 0, &p));
    /* Empty lines hold no element. */
    static const char *const with_empty[] = { "", "permessage-deflate; server_max_window_bits=10",
                                              "," };
    CHECK(accept_lines(with_empty, 3, &p));
    CHECK_EQ_INT(p.server_max_window_bits, 10);
    /* Values are (pointer, length): bytes past the length are not read. */
    const char *v[2] = { "permessage-deflate, x-foo", "x-foo" };
    size_t l[2] = { 18, 0 };
    CHECK(pmd_client_accept(&offer_default, v, l, 2, &p));
}

TEST(offer_negotiate_accept_round_trip)
{
    /* Every offer the client can make, against every service setting:
     * the server accepts it and the client accepts the answer, and both
     * sides agree on the parameters. */
    char offer[256], resp[256];
    for (int snct = 0; snct < 2; snct++)
        for (int cnct = 0; cnct < 2; cnct++)
            for (int smwb = 7; smwb <= 15; smwb++)
                for (int cmwb = -1; cmwb <= 15; cmwb++) {
                    if (cmwb > 0 && cmwb < 8)
                        continue;
                    struct pmd_offer_opts o = { snct, cnct, smwb == 7 ? 0 : smwb, cmwb };
                    pmd_client_offer(&o, offer, sizeof offer);
                    for (int tk = 0; tk < 2; tk++)
                        for (uint8_t wb = 8; wb <= 15; wb++) {
                            struct pmd_conf conf = conf_of(tk, wb);
                            struct pmd_params sp, cp;
                            if (!CHECK(negotiate1(&conf, offer, &sp, resp, sizeof resp)))
                                continue;
                            if (!CHECK(accept1(&o, resp, &cp))) {
                                NOTE("  \"%s\" -> \"%s\" refused\n", offer, resp);
                                continue;
                            }
                            bool ok = CHECK_EQ_INT(cp.server_no_context_takeover,
                                                   sp.server_no_context_takeover);
                            ok = CHECK_EQ_INT(cp.client_no_context_takeover,
                                              sp.client_no_context_takeover) && ok;
                            ok = CHECK_EQ_INT(cp.client_max_window_bits,
                                              sp.client_max_window_bits) && ok;
                            /* The client inflates with a window at least as big
                             * as the server deflates with. */
                            ok = CHECK(cp.server_max_window_bits >= sp.server_max_window_bits) &&
                                 ok;
                            if (!ok)
                                NOTE("  \"%s\" (takeover %d, bits %d) -> \"%s\"\n",
                                        offer, tk, wb, resp);
                        }
                }
}

/* ---- streams ---- */

/* Inflates one message's payload (tail added, as ws_msg does). */
static int inflate_msg(struct pmd_inflater *inf, const char *p, size_t n, struct buf *out,
                       size_t max)
{
    int rc = pmd_inflate(inf, p, n, out, max, NULL);
    if (rc == PMD_OK)
        rc = pmd_inflate(inf, "\x00\x00\xff\xff", 4, out, max, NULL);
    if (rc == PMD_OK && !pmd_inflate_end_message(inf))
        rc = PMD_CORRUPT;
    return rc;
}

static uint64_t rng_state = 88172645463325252ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

TEST(init_allocates_nothing)
{
    struct pmd_params p = { false, false, 12, 13 };
    struct pmd_conf conf = PMD_CONF_DEFAULT;
    struct pmd_inflater inf;
    struct pmd_deflater def;
    pmd_init(&p, &conf, true, &pool, &inf, &def);
    CHECK(inf.z == NULL);
    CHECK(def.z == NULL);
    CHECK_EQ_INT(inf.window_bits, 13);         /* the server inflates the client's */
    CHECK_EQ_INT(def.window_bits, 12);
    pmd_init(&p, &conf, false, &pool, &inf, &def);
    CHECK_EQ_INT(inf.window_bits, 12);
    CHECK_EQ_INT(def.window_bits, 13);
    pmd_free(&inf, &def);
}

TEST(round_trip_every_window_with_and_without_takeover)
{
    size_t big = 1 << 20;
    char *text = malloc(big), *rand_bytes = malloc(big);
    for (size_t i = 0; i < big; i++) {
        text[i] = "lorem ipsum dolor sit amet, consectetur adipiscing elit\n"[(i * 7 + i / 97) % 57];
        rand_bytes[i] = (char)rnd();
    }
    struct {
        const char *p;
        size_t n;
    } msgs[] = { { "", 0 }, { "a", 1 }, { "Hello", 5 }, { text, big }, { rand_bytes, big },
                 { text, 1000 }, { text, 1000 } };
    size_t nmsgs = sizeof msgs / sizeof msgs[0];
    for (uint8_t wb = 8; wb <= 15; wb++)
        for (int nct = 0; nct < 2; nct++)
            for (int server = 0; server < 2; server++) {
                struct pmd_params p = { nct, nct, wb, wb };
                struct pmd_conf conf = PMD_CONF_DEFAULT;
                struct pmd_inflater inf, pinf;
                struct pmd_deflater def, pdef;
                pmd_init(&p, &conf, server, &pool, &inf, &def);
                pmd_init(&p, &conf, !server, &pool, &pinf, &pdef);
                for (size_t k = 0; k < nmsgs; k++) {
                    struct buf z = { 0 }, out = { 0 };
                    pmd_deflate(&def, msgs[k].p, msgs[k].n, &z);
                    /* The sync-flush tail is never on the wire. */
                    CHECK(z.len < 4 || memcmp(z.data + z.len - 4, "\0\0\xff\xff", 4) != 0);
                    int rc = inflate_msg(&pinf, z.data, z.len, &out, big);
                    if (!CHECK_EQ_INT(rc, PMD_OK) ||
                        !CHECK_MEM(out.data, out.len, msgs[k].p, msgs[k].n))
                        NOTE("  bits %d, no takeover %d, message %zu\n", wb, nct, k);
                    if (nct) {
                        CHECK(pinf.z == NULL);      /* back to the pool */
                        CHECK(def.z == NULL);       /* the shared deflater */
                    } else {
                        CHECK(pinf.z != NULL);
                    }
                    buf_free(&z);
                    buf_free(&out);
                }
                pmd_free(&inf, &def);
                pmd_free(&pinf, &pdef);
            }
    free(text);
    free(rand_bytes);
}

TEST(deflate_respects_negotiated_window)
{
    /* Inflate with exactly the negotiated window, one output byte per call:
     * every back-reference must then come from that window, so a distance
     * beyond it is "invalid distance too far back". */
    size_t n = 48 * 1024;
    char *text = malloc(n);
    for (size_t i = 0; i < n; i++)
        text[i] = (char)('a' + ((i % 1777) * 13 + (i % 311)) % 23);
    for (uint8_t wb = 8; wb <= 15; wb++)
        for (int nct = 0; nct < 2; nct++) {
            struct pmd_params p = { nct, nct, wb, wb };
            struct pmd_conf conf = PMD_CONF_DEFAULT;
            conf.level = 9;
            struct pmd_inflater inf;
            struct pmd_deflater def;
            pmd_init(&p, &conf, true, &pool, &inf, &def);
            struct buf zb = { 0 };
            pmd_deflate(&def, text, n, &zb);
            buf_append(&zb, "\x00\x00\xff\xff", 4);
            z_stream z;
            memset(&z, 0, sizeof z);
            CHECK_EQ_INT(inflateInit2(&z, -wb), Z_OK);
            char *out = malloc(n);
            z.next_in = (Bytef *)zb.data;
            z.avail_in = (uInt)zb.len;
            size_t got = 0;
            int rc = Z_OK;
            while (got < n && rc == Z_OK) {
                z.next_out = (Bytef *)out + got;
                z.avail_out = 1;
                rc = inflate(&z, Z_SYNC_FLUSH);
                got += 1 - z.avail_out;
            }
            if (!CHECK_EQ_INT(got, n))
                NOTE("  window %d bits: %s after %zu bytes\n", wb,
                        z.msg ? z.msg : "?", got);
            else
                CHECK_MEM(out, n, text, n);
            inflateEnd(&z);
            free(out);
            buf_free(&zb);
            pmd_free(&inf, &def);
        }
    free(text);
}

TEST(shared_deflater_gives_same_bytes_to_every_connection)
{
    /* Without server takeover two connections compress through the shared
     * stream, interleaved, and get identical, independent output. */
    struct pmd_params p = { true, true, 15, 15 };
    struct pmd_conf conf = PMD_CONF_DEFAULT;
    struct pmd_inflater i1, i2;
    struct pmd_deflater d1, d2;
    pmd_init(&p, &conf, true, &pool, &i1, &d1);
    pmd_init(&p, &conf, true, &pool, &i2, &d2);
    static const char m[] = "broadcast broadcast broadcast broadcast";
    struct buf a = { 0 }, b = { 0 }, c = { 0 };
    pmd_deflate(&d1, m, sizeof m - 1, &a);
    pmd_deflate(&d2, "something else entirely", 23, &c);
    pmd_deflate(&d2, m, sizeof m - 1, &b);
    CHECK_MEM(a.data, a.len, b.data, b.len);
    struct pmd_inflater in;
    struct pmd_deflater unused;
    pmd_init(&p, &conf, false, &pool, &in, &unused);
    struct buf out = { 0 };
    CHECK_EQ_INT(inflate_msg(&in, b.data, b.len, &out, 1000), PMD_OK);
    CHECK_STR(out.data, out.len, m);
    buf_free(&a);
    buf_free(&b);
    buf_free(&c);
    buf_free(&out);
    pmd_free(&i1, &d1);
    pmd_free(&i2, &d2);
    pmd_free(&in, &unused);
}

TEST(no_pool_gives_each_connection_its_own_stream)
{
    /* The client has no pool: without takeover its deflater keeps a stream
     * of its own, reset after each message, and writes the same bytes as
     * the pool's shared stream; nothing is left in the pool. */
    struct pmd_params p = { true, true, 15, 15 };
    struct pmd_conf conf = PMD_CONF_DEFAULT;
    struct pmd_inflater ia, ib;
    struct pmd_deflater own, shared;
    pmd_init(&p, &conf, true, NULL, &ia, &own);
    pmd_init(&p, &conf, true, &pool, &ib, &shared);
    static const char m[] = "no pool no pool no pool no pool";
    struct buf a = { 0 }, b = { 0 }, c = { 0 };
    pmd_deflate(&own, "first message, then reset", 25, &c);
    pmd_deflate(&own, m, sizeof m - 1, &a);
    pmd_deflate(&shared, m, sizeof m - 1, &b);
    CHECK(own.z != NULL);
    CHECK(shared.z == NULL);
    CHECK_MEM(a.data, a.len, b.data, b.len);
    /* An inflater without a pool is freed at the end of each message. */
    struct pmd_inflater in;
    struct pmd_deflater unused;
    pmd_init(&p, &conf, false, NULL, &in, &unused);
    unsigned pooled = pool.ninflaters;
    struct buf out = { 0 };
    CHECK_EQ_INT(inflate_msg(&in, a.data, a.len, &out, 1000), PMD_OK);
    CHECK_STR(out.data, out.len, m);
    CHECK(in.z == NULL);
    CHECK_EQ_INT(pool.ninflaters, pooled);
    buf_free(&a);
    buf_free(&b);
    buf_free(&c);
    buf_free(&out);
    pmd_free(&ia, &own);
    pmd_free(&ib, &shared);
    pmd_free(&in, &unused);
}

TEST(deflate_empty_message_with_takeover)
{
    /* After a sync flush zlib has nothing to flush for an empty input, so
     * an empty message on a kept stream would go out as an empty payload;
     * it must be the empty stored block's first byte, 00 (RFC 7692
     * §7.2.3.6), which the peer inflates to nothing and stays in step. */
    for (int nct = 0; nct < 2; nct++) {
        struct pmd_params p = { nct, nct, 15, 15 };
        struct pmd_conf conf = PMD_CONF_DEFAULT;
        struct pmd_inflater inf, pinf;
        struct pmd_deflater def, pdef;
        pmd_init(&p, &conf, true, &pool, &inf, &def);
        pmd_init(&p, &conf, false, &pool, &pinf, &pdef);
        static const char *const msgs[] = { "", "abc", "", "", "abcabc", "" };
        for (size_t k = 0; k < sizeof msgs / sizeof msgs[0]; k++) {
            struct buf z = { 0 }, out = { 0 };
            pmd_deflate(&def, msgs[k], strlen(msgs[k]), &z);
            if (!msgs[k][0] && !CHECK_MEM(z.data, z.len, "\0", 1))
                NOTE("  no takeover %d, message %zu\n", nct, k);
            CHECK_EQ_INT(inflate_msg(&pinf, z.data, z.len, &out, 100), PMD_OK);
            CHECK_STR(out.data, out.len, msgs[k]);
            buf_free(&z);
            buf_free(&out);
        }
        pmd_free(&inf, &def);
        pmd_free(&pinf, &pdef);
    }
}

TEST(inflate_limit_and_corrupt)
{
    struct pmd_params p = { true, true, 15, 15 };
    struct pmd_conf conf = PMD_CONF_DEFAULT;
    struct pmd_inflater inf;
    struct pmd_deflater def;
    pmd_init(&p, &conf, true, &pool, &inf, &def);
    char m[5000];
    memset(m, 'z', sizeof m);
    struct buf zb = { 0 }, out = { 0 };
    pmd_deflate(&def, m, sizeof m, &zb);
    CHECK_EQ_INT(inflate_msg(&inf, zb.data, zb.len, &out, 5000), PMD_OK);
    CHECK_EQ_INT(out.len, 5000);
    buf_free(&out);
    pmd_free(&inf, NULL);
    pmd_init(&p, &conf, true, &pool, &inf, &def);
    CHECK_EQ_INT(inflate_msg(&inf, zb.data, zb.len, &out, 4999), PMD_TOO_BIG);
    CHECK(out.len <= 5000);
    buf_free(&out);
    pmd_free(&inf, NULL);
    /* Fed one byte at a time it fails the same way. */
    pmd_init(&p, &conf, true, &pool, &inf, &def);
    int rc = PMD_OK;
    for (size_t i = 0; i < zb.len && rc == PMD_OK; i++)
        rc = pmd_inflate(&inf, zb.data + i, 1, &out, 100, NULL);
    CHECK_EQ_INT(rc, PMD_TOO_BIG);
    CHECK(out.len <= 101);
    buf_free(&out);
    pmd_free(&inf, NULL);
    pmd_init(&p, &conf, true, &pool, &inf, &def);
    CHECK_EQ_INT(pmd_inflate(&inf, "\xff\xff\xff", 3, &out, 1000, NULL), PMD_CORRUPT);
    buf_free(&out);
    pmd_free(&inf, &def);
    buf_free(&zb);
}

TEST(inflate_no_limit)
{
    /* max = SIZE_MAX: "one byte past max" must not wrap to 0. */
    struct pmd_params p = { true, true, 15, 15 };
    struct pmd_conf conf = PMD_CONF_DEFAULT;
    struct pmd_inflater inf;
    struct pmd_deflater def;
    pmd_init(&p, &conf, true, &pool, &inf, &def);
    static const char m[] = "no limit at all, no limit at all";
    struct buf zb = { 0 }, out = { 0 };
    pmd_deflate(&def, m, sizeof m - 1, &zb);
    CHECK_EQ_INT(inflate_msg(&inf, zb.data, zb.len, &out, SIZE_MAX), PMD_OK);
    CHECK_STR(out.data, out.len, m);
    buf_free(&zb);
    buf_free(&out);
    pmd_free(&inf, &def);
}

TEST(inflate_buffer_follows_the_message_size)
{
    /* A small message costs a small buffer, not a 64 KiB chunk; a big one
     * still inflates whole. */
    struct pmd_params p = { true, true, 15, 15 };
    struct pmd_conf conf = PMD_CONF_DEFAULT;
    struct pmd_inflater inf;
    struct pmd_deflater def;
    pmd_init(&p, &conf, true, &pool, &inf, &def);
    static const size_t sizes[] = { 0, 5, 100, 300, 1000, 100000, 1 << 20 };
    char *text = malloc(1 << 20);
    for (size_t i = 0; i < 1 << 20; i++)
        text[i] = (char)("small messages, small buffers "[i % 30] ^ (i / 4096 % 7));
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        struct buf zb = { 0 }, out = { 0 };
        pmd_deflate(&def, text, sizes[k], &zb);
        CHECK_EQ_INT(inflate_msg(&inf, zb.data, zb.len, &out, 1 << 20), PMD_OK);
        CHECK_MEM(out.data, out.len, text, sizes[k]);
        /* At most 512 bytes or twice the message. */
        size_t bound = sizes[k] * 2 > 512 ? sizes[k] * 2 : 512;
        if (!CHECK(out.cap <= bound))
            NOTE("  %zu bytes (%zu compressed) in a buffer of %zu\n", sizes[k], zb.len, out.cap);
        buf_free(&zb);
        buf_free(&out);
    }
    free(text);
    pmd_free(&inf, &def);
}

/* ---- the end of a message: between blocks, or truncated ---- */

/* Raw deflate straight from zlib, as other senders may write it. */
static void zraw(struct buf *out, const char *in, size_t n, int level, int strategy, int flush,
                 bool strip_tail)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    CHECK_EQ_INT(deflateInit2(&z, level, Z_DEFLATED, -15, 8, strategy), Z_OK);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    z.next_out = (Bytef *)buf_reserve(out, n + 256);
    z.avail_out = (uInt)(n + 256);
    CHECK_EQ_INT(deflate(&z, flush), flush == Z_FINISH ? Z_STREAM_END : Z_OK);
    out->len += n + 256 - z.avail_out;
    if (strip_tail && CHECK(out->len >= 4 && memcmp(out->data + out->len - 4, "\0\0\xff\xff", 4) == 0))
        out->len -= 4;
    deflateEnd(&z);
}

/* Inflates one message fed in two pieces (cut into p), the tail last.
 * Returns PMD_CORRUPT when the message did not end cleanly. */
static int inflate_cut(struct pmd_inflater *inf, const char *p, size_t n, size_t cut,
                       struct buf *out)
{
    int rc = pmd_inflate(inf, p, cut, out, 1 << 20, NULL);
    if (rc == PMD_OK)
        rc = pmd_inflate(inf, p + cut, n - cut, out, 1 << 20, NULL);
    if (rc == PMD_OK)
        rc = pmd_inflate(inf, "\x00\x00\xff\xff", 4, out, 1 << 20, NULL);
    bool clean = pmd_inflate_end_message(inf);
    if (inf->reset_each_message)
        CHECK(inf->z == NULL);          /* back to the pool, clean or not */
    return rc == PMD_OK && !clean ? PMD_CORRUPT : rc;
}

struct zcase {
    const char *name;
    struct buf payload;
    const char *text;
    size_t len;
};

/* Valid payloads of every shape; their text is text[0..len). */
static size_t valid_payloads(struct zcase *c, const char *text, size_t n)
{
    size_t k = 0;
    c[k] = (struct zcase){ "fixed", { 0 }, text, 300 };
    zraw(&c[k].payload, text, 300, 6, Z_FIXED, Z_SYNC_FLUSH, true);
    CHECK_EQ_INT((c[k].payload.data[0] >> 1) & 3, 1);
    k++;
    c[k] = (struct zcase){ "dynamic", { 0 }, text, n };
    zraw(&c[k].payload, text, n, 6, Z_DEFAULT_STRATEGY, Z_SYNC_FLUSH, true);
    CHECK_EQ_INT((c[k].payload.data[0] >> 1) & 3, 2);
    k++;
    c[k] = (struct zcase){ "stored", { 0 }, text, 300 };
    zraw(&c[k].payload, text, 300, 0, Z_DEFAULT_STRATEGY, Z_SYNC_FLUSH, true);
    CHECK_EQ_INT((c[k].payload.data[0] >> 1) & 3, 0);
    k++;
    /* A final block and nothing after it (Z_FINISH, no tail to strip). */
    c[k] = (struct zcase){ "BFINAL", { 0 }, text, n };
    zraw(&c[k].payload, text, n, 6, Z_DEFAULT_STRATEGY, Z_FINISH, false);
    CHECK_EQ_INT(c[k].payload.data[0] & 1, 1);
    k++;
    /* RFC 7692 §7.2.3.4: a final block, then 00. */
    c[k] = (struct zcase){ "BFINAL 00", { 0 }, text, n };
    zraw(&c[k].payload, text, n, 6, Z_DEFAULT_STRATEGY, Z_FINISH, false);
    buf_append(&c[k].payload, "", 1);
    k++;
    /* Two sync flushes: the first keeps its 00 00 ff ff. */
    c[k] = (struct zcase){ "two flushes", { 0 }, text, n };
    zraw(&c[k].payload, text, n / 3, 6, Z_DEFAULT_STRATEGY, Z_SYNC_FLUSH, false);
    zraw(&c[k].payload, text + n / 3, n - n / 3, 6, Z_DEFAULT_STRATEGY, Z_SYNC_FLUSH, true);
    k++;
    c[k] = (struct zcase){ "00", { 0 }, "", 0 };
    buf_append(&c[k].payload, "", 1);
    k++;
    /* A final empty stored block ending on the tail's last byte. */
    c[k] = (struct zcase){ "final stored, empty", { 0 }, "", 0 };
    buf_append(&c[k].payload, "\x01", 1);
    k++;
    return k;
}

static void make_text(char *text, size_t n)
{
    for (size_t i = 0; i < n; i++)
        text[i] = "the end of a message is a block boundary; "[(i * 5 + i / 61) % 42];
}

TEST(end_message_clean_for_every_valid_shape)
{
    char text[3000];
    make_text(text, sizeof text);
    struct zcase c[8];
    size_t nc = valid_payloads(c, text, sizeof text);
    for (size_t k = 0; k < nc; k++)
        for (int nct = 0; nct < 2; nct++) {
            struct pmd_params p = { nct, nct, 15, 15 };
            struct pmd_conf conf = PMD_CONF_DEFAULT;
            size_t n = c[k].payload.len;
            /* Every split into two frames (a few for the long ones). */
            for (size_t cut = 0; cut <= n; cut += n > 64 ? n / 7 + 1 : 1) {
                struct pmd_inflater inf;
                struct pmd_deflater def;
                pmd_init(&p, &conf, false, &pool, &inf, &def);
                struct buf out = { 0 };
                int rc = inflate_cut(&inf, c[k].payload.data, n, cut, &out);
                if (!CHECK_EQ_INT(rc, PMD_OK) || !CHECK_MEM(out.data, out.len, c[k].text, c[k].len))
                    NOTE("  %s, no takeover %d, cut at %zu\n", c[k].name, nct, cut);
                /* The stream is ready for the next message (RFC 7692
                 * §7.2.3.1, no back-reference). */
                out.len = 0;
                rc = inflate_cut(&inf, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7, 3, &out);
                if (!CHECK_EQ_INT(rc, PMD_OK) || !CHECK_STR(out.data, out.len, "Hello"))
                    NOTE("  next message after %s, no takeover %d, cut at %zu\n", c[k].name, nct,
                         cut);
                buf_free(&out);
                pmd_free(&inf, &def);
            }
        }
    for (size_t k = 0; k < nc; k++)
        buf_free(&c[k].payload);
}

TEST(end_message_fails_truncated_data)
{
    char text[3000];
    make_text(text, sizeof text);
    struct zcase c[8];
    size_t nc = valid_payloads(c, text, sizeof text);
    for (size_t k = 0; k < nc; k++) {
        /* Single-block payloads: no proper prefix ends between blocks. */
        if (strcmp(c[k].name, "two flushes") == 0 || c[k].len == 0)
            continue;
        for (int nct = 0; nct < 2; nct++) {
            struct pmd_params p = { nct, nct, 15, 15 };
            struct pmd_conf conf = PMD_CONF_DEFAULT;
            size_t n = c[k].payload.len;
            for (size_t len = 1; len < n; len++) {
                /* Prefixes that are valid payloads themselves: a stored
                 * block's header byte is the empty message 00; a final
                 * block without the 00 after it; and a stored block short
                 * of its last 4 bytes, which the tail then completes (as
                 * data: no inflater can tell). */
                bool stored = strcmp(c[k].name, "stored") == 0;
                if ((stored && (len == 1 || len == n - 5)) ||
                    (strcmp(c[k].name, "BFINAL 00") == 0 && len == n - 1))
                    continue;
                struct pmd_inflater inf;
                struct pmd_deflater def;
                pmd_init(&p, &conf, false, &pool, &inf, &def);
                struct buf out = { 0 };
                int rc = inflate_cut(&inf, c[k].payload.data, len, len / 2, &out);
                if (!CHECK_EQ_INT(rc, PMD_CORRUPT))
                    NOTE("  %s cut to %zu of %zu bytes, no takeover %d\n", c[k].name, len, n,
                         nct);
                buf_free(&out);
                pmd_free(&inf, &def);
            }
        }
    }
    for (size_t k = 0; k < nc; k++)
        buf_free(&c[k].payload);
}

int main(int argc, char **argv)
{
    int rc = check_main("test_pmd");
    pmd_pool_free(&pool);
    return rc;
}
