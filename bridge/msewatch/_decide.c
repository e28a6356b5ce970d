/* msewatch._decide: deciding one flow in C.
 *
 * A line-by-line port of the reference decider, score/flow.py:decide_flow: the detectors of
 * detect/ (non_p2p_start, other_protocols, bt_plain, tracker, fully_encrypted, mse, lsd, dht,
 * utp), evidence.py's derived facts and prefixes, the flow score, the labelling rule and the
 * prefix walk (burst ends, the first conclusive prefix is final), and the check that a P2P
 * flow stands on its own evidence. It returns the same flat tuple as decide_flow:
 *
 *   (label, s_flow, probability, decided_at_packet, decided_at, score_path, reasons,
 *    families_own, families_context, protocol, other_protocol, confirmed, detector_runs)
 *
 * What it does differently is only how: no FlowEvidence prefix objects, no Observation
 * objects, the head detectors' facts computed once per heads state, reason strings kept in a
 * scratch buffer and made Python strings only for the prefix that decided.
 *
 * Anything unusual (a proto other than tcp/udp, sizes or counters beyond 2**48, non-float
 * times, more sizes or heads than a budget allows, a reason buffer that would overflow)
 * makes Decider.decide return None: the engine then runs decide_flow, so the compiled
 * decider never has to be right about the odd case, only never wrong about a common one.
 * tests/decide/ runs both deciders on the corpus, its capture-artifact variants and
 * generated evidence, and requires identical results.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#define MAXP 1024       /* sizes per evidence (budget.max_packets <= 1024) */
#define MAXH 16         /* heads per direction (budget.udp_heads <= 16) */
#define MAXOBS 256      /* observations per decide call (all prefixes) */
#define MAXREASONS 2048 /* reason strings per decide call */
#define RBUF (64 * 1024)
#define SIZE_LIMIT ((int64_t)1 << 48)

/* ------------------------------------------------------------------ names */

enum {
    F_MSE_HANDSHAKE, F_MSE_PARTIAL, F_FULLY_ENCRYPTED, F_BT_HANDSHAKE, F_BT_PEERWIRE, F_DHT_KRPC,
    F_UTP_HEADER, F_UTP_COHERENT, F_UDP_TRACKER, F_HTTP_TRACKER, F_LSD, F_TLS_LIKE, F_SSH_LIKE,
    F_HTTP_LIKE, F_DNS_LIKE, F_QUIC_LIKE, F_STUN_LIKE, F_PEER_CACHE, F_HOST_CONTEXT, N_FEATURES
};
/* the order of config.FEATURES; the driver passes the weights in this order */
static const char *FEATURE_NAMES[N_FEATURES] = {
    "mse_handshake", "mse_partial", "fully_encrypted", "bt_handshake", "bt_peerwire", "dht_krpc",
    "utp_header", "utp_coherent", "udp_tracker", "http_tracker", "lsd", "tls_like", "ssh_like",
    "http_like", "dns_like", "quic_like", "stun_like", "peer_cache", "host_context"};

enum { FAM_SHAPE, FAM_RANDOM, FAM_PLAINTEXT, FAM_HOST, FAM_PEER, FAM_NEGATIVE, N_FAMILIES };
static const char *FAMILY_NAMES[N_FAMILIES] = {
    "handshake_shape", "randomness", "plaintext_signature", "host_context", "peer_cache", "negative"};

enum {
    P_NONE, P_BT_MSE, P_BT_PLAIN, P_UTP, P_DHT, P_TRACKER, P_LSD, P_TLS, P_SSH, P_HTTP, P_DNS, P_QUIC,
    P_STUN, N_PROTOCOLS
};
static const char *PROTOCOL_NAMES[N_PROTOCOLS] = {
    "", "bt_mse", "bt_plain", "utp", "dht", "tracker", "lsd", "tls", "ssh", "http", "dns", "quic", "stun"};

enum { L_P2P, L_NORMAL, L_UNKNOWN, N_LABELS };
static const char *LABEL_NAMES[N_LABELS] = {"p2p_likely", "normal_likely", "unknown"};

static PyObject *feature_str[N_FEATURES], *family_str[N_FAMILIES], *protocol_str[N_PROTOCOLS],
    *label_str[N_LABELS];
static PyObject *s_uid, *s_community_id, *s_key, *s_proto, *s_orig_p, *s_resp_p, *s_resp_h, *s_sizes, *s_times, *s_bursts,
    *s_orig_heads, *s_resp_heads, *s_orig_pkts, *s_resp_pkts, *s_handshake, *s_complete, *s_ts,
    *s_duration, *s_tcp, *s_udp;

/* ------------------------------------------------------------------ parameters */

typedef struct {
    double popcount_low, popcount_high, printable_share, midstream_factor, popcount_sigmas;
    int64_t printable_prefix_len, printable_run, min_random_len, random_full_len, head_bytes;
    int64_t step12_min, step12_max, step3_min, step3_exact, step3_ia_max, step4_min, bt_len, bt_len_window,
        bt_len_runs, ff_prefix;
    double partial_value, partial3_value, full_value, full_fp_value, one_sided_value, step_lost_value;
    int report_info_hash;
    int64_t peerwire_max_len, peerwire_max_msgs, peerwire_min_alone;
    double peerwire_alone_value, dht_one_way_value, dht_both_ways_value;
    int64_t utp_min_port, utp_max_ext, utp_max_wnd;
    int n_utp_excluded;
    int64_t utp_excluded[64];
    double utp_header_value, utp_coherent_value, utp_one_way_value;
    int n_dns_ports;
    int64_t dns_ports[64];
    double udp_tracker_value, udp_tracker_reply_value, http_tracker_value, lsd_value, lsd_unicast_value;
    /* scoring */
    double bias, weight[N_FEATURES], t_low, t_high, alpha;
    int64_t min_packets_normal, min_families_encrypted;
} Params;

/* ------------------------------------------------------------------ evidence */

typedef struct {
    const uint8_t *p;
    Py_ssize_t n;
    PyObject *obj; /* the bytes object (identity matters to one detector) */
} Head;

typedef struct {
    PyObject *key, *uid, *community_id, *ts_obj; /* borrowed from the read's references */
    int tcp;
    int64_t orig_p, resp_p;
    PyObject *resp_h;
    Py_ssize_t n;
    int64_t sizes[MAXP];
    double times[MAXP];
    Py_ssize_t nbursts;
    int64_t bursts[MAXP];
    Py_ssize_t noh, nrh;
    Head oh[MAXH], rh[MAXH];
    int orig_pkts, resp_pkts; /* truthiness of the counters */
    int handshake, complete;
    double ts, duration;
} Ev;

/* a prefix of the evidence, as FlowEvidence.prefix(n) makes it */
typedef struct {
    const Ev *ev;
    Py_ssize_t n;
    int whole;
    const int64_t *bursts;
    Py_ssize_t nb;
    int64_t bbuf[MAXP];
    Py_ssize_t noh, nrh; /* heads present (all of the direction's, or none) */
    int orig_pkts, resp_pkts;
    int complete;
} Pre;

enum { SIDE_NONE, SIDE_ORIG, SIDE_RESP };

static int one_sided(const Pre *pre)
{
    if (pre->orig_pkts && !pre->resp_pkts) return SIDE_ORIG;
    if (pre->resp_pkts && !pre->orig_pkts) return SIDE_RESP;
    return SIDE_NONE;
}

static Py_ssize_t bursts_of(const int64_t *sizes, Py_ssize_t n, int64_t *out, Py_ssize_t limit)
{
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t s = sizes[i];
        if (k && (s > 0) == (out[k - 1] > 0))
            out[k - 1] += s;
        else if (k < limit)
            out[k++] = s;
        else
            break;
    }
    return k;
}

static void make_prefix(const Ev *ev, Py_ssize_t n, Pre *pre)
{
    pre->ev = ev;
    if (n >= ev->n) {
        pre->n = ev->n;
        pre->whole = 1;
        pre->bursts = ev->bursts;
        pre->nb = ev->nbursts;
        pre->noh = ev->noh;
        pre->nrh = ev->nrh;
        pre->orig_pkts = ev->orig_pkts;
        pre->resp_pkts = ev->resp_pkts;
        pre->complete = ev->complete;
        return;
    }
    Py_ssize_t pos = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (ev->sizes[i] > 0) pos++;
    Py_ssize_t neg = n - pos;
    pre->n = n;
    pre->whole = 0;
    pre->nb = bursts_of(ev->sizes, n, pre->bbuf, MAXP);
    pre->bursts = pre->bbuf;
    pre->noh = pos ? ev->noh : 0;
    pre->nrh = neg ? ev->nrh : 0;
    pre->orig_pkts = pos > 0 || ev->orig_pkts;
    pre->resp_pkts = neg > 0 || ev->resp_pkts;
    pre->complete = 0;
}

/* FlowEvidence.head_captured: -1 = None */
static void head_captured(const Pre *pre, int64_t head_bytes, Py_ssize_t *cut_o, Py_ssize_t *cut_r)
{
    const Ev *ev = pre->ev;
    Py_ssize_t io = 0, ir = 0;
    *cut_o = *cut_r = -1;
    for (Py_ssize_t i = 0; i < pre->n; i++) {
        int64_t s = ev->sizes[i];
        const Head *h;
        Py_ssize_t *cut;
        if (s > 0) {
            if (io >= pre->noh) continue;
            h = &ev->oh[io++];
            cut = cut_o;
        } else {
            if (ir >= pre->nrh) continue;
            h = &ev->rh[ir++];
            cut = cut_r;
            s = -s;
        }
        int64_t lim = s < head_bytes ? s : head_bytes;
        if ((int64_t)h->n < lim) *cut = (*cut < 0 || h->n < *cut) ? h->n : *cut;
    }
}

/* FlowEvidence.sizes_without_retransmissions: returns the count; *same = the sizes unchanged */
static Py_ssize_t sizes_wo_retrans(const Pre *pre, int64_t *out, int *same)
{
    const Ev *ev = pre->ev;
    Py_ssize_t n = pre->n;
    if (!ev->tcp || n < 2) {
        memcpy(out, ev->sizes, n * sizeof(int64_t));
        *same = 1;
        return n;
    }
    Py_ssize_t k = 1;
    out[0] = ev->sizes[0];
    double last_t = ev->times[0];
    for (Py_ssize_t i = 1; i < n; i++) {
        int64_t s = ev->sizes[i];
        double t = ev->times[i];
        if (s == out[k - 1] && t - last_t >= 0.2) continue;
        out[k++] = s;
        last_t = t;
    }
    *same = k == n;
    if (*same) memcpy(out, ev->sizes, n * sizeof(int64_t));
    return k;
}

/* ------------------------------------------------------------------ observations, reasons */

typedef struct {
    int feature, family, protocol;
    double value;
    int r0, nr; /* reasons: index range in the store */
} Obs;

/* what random_verdict reads of a head, in one pass: set bits, printable bytes (in all and
   in the first printable_prefix_len), the longest printable run, and the known start */
typedef struct {
    const uint8_t *p; /* the head these are of (NULL: none cached) */
    Py_ssize_t n;
    long long bits;
    Py_ssize_t printable, prefix_printable, longest_run;
    int known;
} HeadStats;
#define HS_CACHE 8

typedef struct {
    /* each head's randomness statistics, per decide call (a head is tested several times
       per flow: per prefix, per detector), keyed by its bytes' address */
    HeadStats hs[HS_CACHE];
    int hs_next;
    char buf[RBUF];
    int len;
    int off[MAXREASONS], rlen[MAXREASONS];
    int n;
    int overflow;
    Obs obs[MAXOBS];
    int nobs;
} Store;

/* reasons are formatted with %s, %d, %lld, %zd and %.*s only: a small formatter, since
   vsnprintf's generality costs more than the rest of deciding a flow */
static int reason(Store *st, const char *fmt, ...)
{
    if (st->n >= MAXREASONS || st->len >= RBUF - 64) {
        st->overflow = 1;
        return -1;
    }
    va_list ap;
    va_start(ap, fmt);
    char *out = st->buf + st->len, *lim = st->buf + RBUF - 1, *o = out;
    for (const char *f = fmt; *f; f++) {
        if (*f != '%') {
            if (o >= lim) goto over;
            *o++ = *f;
            continue;
        }
        f++;
        long long v;
        if (*f == 's') {
            const char *a = va_arg(ap, const char *);
            size_t l = strlen(a);
            if (o + l >= lim) goto over;
            memcpy(o, a, l);
            o += l;
            continue;
        } else if (*f == '.' && f[1] == '*' && f[2] == 's') {
            int l = va_arg(ap, int);
            const char *a = va_arg(ap, const char *);
            if (o + l >= lim) goto over;
            memcpy(o, a, l);
            o += l;
            f += 2;
            continue;
        } else if (*f == 'd') {
            v = va_arg(ap, int);
        } else if (f[0] == 'l' && f[1] == 'l' && f[2] == 'd') {
            v = va_arg(ap, long long);
            f += 2;
        } else if (f[0] == 'z' && f[1] == 'd') {
            v = va_arg(ap, Py_ssize_t);
            f += 1;
        } else
            goto over; /* not a format this file uses */
        char tmp[24];
        int k = 0;
        unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
        do {
            tmp[k++] = (char)('0' + u % 10);
            u /= 10;
        } while (u);
        if (o + k + 1 >= lim) goto over;
        if (v < 0) *o++ = '-';
        while (k) *o++ = tmp[--k];
    }
    va_end(ap);
    st->off[st->n] = st->len;
    st->rlen[st->n] = (int)(o - out);
    st->n++;
    st->len += (int)(o - out);
    return 0;
over:
    va_end(ap);
    st->overflow = 1;
    return -1;
}

/* a reason whose text is given with its length (may hold any bytes < 0x80) */
static int reason_raw(Store *st, const char *a, Py_ssize_t an, const char *b, Py_ssize_t bn)
{
    if (st->n >= MAXREASONS || st->len + an + bn >= RBUF) {
        st->overflow = 1;
        return -1;
    }
    memcpy(st->buf + st->len, a, an);
    memcpy(st->buf + st->len + an, b, bn);
    st->off[st->n] = st->len;
    st->rlen[st->n] = (int)(an + bn);
    st->n++;
    st->len += (int)(an + bn);
    return 0;
}

/* Python's format(x, ".2f") */
static int reason_f2(Store *st, const char *name, double x)
{
    char *s = PyOS_double_to_string(x, 'f', 2, 0, NULL);
    if (s == NULL) {
        PyErr_Clear();
        st->overflow = 1;
        return -1;
    }
    int r = reason(st, "%s=%s", name, s);
    PyMem_Free(s);
    return r;
}

static const char HEX[] = "0123456789abcdef";

static int reason_hex(Store *st, const char *prefix, const uint8_t *p, Py_ssize_t n)
{
    char tmp[128];
    if (n > 60) n = 60;
    for (Py_ssize_t i = 0; i < n; i++) {
        tmp[2 * i] = HEX[p[i] >> 4];
        tmp[2 * i + 1] = HEX[p[i] & 15];
    }
    return reason_raw(st, prefix, (Py_ssize_t)strlen(prefix), tmp, 2 * n);
}

static Obs *new_obs(Store *st, int feature, int family, double value, int protocol, int r0)
{
    if (st->nobs >= MAXOBS) {
        st->overflow = 1;
        return NULL;
    }
    Obs *o = &st->obs[st->nobs++];
    o->feature = feature;
    o->family = family;
    o->protocol = protocol;
    o->value = value;
    o->r0 = r0;
    o->nr = st->n - r0;
    return o;
}

/* ------------------------------------------------------------------ bytes helpers */

static inline int starts(const uint8_t *p, Py_ssize_t n, const char *s, Py_ssize_t sn)
{
    return n >= sn && memcmp(p, s, sn) == 0;
}
#define STARTS(h, lit) starts((h)->p, (h)->n, lit, (Py_ssize_t)sizeof(lit) - 1)

static Py_ssize_t find(const uint8_t *p, Py_ssize_t n, const char *s, Py_ssize_t sn, Py_ssize_t start)
{
    if (start < 0) start = 0;
    if (start > n) return -1;
    if (sn == 0) return start;
    const void *r = memmem(p + start, n - start, s, sn);
    return r ? (const uint8_t *)r - p : -1;
}
#define FIND(p, n, lit, start) find(p, n, lit, (Py_ssize_t)sizeof(lit) - 1, start)

static inline unsigned be16(const uint8_t *p) { return ((unsigned)p[0] << 8) | p[1]; }
static inline uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline int printable(uint8_t c) { return c >= 0x20 && c <= 0x7e; }

/* ------------------------------------------------------------------ randomness */

enum { KS_NONE, KS_TLS, KS_TLS_RECORD, KS_SSH, KS_HTTP_RESPONSE, KS_HTTP_REQUEST };
static const char *KS_NAMES[] = {"", "tls", "tls_record", "ssh", "http_response", "http_request"};

static int known_start(const uint8_t *p, Py_ssize_t n)
{
    if (n >= 3 && p[0] >= 0x14 && p[0] <= 0x17 && p[1] == 0x03 && p[2] <= 0x04)
        return p[0] == 0x16 ? KS_TLS : KS_TLS_RECORD;
    if (starts(p, n, "SSH-", 4)) return KS_SSH;
    if (starts(p, n, "HTTP/", 5)) return KS_HTTP_RESPONSE;
    static const char *methods[] = {"GET ", "POST ", "HEAD ", "PUT ", "DELETE ", "OPTIONS ", "CONNECT ",
                                    "PATCH ", "TRACE "};
    for (size_t i = 0; i < sizeof(methods) / sizeof(*methods); i++)
        if (starts(p, n, methods[i], (Py_ssize_t)strlen(methods[i]))) return KS_HTTP_REQUEST;
    return KS_NONE;
}

typedef struct {
    int random;
    double popcount;
} RV;

/* per byte: set bits, and whether it is printable (0x20..0x7e) */
static unsigned char BITS[256], PRINT[256];

static void init_tables(void)
{
    for (int i = 0; i < 256; i++) {
        BITS[i] = (unsigned char)__builtin_popcount((unsigned)i);
        PRINT[i] = i >= 0x20 && i <= 0x7e;
    }
}


static void head_stats(const Params *P, const uint8_t *p, Py_ssize_t n, HeadStats *hs)
{
    long long bits = 0;
    Py_ssize_t pr = 0, run = 0, longest = 0, k = (Py_ssize_t)P->printable_prefix_len, prefix = 0;
    /* branch-free: on encrypted heads whether a byte is printable is a coin toss that a
       branch mispredicts half the time */
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char b = p[i];
        Py_ssize_t q = PRINT[b];
        bits += BITS[b];
        pr += q;
        run = (run + 1) & -q;
        longest = run > longest ? run : longest;
        if (i + 1 == k) prefix = pr;
    }
    hs->p = p;
    hs->n = n;
    hs->bits = bits;
    hs->printable = pr;
    hs->prefix_printable = n >= k ? prefix : pr;
    hs->longest_run = longest;
    hs->known = known_start(p, n);
}

static const HeadStats *stats_of(Store *st, const Params *P, const uint8_t *p, Py_ssize_t n)
{
    for (int i = 0; i < HS_CACHE; i++)
        if (st->hs[i].p == p && st->hs[i].n == n) return &st->hs[i];
    HeadStats *hs = &st->hs[st->hs_next];
    st->hs_next = (st->hs_next + 1) % HS_CACHE;
    head_stats(P, p, n, hs);
    return hs;
}

static void hs_reset(Store *st)
{
    for (int i = 0; i < HS_CACHE; i++) st->hs[i].p = NULL;
    st->hs_next = 0;
}

static RV random_verdict(Store *st, const Params *P, const uint8_t *p, Py_ssize_t n, int truncated, int prefix_exempt)
{
    const HeadStats *hs = stats_of(st, P, p, n);
    RV v = {0, n ? (double)hs->bits / (double)n : 0.0};
    if ((int64_t)n < P->min_random_len) return v;
    if (hs->known != KS_NONE) return v;
    double lo = P->popcount_low, hi = P->popcount_high;
    if (truncated && n > 0) {
        double mid = (lo + hi) / 2;
        double a = (hi - lo) / 2, b = P->popcount_sigmas * sqrt(2.0 / (double)n);
        double half = b > a ? b : a;
        lo = mid - half;
        hi = mid + half;
    }
    if (!(lo < v.popcount && v.popcount < hi)) return v;
    Py_ssize_t k = (Py_ssize_t)P->printable_prefix_len;
    if (prefix_exempt && n >= k && hs->prefix_printable == k) return v;
    double limit = P->printable_share * (double)n;
    if (truncated) {
        const double q = 95.0 / 256.0;
        double x = (double)n * q + P->popcount_sigmas * sqrt((double)n * q * (1 - q));
        if (x > limit) limit = x;
    }
    if ((double)hs->printable > limit) return v;
    if ((int64_t)hs->longest_run > P->printable_run) return v;
    v.random = 1;
    return v;
}

/* ------------------------------------------------------------------ detectors */

typedef struct {
    const Params *P;
    Store *st;
    PyObject *lsd_group; /* detect.lsd._to_lsd_group */
    int error;           /* a Python exception is set */
} Ctx;

/* tracker.tracker_answer */
static const char *ANSWER_KEYS[] = {"8:complete", "10:complete", "8:interval", "5:peers", "12:min interval",
                                    "14:failure reason", "15:warning message", "10:incomplete", "10:tracker id",
                                    "5:files", "10:downloaded", "6:peers6"};

static int tracker_answer(const Head *h)
{
    if (!STARTS(h, "HTTP/1.")) return 0;
    Py_ssize_t body = FIND(h->p, h->n, "\r\n\r\nd", 0);
    if (body < 0) return 0;
    Py_ssize_t a = body + 5, b = body + 25;
    if (a > h->n) a = h->n;
    if (b > h->n) b = h->n;
    for (size_t i = 0; i < sizeof(ANSWER_KEYS) / sizeof(*ANSWER_KEYS); i++)
        if (starts(h->p + a, b - a, ANSWER_KEYS[i], (Py_ssize_t)strlen(ANSWER_KEYS[i]))) return 1;
    return 0;
}

static Py_ssize_t first_line_len(const Head *h)
{
    Py_ssize_t e = FIND(h->p, h->n, "\r\n", 0);
    return e < 0 ? h->n : e;
}

static int is_tracker_request(const Head *h)
{
    Py_ssize_t ln = first_line_len(h);
    return starts(h->p, ln, "GET ", 4) && FIND(h->p, ln, "info_hash=", 0) >= 0;
}

static int det_non_p2p_start(Ctx *c, const Pre *pre)
{
    const Ev *ev = pre->ev;
    Store *st = c->st;
    if (!ev->tcp) return 0;
    int tracker = (pre->noh && is_tracker_request(&ev->oh[0])) || (pre->nrh && tracker_answer(&ev->rh[0]));
    int seen[N_FEATURES] = {0};
    for (int d = 0; d < 2; d++) {
        if (!(d ? pre->nrh : pre->noh)) continue;
        const Head *h = d ? &ev->rh[0] : &ev->oh[0];
        int kind = known_start(h->p, h->n);
        if (kind == KS_NONE) continue;
        int feature, protocol;
        if (kind == KS_TLS || kind == KS_TLS_RECORD) {
            feature = F_TLS_LIKE;
            protocol = P_TLS;
        } else if (kind == KS_SSH) {
            feature = F_SSH_LIKE;
            protocol = P_SSH;
        } else {
            if (tracker) continue;
            feature = F_HTTP_LIKE;
            protocol = P_HTTP;
        }
        if (seen[feature]) continue;
        seen[feature] = 1;
        int r0 = st->n;
        reason(st, "dir=%s", d ? "resp" : "orig");
        reason(st, "start=%s", KS_NAMES[kind]);
        reason_hex(st, "first_bytes=", h->p, h->n < 3 ? h->n : 3);
        new_obs(st, feature, FAM_NEGATIVE, 1.0, protocol, r0);
    }
    return 0;
}

/* ---- other.py */

static const int DNS_CLASSES[] = {1, 3, 4, 254, 255};

static int ldh(uint8_t b)
{
    return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || b == '-' || b == '_';
}

/* dns_message: 0 = None, 1 = query, 2 = response */
static int dns_message(const uint8_t *buf, Py_ssize_t n, int whole, int lenient)
{
    if (n < 12) return 0;
    unsigned flags = be16(buf + 2), qd = be16(buf + 4), an = be16(buf + 6), ns = be16(buf + 8), ar = be16(buf + 10);
    unsigned opcode = (flags >> 11) & 0xF;
    if (!(opcode == 0 || opcode == 1 || opcode == 2 || opcode == 4 || opcode == 5 || opcode == 6)) return 0;
    unsigned mx = an > ns ? an : ns;
    mx = mx > ar ? mx : ar;
    if ((flags & 0x0040) || qd != 1 || mx > 256) return 0;
    int kind = (flags & 0x8000) ? 2 : 1;
    Py_ssize_t off = 12;
    long labels = 0, name_len = 0;
    for (;;) {
        if (off >= n) return (!whole && labels) ? kind : 0;
        unsigned l = buf[off];
        if (l == 0) {
            off += 1;
            break;
        }
        if (l >= 0xC0) {
            off += 2;
            break;
        }
        if (l > 63) return 0;
        Py_ssize_t a = off + 1, b = off + 1 + l;
        if (b > n) b = n;
        for (Py_ssize_t i = a; i < b; i++) {
            uint8_t ch = buf[i];
            if (!lenient && !ldh(ch)) return 0;
            if (lenient && (ch < 0x20 || ch == 0x7F)) return 0;
        }
        labels++;
        name_len += l + 1;
        if (name_len > 255) return 0;
        off += 1 + l;
    }
    if (off + 4 > n) return (!whole && off <= n) ? kind : 0;
    unsigned qclass = be16(buf + off + 2) & 0x7FFF;
    for (size_t i = 0; i < sizeof(DNS_CLASSES) / sizeof(*DNS_CLASSES); i++)
        if ((int)qclass == DNS_CLASSES[i]) return kind;
    return 0;
}

/* quic_long_header: writes the version name; 0 = None */
static int quic_long_header(const uint8_t *buf, Py_ssize_t n, char *name)
{
    if (n < 7 || !(buf[0] & 0x80)) return 0;
    uint32_t v = be32(buf + 1);
    int known = v == 0x00000001 || v == 0x6B3343CF || v == 0 || v == 0x51303436 || v == 0x51303530 ||
                (v >= 0xFF000000u + 29 && v <= 0xFF000000u + 34);
    if (!known || (v != 0 && !(buf[0] & 0x40))) return 0;
    unsigned dcil = buf[5];
    if (dcil > 20 || (n > 6 + (Py_ssize_t)dcil && buf[6 + dcil] > 20)) return 0;
    if (v == 0)
        strcpy(name, "negotiation");
    else
        snprintf(name, 16, "0x%08x", v);
    return 1;
}

static int stun_message(const uint8_t *buf, Py_ssize_t n, int64_t size /* -1 = None */)
{
    if (n < 20 || (buf[0] & 0xC0) || memcmp(buf + 4, "\x21\x12\xa4\x42", 4) != 0) return 0;
    unsigned length = be16(buf + 2);
    return length % 4 == 0 && (size < 0 || (int64_t)length + 20 == size);
}

static int in_list(int64_t x, const int64_t *xs, int n)
{
    for (int i = 0; i < n; i++)
        if (xs[i] == x) return 1;
    return 0;
}

/* reasons deduplicated in order (dict.fromkeys) */
typedef struct {
    char s[64][40];
    int n;
} RList;

static void rl_add(RList *l, const char *s)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->s[i], s) == 0) return;
    if (l->n < 64) {
        strncpy(l->s[l->n], s, 39);
        l->s[l->n][39] = 0;
        l->n++;
    }
}

static int det_other_protocols(Ctx *c, const Pre *pre)
{
    const Ev *ev = pre->ev;
    const Params *P = c->P;
    Store *st = c->st;
    int on_dns_port = in_list(ev->resp_p, P->dns_ports, P->n_dns_ports) || in_list(ev->orig_p, P->dns_ports, P->n_dns_ports);
    RList dns = {.n = 0}, quic = {.n = 0}, stun = {.n = 0};
    char tmp[64];
    for (int d = 0; d < 2; d++) {
        const char *dir = d ? "resp" : "orig";
        Py_ssize_t nh = d ? pre->nrh : pre->noh;
        const Head *heads = d ? ev->rh : ev->oh;
        /* the sizes of that direction, in order */
        int64_t sizes[MAXP];
        Py_ssize_t ns = 0;
        for (Py_ssize_t i = 0; i < pre->n; i++) {
            int64_t s = ev->sizes[i];
            if ((s > 0) == (d == 0)) sizes[ns++] = s < 0 ? -s : s;
        }
        for (Py_ssize_t i = 0; i < nh; i++) {
            const Head *h = &heads[i];
            int64_t size = i < ns ? sizes[i] : -1;
            int whole = size < 0 || (int64_t)h->n >= size;
            if (!ev->tcp) {
                int kind = dns_message(h->p, h->n, whole, on_dns_port);
                if (kind) {
                    snprintf(tmp, sizeof tmp, "dns_%s=%s", dir, kind == 2 ? "response" : "query");
                    rl_add(&dns, tmp);
                }
                char ver[16];
                if (quic_long_header(h->p, h->n, ver)) {
                    snprintf(tmp, sizeof tmp, "quic_%s=%s", dir, ver);
                    rl_add(&quic, tmp);
                }
                if (stun_message(h->p, h->n, whole ? size : -1)) {
                    snprintf(tmp, sizeof tmp, "stun_%s=1", dir);
                    rl_add(&stun, tmp);
                }
            } else if (h->n >= 14) {
                int64_t length = be16(h->p);
                if (size >= 0 && length + 2 < size) continue;
                int kind = dns_message(h->p + 2, h->n - 2, whole && size >= 0 && length + 2 == size, on_dns_port);
                if (kind) {
                    snprintf(tmp, sizeof tmp, "dns_%s=%s", dir, kind == 2 ? "response" : "query");
                    rl_add(&dns, tmp);
                }
            }
        }
    }
    RList *lists[3] = {&dns, &quic, &stun};
    int feats[3] = {F_DNS_LIKE, F_QUIC_LIKE, F_STUN_LIKE}, protos[3] = {P_DNS, P_QUIC, P_STUN};
    for (int k = 0; k < 3; k++) {
        if (!lists[k]->n) continue;
        int r0 = st->n;
        for (int i = 0; i < lists[k]->n; i++) reason(st, "%s", lists[k]->s[i]);
        new_obs(st, feats[k], FAM_NEGATIVE, 1.0, protos[k], r0);
    }
    return 0;
}

/* ---- bt_plain.py */

static const char *MSG_NAMES[21] = {"choke", "unchoke", "interested", "not_interested", "have", "bitfield", "request",
                                    "piece", "cancel", "port", NULL, NULL, NULL, "suggest", "have_all", "have_none",
                                    "reject", "allowed_fast", NULL, NULL, "extended"};
static const int FIXED_LEN[21] = {1, 1, 1, 1, 5, -1, 13, -1, 13, 3, 0, 0, 0, 5, 1, 1, 13, 5, 0, 0, -1};
static const int MIN_LEN[21] = {0, 0, 0, 0, 0, 2, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};

/* walk_peerwire: names joined by '+' into out (with the count), returns ok */
static int walk_peerwire(const Params *P, const uint8_t *buf, Py_ssize_t n, Py_ssize_t off, char *out, size_t outsz,
                         int *count, int *real, int *ovf)
{
    size_t ol = 0;
    *count = *real = 0;
    out[0] = 0;
#define ADDNAME(nm)                                                              \
    do {                                                                         \
        ol += snprintf(out + ol, outsz - ol, "%s%s", *count ? "+" : "", nm);    \
        if (ol >= outsz) {                                                       \
            ol = outsz - 1;                                                      \
            *ovf = 1;                                                            \
        }                                                                        \
        (*count)++;                                                              \
    } while (0)
    while (off + 4 <= n && (int64_t)*count < P->peerwire_max_msgs) {
        uint32_t length = be32(buf + off);
        if (length == 0) {
            ADDNAME("keepalive");
            off += 4;
            continue;
        }
        if (off + 4 >= n) break;
        unsigned mid = buf[off + 4];
        if (mid > 20 || MSG_NAMES[mid] == NULL || (int64_t)length > P->peerwire_max_len) return 0;
        int fixed = FIXED_LEN[mid];
        if (fixed > 0 && length != (uint32_t)fixed) return 0;
        if (fixed < 0 && length < (uint32_t)MIN_LEN[mid]) return 0;
        const char *name = MSG_NAMES[mid];
        if (mid == 20 && off + 6 < n && buf[off + 5] == 0) {
            /* body = buf[off+6:off+8] */
            Py_ssize_t blen = n - (off + 6) >= 2 ? 2 : n - (off + 6);
            const uint8_t *body = buf + off + 6;
            if (blen < 1 || body[0] != 'd' || (blen > 1 && !(body[1] >= '0' && body[1] <= '9'))) return 0;
            name = "ext_handshake";
        }
        ADDNAME(name);
        (*real)++;
        off += 4 + (Py_ssize_t)length;
    }
#undef ADDNAME
    return 1;
}

static int safe_char(uint8_t b)
{
    return (b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z') || (b >= '0' && b <= '9') || b == '-' || b == '.' ||
           b == '_' || b == '~';
}

/* _handshake_reasons into the store; ih = index of the info_hash reason (-1) */
static void handshake_reasons(Ctx *c, const Head *h, int *ih)
{
    Store *st = c->st;
    *ih = -1;
    if (h->n >= 28) {
        const uint8_t *r = h->p + 20;
        reason(st, "ext_bep10=%d", (r[5] & 0x10) ? 1 : 0);
        reason(st, "dht=%d", (r[7] & 0x01) ? 1 : 0);
        reason(st, "fast=%d", (r[7] & 0x04) ? 1 : 0);
    }
    if (h->n >= 48 && c->P->report_info_hash) {
        *ih = st->n;
        reason_hex(st, "info_hash=", h->p + 28, 20);
    }
    if (h->n >= 68) {
        const uint8_t *pre = h->p + 48;
        int ok = 1;
        for (int i = 0; i < 8; i++) ok &= safe_char(pre[i]);
        if (ok)
            reason_raw(st, "client=", 7, (const char *)pre, 8);
        else
            reason_hex(st, "peer_id_prefix=", pre, 8);
    }
}

static int det_bt_plain(Ctx *c, const Pre *pre)
{
    const Ev *ev = pre->ev;
    const Params *P = c->P;
    Store *st = c->st;
    if (!ev->tcp) return 0;
    /* reasons are collected in scratch order: handshake reasons, then wire reasons; both
       lists are built into the store separately, so build the wire list in a local buffer */
    int hs_dirs[2], nhs = 0;
    char wire[2][1100];
    int nwire = 0;
    int ovf = 0;
    double wire_value = 0.0;
    int hs_r0 = st->n;
    int orig_ih = -1; /* index of orig's info_hash reason */
    for (int d = 0; d < 2; d++) {
        if (!(d ? pre->nrh : pre->noh)) continue;
        const Head *h = d ? &ev->rh[0] : &ev->oh[0];
        const char *dir = d ? "resp" : "orig";
        if (STARTS(h, "\x13" "BitTorrent protocol")) {
            hs_dirs[nhs++] = d;
            if (d == 0) {
                handshake_reasons(c, h, &orig_ih);
            } else {
                /* resp: every reason but info_hash prefixed "resp_", then the match */
                int r0 = st->n, ih;
                handshake_reasons(c, h, &ih);
                int r1 = st->n;
                /* rewrite [r0, r1) in place: copy the texts out first */
                char tmp[8][80];
                int lens[8], cnt = 0, mine = -1;
                for (int i = r0; i < r1 && cnt < 8; i++, cnt++) {
                    lens[cnt] = st->rlen[i] < 79 ? st->rlen[i] : 79;
                    memcpy(tmp[cnt], st->buf + st->off[i], lens[cnt]);
                    tmp[cnt][lens[cnt]] = 0;
                    if (i == ih) mine = cnt;
                }
                st->n = r0;
                st->len = r0 < r1 ? st->off[r0] : st->len;
                for (int i = 0; i < cnt; i++)
                    if (i != mine) reason_raw(st, "resp_", 5, tmp[i], lens[i]);
                /* theirs: orig's info_hash reason, if orig had a handshake */
                if (mine >= 0 && orig_ih >= 0) {
                    int eq = st->rlen[orig_ih] == lens[mine] &&
                             memcmp(st->buf + st->off[orig_ih], tmp[mine], lens[mine]) == 0;
                    reason(st, "info_hash_match=%d", eq);
                } else if (mine >= 0) {
                    reason_raw(st, tmp[mine], lens[mine], "", 0);
                }
            }
            if (h->n > 68) {
                char names[1024];
                int cnt, real;
                int ok = walk_peerwire(P, h->p, h->n, 68, names, sizeof names, &cnt, &real, &ovf);
                if (cnt && ok) {
                    wire_value = 1.0;
                    if (nwire < 2) snprintf(wire[nwire++], sizeof wire[0], "%s_msgs=%s", dir, names);
                }
            }
        } else if (!ev->handshake) {
            char names[1024];
            int cnt, real;
            int ok = walk_peerwire(P, h->p, h->n, 0, names, sizeof names, &cnt, &real, &ovf);
            if (ok && (int64_t)real >= P->peerwire_min_alone) {
                if (P->peerwire_alone_value > wire_value) wire_value = P->peerwire_alone_value;
                if (nwire < 2) snprintf(wire[nwire++], sizeof wire[0], "%s_msgs=%s", dir, names);
            }
        }
    }
    if (ovf) {
        st->overflow = 1;
        return -1;
    }
    int hs_r1 = st->n;
    if (nhs) {
        /* Observation("bt_handshake", reasons=(dir=..., *hs_reasons)): dir first */
        int r0 = st->n;
        reason(st, "dir=%s", nhs == 2 ? "both" : (hs_dirs[0] ? "resp" : "orig"));
        for (int i = hs_r0; i < hs_r1; i++) reason_raw(st, st->buf + st->off[i], st->rlen[i], "", 0);
        new_obs(st, F_BT_HANDSHAKE, FAM_PLAINTEXT, 1.0, P_BT_PLAIN, r0);
    }
    if (wire_value > 0) {
        int r0 = st->n;
        for (int i = 0; i < nwire; i++) reason(st, "%s", wire[i]);
        if (!nhs) reason(st, "start_seen=0");
        new_obs(st, F_BT_PEERWIRE, FAM_PLAINTEXT, wire_value, P_BT_PLAIN, r0);
    }
    return 0;
}

/* ---- tracker.py */

static int det_udp_tracker(Ctx *c, const Pre *pre)
{
    const Ev *ev = pre->ev;
    const Params *P = c->P;
    Store *st = c->st;
    static const uint8_t CONNECT[12] = {0x00, 0x00, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0};
    const Head *connect = NULL;
    for (Py_ssize_t i = 0; i < pre->noh; i++) {
        const Head *h = &ev->oh[i];
        if (h->n == 16 && memcmp(h->p, CONNECT, 12) == 0) {
            connect = h;
            break;
        }
    }
    if (connect == NULL) return 0;
    const uint8_t *tid = connect->p + 12;
    int r0 = st->n;
    reason(st, "connect=1");
    double value = P->udp_tracker_value;
    const uint8_t *conn_id = NULL;
    for (Py_ssize_t i = 0; i < pre->nrh; i++) {
        const Head *h = &ev->rh[i];
        long long action = h->n >= 8 ? (long long)be32(h->p) : -1;
        if (h->n == 16 && action == 0 && memcmp(h->p + 4, tid, 4) == 0) {
            reason(st, "connect_reply=1");
            conn_id = h->p + 8;
            value = P->udp_tracker_reply_value;
            break;
        }
    }
    for (Py_ssize_t i = 0; i < pre->noh; i++) {
        const Head *h = &ev->oh[i];
        if (h->n < 16 || h->obj == connect->obj) continue;
        uint32_t action = be32(h->p + 8);
        if (conn_id != NULL && memcmp(h->p, conn_id, 8) != 0) continue;
        if (action == 1 && h->n >= 98)
            reason(st, "announce=1");
        else if (action == 2 && (h->n - 16) % 20 == 0 && h->n > 16)
            reason(st, "scrape_hashes=%zd", (h->n - 16) / 20);
    }
    new_obs(st, F_UDP_TRACKER, FAM_PLAINTEXT, value, P_TRACKER, r0);
    return 0;
}

static int isalnum_ascii(uint8_t b) { return (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z'); }

static int det_http_tracker(Ctx *c, const Pre *pre)
{
    const Ev *ev = pre->ev;
    Store *st = c->st;
    double value = c->P->http_tracker_value;
    if (!pre->noh || !STARTS(&ev->oh[0], "GET ")) {
        if (pre->nrh && tracker_answer(&ev->rh[0])) {
            int r0 = st->n;
            reason(st, "answer=1");
            new_obs(st, F_HTTP_TRACKER, FAM_PLAINTEXT, value, P_TRACKER, r0);
        }
        return 0;
    }
    const Head *h = &ev->oh[0];
    const uint8_t *line = h->p;
    Py_ssize_t ln = first_line_len(h);
    Py_ssize_t q = FIND(line, ln, "?", 0);
    if (q < 0 || FIND(line + q, ln - q, "info_hash=", 0) < 0) return 0;
    const uint8_t *path = line + 4;
    Py_ssize_t pl = q - 4;
    if (pl < 0) pl = 0; /* line[4:q] with q < 4 is empty */
    const char *kind;
    int ends_ann = pl >= 8 && memcmp(path + pl - 8, "announce", 8) == 0;
    int ends_scr = pl >= 6 && memcmp(path + pl - 6, "scrape", 6) == 0;
    if (ends_ann || FIND(path, pl, "/announce", 0) >= 0)
        kind = "announce";
    else if (ends_scr || FIND(path, pl, "/scrape", 0) >= 0)
        kind = "scrape";
    else
        return 0;
    int r0 = st->n;
    reason(st, "request=%s", kind);
    const uint8_t *query = line + q + 1;
    Py_ssize_t qn = ln - q - 1;
    static const char *keys[] = {"peer_id=", "compact=", "event=", "supportcrypto=", "requirecrypto="};
    for (int i = 0; i < 5; i++) {
        Py_ssize_t kl = (Py_ssize_t)strlen(keys[i]);
        if (find(query, qn, keys[i], kl, 0) >= 0) reason(st, "%.*s=1", (int)(kl - 1), keys[i]);
    }
    Py_ssize_t pid = FIND(query, qn, "peer_id=", 0);
    if (pid >= 0) {
        Py_ssize_t a = pid + 8, b = pid + 16;
        if (b > qn) b = qn;
        Py_ssize_t plen = b > a ? b - a : 0;
        const uint8_t *pf = query + a;
        if (plen == 8 && pf[0] == '-' && pf[7] == '-') {
            int ok = 1;
            for (int i = 1; i < 7; i++) ok &= isalnum_ascii(pf[i]);
            if (ok) reason_raw(st, "client=", 7, (const char *)pf, 8);
        }
    }
    new_obs(st, F_HTTP_TRACKER, FAM_PLAINTEXT, value, P_TRACKER, r0);
    return 0;
}

/* ---- randomness.py: fully_encrypted_first_packet */

static int det_fully_encrypted(Ctx *c, const Pre *pre)
{
    const Ev *ev = pre->ev;
    const Params *P = c->P;
    Store *st = c->st;
    if (!ev->tcp || !pre->noh) return 0;
    const Head *h = &ev->oh[0];
    Py_ssize_t cut_o, cut_r;
    head_captured(pre, P->head_bytes, &cut_o, &cut_r);
    RV v = random_verdict(c->st, P, h->p, h->n, cut_o >= 0, 1);
    if (!v.random) return 0;
    double value = (int64_t)h->n >= P->random_full_len ? 1.0 : 0.5;
    int r0 = st->n;
    reason_f2(st, "popcount", v.popcount);
    reason(st, "head_len=%zd", h->n);
    if (cut_o >= 0) reason(st, "head_captured=%zd", cut_o);
    if (pre->nrh) {
        RV rv = random_verdict(c->st, P, ev->rh[0].p, ev->rh[0].n, cut_r >= 0, 1);
        reason(st, "resp_random=%d", rv.random);
    }
    if (one_sided(pre) != SIDE_NONE) reason(st, "one_sided=1");
    if (!ev->handshake) {
        value *= P->midstream_factor;
        reason(st, "start_seen=0");
    }
    new_obs(st, F_FULLY_ENCRYPTED, FAM_RANDOM, value, P_NONE, r0);
    return 0;
}

/* ---- mse.py */

static const char *step3_layout(const Params *P, int64_t size)
{
    if (size == P->step3_exact) return "transmission_like";
    if (P->step3_exact < size && size <= P->step3_ia_max) return "libtorrent_like";
    if (size < P->step3_exact) return "no_ia_like";
    return "coalesced";
}

static inline int64_t iabs(int64_t x) { return x < 0 ? -x : x; }

/* bt_segment: the index or -1 */
static Py_ssize_t bt_segment(const Params *P, const int64_t *sizes, Py_ssize_t n, int64_t runs)
{
    int64_t full[2]; /* [0] = resp (x > 0 false), [1] = orig */
    for (int orig = 1; orig >= 0; orig--) {
        int64_t top = 0;
        Py_ssize_t cnt = 0;
        int any = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            if ((sizes[i] > 0) != orig) continue;
            int64_t a = iabs(sizes[i]);
            if (!any || a > top) top = a;
            any = 1;
        }
        if (any)
            for (Py_ssize_t i = 0; i < n; i++)
                if ((sizes[i] > 0) == orig && iabs(sizes[i]) == top) cnt++;
        full[orig] = (top >= 536 && cnt >= 2) ? top : -1;
    }
    int64_t run = 0;
    Py_ssize_t w = (Py_ssize_t)(P->bt_len_window < n ? P->bt_len_window : n);
    for (Py_ssize_t i = 0; i < w; i++) {
        int64_t x = sizes[i];
        if (i == 0 || (x > 0) != (sizes[i - 1] > 0)) {
            run++;
            if (run > runs) return -1;
        }
        if (i < 2 || iabs(x) != P->bt_len) continue;
        int64_t prev = sizes[i - 1];
        if ((prev > 0) == (x > 0) && iabs(prev) == full[x > 0]) continue;
        return i;
    }
    return -1;
}

static int ssh_lattice(const Params *P, const int64_t *sizes, Py_ssize_t n)
{
    Py_ssize_t free_n = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t a = iabs(sizes[i]);
        if (a == P->bt_len || a == P->step3_exact) continue;
        free_n++;
        if (sizes[i] % 4 != 0) return 0;
    }
    return free_n >= 3;
}

static Py_ssize_t until_burst(const int64_t *sizes, Py_ssize_t n, int k)
{
    int runs = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i == 0 || (sizes[i] > 0) != (sizes[i - 1] > 0)) {
            runs++;
            if (runs > k) return i;
        }
    }
    return n;
}

static int starts_ff(const Head *h, int64_t k)
{
    if (k <= 0) return 1;
    if ((int64_t)h->n < k) return 0;
    for (int64_t i = 0; i < k; i++)
        if (h->p[i] != 0xff) return 0;
    return 1;
}

static int mse_one_sided(Ctx *c, const Pre *pre, const Head *orig, Py_ssize_t cut)
{
    const Ev *ev = pre->ev;
    const Params *P = c->P;
    Store *st = c->st;
    const int64_t *sz = ev->sizes;
    Py_ssize_t n = pre->n;
    if (n < 2) return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (sz[i] <= 0) return 0;
    int64_t s1 = sz[0], s3 = sz[1];
    if (!(P->step12_min <= s1 && s1 <= P->step12_max && s3 >= P->step3_min)) return 0;
    if (STARTS(orig, "\x13" "BitTorrent protocol") || starts_ff(orig, P->ff_prefix)) return 0;
    RV v = random_verdict(c->st, P, orig->p, orig->n, cut >= 0, 0);
    if (!v.random) return 0;
    int r0 = st->n;
    reason(st, "one_sided=1");
    reason(st, "step1=%lld", (long long)s1);
    reason(st, "step3=%lld", (long long)s3);
    reason_f2(st, "popcount_orig", v.popcount);
    if (cut >= 0) reason(st, "head_captured=%zd", cut);
    Py_ssize_t wn = P->bt_len_window < n ? (Py_ssize_t)P->bt_len_window : n;
    Py_ssize_t i = bt_segment(P, sz, n, 1);
    char bt_len[40];
    int have = 1;
    if (s3 == P->step3_exact)
        strcpy(bt_len, "step3=124");
    else if (i >= 0)
        snprintf(bt_len, sizeof bt_len, "bt_len=68@%zd", i + 1);
    else
        have = 0;
    if (!have || ssh_lattice(P, sz, wn)) {
        reason(st, "%s", !have ? "bt_len=absent" : "ssh_lattice=1");
        new_obs(st, F_MSE_PARTIAL, FAM_SHAPE, P->partial_value, P_BT_MSE, r0);
        return 0;
    }
    reason(st, "%s", bt_len);
    new_obs(st, F_MSE_HANDSHAKE, FAM_SHAPE, P->one_sided_value, P_BT_MSE, r0);
    return 0;
}

static int mse_step_lost(Ctx *c, const Pre *pre, const int64_t *sizes, Py_ssize_t n, Py_ssize_t cut_o,
                         Py_ssize_t cut_r)
{
    const Ev *ev = pre->ev;
    const Params *P = c->P;
    Store *st = c->st;
    if (!ev->handshake || n < 3 || !pre->noh) return 0;
    int64_t lo = P->step12_min, hi = P->step12_max;
    const Head *orig = &ev->oh[0];
    const Head *resp = pre->nrh ? &ev->rh[0] : NULL;
    int have_s3 = 0, have_s4 = 0;
    int64_t s3 = 0, s4 = 0, y;
    const char *lost;
    if (sizes[0] > 0 && sizes[1] > 0) {
        lost = "step2"; y = sizes[0]; s3 = sizes[1]; have_s3 = 1;
    } else if (sizes[0] < 0 && sizes[1] > 0) {
        lost = "step1"; y = -sizes[0]; s3 = sizes[1]; have_s3 = 1;
    } else if (sizes[0] > 0 && sizes[1] < 0 && sizes[2] < 0) {
        lost = "step3"; y = sizes[0]; s4 = -sizes[2]; have_s4 = 1;
        if (!(lo <= -sizes[1] && -sizes[1] <= hi)) return 0;
    } else
        return 0;
    if (!(lo <= y && y <= hi) || (have_s3 && s3 < P->step3_min)) return 0;
    if (STARTS(orig, "\x13" "BitTorrent protocol") || starts_ff(orig, P->ff_prefix)) return 0;
    if (resp != NULL && starts_ff(resp, P->ff_prefix)) return 0;
    RV ov = random_verdict(c->st, P, orig->p, orig->n, cut_o >= 0, 0);
    RV rv = {0, 0.0};
    if (resp != NULL) rv = random_verdict(c->st, P, resp->p, resp->n, cut_r >= 0, 0);
    if (!ov.random || (resp != NULL && !rv.random && (int64_t)resp->n >= P->min_random_len)) return 0;
    if (lost[4] == '1' && (resp == NULL || !rv.random)) return 0;
    if (!have_s4) {
        for (Py_ssize_t i = 2; i < n; i++)
            if (sizes[i] < 0) {
                s4 = -sizes[i];
                have_s4 = 1;
                break;
            }
    }
    if (have_s4 && s4 < P->step4_min) return 0;
    const char *bt_len;
    if (have_s3 && s3 == P->step3_exact)
        bt_len = "step3=124";
    else if (have_s4 && s4 == P->step4_min + P->bt_len)
        bt_len = "step4=82";
    else if (bt_segment(P, sizes, n, P->bt_len_runs - 1) >= 0)
        bt_len = "bt_len=68";
    else
        return 0;
    int r0 = st->n;
    reason(st, "lost=%s", lost);
    reason(st, "key=%lld", (long long)y);
    reason_f2(st, "popcount_orig", ov.popcount);
    reason(st, "%s", bt_len);
    new_obs(st, F_MSE_HANDSHAKE, FAM_SHAPE, P->step_lost_value, P_BT_MSE, r0);
    return 0;
}

/* _mse_handshake: 1 when it produced an observation (appended to the store) */
static int mse_main(Ctx *c, const Pre *pre, int64_t *sizes_buf)
{
    const Ev *ev = pre->ev;
    const Params *P = c->P;
    Store *st = c->st;
    if (!ev->tcp || !pre->nb || pre->bursts[0] <= 0) return 0;
    Py_ssize_t cut_o, cut_r;
    head_captured(pre, P->head_bytes, &cut_o, &cut_r);
    if (one_sided(pre) == SIDE_ORIG) {
        if (!pre->noh) return 0;
        int before = st->nobs;
        mse_one_sided(c, pre, &ev->oh[0], cut_o);
        return st->nobs > before;
    }
    int same;
    Py_ssize_t n = sizes_wo_retrans(pre, sizes_buf, &same);
    const int64_t *bursts;
    Py_ssize_t nb;
    int64_t bb[MAXP];
    if (same) {
        bursts = pre->bursts;
        nb = pre->nb;
    } else {
        nb = bursts_of(sizes_buf, n, bb, MAXP);
        bursts = bb;
    }
    if (nb < 2) return 0;
    int64_t lo = P->step12_min, hi = P->step12_max;
    int64_t b1 = bursts[0], b2 = -bursts[1];
    if (!(lo <= b1 && b1 <= hi && lo <= b2 && b2 <= hi)) return 0;
    if (!pre->noh || !pre->nrh) return 0;
    const Head *orig = &ev->oh[0], *resp = &ev->rh[0];
    if (STARTS(orig, "\x13" "BitTorrent protocol")) return 0;
    if (starts_ff(orig, P->ff_prefix) || starts_ff(resp, P->ff_prefix)) return 0;
    RV ov = random_verdict(c->st, P, orig->p, orig->n, cut_o >= 0, 0);
    RV rv = random_verdict(c->st, P, resp->p, resp->n, cut_r >= 0, 0);
    if (!(ov.random && rv.random)) return 0;
    int r0 = st->n;
    reason(st, "burst1=%lld", (long long)b1);
    reason(st, "burst2=%lld", (long long)b2);
    reason_f2(st, "popcount_orig", ov.popcount);
    reason_f2(st, "popcount_resp", rv.popcount);
    if (cut_o >= 0) reason(st, "head_captured=%zd", cut_o);
    if (cut_r >= 0) reason(st, "head_captured_resp=%zd", cut_r);
    int feature = F_MSE_PARTIAL;
    double value = P->partial_value;
    if (!same) reason(st, "retransmissions=%zd", pre->n - n);
    if (nb >= 3) {
        int64_t b3 = bursts[2];
        int b3_final = nb >= 4 || pre->complete;
        if (b3 < P->step3_min) {
            if (b3_final) {
                st->n = r0; /* the reasons were never returned */
                st->len = st->off[r0];
                return 0;
            }
            reason(st, "burst3_open=%lld", (long long)b3);
        } else {
            const char *layout = step3_layout(P, b3);
            reason(st, "burst3=%lld", (long long)b3);
            reason(st, "step3=%s", layout);
            value = P->partial3_value;
            int have_b4 = nb >= 4;
            int64_t b4 = have_b4 ? -bursts[3] : 0;
            int b4_final = nb >= 5 || pre->complete;
            if (have_b4 && b4 < P->step4_min && b4_final) {
                st->n = r0;
                st->len = st->off[r0];
                return 0;
            }
            if (have_b4 && b4 >= P->step4_min)
                reason(st, "burst4=%lld", (long long)b4);
            else if (have_b4)
                reason(st, "burst4_open=%lld", (long long)b4);
            /* bt_length_through_rc4(sizes, bursts) */
            char bt_len[40];
            int have = 1;
            if (nb >= 3 && bursts[2] == P->step3_exact)
                strcpy(bt_len, "step3=124");
            else if (nb >= 4 && -bursts[3] == P->step4_min + P->bt_len)
                strcpy(bt_len, "step4=82");
            else {
                Py_ssize_t i = bt_segment(P, sizes_buf, n, P->bt_len_runs);
                if (i < 0)
                    have = 0;
                else
                    snprintf(bt_len, sizeof bt_len, "bt_len=68@%zd", i + 1);
            }
            if (!have)
                reason(st, "bt_len=absent");
            else if (!have_b4 || b4 >= P->step4_min) {
                feature = F_MSE_HANDSHAKE;
                int known = strcmp(layout, "transmission_like") == 0 || strcmp(layout, "libtorrent_like") == 0;
                value = (known && have_b4) ? P->full_fp_value : P->full_value;
                reason(st, "%s", bt_len);
            }
        }
    }
    if (!ev->handshake) {
        Py_ssize_t wn = until_burst(sizes_buf, n, 4);
        int fpp = pre->n > 0 && ev->times[0] == 0.0;
        if (feature == F_MSE_HANDSHAKE && fpp && !ssh_lattice(P, sizes_buf, wn)) {
            reason(st, "start_seen=0");
            reason(st, "first_packet_payload=1");
        } else {
            value *= P->midstream_factor;
            reason(st, "start_seen=0");
        }
    }
    new_obs(st, feature, FAM_SHAPE, value, P_BT_MSE, r0);
    return 1;
}

static int det_mse(Ctx *c, const Pre *pre)
{
    const Ev *ev = pre->ev;
    Store *st = c->st;
    int64_t sizes[MAXP];
    int before = st->nobs;
    int got = mse_main(c, pre, sizes);
    if (got && st->obs[st->nobs - 1].feature == F_MSE_HANDSHAKE) return 0;
    if (!ev->tcp || one_sided(pre) != SIDE_NONE) return 0;
    int same;
    Py_ssize_t n = sizes_wo_retrans(pre, sizes, &same);
    Py_ssize_t cut_o, cut_r;
    head_captured(pre, c->P->head_bytes, &cut_o, &cut_r);
    int mid = st->nobs;
    mse_step_lost(c, pre, sizes, n, cut_o, cut_r);
    if (st->nobs > mid && got) {
        /* lost or out: the step-lost observation replaces the partial one */
        st->obs[before] = st->obs[mid];
        st->nobs = before + 1;
    }
    return 0;
}

/* ---- lsd.py */

static int det_lsd(Ctx *c, const Pre *pre)
{
    const Ev *ev = pre->ev;
    const Params *P = c->P;
    Store *st = c->st;
    if (ev->tcp || !pre->noh) return 0;
    const Head *h = &ev->oh[0];
    if (!STARTS(h, "BT-SEARCH * HTTP/1.1\r\n")) return 0;
    PyObject *r = PyObject_CallFunction(c->lsd_group, "OL", ev->resp_h, (long long)ev->resp_p);
    if (r == NULL) {
        c->error = 1;
        return -1;
    }
    int multicast = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (multicast < 0) {
        c->error = 1;
        return -1;
    }
    uint8_t lower[MAXP > 4096 ? MAXP : 4096];
    Py_ssize_t n = h->n < (Py_ssize_t)sizeof lower ? h->n : (Py_ssize_t)sizeof lower;
    if (n != h->n) {
        st->overflow = 1;
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) lower[i] = (h->p[i] >= 'A' && h->p[i] <= 'Z') ? h->p[i] + 32 : h->p[i];
    int r0 = st->n;
    reason(st, "dst=%s", multicast ? "lsd_group" : "other");
    if (FIND(lower, n, "\r\ninfohash:", 0) < 0 || FIND(lower, n, "\r\nport:", 0) < 0) {
        Py_ssize_t cut_o, cut_r;
        head_captured(pre, P->head_bytes, &cut_o, &cut_r);
        if (cut_o < 0 || !multicast) {
            st->n = r0;
            st->len = st->off[r0];
            return 0;
        }
        reason(st, "head_captured=%zd", cut_o);
    }
    Py_ssize_t start = FIND(lower, n, "\r\ninfohash:", 0) + 11;
    Py_ssize_t a = start < n ? start : n, b = start + 42 < n ? start + 42 : n;
    /* .strip() then [:40] */
    while (a < b && (h->p[a] == ' ' || (h->p[a] >= '\t' && h->p[a] <= '\r'))) a++;
    while (b > a && (h->p[b - 1] == ' ' || (h->p[b - 1] >= '\t' && h->p[b - 1] <= '\r'))) b--;
    if (b - a > 40) b = a + 40;
    if (b - a == 40) {
        int ok = 1;
        char hx[41];
        for (Py_ssize_t i = 0; i < 40; i++) {
            uint8_t ch = h->p[a + i];
            int is_hex = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
            ok &= is_hex;
            hx[i] = (ch >= 'A' && ch <= 'F') ? ch + 32 : ch;
        }
        hx[40] = 0;
        if (ok) reason(st, "infohash=%s", hx);
    }
    new_obs(st, F_LSD, FAM_PLAINTEXT, multicast ? P->lsd_value : P->lsd_unicast_value, P_LSD, r0);
    return 0;
}

/* ---- dht.py */

static int contains(const Head *h, const char *s) { return find(h->p, h->n, s, (Py_ssize_t)strlen(s), 0) >= 0; }

/* krpc_kind: 0 = None, else 'q', 'r', 'e', '?' */
static int krpc_kind(const Head *h)
{
    if (!STARTS(h, "d1:") && !STARTS(h, "d2:ip")) return 0;
    int strong = STARTS(h, "d1:ad2:id20:") || STARTS(h, "d1:rd2:id20:");
    if (!strong) {
        static const char *weak[] = {"d2:ip", "d1:el", "d1:t", "d1:v", "d1:y", "d1:q", "d1:a", "d1:r"};
        int w = 0;
        for (int i = 0; i < 8 && !w; i++) w = starts(h->p, h->n, weak[i], (Py_ssize_t)strlen(weak[i]));
        if (!w) return 0;
        static const char *markers[] = {"1:y1:q", "1:y1:r", "1:y1:e", "2:id20:", "1:rd2:id20:", "1:ad2:id20:"};
        int m = 0;
        for (int i = 0; i < 6 && !m; i++) m = contains(h, markers[i]);
        if (!m) return 0;
    }
    if (contains(h, "1:y1:q")) return 'q';
    if (contains(h, "1:y1:r")) return 'r';
    if (contains(h, "1:y1:e")) return 'e';
    if (STARTS(h, "d1:ad2:id20:")) return 'q';
    if (STARTS(h, "d1:el")) return 'e';
    if (contains(h, "1:rd2:id20:")) return 'r';
    return '?';
}

static const char *METHOD_TOKENS[] = {"4:ping", "9:find_node", "9:get_peers", "13:announce_peer",
                                      "17:sample_infohashes", "3:get", "3:put"};
static const char *METHOD_NAMES[] = {"ping", "find_node", "get_peers", "announce_peer", "sample_infohashes", "get",
                                     "put"};

static int dht_method(const Head *h)
{
    Py_ssize_t pos = FIND(h->p, h->n, "1:q", 0);
    while (pos != -1) {
        Py_ssize_t a = pos + 3, b = pos + 3 + 22;
        if (a > h->n) a = h->n;
        if (b > h->n) b = h->n;
        for (int i = 0; i < 7; i++)
            if (starts(h->p + a, b - a, METHOD_TOKENS[i], (Py_ssize_t)strlen(METHOD_TOKENS[i]))) return i;
        pos = FIND(h->p, h->n, "1:q", pos + 3);
    }
    return -1;
}

static int det_dht(Ctx *c, const Pre *pre)
{
    const Ev *ev = pre->ev;
    const Params *P = c->P;
    Store *st = c->st;
    if (ev->tcp) return 0;
    int dirs[2], ndirs = 0, kinds[4] = {0}, methods[8], nm = 0, bep42 = 0;
    for (int d = 0; d < 2; d++) {
        int hit = 0;
        Py_ssize_t nh = d ? pre->nrh : pre->noh;
        for (Py_ssize_t i = 0; i < nh; i++) {
            const Head *h = d ? &ev->rh[i] : &ev->oh[i];
            int kind = krpc_kind(h);
            if (!kind) continue;
            hit = 1;
            kinds[kind == '?' ? 0 : kind == 'e' ? 1 : kind == 'q' ? 2 : 3] = 1;
            bep42 = bep42 || STARTS(h, "d2:ip");
            int m = dht_method(h);
            if (m >= 0) {
                int dup = 0;
                for (int j = 0; j < nm; j++) dup |= methods[j] == m;
                if (!dup && nm < 8) methods[nm++] = m;
            }
        }
        if (hit) dirs[ndirs++] = d;
    }
    if (!ndirs) return 0;
    int both = ndirs == 2;
    int r0 = st->n;
    reason(st, "dir=%s", both ? "both" : (dirs[0] ? "resp" : "orig"));
    char y[16];
    int yl = 0;
    const char ks[4] = {'?', 'e', 'q', 'r'};
    for (int i = 0; i < 4; i++)
        if (kinds[i]) {
            if (yl) y[yl++] = '+';
            y[yl++] = ks[i];
        }
    y[yl] = 0;
    reason(st, "y=%s", y);
    for (int i = 0; i < nm; i++) reason(st, "q=%s", METHOD_NAMES[methods[i]]);
    if (bep42) reason(st, "bep42_ip=1");
    new_obs(st, F_DHT_KRPC, FAM_PLAINTEXT, both ? P->dht_both_ways_value : P->dht_one_way_value, P_DHT, r0);
    return 0;
}

/* ---- utp.py */

typedef struct {
    int type;
    unsigned cid;
    uint32_t ts, tsd, wnd;
    unsigned seq, ack;
    Py_ssize_t payload_off;
} Utp;

static const char *UTP_TYPES[] = {"data", "fin", "state", "reset", "syn"};

static int parse_utp(const Params *P, const Head *h, Utp *u)
{
    if (h->n < 20) return 0;
    const uint8_t *p = h->p;
    unsigned tv = p[0], ext = p[1];
    u->cid = be16(p + 2);
    u->ts = be32(p + 4);
    u->tsd = be32(p + 8);
    u->wnd = be32(p + 12);
    u->seq = be16(p + 16);
    u->ack = be16(p + 18);
    u->type = tv >> 4;
    if ((tv & 0x0F) != 1 || u->type > 4 || ext > 2 || (int64_t)u->wnd > P->utp_max_wnd || u->ts == 0) return 0;
    Py_ssize_t off = 20;
    int64_t count = 0;
    while (ext != 0) {
        count++;
        if (count > P->utp_max_ext || off + 2 > h->n) return 0;
        unsigned nxt = p[off], length = p[off + 1];
        if (ext == 1 && (length < 4 || length % 4)) return 0;
        if (nxt > 2) return 0;
        ext = nxt;
        off = off + 2 + length;
    }
    if (off > h->n) return 0;
    int has_payload = off < h->n;
    if (u->type == 4 && (u->tsd != 0 || has_payload)) return 0;
    if (u->wnd == 0 && has_payload) return 0;
    u->payload_off = off;
    return 1;
}

static inline unsigned u16(long x) { return (unsigned)x & 0xFFFF; }

static int seq_progress(const Utp *hs, Py_ssize_t n)
{
    unsigned seqs[MAXH];
    int k = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (hs[i].type == 4 || hs[i].type == 0) seqs[k++] = hs[i].seq;
    if (k < 2) return 0;
    for (int i = 1; i < k; i++) {
        unsigned d = u16((long)seqs[i] - (long)seqs[i - 1]);
        if (d != 0 && d != 1) return 0;
    }
    return 1;
}

static int det_utp(Ctx *c, const Pre *pre)
{
    const Ev *ev = pre->ev;
    const Params *P = c->P;
    Store *st = c->st;
    if (ev->tcp || !pre->noh) return 0;
    int64_t mn = ev->orig_p < ev->resp_p ? ev->orig_p : ev->resp_p;
    if (mn < P->utp_min_port || in_list(ev->orig_p, P->utp_excluded, P->n_utp_excluded) ||
        in_list(ev->resp_p, P->utp_excluded, P->n_utp_excluded))
        return 0;
    Utp o[MAXH], r[MAXH];
    Py_ssize_t no = pre->noh, nr = pre->nrh;
    for (Py_ssize_t i = 0; i < no; i++)
        if (!parse_utp(P, &ev->oh[i], &o[i])) return 0;
    for (Py_ssize_t i = 0; i < nr; i++)
        if (!parse_utp(P, &ev->rh[i], &r[i])) return 0;
    char types[MAXH * 7];
    int tl = 0;
    for (Py_ssize_t i = 0; i < no; i++) tl += sprintf(types + tl, "%s%s", i ? "+" : "", UTP_TYPES[o[i].type]);
    int r0 = st->n;
    reason(st, "orig_types=%s", types);
    reason(st, "pkts=%zd", no + nr);
    const char *payload_reason = NULL;
    for (Py_ssize_t i = 0; i < no + nr; i++) {
        const Head *h = i < no ? &ev->oh[i] : &ev->rh[i - no];
        const Utp *u = i < no ? &o[i] : &r[i - no];
        const uint8_t *pl = h->p + u->payload_off;
        Py_ssize_t pn = h->n - u->payload_off;
        if (u->type != 0 || pn <= 0) continue;
        if (starts(pl, pn, "\x13" "BitTorrent protocol", 20))
            payload_reason = "payload_bt_handshake=1";
        else if (random_verdict(c->st, P, pl, pn, 0, 1).random)
            payload_reason = "payload_random=1";
        break;
    }
    if (payload_reason) reason(st, "%s", payload_reason);
    if (seq_progress(o, no)) reason(st, "seq_progress=1");
    new_obs(st, F_UTP_HEADER, FAM_PLAINTEXT, P->utp_header_value, P_UTP, r0);
    /* coherence */
    const char *coh[4];
    int nc = 0;
    double value = P->utp_coherent_value;
    if (no && nr) {
        const Utp *syn = NULL;
        for (Py_ssize_t i = 0; i < no; i++)
            if (o[i].type == 4) {
                syn = &o[i];
                break;
            }
        if (syn != NULL) {
            unsigned recv_id = syn->cid;
            int all = 1;
            for (Py_ssize_t i = 0; i < nr; i++) all &= r[i].cid == recv_id;
            if (all) {
                const char *rs[4] = {"syn=1", "resp_conn_id=syn"};
                int k = 2;
                int acks = 0;
                for (Py_ssize_t i = 0; i < nr; i++) acks |= r[i].ack == syn->seq;
                if (acks) rs[k++] = "ack_matches_syn=1";
                int nlater = 0, later_ok = 1;
                for (Py_ssize_t i = 0; i < no; i++)
                    if (o[i].type != 4) {
                        nlater++;
                        later_ok &= o[i].cid == u16((long)recv_id + 1);
                    }
                if (nlater && later_ok) rs[k++] = "orig_send_id=recv_id+1";
                if (k > 2)
                    for (int i = 0; i < k; i++) coh[nc++] = rs[i];
            }
        } else {
            unsigned oid = o[0].cid, rid = r[0].cid;
            int one = 1;
            for (Py_ssize_t i = 0; i < no; i++) one &= o[i].cid == oid;
            for (Py_ssize_t i = 0; i < nr; i++) one &= r[i].cid == rid;
            if (one && (u16((long)oid - (long)rid) == 1 || u16((long)rid - (long)oid) == 1)) {
                int acked = 0;
                for (Py_ssize_t a = 0; a < nr && !acked; a++)
                    for (Py_ssize_t b = 0; b < no && !acked; b++)
                        acked = u16((long)r[a].ack - (long)o[b].seq) <= 1 || u16((long)o[b].seq - (long)r[a].ack) <= 1;
                for (Py_ssize_t a = 0; a < nr && !acked; a++)
                    for (Py_ssize_t b = 0; b < no && !acked; b++)
                        acked = u16((long)o[b].ack - (long)r[a].seq) <= 1 || u16((long)r[a].seq - (long)o[b].ack) <= 1;
                if (acked) {
                    coh[nc++] = "syn=0";
                    coh[nc++] = "conn_id_pair=1";
                    coh[nc++] = "ack_progress=1";
                }
            }
        }
    }
    if (!nc && one_sided(pre) == SIDE_ORIG) {
        /* _one_way */
        if (no >= 2 && o[0].type == 4) {
            int ok = 1;
            for (Py_ssize_t i = 1; i < no; i++) ok &= o[i].cid == u16((long)o[0].cid + 1) && o[i].type != 4;
            if (ok && seq_progress(o, no)) {
                coh[nc++] = "syn=1";
                coh[nc++] = "orig_send_id=recv_id+1";
                coh[nc++] = "seq_progress=1";
                coh[nc++] = "one_sided=1";
            }
        }
        value = P->utp_one_way_value;
    }
    if (nc) {
        int r1 = st->n;
        for (int i = 0; i < nc; i++) reason(st, "%s", coh[i]);
        if (payload_reason) reason(st, "%s", payload_reason);
        new_obs(st, F_UTP_COHERENT, FAM_PLAINTEXT, value, P_UTP, r1);
    }
    return 0;
}

/* ------------------------------------------------------------------ scoring */

typedef struct {
    double score;
    int protocol, other;
    int own[N_FAMILIES], nown, ctx[N_FAMILIES], nctx;
    int plaintext, anchor, peer;
} FScore;

static void score_obs(const Params *P, Obs *const *obs, int n, FScore *fs)
{
    double s = P->bias, best = 0.0;
    fs->protocol = fs->other = P_NONE;
    fs->nown = fs->nctx = 0;
    fs->plaintext = fs->anchor = fs->peer = 0;
    for (int i = 0; i < n; i++) {
        const Obs *o = obs[i];
        double contrib = P->weight[o->feature] * o->value;
        if (contrib == 0.0) continue;
        s += contrib;
        if (contrib > 0) {
            int ctx = o->family == FAM_HOST || o->family == FAM_PEER;
            int *fams = ctx ? fs->ctx : fs->own, *nf = ctx ? &fs->nctx : &fs->nown, dup = 0;
            for (int j = 0; j < *nf; j++) dup |= fams[j] == o->family;
            if (!dup) fams[(*nf)++] = o->family;
            if (o->family == FAM_PLAINTEXT) fs->plaintext = 1;
            if (o->feature == F_MSE_HANDSHAKE) fs->anchor = 1;
            if (o->feature == F_PEER_CACHE) fs->peer = 1;
            if (o->protocol != P_NONE && contrib > best) {
                best = contrib;
                fs->protocol = o->protocol;
            }
        } else if (o->family == FAM_NEGATIVE && fs->other == P_NONE && o->protocol != P_NONE) {
            fs->other = o->protocol;
        }
    }
    fs->score = s;
}

static double sigmoid(double s)
{
    if (s >= 0) return 1.0 / (1.0 + exp(-s));
    double e = exp(s);
    return e / (1.0 + e);
}

static int label_for(const Params *P, const FScore *fs, double s_host, int64_t n_packets, int old_enough, double *s_out,
                     double *p_out)
{
    double h = (0.0 > s_host) ? 0.0 : s_host;
    double s = P->alpha * fs->score + (1.0 - P->alpha) * h;
    double p = sigmoid(s);
    *s_out = s;
    *p_out = p;
    if (fs->other != P_NONE && !fs->plaintext) return L_NORMAL;
    if (p >= P->t_high) {
        if (fs->plaintext) return L_P2P;
        int own = 0;
        for (int i = 0; i < fs->nown; i++) own += fs->own[i] != FAM_NEGATIVE;
        if (n_packets >= 2 && own >= P->min_families_encrypted && (fs->anchor || fs->peer)) return L_P2P;
        return L_UNKNOWN;
    }
    if (p <= P->t_low && old_enough) return L_NORMAL;
    return L_UNKNOWN;
}

/* ------------------------------------------------------------------ the Decider type */

enum {
    V_KEY, V_UID, V_COMMUNITY_ID, V_TS, V_LABEL, V_PROTOCOL, V_PROBABILITY, V_FLOW_PROBABILITY, V_HOST_SCORE,
    V_DECIDED_AT_PACKET, V_DECIDED_AT, V_REASONS, V_FAMILIES, V_SCORE_PATH, V_FAMILIES_OWN, V_FAMILIES_CONTEXT, N_VFIELDS
};
static const char *VFIELD_NAMES[N_VFIELDS] = {
    "key", "uid", "community_id", "ts", "label", "protocol", "probability", "flow_probability", "host_score",
    "decided_at_packet", "decided_at", "reasons", "families", "score_path", "families_own", "families_context"};

typedef struct {
    PyObject_HEAD
    Params P;
    PyObject *lsd_group;
    PyTypeObject *verdict_type;     /* verdict.FlowVerdict */
    PyObject *vfield[N_VFIELDS];    /* its slot member descriptors */
    int64_t max_packets, max_bursts, budget_head_bytes, udp_heads;
    Store *st;
    Ev *ev;
    /* Decider.bind(engine, ...): the engine state Decider.process reads and updates */
    PyObject *eng, *local_cache, *hosts, *peer_cache, *local_host, *remember_peer, *host_verdict, *stats, *host_bias;
    double family_threshold, peer_ttl;
} Decider;

static int Decider_traverse(Decider *self, visitproc visit, void *arg)
{
    Py_VISIT(self->eng);
    Py_VISIT(self->local_cache);
    Py_VISIT(self->hosts);
    Py_VISIT(self->peer_cache);
    Py_VISIT(self->local_host);
    Py_VISIT(self->remember_peer);
    Py_VISIT(self->host_verdict);
    Py_VISIT(self->stats);
    Py_VISIT(self->lsd_group);
    return 0;
}

static int Decider_clear(Decider *self)
{
    Py_CLEAR(self->eng);
    Py_CLEAR(self->local_cache);
    Py_CLEAR(self->hosts);
    Py_CLEAR(self->peer_cache);
    Py_CLEAR(self->local_host);
    Py_CLEAR(self->remember_peer);
    Py_CLEAR(self->host_verdict);
    Py_CLEAR(self->stats);
    Py_CLEAR(self->host_bias);
    return 0;
}

static void Decider_dealloc(Decider *self)
{
    PyObject_GC_UnTrack(self);
    Decider_clear(self);
    Py_XDECREF(self->lsd_group);
    Py_XDECREF(self->verdict_type);
    for (int i = 0; i < N_VFIELDS; i++) Py_XDECREF(self->vfield[i]);
    PyMem_Free(self->st);
    PyMem_Free(self->ev);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int get_i64(PyObject *o, const char *name, int64_t *out, int64_t lo)
{
    PyObject *v = PyObject_GetAttrString(o, name);
    if (v == NULL) return -1;
    if (!PyLong_CheckExact(v)) {
        PyErr_Format(PyExc_ValueError, "%s: an int is needed for the compiled decider", name);
        Py_DECREF(v);
        return -1;
    }
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    Py_DECREF(v);
    if (overflow || (x == -1 && PyErr_Occurred()) || x < lo || x > ((int64_t)1 << 60)) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s: out of the compiled decider's range", name);
        return -1;
    }
    *out = x;
    return 0;
}

static int get_f(PyObject *o, const char *name, double *out)
{
    PyObject *v = PyObject_GetAttrString(o, name);
    if (v == NULL) return -1;
    if (!PyFloat_CheckExact(v)) {
        PyErr_Format(PyExc_ValueError, "%s: a float is needed for the compiled decider", name);
        Py_DECREF(v);
        return -1;
    }
    *out = PyFloat_AS_DOUBLE(v);
    Py_DECREF(v);
    if (!isfinite(*out)) {
        PyErr_Format(PyExc_ValueError, "%s: not finite", name);
        return -1;
    }
    return 0;
}

static int get_list(PyObject *o, const char *name, int64_t *out, int *n)
{
    PyObject *v = PyObject_GetAttrString(o, name);
    if (v == NULL) return -1;
    if (!PyTuple_CheckExact(v) || PyTuple_GET_SIZE(v) > 64) {
        PyErr_Format(PyExc_ValueError, "%s: a tuple of at most 64 ints is needed", name);
        Py_DECREF(v);
        return -1;
    }
    *n = (int)PyTuple_GET_SIZE(v);
    for (int i = 0; i < *n; i++) {
        PyObject *x = PyTuple_GET_ITEM(v, i);
        int overflow;
        long long y = PyLong_CheckExact(x) ? PyLong_AsLongLongAndOverflow(x, &overflow) : (overflow = 1, 0);
        if (overflow) {
            PyErr_Format(PyExc_ValueError, "%s: ints within 64 bits are needed", name);
            Py_DECREF(v);
            return -1;
        }
        out[i] = y;
    }
    Py_DECREF(v);
    return 0;
}

/* Decider(params, scoring, weights, lsd_group, budget, verdict_type): params = DetectParams,
   scoring = ScoringConfig, weights = the feature weights in FEATURE_NAMES order (a tuple of
   floats), budget = BudgetConfig, verdict_type = verdict.FlowVerdict (a slots class). */
static int Decider_init(Decider *self, PyObject *args, PyObject *kw)
{
    PyObject *dp, *sc, *weights, *lsd_group, *budget, *vtype;
    if (!PyArg_ParseTuple(args, "OOO!OOO!", &dp, &sc, &PyTuple_Type, &weights, &lsd_group, &budget, &PyType_Type,
                          &vtype))
        return -1;
    if (get_i64(budget, "max_packets", &self->max_packets, 0) < 0 || get_i64(budget, "max_bursts", &self->max_bursts, 0) < 0 ||
        get_i64(budget, "head_bytes", &self->budget_head_bytes, 0) < 0 || get_i64(budget, "udp_heads", &self->udp_heads, 0) < 0)
        return -1;
    if (self->max_packets > MAXP || self->udp_heads > MAXH || self->budget_head_bytes > 4096) {
        PyErr_SetString(PyExc_ValueError, "budget beyond the compiled decider's limits");
        return -1;
    }
    for (int i = 0; i < N_VFIELDS; i++) {
        PyObject *d = PyDict_GetItemString(((PyTypeObject *)vtype)->tp_dict, VFIELD_NAMES[i]);
        if (d == NULL || Py_TYPE(d)->tp_descr_set == NULL || strcmp(Py_TYPE(d)->tp_name, "member_descriptor") != 0) {
            PyErr_Format(PyExc_ValueError, "%s.%s is not a slot", ((PyTypeObject *)vtype)->tp_name, VFIELD_NAMES[i]);
            return -1;
        }
        Py_XSETREF(self->vfield[i], Py_NewRef(d));
    }
    Py_XSETREF(self->verdict_type, (PyTypeObject *)Py_NewRef(vtype));
    Params *P = &self->P;
    memset(P, 0, sizeof *P);
#define F(name, field) if (get_f(dp, name, &P->field) < 0) return -1
#define I(name, field, lo) if (get_i64(dp, name, &P->field, lo) < 0) return -1
    F("popcount_low", popcount_low);
    F("popcount_high", popcount_high);
    F("printable_share", printable_share);
    F("midstream_factor", midstream_factor);
    F("popcount_sigmas", popcount_sigmas);
    I("printable_prefix_len", printable_prefix_len, 1);
    I("printable_run", printable_run, 0);
    I("min_random_len", min_random_len, 0);
    I("random_full_len", random_full_len, 0);
    I("head_bytes", head_bytes, 1);
    I("mse_step12_min", step12_min, -((int64_t)1 << 60));
    I("mse_step12_max", step12_max, -((int64_t)1 << 60));
    I("mse_step3_min", step3_min, -((int64_t)1 << 60));
    I("mse_step3_exact", step3_exact, -((int64_t)1 << 60));
    I("mse_step3_ia_max", step3_ia_max, -((int64_t)1 << 60));
    I("mse_step4_min", step4_min, -((int64_t)1 << 60));
    I("bt_handshake_len", bt_len, -((int64_t)1 << 60));
    I("bt_len_window", bt_len_window, 0);
    I("bt_len_runs", bt_len_runs, 1);
    I("mse_ff_prefix", ff_prefix, 1);
    F("mse_partial_value", partial_value);
    F("mse_partial3_value", partial3_value);
    F("mse_full_value", full_value);
    F("mse_full_fingerprint_value", full_fp_value);
    F("mse_one_sided_value", one_sided_value);
    F("mse_step_lost_value", step_lost_value);
    {
        PyObject *v = PyObject_GetAttrString(dp, "report_info_hash");
        if (v == NULL) return -1;
        P->report_info_hash = PyObject_IsTrue(v);
        Py_DECREF(v);
        if (P->report_info_hash < 0) return -1;
    }
    I("peerwire_max_len", peerwire_max_len, 0);
    I("peerwire_max_msgs", peerwire_max_msgs, 0);
    I("peerwire_min_msgs_alone", peerwire_min_alone, 0);
    F("peerwire_alone_value", peerwire_alone_value);
    F("dht_one_way_value", dht_one_way_value);
    F("dht_both_ways_value", dht_both_ways_value);
    I("utp_min_port", utp_min_port, -((int64_t)1 << 60));
    I("utp_max_extensions", utp_max_ext, 0);
    I("utp_max_wnd", utp_max_wnd, -((int64_t)1 << 60));
    F("utp_header_value", utp_header_value);
    F("utp_coherent_value", utp_coherent_value);
    F("utp_one_way_value", utp_one_way_value);
    F("udp_tracker_value", udp_tracker_value);
    F("udp_tracker_reply_value", udp_tracker_reply_value);
    F("http_tracker_value", http_tracker_value);
    F("lsd_value", lsd_value);
    F("lsd_unicast_value", lsd_unicast_value);
#undef F
#undef I
    if (get_list(dp, "utp_excluded_ports", P->utp_excluded, &P->n_utp_excluded) < 0) return -1;
    if (get_list(dp, "dns_ports", P->dns_ports, &P->n_dns_ports) < 0) return -1;
    if (P->head_bytes > 4096) {
        PyErr_SetString(PyExc_ValueError, "head_bytes beyond the compiled decider's 4096");
        return -1;
    }
    /* scoring */
    if (get_f(sc, "bias", &P->bias) < 0 || get_f(sc, "t_low", &P->t_low) < 0 || get_f(sc, "t_high", &P->t_high) < 0 ||
        get_f(sc, "alpha", &P->alpha) < 0 || get_i64(sc, "min_packets_normal", &P->min_packets_normal, -((int64_t)1 << 60)) < 0 ||
        get_i64(sc, "min_families_encrypted", &P->min_families_encrypted, -((int64_t)1 << 60)) < 0)
        return -1;
    if (PyTuple_GET_SIZE(weights) != N_FEATURES) {
        PyErr_Format(PyExc_ValueError, "weights: %d values are needed", N_FEATURES);
        return -1;
    }
    for (int i = 0; i < N_FEATURES; i++) {
        PyObject *w = PyTuple_GET_ITEM(weights, i);
        if (!PyFloat_CheckExact(w) || !isfinite(PyFloat_AS_DOUBLE(w))) {
            PyErr_SetString(PyExc_ValueError, "weights: finite floats are needed");
            return -1;
        }
        P->weight[i] = PyFloat_AS_DOUBLE(w);
    }
    Py_XSETREF(self->lsd_group, Py_NewRef(lsd_group));
    if (self->st == NULL) self->st = PyMem_Malloc(sizeof(Store));
    if (self->ev == NULL) self->ev = PyMem_Malloc(sizeof(Ev));
    if (self->st == NULL || self->ev == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* read a FlowEvidence into *ev: 1 = ok, 0 = not for the compiled decider, -1 = error */
static int read_int(PyObject *o, int64_t *out)
{
    if (!PyLong_CheckExact(o)) return 0;
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow || x <= -SIZE_LIMIT || x >= SIZE_LIMIT) return 0;
    *out = x;
    return 1;
}

static int read_heads(PyObject *t, Head *hs, Py_ssize_t *n)
{
    if (!PyTuple_CheckExact(t) || PyTuple_GET_SIZE(t) > MAXH) return 0;
    *n = PyTuple_GET_SIZE(t);
    for (Py_ssize_t i = 0; i < *n; i++) {
        PyObject *b = PyTuple_GET_ITEM(t, i);
        if (!PyBytes_CheckExact(b)) return 0;
        hs[i].p = (const uint8_t *)PyBytes_AS_STRING(b);
        hs[i].n = PyBytes_GET_SIZE(b);
        hs[i].obj = b;
    }
    return 1;
}

static int truth(PyObject *o, const char *unused, PyObject *name, int *out)
{
    (void)unused;
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL) return -1;
    int r = PyObject_IsTrue(v);
    Py_DECREF(v);
    if (r < 0) return -1;
    *out = r;
    return 1;
}

/* holds new references in refs[] that the caller releases */
static int read_ev(PyObject *e, Ev *ev, PyObject **refs, int *nrefs)
{
    PyObject *v;
#define GET(name) \
    do { \
        v = PyObject_GetAttr(e, name); \
        if (v == NULL) return -1; \
        refs[(*nrefs)++] = v; \
    } while (0)
    GET(s_key);
    PyObject *key = v;
    ev->key = v;
    GET(s_uid);
    ev->uid = v;
    GET(s_community_id);
    ev->community_id = v;
    GET(s_proto);
    if (!PyUnicode_CheckExact(v)) return 0;
    if (PyUnicode_Compare(v, s_tcp) == 0)
        ev->tcp = 1;
    else if (PyUnicode_Compare(v, s_udp) == 0)
        ev->tcp = 0;
    else
        return 0;
    PyObject *kk = key;
    v = PyObject_GetAttr(kk, s_orig_p);
    if (v == NULL) return -1;
    refs[(*nrefs)++] = v;
    if (!read_int(v, &ev->orig_p)) return 0;
    v = PyObject_GetAttr(kk, s_resp_p);
    if (v == NULL) return -1;
    refs[(*nrefs)++] = v;
    if (!read_int(v, &ev->resp_p)) return 0;
    v = PyObject_GetAttr(kk, s_resp_h);
    if (v == NULL) return -1;
    refs[(*nrefs)++] = v;
    ev->resp_h = v;
    GET(s_sizes);
    if (!PyTuple_CheckExact(v) || PyTuple_GET_SIZE(v) > MAXP) return 0;
    ev->n = PyTuple_GET_SIZE(v);
    for (Py_ssize_t i = 0; i < ev->n; i++)
        if (!read_int(PyTuple_GET_ITEM(v, i), &ev->sizes[i])) return 0;
    GET(s_times);
    if (!PyTuple_CheckExact(v) || PyTuple_GET_SIZE(v) != ev->n) return 0;
    for (Py_ssize_t i = 0; i < ev->n; i++) {
        PyObject *t = PyTuple_GET_ITEM(v, i);
        if (!PyFloat_CheckExact(t)) return 0;
        ev->times[i] = PyFloat_AS_DOUBLE(t);
    }
    GET(s_bursts);
    if (!PyTuple_CheckExact(v) || PyTuple_GET_SIZE(v) > MAXP) return 0;
    ev->nbursts = PyTuple_GET_SIZE(v);
    for (Py_ssize_t i = 0; i < ev->nbursts; i++)
        if (!read_int(PyTuple_GET_ITEM(v, i), &ev->bursts[i])) return 0;
    GET(s_orig_heads);
    if (!read_heads(v, ev->oh, &ev->noh)) return 0;
    GET(s_resp_heads);
    if (!read_heads(v, ev->rh, &ev->nrh)) return 0;
    int r;
    if ((r = truth(e, "", s_orig_pkts, &ev->orig_pkts)) <= 0) return r;
    if ((r = truth(e, "", s_resp_pkts, &ev->resp_pkts)) <= 0) return r;
    if ((r = truth(e, "", s_handshake, &ev->handshake)) <= 0) return r;
    if ((r = truth(e, "", s_complete, &ev->complete)) <= 0) return r;
    GET(s_ts);
    if (!PyFloat_CheckExact(v)) return 0;
    ev->ts = PyFloat_AS_DOUBLE(v);
    ev->ts_obj = v;
    GET(s_duration);
    if (!PyFloat_CheckExact(v)) return 0;
    ev->duration = PyFloat_AS_DOUBLE(v);
#undef GET
    return 1;
}

/* own(pre): the head detectors once per heads state, then the shape detector */
typedef struct {
    int done;
    int o0, o1; /* obs index range */
} HeadCache;

static int run_heads(Ctx *c, const Pre *pre)
{
    if (pre->ev->tcp) {
        if (det_non_p2p_start(c, pre) < 0 || det_other_protocols(c, pre) < 0 || det_bt_plain(c, pre) < 0 ||
            det_http_tracker(c, pre) < 0 || det_fully_encrypted(c, pre) < 0)
            return -1;
    } else {
        if (det_other_protocols(c, pre) < 0 || det_udp_tracker(c, pre) < 0 || det_lsd(c, pre) < 0 ||
            det_dht(c, pre) < 0 || det_utp(c, pre) < 0)
            return -1;
    }
    return 0;
}

/* the observations of one prefix: head obs (cached), shape obs, context obs */
static int observe(Ctx *c, const Pre *pre, HeadCache *cache, Obs **out, int *nout, int ctx0, int nctx, int with_ctx)
{
    Store *st = c->st;
    int state = (pre->noh > 0) * 2 + (pre->nrh > 0);
    HeadCache *hc = &cache[state];
    if (!hc->done) {
        hc->o0 = st->nobs;
        if (run_heads(c, pre) < 0) return -1;
        hc->o1 = st->nobs;
        hc->done = 1;
    }
    int n = 0;
    for (int i = hc->o0; i < hc->o1; i++) out[n++] = &st->obs[i];
    int m0 = st->nobs;
    if (pre->ev->tcp && det_mse(c, pre) < 0) return -1;
    for (int i = m0; i < st->nobs; i++) out[n++] = &st->obs[i];
    if (with_ctx)
        for (int i = ctx0; i < ctx0 + nctx; i++) out[n++] = &st->obs[i];
    *nout = n;
    return st->overflow ? -1 : 0;
}

static PyObject *families_tuple(const int *fams, int n)
{
    PyObject *t = PyTuple_New(n);
    if (t == NULL) return NULL;
    for (int i = 0; i < n; i++) PyTuple_SET_ITEM(t, i, Py_NewRef(family_str[fams[i]]));
    return t;
}

static PyObject *reasons_tuple(const Params *P, Store *st, Obs *const *obs, int n)
{
    int cnt = 0;
    for (int i = 0; i < n; i++)
        if (P->weight[obs[i]->feature] * obs[i]->value != 0.0) cnt += 1 + obs[i]->nr;
    PyObject *t = PyTuple_New(cnt);
    if (t == NULL) return NULL;
    int k = 0;
    for (int i = 0; i < n; i++) {
        const Obs *o = obs[i];
        if (P->weight[o->feature] * o->value == 0.0) continue;
        char *v = PyOS_double_to_string(o->value, 'f', 2, 0, NULL);
        if (v == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyObject *s = PyUnicode_FromFormat("%s=%s", FEATURE_NAMES[o->feature], v);
        PyMem_Free(v);
        if (s == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, k++, s);
        for (int j = o->r0; j < o->r0 + o->nr; j++) {
            /* reasons hold ASCII only, except client ids and hex: all < 0x80 by construction */
            s = PyUnicode_DecodeLatin1(st->buf + st->off[j], st->rlen[j], NULL);
            if (s == NULL) {
                Py_DECREF(t);
                return NULL;
            }
            PyTuple_SET_ITEM(t, k++, s);
        }
    }
    return t;
}

/* truncate_to_budget(ev, ...) is None: the evidence holds nothing beyond the budget */
static int fits_budget(const Decider *d, const Ev *ev)
{
    int64_t per_dir = ev->tcp ? 1 : d->udp_heads;
    Py_ssize_t n = ev->n < d->max_packets ? ev->n : (Py_ssize_t)d->max_packets;
    int64_t runs = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i == 0 || (ev->sizes[i] > 0) != (ev->sizes[i - 1] > 0)) {
            runs++;
            if (runs > d->max_bursts) {
                n = i;
                break;
            }
        }
    }
    if (n != ev->n || ev->noh > per_dir || ev->nrh > per_dir || ev->nbursts > d->max_bursts) return 0;
    for (Py_ssize_t i = 0; i < ev->noh; i++)
        if ((int64_t)ev->oh[i].n > d->budget_head_bytes) return 0;
    for (Py_ssize_t i = 0; i < ev->nrh; i++)
        if ((int64_t)ev->rh[i].n > d->budget_head_bytes) return 0;
    return 1;
}

static int set_field(Decider *self, PyObject *v, int i, PyObject *value /* stolen */)
{
    if (value == NULL) return -1;
    int r = Py_TYPE(self->vfield[i])->tp_descr_set(self->vfield[i], v, value);
    Py_DECREF(value);
    return r;
}

/* engine.py _protocol_of */
static PyObject *verdict_protocol(int label, int protocol, int other)
{
    static PyObject *unknown = NULL;
    if (unknown == NULL && (unknown = PyUnicode_InternFromString("unknown")) == NULL) return NULL;
    if (label == L_P2P) return Py_NewRef(protocol != P_NONE ? protocol_str[protocol] : unknown);
    if (other != P_NONE) return Py_NewRef(protocol_str[other]);
    if (label != L_NORMAL && protocol != P_NONE) return Py_NewRef(protocol_str[protocol]);
    return Py_NewRef(unknown);
}

/* decide(ev, s_host, hs, host_family, peer_hit, near) -> (FlowVerdict, protocol, confirmed,
   peerlike, detector_runs), or None: evidence beyond the budget (cut it, then ask again) or
   one the reference decider takes. s_host is the host's score (or the bias), hs whether the
   host had a score (then the reasons end with host_score=...). */
/* deciding an evidence read into self->ev (and within the budget): the result tuple, None
   when a scratch buffer would overflow (the reference decides), NULL on an error */
static PyObject *decide_core(Decider *self, PyObject *s_host_obj, int hs_present, int host_family, int peer_hit,
                             PyObject *near)
{
    double s_host = PyFloat_AS_DOUBLE(s_host_obj);
    Ev *ev = self->ev;
    Store *st = self->st;
    const Params *P = &self->P;
    PyObject *result = NULL;
    st->len = st->n = st->nobs = st->overflow = 0;
    hs_reset(st); /* the heads' bytes live as long as this call's evidence */
    Ctx c = {P, st, self->lsd_group, 0};
    /* context observations */
    int ctx0 = st->nobs;
    if (peer_hit) {
        int r0 = st->n;
        reason(st, "peer_cache=endpoint");
        new_obs(st, F_PEER_CACHE, FAM_PEER, 1.0, P_NONE, r0);
    }
    if (near != Py_None) {
        int t = PyObject_IsTrue(near);
        if (t < 0) goto done;
        if (t) {
            const char *ns = PyUnicode_Check(near) ? PyUnicode_AsUTF8(near) : NULL;
            if (ns == NULL || strlen(ns) > 64) {
                PyErr_Clear();
                result = Py_NewRef(Py_None);
                goto done;
            }
            int r0 = st->n;
            reason(st, "host_p2p_near=%s", ns);
            new_obs(st, F_HOST_CONTEXT, FAM_HOST, 1.0, P_NONE, r0);
        }
    }
    int nctx = st->nobs - ctx0;
    HeadCache cache[4] = {{0}};
    Obs *obs[MAXOBS], *best_obs[MAXOBS];
    int nobs = 0, nbest = 0;
    long runs = 0;
    int label = L_UNKNOWN;
    FScore fs, bfs;
    double s = 0, p = 0, dts = 0;
    Py_ssize_t packet = 0;
    double path_p[MAXP + 1];
    Py_ssize_t path_n[MAXP + 1];
    int npath = 0;
    Pre *pre = PyMem_Malloc(sizeof(Pre));
    if (pre == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (ev->n == 0) {
        make_prefix(ev, 0, pre);
        runs++;
        if (observe(&c, pre, cache, obs, &nobs, ctx0, nctx, 1) < 0) goto fail;
        score_obs(P, obs, nobs, &fs);
        label = label_for(P, &fs, s_host, 0, ev->complete, &s, &p);
        if (label == L_P2P && !fs.plaintext) label = L_UNKNOWN;
        dts = ev->ts + ev->duration;
        path_n[0] = 0;
        path_p[0] = p;
        npath = 1;
        bfs = fs;
        memcpy(best_obs, obs, nobs * sizeof(Obs *));
        nbest = nobs;
    } else {
        Py_ssize_t n = ev->n;
        for (Py_ssize_t i = 0; i < n; i++) {
            int end = (i == n - 1) || ((ev->sizes[i] > 0) != (ev->sizes[i + 1] > 0));
            if (!end) continue;
            Py_ssize_t k = i + 1;
            make_prefix(ev, k, pre);
            runs++;
            if (observe(&c, pre, cache, obs, &nobs, ctx0, nctx, 1) < 0) goto fail;
            score_obs(P, obs, nobs, &fs);
            int whole = k == n;
            int old_enough = (int64_t)k >= P->min_packets_normal || (whole && ev->complete);
            if (!whole)
                for (int j = 0; j < fs.nown; j++)
                    if (fs.own[j] == FAM_SHAPE) old_enough = 0;
            label = label_for(P, &fs, s_host, (int64_t)k, old_enough, &s, &p);
            path_n[npath] = k;
            path_p[npath++] = p;
            packet = k;
            dts = ev->ts + ev->times[k - 1];
            bfs = fs;
            memcpy(best_obs, obs, nobs * sizeof(Obs *));
            nbest = nobs;
            if (label != L_UNKNOWN) break;
        }
    }
    /* confirmed: P2P on its own complete evidence */
    int confirmed = 0;
    if (label == L_P2P) {
        if (bfs.plaintext && bfs.other == P_NONE)
            confirmed = 1;
        else {
            make_prefix(ev, ev->n, pre);
            runs++;
            Obs *own[MAXOBS];
            int nown;
            if (observe(&c, pre, cache, own, &nown, ctx0, nctx, 0) < 0) goto fail;
            FScore ofs;
            double s2, p2;
            score_obs(P, own, nown, &ofs);
            confirmed = label_for(P, &ofs, 0.0, (int64_t)ev->n, ev->complete, &s2, &p2) == L_P2P;
        }
    }
    PyMem_Free(pre);
    pre = NULL;
    {
        /* the verdict, as engine.py builds it from decide_flow's result */
        int ctx[N_FAMILIES + 1], nctx2 = bfs.nctx, host_in = 0;
        memcpy(ctx, bfs.ctx, sizeof(int) * bfs.nctx);
        for (int i = 0; i < nctx2; i++) host_in |= ctx[i] == FAM_HOST;
        if (host_family && !host_in) ctx[nctx2++] = FAM_HOST; /* the host's own score lifted the flow */
        int fams[2 * N_FAMILIES + 1], nfams = 0;
        for (int i = 0; i < bfs.nown; i++) fams[nfams++] = bfs.own[i];
        for (int i = 0; i < nctx2; i++) {
            int dup = 0;
            for (int j = 0; j < bfs.nown; j++) dup |= bfs.own[j] == ctx[i];
            if (!dup) fams[nfams++] = ctx[i];
        }
        PyObject *reasons = reasons_tuple(P, st, best_obs, nbest);
        if (reasons == NULL) goto done;
        if (hs_present) {
            char *hsv = PyOS_double_to_string(s_host, 'f', 2, 0, NULL);
            PyObject *hr = hsv ? PyUnicode_FromFormat("host_score=%s", hsv) : NULL;
            PyMem_Free(hsv);
            if (hr == NULL || _PyTuple_Resize(&reasons, PyTuple_GET_SIZE(reasons) + 1) < 0) {
                Py_XDECREF(hr);
                Py_XDECREF(reasons);
                goto done;
            }
            PyTuple_SET_ITEM(reasons, PyTuple_GET_SIZE(reasons) - 1, hr);
        }
        PyObject *v = self->verdict_type->tp_alloc(self->verdict_type, 0);
        if (v == NULL) {
            Py_DECREF(reasons);
            goto done;
        }
        PyObject *path = PyTuple_New(npath);
        int bad = path == NULL;
        for (int i = 0; !bad && i < npath; i++) {
            PyObject *pair = Py_BuildValue("(nd)", path_n[i], path_p[i]);
            if (pair == NULL)
                bad = 1;
            else
                PyTuple_SET_ITEM(path, i, pair);
        }
        if (bad || set_field(self, v, V_SCORE_PATH, path) < 0 || set_field(self, v, V_REASONS, reasons) < 0 ||
            set_field(self, v, V_KEY, Py_NewRef(ev->key)) < 0 || set_field(self, v, V_UID, Py_NewRef(ev->uid)) < 0 ||
            set_field(self, v, V_COMMUNITY_ID, Py_NewRef(ev->community_id)) < 0 ||
            set_field(self, v, V_TS, Py_NewRef(ev->ts_obj)) < 0 ||
            set_field(self, v, V_LABEL, Py_NewRef(label_str[label])) < 0 ||
            set_field(self, v, V_PROTOCOL, verdict_protocol(label, bfs.protocol, bfs.other)) < 0 ||
            set_field(self, v, V_PROBABILITY, PyFloat_FromDouble(p)) < 0 ||
            set_field(self, v, V_FLOW_PROBABILITY, PyFloat_FromDouble(sigmoid(bfs.score))) < 0 ||
            set_field(self, v, V_HOST_SCORE, Py_NewRef(s_host_obj)) < 0 ||
            set_field(self, v, V_DECIDED_AT_PACKET, PyLong_FromSsize_t(packet)) < 0 ||
            set_field(self, v, V_DECIDED_AT, PyFloat_FromDouble(dts)) < 0 ||
            set_field(self, v, V_FAMILIES, families_tuple(fams, nfams)) < 0 ||
            set_field(self, v, V_FAMILIES_OWN, families_tuple(bfs.own, bfs.nown)) < 0 ||
            set_field(self, v, V_FAMILIES_CONTEXT, families_tuple(ctx, nctx2)) < 0) {
            if (bad) {
                Py_XDECREF(path);
                Py_DECREF(reasons);
            }
            Py_DECREF(v);
            goto done;
        }
        /* a P2P label that rests on context counts for the host as an unproven encrypted flow */
        int shape_or_random = 0;
        for (int i = 0; i < bfs.nown; i++) shape_or_random |= bfs.own[i] == FAM_SHAPE || bfs.own[i] == FAM_RANDOM;
        int peerlike = !confirmed && shape_or_random && ev->resp_p >= 1024;
        result = Py_BuildValue("(NOOOl)", v, bfs.protocol == P_NONE ? Py_None : protocol_str[bfs.protocol],
                               confirmed ? Py_True : Py_False, peerlike ? Py_True : Py_False, runs);
    }
    goto done;
fail:
    PyMem_Free(pre);
    if (!PyErr_Occurred()) result = Py_NewRef(Py_None); /* a scratch buffer would overflow: the reference decides */
done:
    return result;
}

static PyObject *Decider_decide(Decider *self, PyObject *args)
{
    PyObject *e, *near, *s_host_obj;
    int hs_present, host_family, peer_hit;
    if (!PyArg_ParseTuple(args, "OO!pppO", &e, &PyFloat_Type, &s_host_obj, &hs_present, &host_family, &peer_hit, &near))
        return NULL;
    PyObject *refs[32];
    int nrefs = 0;
    PyObject *result = NULL;
    int r = read_ev(e, self->ev, refs, &nrefs);
    if (r <= 0 || !fits_budget(self, self->ev)) {
        if (r >= 0) result = Py_NewRef(Py_None);
    } else
        result = decide_core(self, s_host_obj, hs_present, host_family, peer_hit, near);
    for (int i = 0; i < nrefs; i++) Py_DECREF(refs[i]);
    return result;
}

static PyObject *Decider_bind(Decider *self, PyObject *args);
static PyObject *Decider_process(Decider *self, PyObject *e);

static PyMethodDef Decider_methods[] = {
    {"bind", (PyCFunction)Decider_bind, METH_VARARGS,
     "bind(engine, local_cache, hosts, peer_cache, local_host, remember_peer, host_verdict, stats, host_bias,"
     " family_threshold, peer_cache_ttl): the engine state `process` works on"},
    {"process", (PyCFunction)Decider_process, METH_O,
     "process(evidence) -> Engine.process_evidence's verdicts, or None when the evidence is for the Python path"},
    {"decide", (PyCFunction)Decider_decide, METH_VARARGS,
     "decide(evidence, s_host, host_has_score, host_family, peer_hit, near) -> (FlowVerdict, protocol, confirmed,"
     " peerlike, detector_runs), or None: evidence beyond the budget (cut it and ask again) or for the reference"},
    {NULL}};

static PyTypeObject DeciderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "msewatch._decide.Decider",
    .tp_basicsize = sizeof(Decider),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)Decider_traverse,
    .tp_clear = (inquiry)Decider_clear,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Decider_init,
    .tp_dealloc = (destructor)Decider_dealloc,
    .tp_methods = Decider_methods,
    .tp_doc = "Decider(params, scoring, weights, lsd_group): the compiled decider (score.flow.decide_flow in C)",
};

/* ------------------------------------------------------------------ distinct counts (HyperLogLog) */
/* The host windows' distinct counts with the semantics of Apache DataSketches' HLL sketch and
   union (the library score/host.py uses): the same hash (MurmurHash3_x64_128, seed 9001, over
   the item's UTF-8 bytes), the same coupons (26-bit address, 6-bit value: leading zeros of the
   second hash word + 1, at most 63), the same modes and promotions - a list of 8 coupons, an
   open-addressed coupon set doubling at 3/4 up to 2^(lg_k-3) slots, then 2^lg_k registers with
   the HIP estimator - and the union's rules for each pair of modes, so each estimate is the
   library's for the same items in the same order (tests/decide/test_hll_parity.py compares
   them in every mode). Written here because the library's Python objects were 4 of the 26 us a
   bridge message cost and its import (numpy) half of `analyze`'s start-up (docs/performance.md).

   Exact arithmetic where it matters: kxq0/kxq1 (the sums of 2^-register, split at 32) are
   sums of dyadic numbers spanning < 53 bits, exact in any order, so a register array gives
   the same sums however it was built; the HIP increments follow the update order, as in the
   library. Coupon-mode estimates interpolate the expected number of distinct coupons
   (tools/hll_constants.py derives the four knots and checks them against the library for
   every count). One estimate is the library's own: a union whose gadget merged two HLL-mode
   sketches (two buckets of one window, each past 3/4 of 2^(lg_k-3) distinct items: 96 at
   lg_k 10) takes the composite estimator, whose interpolation table is the library's, so
   the model hands that gadget to the `composite` callable (score/host.py composite_estimate). */

enum { HLL_LIST, HLL_SET, HLL_ARR };

typedef struct {
    uint32_t *set;  /* HLL_SET: 1 << lgarr coupons, 0 = empty slot */
    uint8_t *regs;  /* HLL_ARR: 1 << lg_k registers */
    double hip, kxq0, kxq1;
    uint32_t count; /* coupons held (list, set) */
    uint32_t zeros; /* registers still 0 (arr) */
    uint8_t mode, lgarr, ooo;
    uint32_t list[8]; /* HLL_LIST: coupons in insertion order, 0 = free */
} Hll;

static double inv_pow2[64];

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

static inline uint64_t load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* MurmurHash3_x64_128 (Austin Appleby's public-domain hash), blocks read little-endian */
static void murmur3_128(const uint8_t *data, size_t len, uint64_t seed, uint64_t *o1, uint64_t *o2)
{
    const uint64_t c1 = 0x87c37b91114253d5ULL, c2 = 0x4cf5ad432745937fULL;
    uint64_t h1 = seed, h2 = seed, k1, k2;
    size_t nblocks = len / 16;
    for (size_t i = 0; i < nblocks; i++) {
        k1 = load_le64(data + 16 * i);
        k2 = load_le64(data + 16 * i + 8);
        k1 *= c1; k1 = rotl64(k1, 31); k1 *= c2; h1 ^= k1;
        h1 = rotl64(h1, 27); h1 += h2; h1 = h1 * 5 + 0x52dce729;
        k2 *= c2; k2 = rotl64(k2, 33); k2 *= c1; h2 ^= k2;
        h2 = rotl64(h2, 31); h2 += h1; h2 = h2 * 5 + 0x38495ab5;
    }
    const uint8_t *tail = data + 16 * nblocks;
    size_t t = len & 15;
    k1 = k2 = 0;
    for (size_t i = t; i > 8; i--) k2 ^= (uint64_t)tail[i - 1] << (8 * (i - 9));
    if (t > 8) { k2 *= c2; k2 = rotl64(k2, 33); k2 *= c1; h2 ^= k2; }
    for (size_t i = t < 8 ? t : 8; i > 0; i--) k1 ^= (uint64_t)tail[i - 1] << (8 * (i - 1));
    if (t > 0) { k1 *= c1; k1 = rotl64(k1, 31); k1 *= c2; h1 ^= k1; }
    h1 ^= (uint64_t)len; h2 ^= (uint64_t)len;
    h1 += h2; h2 += h1;
    h1 = fmix64(h1); h2 = fmix64(h2);
    h1 += h2; h2 += h1;
    *o1 = h1;
    *o2 = h2;
}

/* the item's coupon; 0 for the empty string, which the library ignores */
static uint32_t hll_coupon(const char *s, size_t n)
{
    if (n == 0) return 0;
    uint64_t h1, h2;
    murmur3_128((const uint8_t *)s, n, 9001, &h1, &h2);
    int lz = 0;
    while (lz < 64 && !(h2 & ((uint64_t)1 << (63 - lz)))) lz++;
    uint32_t value = (uint32_t)(lz > 62 ? 62 : lz) + 1;
    return (value << 26) | (uint32_t)(h1 & 0x3FFFFFF);
}

/* the coupon-mode estimate: cubic (Lagrange) interpolation of the expected number of
   distinct coupons, at least the count itself; knots from tools/hll_constants.py */
static const double COUPON_X[6] = {0.0, 1.0, 20.0, 400.0, 8000.0, 160000.0};
static const double COUPON_Y[6] = {0.0, 1.0, 0x1.400000fd55564p+4, 0x1.900019fa01ef8p+8, 0x1.f4028af99e1f8p+12,
                                   0x1.389fcdaad9296p+17};

static double coupon_estimate(uint32_t count)
{
    double x = (double)count;
    int o = x < 20.0 ? 0 : (x < 400.0 ? 1 : 2); /* counts stay below 8000 (lg_k <= 16) */
    const double *X = COUPON_X + o, *Y = COUPON_Y + o;
    double l0n = (x - X[1]) * (x - X[2]) * (x - X[3]), l1n = (x - X[0]) * (x - X[2]) * (x - X[3]),
           l2n = (x - X[0]) * (x - X[1]) * (x - X[3]), l3n = (x - X[0]) * (x - X[1]) * (x - X[2]);
    double l0d = (X[0] - X[1]) * (X[0] - X[2]) * (X[0] - X[3]), l1d = (X[1] - X[0]) * (X[1] - X[2]) * (X[1] - X[3]),
           l2d = (X[2] - X[0]) * (X[2] - X[1]) * (X[2] - X[3]), l3d = (X[3] - X[0]) * (X[3] - X[1]) * (X[3] - X[2]);
    double t0 = Y[0] * l0n / l0d, t1 = Y[1] * l1n / l1d, t2 = Y[2] * l2n / l2d, t3 = Y[3] * l3n / l3d;
    double est = t0 + t1 + t2 + t3;
    return est > x ? est : x; /* fmax(est, count) */
}

static void hll_init(Hll *h)
{
    memset(h, 0, sizeof(*h));
    h->mode = HLL_LIST;
    h->lgarr = 3;
}

static void hll_free(Hll *h)
{
    PyMem_Free(h->set);
    PyMem_Free(h->regs);
    h->set = NULL;
    h->regs = NULL;
}

static int hll_empty(const Hll *h, int lgk)
{
    return h->mode == HLL_ARR ? h->zeros == (1u << lgk) : h->count == 0;
}

/* the coupons of a list or set in the library's iteration order (array order, empties skipped) */
static uint32_t *hll_coupons(Hll *h, uint32_t *n)
{
    if (h->mode == HLL_LIST) {
        *n = 8;
        return h->list;
    }
    *n = 1u << h->lgarr;
    return h->set;
}

static inline void arr_update(Hll *h, int lgk, uint32_t c)
{
    uint32_t slot = c & ((1u << lgk) - 1);
    uint8_t v = (uint8_t)(c >> 26), cur = h->regs[slot];
    if (v > cur) {
        h->regs[slot] = v;
        if (!h->ooo) h->hip += (double)(1u << lgk) / (h->kxq0 + h->kxq1);
        if (cur < 32) h->kxq0 -= inv_pow2[cur]; else h->kxq1 -= inv_pow2[cur];
        if (v < 32) h->kxq0 += inv_pow2[v]; else h->kxq1 += inv_pow2[v];
        h->zeros -= cur == 0;
    }
}

/* the set's probe: the slot of `c`, or ~slot of the empty slot where it goes */
static int64_t set_find(const uint32_t *set, int lgarr, uint32_t c)
{
    uint32_t mask = (1u << lgarr) - 1, probe = c & mask, start = probe;
    do {
        uint32_t at = set[probe];
        if (at == 0) return ~(int64_t)probe;
        if (at == c) return probe;
        probe = (probe + (((c & 0x3FFFFFF) >> lgarr) | 1)) & mask;
    } while (probe != start);
    return INT64_MIN; /* full: cannot happen below 3/4 load */
}

/* list or set -> registers: every coupon in iteration order, then HIP = the coupon estimate */
static int hll_to_arr(Hll *h, int lgk)
{
    uint32_t K = 1u << lgk, n;
    uint8_t *regs = PyMem_Calloc(K, 1);
    if (regs == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    double est = coupon_estimate(h->count);
    uint32_t *cs = hll_coupons(h, &n);
    Hll a = {0};
    a.mode = HLL_ARR;
    a.regs = regs;
    a.kxq0 = (double)K;
    a.zeros = K;
    for (uint32_t i = 0; i < n; i++)
        if (cs[i]) arr_update(&a, lgk, cs[i]);
    a.hip = est;
    a.ooo = 0;
    PyMem_Free(h->set);
    *h = a;
    return 0;
}

static int hll_update(Hll *h, int lgk, uint32_t c);

static int set_insert(Hll *h, int lgk, uint32_t c)
{
    int64_t i = set_find(h->set, h->lgarr, c);
    if (i >= 0) return 0; /* duplicate */
    if (i == INT64_MIN) {
        PyErr_SetString(PyExc_SystemError, "HLL coupon set full");
        return -1;
    }
    h->set[~i] = c;
    h->count++;
    if (4 * h->count > 3 * (1u << h->lgarr)) {
        if (h->lgarr == lgk - 3) return hll_to_arr(h, lgk);
        int lg = h->lgarr + 1;
        uint32_t *ns = PyMem_Calloc((size_t)1 << lg, sizeof(uint32_t));
        if (ns == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (uint32_t k = 0; k < (1u << h->lgarr); k++)
            if (h->set[k]) ns[~set_find(ns, lg, h->set[k])] = h->set[k];
        PyMem_Free(h->set);
        h->set = ns;
        h->lgarr = (uint8_t)lg;
    }
    return 0;
}

/* hll_sketch.update / the union's coupon update */
static int hll_update(Hll *h, int lgk, uint32_t c)
{
    if (c == 0) return 0;
    if (h->mode == HLL_ARR) {
        arr_update(h, lgk, c);
        return 0;
    }
    if (h->mode == HLL_SET) return set_insert(h, lgk, c);
    for (int i = 0; i < 8; i++) {
        if (h->list[i] == 0) {
            h->list[i] = c;
            if (++h->count < 8) return 0;
            if (lgk < 8) return hll_to_arr(h, lgk); /* list full */
            uint32_t *set = PyMem_Calloc(32, sizeof(uint32_t));
            if (set == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            uint32_t old[8];
            memcpy(old, h->list, sizeof(old));
            h->mode = HLL_SET;
            h->set = set;
            h->lgarr = 5;
            h->count = 0;
            memset(h->list, 0, sizeof(h->list));
            for (int k = 0; k < 8; k++)
                if (set_insert(h, lgk, old[k]) < 0) return -1;
            return 0;
        }
        if (h->list[i] == c) return 0;
    }
    PyErr_SetString(PyExc_SystemError, "HLL coupon list full");
    return -1;
}

/* a sketch's own estimate (never out of order: its items came one by one) */
static double hll_estimate(const Hll *h) { return h->mode == HLL_ARR ? h->hip : coupon_estimate(h->count); }

/* a copy of `s` (the union's copy of its first source) */
static int hll_copy(Hll *dst, const Hll *s, int lgk)
{
    *dst = *s;
    dst->set = NULL;
    dst->regs = NULL;
    if (s->set != NULL) {
        size_t n = (size_t)1 << s->lgarr;
        if ((dst->set = PyMem_Malloc(n * sizeof(uint32_t))) == NULL) goto nomem;
        memcpy(dst->set, s->set, n * sizeof(uint32_t));
    }
    if (s->regs != NULL) {
        if ((dst->regs = PyMem_Malloc((size_t)1 << lgk)) == NULL) goto nomem;
        memcpy(dst->regs, s->regs, (size_t)1 << lgk);
    }
    return 0;
nomem:
    hll_free(dst);
    PyErr_NoMemory();
    return -1;
}

/* hll_union(lg_k) over the window's sketches in bucket order, then get_estimate(): the rules of
   the library's union for each pair of modes. `g` is the gadget, freed by the caller. */
static int hll_union(Hll *const *src, int n, int lgk, Hll *g)
{
    hll_init(g);
    for (int i = 0; i < n; i++) {
        Hll *s = src[i];
        if (hll_empty(s, lgk)) continue;
        if (s->mode != HLL_ARR) {
            if (g->mode != HLL_ARR && g->count == 0) {
                if (hll_copy(g, s, lgk) < 0) return -1;
            } else {
                uint32_t k, *cs = hll_coupons(s, &k);
                for (uint32_t j = 0; j < k; j++)
                    if (cs[j] && hll_update(g, lgk, cs[j]) < 0) return -1;
            }
        } else if (g->mode != HLL_ARR) {
            /* an HLL source into a list or set gadget: the source's registers, then the
               gadget's coupons in order (in-order HIP); into an empty one: the source */
            Hll a;
            if (hll_copy(&a, s, lgk) < 0) return -1;
            a.ooo = 0;
            uint32_t k, *cs = hll_coupons(g, &k);
            for (uint32_t j = 0; j < k; j++)
                if (cs[j]) arr_update(&a, lgk, cs[j]);
            hll_free(g);
            *g = a;
        } else {
            /* HLL into HLL: registers merged, out of order from now on (composite estimate) */
            uint32_t K = 1u << lgk;
            for (uint32_t j = 0; j < K; j++) {
                uint8_t v = s->regs[j], cur = g->regs[j];
                if (v > cur) {
                    g->regs[j] = v;
                    if (cur < 32) g->kxq0 -= inv_pow2[cur]; else g->kxq1 -= inv_pow2[cur];
                    if (v < 32) g->kxq0 += inv_pow2[v]; else g->kxq1 += inv_pow2[v];
                    g->zeros -= cur == 0;
                }
            }
            g->ooo = 1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ the host model */
/* score/host.py's HostModel in C, with the same HyperLogLog library (Apache DataSketches,
   called through its Python objects) and the same float arithmetic in the same order, so
   scores, labels and reasons are those of the Python model (tests/decide compare them). */

static PyObject *int_1024, *int_1;
static PyObject *s_dht, *s_tracker, *s_lsd, *s_p2p_host, *s_normal_host,
    *s_unknown_label, *s_discovery, *s_p2p_flow;

/* CPython's float floor division (Objects/floatobject.c _float_div_mod), then int() */
static int floordiv_int(double vx, double wx, int64_t *out)
{
    double mod = fmod(vx, wx), div, floordiv;
    div = (vx - mod) / wx;
    if (mod) {
        if ((wx < 0) != (mod < 0)) {
            mod += wx;
            div -= 1.0;
        }
    }
    if (div) {
        floordiv = floor(div);
        if (div - floordiv > 0.5) floordiv += 1.0;
    } else
        floordiv = copysign(0.0, vx / wx);
    if (isnan(floordiv)) {
        PyErr_SetString(PyExc_ValueError, "cannot convert float NaN to integer");
        return -1;
    }
    if (!(floordiv > -9.2e18 && floordiv < 9.2e18)) {
        PyErr_SetString(PyExc_OverflowError, "cannot convert float infinity to integer");
        return -1;
    }
    *out = (int64_t)floordiv;
    return 0;
}

typedef struct {
    int64_t b;
    Hll h;
} Bucket;

typedef struct {
    double width, step;
    Bucket *bk;
    int n, cap;
} Window;

typedef struct {
    double value, ts;
} Decay;

typedef struct HostModelObj HostModelObj;

typedef struct {
    PyObject_HEAD
    PyObject *host;
    PyObject *first_ts, *last_ts; /* the objects the Python model keeps */
    double last;                  /* last_ts as a float */
    long long flows;
    Window ips[3], ports;
    Decay p2p, enc, disc, near, normal;
    double last_discovery, last_encrypted, last_p2p;
    PyObject *label, *reported;
    int memo_valid;
    long long memo_flows;
    double memo_t;
    PyObject *memo;
} HostStateObj;

struct HostModelObj {
    PyObject_HEAD
    PyObject *hosts;   /* dict: host -> HostState */
    PyObject *cfg;     /* HostConfig */
    PyObject *composite, *score_type, *bias_obj;
    double windows[3], discovery_delta, half_life, bias, w_p2p, w_enc, w_disc, w_near, w_fanout, w_normal, t_low,
        t_high;
    long long buckets_per_window, lg_k, max_hosts, min_flows;
};

static PyTypeObject HostStateType;

static void window_clear(Window *w)
{
    for (int i = 0; i < w->n; i++) hll_free(&w->bk[i].h);
    PyMem_Free(w->bk);
    w->bk = NULL;
    w->n = w->cap = 0;
}

static void HostState_dealloc(HostStateObj *self)
{
    PyObject_GC_UnTrack(self);
    for (int i = 0; i < 3; i++) window_clear(&self->ips[i]);
    window_clear(&self->ports);
    Py_XDECREF(self->host);
    Py_XDECREF(self->first_ts);
    Py_XDECREF(self->last_ts);
    Py_XDECREF(self->label);
    Py_XDECREF(self->reported);
    Py_XDECREF(self->memo);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int HostState_traverse(HostStateObj *self, visitproc visit, void *arg)
{
    Py_VISIT(self->memo);
    return 0;
}

static PyObject *HostState_get_reported(HostStateObj *self, void *c) { return Py_NewRef(self->reported); }
static int HostState_set_reported(HostStateObj *self, PyObject *v, void *c)
{
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete reported");
        return -1;
    }
    Py_XSETREF(self->reported, Py_NewRef(v));
    return 0;
}
static PyObject *HostState_get_last_ts(HostStateObj *self, void *c) { return Py_NewRef(self->last_ts); }
static PyObject *HostState_get_first_ts(HostStateObj *self, void *c) { return Py_NewRef(self->first_ts); }
static PyObject *HostState_get_label(HostStateObj *self, void *c) { return Py_NewRef(self->label); }
static PyObject *HostState_get_host(HostStateObj *self, void *c) { return Py_NewRef(self->host); }
static PyObject *HostState_get_flows(HostStateObj *self, void *c) { return PyLong_FromLongLong(self->flows); }

/* the decayed counters and times, read-only (a (value, ts) pair like _Decaying's attributes) */
static PyTypeObject *DecayingType;
static PyStructSequence_Field decaying_fields[] = {{"value", "the count at ts"}, {"ts", "when it last grew"}, {NULL}};
static PyStructSequence_Desc decaying_desc = {"msewatch._decide.Decaying", "a decayed counter (value, ts)",
                                              decaying_fields, 2};

static PyObject *decaying(const Decay *d)
{
    PyObject *o = PyStructSequence_New(DecayingType);
    if (o == NULL) return NULL;
    PyStructSequence_SET_ITEM(o, 0, PyFloat_FromDouble(d->value));
    PyStructSequence_SET_ITEM(o, 1, PyFloat_FromDouble(d->ts));
    return o;
}
static PyObject *HostState_get_p2p(HostStateObj *self, void *c) { return decaying(&self->p2p); }
static PyObject *HostState_get_enc(HostStateObj *self, void *c) { return decaying(&self->enc); }
static PyObject *HostState_get_disc(HostStateObj *self, void *c) { return decaying(&self->disc); }
static PyObject *HostState_get_near(HostStateObj *self, void *c) { return decaying(&self->near); }
static PyObject *HostState_get_normal(HostStateObj *self, void *c) { return decaying(&self->normal); }
static PyObject *HostState_get_last_discovery(HostStateObj *self, void *c) { return PyFloat_FromDouble(self->last_discovery); }
static PyObject *HostState_get_last_encrypted(HostStateObj *self, void *c) { return PyFloat_FromDouble(self->last_encrypted); }
static PyObject *HostState_get_last_p2p(HostStateObj *self, void *c) { return PyFloat_FromDouble(self->last_p2p); }

static PyGetSetDef HostState_getset[] = {
    {"p2p_flows", (getter)HostState_get_p2p, NULL, "decayed count of P2P flows", NULL},
    {"enc_flows", (getter)HostState_get_enc, NULL, "decayed count of encrypted peer-like flows", NULL},
    {"discovery", (getter)HostState_get_disc, NULL, "decayed count of discovery flows", NULL},
    {"near", (getter)HostState_get_near, NULL, "decayed count of discovery near encrypted flows", NULL},
    {"normal_flows", (getter)HostState_get_normal, NULL, "decayed count of other flows", NULL},
    {"last_discovery", (getter)HostState_get_last_discovery, NULL, "time of the last discovery flow", NULL},
    {"last_encrypted", (getter)HostState_get_last_encrypted, NULL, "time of the last encrypted peer-like flow", NULL},
    {"last_p2p", (getter)HostState_get_last_p2p, NULL, "time of the last P2P flow", NULL},
    {"reported", (getter)HostState_get_reported, (setter)HostState_set_reported, "the label last reported", NULL},
    {"last_ts", (getter)HostState_get_last_ts, NULL, "time of the host's last flow", NULL},
    {"first_ts", (getter)HostState_get_first_ts, NULL, "time of the host's first flow", NULL},
    {"label", (getter)HostState_get_label, NULL, "the label of the last score", NULL},
    {"host", (getter)HostState_get_host, NULL, "the address", NULL},
    {"flows", (getter)HostState_get_flows, NULL, "flows observed", NULL},
    {NULL}};

static PyTypeObject HostStateType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "msewatch._decide.HostState",
    .tp_basicsize = sizeof(HostStateObj),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = (destructor)HostState_dealloc,
    .tp_traverse = (traverseproc)HostState_traverse,
    .tp_getset = HostState_getset,
    .tp_doc = "One local host's state in the compiled host model (score/host.py HostState).",
};

static int window_expire(Window *w, double ts)
{
    int64_t oldest;
    if (floordiv_int(ts - w->width, w->step, &oldest) < 0) return -1;
    int k = 0;
    for (int i = 0; i < w->n; i++) {
        if (w->bk[i].b <= oldest)
            hll_free(&w->bk[i].h);
        else
            w->bk[k++] = w->bk[i];
    }
    w->n = k;
    return 0;
}

/* _WindowedDistinct.add with the item's coupon (0: the empty string, which makes the bucket
   but counts nothing, as the library's update ignores it) */
static int window_add(HostModelObj *m, Window *w, double ts, uint32_t coupon)
{
    int64_t b;
    if (floordiv_int(ts, w->step, &b) < 0) return -1;
    Hll *h = NULL;
    for (int i = 0; i < w->n; i++)
        if (w->bk[i].b == b) {
            h = &w->bk[i].h;
            break;
        }
    if (h == NULL) {
        if (window_expire(w, ts) < 0) return -1;
        if (w->n == w->cap) {
            int cap = w->cap ? 2 * w->cap : 4;
            Bucket *nb = PyMem_Realloc(w->bk, cap * sizeof(Bucket));
            if (nb == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            w->bk = nb;
            w->cap = cap;
        }
        w->bk[w->n].b = b;
        h = &w->bk[w->n].h;
        hll_init(h);
        w->n++;
    }
    return hll_update(h, (int)m->lg_k, coupon);
}

/* the library's composite estimate of an out-of-order union gadget: its HLL_8 image (the
   library's serialization: preamble, HIP, kxq0, kxq1, registers at the minimum, exceptions,
   the registers) through the model's `composite` callable */
static int composite_estimate(HostModelObj *m, const Hll *g, double *out)
{
    uint32_t K = 1u << m->lg_k;
    PyObject *img = PyBytes_FromStringAndSize(NULL, 40 + (Py_ssize_t)K);
    if (img == NULL) return -1;
    uint8_t *p = (uint8_t *)PyBytes_AS_STRING(img);
    const uint8_t pre[8] = {10, 1, 7, (uint8_t)m->lg_k, 0, 16 /* out of order */, 0, 2 | (2 << 2) /* HLL, HLL_8 */};
    memcpy(p, pre, 8);
    double d[3] = {g->hip, g->kxq0, g->kxq1};
    uint32_t u[2] = {g->zeros, 0};
    memcpy(p + 8, d, sizeof(d));
    memcpy(p + 32, u, sizeof(u));
    memcpy(p + 40, g->regs, K);
    PyObject *r = PyObject_CallOneArg(m->composite, img);
    Py_DECREF(img);
    if (r == NULL) return -1;
    *out = PyFloat_AsDouble(r);
    Py_DECREF(r);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

static int window_estimate(HostModelObj *m, Window *w, double ts, double *out)
{
    if (window_expire(w, ts) < 0) return -1;
    if (w->n == 0) {
        *out = 0.0;
        return 0;
    }
    if (w->n == 1) {
        *out = hll_estimate(&w->bk[0].h);
        return 0;
    }
    Hll *src[64], g;
    Hll **srcp = w->n <= 64 ? src : PyMem_Malloc(w->n * sizeof(Hll *));
    if (srcp == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (int i = 0; i < w->n; i++) srcp[i] = &w->bk[i].h;
    int rc = hll_union(srcp, w->n, (int)m->lg_k, &g);
    if (srcp != src) PyMem_Free(srcp);
    if (rc == 0) {
        if (g.mode != HLL_ARR)
            *out = coupon_estimate(g.count);
        else if (!g.ooo)
            *out = g.hip;
        else
            rc = composite_estimate(m, &g, out);
    }
    hll_free(&g);
    return rc;
}

static double decay_at(const Decay *d, double ts, double hl)
{
    if (ts <= d->ts || d->value == 0.0) return d->value;
    return d->value * pow(0.5, (ts - d->ts) / hl);
}

static void decay_add(Decay *d, double ts, double amount, double hl)
{
    d->value = decay_at(d, ts, hl) + amount;
    d->ts = d->ts > ts ? d->ts : ts; /* max(ts, self.ts) */
}

static HostStateObj *new_state(HostModelObj *m, PyObject *host, PyObject *ts_obj, double ts)
{
    HostStateObj *st = PyObject_GC_New(HostStateObj, &HostStateType);
    if (st == NULL) return NULL;
    st->host = Py_NewRef(host);
    st->first_ts = Py_NewRef(ts_obj);
    st->last_ts = Py_NewRef(ts_obj);
    st->last = ts;
    st->flows = 0;
    for (int i = 0; i < 3; i++) {
        st->ips[i].width = m->windows[i];
        st->ips[i].step = m->windows[i] / (double)m->buckets_per_window;
        st->ips[i].bk = NULL;
        st->ips[i].n = st->ips[i].cap = 0;
    }
    st->ports.width = m->windows[1];
    st->ports.step = m->windows[1] / (double)m->buckets_per_window;
    st->ports.bk = NULL;
    st->ports.n = st->ports.cap = 0;
    Decay zero = {0.0, 0.0};
    st->p2p = st->enc = st->disc = st->near = st->normal = zero;
    st->last_discovery = st->last_encrypted = st->last_p2p = -INFINITY;
    st->label = Py_NewRef(s_unknown_label);
    st->reported = Py_NewRef(s_unknown_label);
    st->memo_valid = 0;
    st->memo_flows = 0;
    st->memo_t = 0.0;
    st->memo = NULL;
    PyObject_GC_Track(st);
    return st;
}

/* HostModel._state: the host's state, made (and the least recently seen host evicted at
   max_hosts) when new */
static HostStateObj *state_for(HostModelObj *m, PyObject *host, PyObject *ts_obj, double ts)
{
    PyObject *st = PyDict_GetItemWithError(m->hosts, host);
    if (st != NULL) return (HostStateObj *)st;
    if (PyErr_Occurred()) return NULL;
    if (PyDict_GET_SIZE(m->hosts) >= m->max_hosts) {
        /* min(self.hosts.values(), key=last_ts): the first of the smallest */
        PyObject *k, *v, *oldest = NULL;
        Py_ssize_t pos = 0;
        double best = 0;
        while (PyDict_Next(m->hosts, &pos, &k, &v)) {
            double lt = ((HostStateObj *)v)->last;
            if (oldest == NULL || lt < best) {
                oldest = k;
                best = lt;
            }
        }
        if (oldest != NULL) {
            PyObject *key = Py_NewRef(((HostStateObj *)PyDict_GetItem(m->hosts, oldest))->host);
            int r = PyDict_DelItem(m->hosts, key);
            Py_DECREF(key);
            if (r < 0) return NULL;
        }
    }
    HostStateObj *nst = new_state(m, host, ts_obj, ts);
    if (nst == NULL) return NULL;
    int r = PyDict_SetItem(m->hosts, host, (PyObject *)nst);
    Py_DECREF(nst); /* the dict holds it */
    return r < 0 ? NULL : nst;
}

static int get_cfg_f(PyObject *cfg, const char *name, double *out)
{
    PyObject *v = PyObject_GetAttrString(cfg, name);
    if (v == NULL) return -1;
    *out = PyFloat_AsDouble(v);
    Py_DECREF(v);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

static int get_cfg_i(PyObject *cfg, const char *name, long long *out)
{
    PyObject *v = PyObject_GetAttrString(cfg, name);
    if (v == NULL) return -1;
    *out = PyLong_AsLongLong(v);
    Py_DECREF(v);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static void HostModel_dealloc(HostModelObj *self)
{
    PyObject_GC_UnTrack(self);
    Py_XDECREF(self->hosts);
    Py_XDECREF(self->cfg);
    Py_XDECREF(self->composite);
    Py_XDECREF(self->score_type);
    Py_XDECREF(self->bias_obj);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int HostModel_traverse(HostModelObj *self, visitproc visit, void *arg)
{
    Py_VISIT(self->hosts);
    return 0;
}

static int HostModel_clear(HostModelObj *self)
{
    Py_CLEAR(self->hosts);
    return 0;
}

/* HostModel(cfg, composite, HostScore) */
static int HostModel_init(HostModelObj *self, PyObject *args, PyObject *kw)
{
    PyObject *cfg, *composite, *score_type;
    if (!PyArg_ParseTuple(args, "OOO", &cfg, &composite, &score_type)) return -1;
    PyObject *win = PyObject_GetAttrString(cfg, "windows");
    if (win == NULL) return -1;
    PyObject *seq = PySequence_Fast(win, "windows must be a sequence");
    Py_DECREF(win);
    if (seq == NULL) return -1;
    if (PySequence_Fast_GET_SIZE(seq) != 3) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "three windows are needed");
        return -1;
    }
    for (int i = 0; i < 3; i++) {
        self->windows[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
        if (self->windows[i] == -1.0 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    if (get_cfg_f(cfg, "discovery_delta", &self->discovery_delta) < 0 || get_cfg_f(cfg, "half_life", &self->half_life) < 0 ||
        get_cfg_f(cfg, "bias", &self->bias) < 0 || get_cfg_f(cfg, "w_p2p_flows", &self->w_p2p) < 0 ||
        get_cfg_f(cfg, "w_encrypted_peerlike", &self->w_enc) < 0 || get_cfg_f(cfg, "w_discovery", &self->w_disc) < 0 ||
        get_cfg_f(cfg, "w_discovery_near_encrypted", &self->w_near) < 0 ||
        get_cfg_f(cfg, "w_peer_fanout", &self->w_fanout) < 0 || get_cfg_f(cfg, "w_normal_flows", &self->w_normal) < 0 ||
        get_cfg_f(cfg, "t_low", &self->t_low) < 0 || get_cfg_f(cfg, "t_high", &self->t_high) < 0 ||
        get_cfg_i(cfg, "buckets_per_window", &self->buckets_per_window) < 0 || get_cfg_i(cfg, "hll_lg_k", &self->lg_k) < 0 ||
        get_cfg_i(cfg, "max_hosts", &self->max_hosts) < 0 || get_cfg_i(cfg, "min_flows", &self->min_flows) < 0)
        return -1;
    if (self->lg_k < 4 || self->lg_k > 16) { /* the coupon estimate's knots cover 2^(16-3) * 3/4 coupons */
        PyErr_SetString(PyExc_ValueError, "hll_lg_k outside 4..16");
        return -1;
    }
    PyObject *bias = PyObject_GetAttrString(cfg, "bias");
    if (bias == NULL) return -1;
    Py_XSETREF(self->bias_obj, bias);
    if (self->hosts == NULL && (self->hosts = PyDict_New()) == NULL) return -1;
    Py_XSETREF(self->cfg, Py_NewRef(cfg));
    Py_XSETREF(self->composite, Py_NewRef(composite));
    Py_XSETREF(self->score_type, Py_NewRef(score_type));
    return 0;
}

static int hm_observe(HostModelObj *m, PyObject *host, PyObject *ts_obj, PyObject *remote_h, PyObject *remote_p,
                      PyObject *protocol, int p2p, int peerlike);

/* observe_flow(host, ts, remote_h, remote_p, protocol, p2p, peerlike) */
static PyObject *HostModel_observe_flow(HostModelObj *m, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "observe_flow takes 7 arguments");
        return NULL;
    }
    int p2p = PyObject_IsTrue(args[5]), peerlike = PyObject_IsTrue(args[6]);
    if (p2p < 0 || peerlike < 0) return NULL;
    if (hm_observe(m, args[0], args[1], args[2], args[3], args[4], p2p, peerlike) < 0) return NULL;
    Py_RETURN_NONE;
}

static int hm_observe(HostModelObj *m, PyObject *host, PyObject *ts_obj, PyObject *remote_h, PyObject *remote_p,
                      PyObject *protocol, int p2p, int peerlike)
{
    double ts = PyFloat_AsDouble(ts_obj);
    if (ts == -1.0 && PyErr_Occurred()) return -1;
    HostStateObj *st = state_for(m, host, ts_obj, ts);
    if (st == NULL) return -1;
    if (ts > st->last) {
        st->last = ts;
        Py_SETREF(st->last_ts, Py_NewRef(ts_obj));
    }
    st->flows++;
    int high = PyObject_RichCompareBool(remote_p, int_1024, Py_GE);
    if (high < 0) return -1;
    if (high) {
        /* the library hashes a str's UTF-8 bytes; the remote address is hashed once for the
           three windows, the port as str(remote_p) */
        Py_ssize_t n;
        const char *s;
        if (!PyUnicode_Check(remote_h)) {
            PyErr_SetString(PyExc_TypeError, "the remote host must be a str");
            return -1;
        }
        if ((s = PyUnicode_AsUTF8AndSize(remote_h, &n)) == NULL) return -1;
        uint32_t c = hll_coupon(s, (size_t)n);
        for (int i = 0; i < 3; i++)
            if (window_add(m, &st->ips[i], ts, c) < 0) return -1;
        char buf[32];
        long long pv;
        int overflow = 0;
        if (PyLong_CheckExact(remote_p) && ((pv = PyLong_AsLongLongAndOverflow(remote_p, &overflow)), !overflow) &&
            !(pv == -1 && PyErr_Occurred())) {
            n = snprintf(buf, sizeof(buf), "%lld", pv);
            c = hll_coupon(buf, (size_t)n);
        } else {
            if (PyErr_Occurred()) return -1;
            PyObject *ps = PyObject_Str(remote_p);
            if (ps == NULL) return -1;
            s = PyUnicode_AsUTF8AndSize(ps, &n);
            c = s == NULL ? 0 : hll_coupon(s, (size_t)n);
            Py_DECREF(ps);
            if (s == NULL) return -1;
        }
        if (window_add(m, &st->ports, ts, c) < 0) return -1;
    }
    double hl = m->half_life;
    int discovery = protocol != Py_None && PyUnicode_Check(protocol) &&
                    (PyUnicode_Compare(protocol, s_dht) == 0 || PyUnicode_Compare(protocol, s_tracker) == 0 ||
                     PyUnicode_Compare(protocol, s_lsd) == 0);
    if (p2p && discovery) {
        decay_add(&st->disc, ts, 1.0, hl);
        if (ts > st->last_discovery) st->last_discovery = ts;
        if (ts - st->last_encrypted <= m->discovery_delta) decay_add(&st->near, ts, 1.0, hl);
    } else if (p2p) {
        decay_add(&st->p2p, ts, 1.0, hl);
        if (ts > st->last_p2p) st->last_p2p = ts;
    } else if (peerlike) {
        decay_add(&st->enc, ts, 1.0, hl);
        if (ts > st->last_encrypted) st->last_encrypted = ts;
        if (ts - st->last_discovery <= m->discovery_delta) decay_add(&st->near, ts, 1.0, hl);
    } else
        decay_add(&st->normal, ts, 1.0, hl);
    return 0;
}

static PyObject *host_score_obj(HostModelObj *m, PyObject *score, PyObject *p, PyObject *label, PyObject *reasons)
{
    PyTypeObject *t = (PyTypeObject *)m->score_type;
    PyObject *hs = t->tp_alloc(t, 4);
    if (hs == NULL) {
        Py_XDECREF(score);
        Py_XDECREF(p);
        Py_XDECREF(reasons);
        return NULL;
    }
    if (score == NULL || p == NULL || reasons == NULL) {
        Py_XDECREF(score);
        Py_XDECREF(p);
        Py_XDECREF(reasons);
        Py_DECREF(hs);
        return NULL;
    }
    PyTuple_SET_ITEM(hs, 0, score);
    PyTuple_SET_ITEM(hs, 1, p);
    PyTuple_SET_ITEM(hs, 2, Py_NewRef(label));
    PyTuple_SET_ITEM(hs, 3, reasons);
    return hs;
}

static PyObject *fmt_reason(const char *name, double x, int prec)
{
    char *s = PyOS_double_to_string(x, 'f', prec, 0, NULL);
    if (s == NULL) return NULL;
    PyObject *r = PyUnicode_FromFormat("%s=%s", name, s);
    PyMem_Free(s);
    return r;
}

static PyObject *hm_score(HostModelObj *m, PyObject *host, PyObject *ts_obj, int detail);

/* score(host, ts=None, detail=False) -> HostScore */
static PyObject *HostModel_score(HostModelObj *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"host", "ts", "detail", NULL};
    PyObject *host, *ts_obj = Py_None;
    int detail = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|Op", kwlist, &host, &ts_obj, &detail)) return NULL;
    return hm_score(m, host, ts_obj, detail);
}

static PyObject *hm_score(HostModelObj *m, PyObject *host, PyObject *ts_obj, int detail)
{
    PyObject *sto = PyDict_GetItemWithError(m->hosts, host);
    if (sto == NULL) {
        if (PyErr_Occurred()) return NULL;
        return host_score_obj(m, Py_NewRef(m->bias_obj), PyFloat_FromDouble(sigmoid(m->bias)), s_unknown_label,
                              PyTuple_New(0));
    }
    HostStateObj *st = (HostStateObj *)sto;
    double t;
    if (ts_obj == Py_None)
        t = st->last;
    else {
        t = PyFloat_AsDouble(ts_obj);
        if (t == -1.0 && PyErr_Occurred()) return NULL;
    }
    if (!detail && st->memo_valid && st->memo_flows == st->flows && (st->memo_t == t || (isnan(t) && isnan(st->memo_t))))
        return Py_NewRef(st->memo);
    double hl = m->half_life;
    double p2p = decay_at(&st->p2p, t, hl), enc = decay_at(&st->enc, t, hl), disc = decay_at(&st->disc, t, hl),
           near = decay_at(&st->near, t, hl), normal = decay_at(&st->normal, t, hl);
    double ips, ports;
    if (window_estimate(m, &st->ips[1], t, &ips) < 0 || window_estimate(m, &st->ports, t, &ports) < 0) return NULL;
    double fanout = ports < ips ? ports : ips; /* min(ips, ports) */
    double s = m->bias + m->w_p2p * log1p(p2p) + m->w_enc * log1p(enc) + m->w_disc * log1p(disc) +
               m->w_near * log1p(near) + m->w_fanout * log1p(fanout) + m->w_normal * normal;
    double p = sigmoid(s);
    PyObject *reasons;
    if (!detail)
        reasons = PyTuple_New(0);
    else {
        double ips10, ips30;
        if (window_estimate(m, &st->ips[0], t, &ips10) < 0 || window_estimate(m, &st->ips[2], t, &ips30) < 0)
            return NULL;
        reasons = PyTuple_New(9);
        if (reasons == NULL) return NULL;
        PyObject *items[9] = {fmt_reason("p2p_flows", p2p, 1), fmt_reason("encrypted_peerlike", enc, 1),
                              fmt_reason("discovery", disc, 1), fmt_reason("discovery_near_encrypted", near, 1),
                              fmt_reason("remote_ips_2m", ips, 0), fmt_reason("remote_ports_2m", ports, 0),
                              fmt_reason("remote_ips_10s", ips10, 0), fmt_reason("remote_ips_30m", ips30, 0),
                              PyUnicode_FromFormat("flows=%lld", st->flows)};
        for (int i = 0; i < 9; i++) {
            if (items[i] == NULL) {
                for (int j = i; j < 9; j++) Py_XDECREF(items[j]);
                Py_DECREF(reasons);
                return NULL;
            }
            PyTuple_SET_ITEM(reasons, i, items[i]);
        }
    }
    PyObject *label;
    if (p >= m->t_high)
        label = s_p2p_host;
    else if (p <= m->t_low && st->flows >= m->min_flows)
        label = s_normal_host;
    else
        label = s_unknown_label;
    /* hysteresis: once P2P, a host stays P2P until its evidence decays below t_low */
    if (st->label == s_p2p_host && label == s_unknown_label) label = s_p2p_host;
    Py_SETREF(st->label, Py_NewRef(label));
    PyObject *hs = host_score_obj(m, PyFloat_FromDouble(s), PyFloat_FromDouble(p), label, reasons);
    if (hs == NULL) return NULL;
    st->memo_valid = 1;
    st->memo_flows = st->flows;
    st->memo_t = t;
    Py_XSETREF(st->memo, Py_NewRef(hs));
    return hs;
}

static PyObject *hm_near(HostModelObj *m, PyObject *host, PyObject *ts_obj);

/* p2p_activity_near(host, ts) -> "discovery" | "p2p_flow" | None */
static PyObject *HostModel_p2p_activity_near(HostModelObj *m, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "p2p_activity_near takes 2 arguments");
        return NULL;
    }
    return hm_near(m, args[0], args[1]);
}

static PyObject *hm_near(HostModelObj *m, PyObject *host, PyObject *ts_obj)
{
    PyObject *sto = PyDict_GetItemWithError(m->hosts, host);
    if (sto == NULL) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    HostStateObj *st = (HostStateObj *)sto;
    double ts = PyFloat_AsDouble(ts_obj);
    if (ts == -1.0 && PyErr_Occurred()) return NULL;
    double d = m->discovery_delta;
    if (fabs(ts - st->last_discovery) <= d) return Py_NewRef(s_discovery);
    if (fabs(ts - st->last_p2p) <= d) return Py_NewRef(s_p2p_flow);
    Py_RETURN_NONE;
}

/* distinct(host, ts) -> (remote IPs over each window, remote ports over 2 min): the window
   estimates at ts (expiring buckets as score does), for the tests against score/host.py */
static PyObject *HostModel_distinct(HostModelObj *m, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "distinct takes 2 arguments");
        return NULL;
    }
    PyObject *sto = PyDict_GetItemWithError(m->hosts, args[0]);
    if (sto == NULL) {
        if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, args[0]);
        return NULL;
    }
    HostStateObj *st = (HostStateObj *)sto;
    double t = PyFloat_AsDouble(args[1]), e[4];
    if (t == -1.0 && PyErr_Occurred()) return NULL;
    for (int i = 0; i < 4; i++)
        if (window_estimate(m, i < 3 ? &st->ips[i] : &st->ports, t, &e[i]) < 0) return NULL;
    return Py_BuildValue("(dddd)", e[0], e[1], e[2], e[3]);
}

/* ------------------------------------------------------------------ state export / import */
/* The model's hosts as data (msewatch/state.py writes them to the bridge's state file and reads
   them back at start): export_hosts() -> [(host, first_ts, last_ts, label, reported, blob)] in
   the dict's order (eviction picks the first of the oldest), import_hosts(that list) replaces
   the hosts. `blob` holds one host's numbers in this build's layout (native byte order; the
   file records the byte order and the model): flows, the five decayed counters, the three last_*
   times, then the four windows (ips 10 s, 2 min, 30 min, ports 2 min), each a bucket count and
   per bucket its number and its HLL (mode, list, set or registers) exactly as held, so every
   later estimate and update is the one the model would have made without the round trip.
   Nothing here runs per message. A blob that does not parse, or holds values the HLL code
   could not take (a register above 63, a set beyond its load), is a ValueError. */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} Buf;

static int buf_put(Buf *b, const void *src, size_t n)
{
    if (b->cap - b->n < n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n < n) cap *= 2;
        uint8_t *p = PyMem_Realloc(b->p, cap);
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
    return 0;
}

typedef struct {
    int64_t b;
    uint8_t mode, lgarr, ooo, pad;
    uint32_t count, zeros;
    double hip, kxq0, kxq1;
    uint32_t list[8];
} BucketRec;

static int put_window(Buf *out, const Window *w, int lgk)
{
    int32_t n = w->n;
    if (buf_put(out, &n, sizeof(n)) < 0) return -1;
    for (int i = 0; i < w->n; i++) {
        const Hll *h = &w->bk[i].h;
        BucketRec r;
        memset(&r, 0, sizeof(r));
        r.b = w->bk[i].b;
        r.mode = h->mode;
        r.lgarr = h->lgarr;
        r.ooo = h->ooo;
        r.count = h->count;
        r.zeros = h->zeros;
        r.hip = h->hip;
        r.kxq0 = h->kxq0;
        r.kxq1 = h->kxq1;
        memcpy(r.list, h->list, sizeof(r.list));
        if (buf_put(out, &r, sizeof(r)) < 0) return -1;
        if (h->mode == HLL_SET && buf_put(out, h->set, ((size_t)1 << h->lgarr) * sizeof(uint32_t)) < 0) return -1;
        if (h->mode == HLL_ARR && buf_put(out, h->regs, (size_t)1 << lgk) < 0) return -1;
    }
    return 0;
}

typedef struct {
    const uint8_t *p;
    size_t n, off;
} Rd;

static int rd(Rd *r, void *dst, size_t n)
{
    if (r->n - r->off < n) return -1;
    memcpy(dst, r->p + r->off, n);
    r->off += n;
    return 0;
}

/* a window read back into `w` (empty on entry); -1 with w cleared when the bytes do not fit */
static int get_window(Rd *r, Window *w, int lgk)
{
    int32_t n;
    uint32_t K = 1u << lgk;
    if (rd(r, &n, sizeof(n)) < 0 || n < 0 || n > (1 << 20)) return -1;
    if (n > 0 && (w->bk = PyMem_Calloc((size_t)n, sizeof(Bucket))) == NULL) return -1;
    w->cap = n;
    for (int i = 0; i < n; i++) {
        BucketRec rec;
        if (rd(r, &rec, sizeof(rec)) < 0) goto bad;
        Hll *h = &w->bk[i].h;
        hll_init(h);
        w->bk[i].b = rec.b;
        w->n = i + 1;
        h->mode = rec.mode;
        h->lgarr = rec.lgarr;
        h->ooo = rec.ooo ? 1 : 0;
        h->count = rec.count;
        h->zeros = rec.zeros;
        h->hip = rec.hip;
        h->kxq0 = rec.kxq0;
        h->kxq1 = rec.kxq1;
        memcpy(h->list, rec.list, sizeof(h->list));
        if (rec.mode == HLL_LIST) {
            if (rec.count > 8) goto bad;
        } else if (rec.mode == HLL_SET) {
            if (rec.lgarr < 3 || rec.lgarr > lgk || rec.count >= (3u << rec.lgarr) / 4 + 1) goto bad;
            size_t sz = ((size_t)1 << rec.lgarr) * sizeof(uint32_t);
            if ((h->set = PyMem_Malloc(sz)) == NULL || rd(r, h->set, sz) < 0) goto bad;
            uint32_t held = 0;
            for (uint32_t j = 0; j < (1u << rec.lgarr); j++) held += h->set[j] != 0;
            if (held != rec.count) goto bad;
        } else if (rec.mode == HLL_ARR) {
            if ((h->regs = PyMem_Malloc(K)) == NULL || rd(r, h->regs, K) < 0) goto bad;
            uint32_t zeros = 0;
            for (uint32_t j = 0; j < K; j++) {
                if (h->regs[j] > 63) goto bad;
                zeros += h->regs[j] == 0;
            }
            if (zeros != rec.zeros) goto bad;
        } else
            goto bad;
    }
    return 0;
bad:
    window_clear(w);
    return -1;
}

static PyObject *HostModel_export_hosts(HostModelObj *m, PyObject *unused)
{
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(m->hosts, &pos, &k, &v)) {
        HostStateObj *st = (HostStateObj *)v;
        Buf b = {NULL, 0, 0};
        int64_t flows = st->flows;
        Decay d[5] = {st->p2p, st->enc, st->disc, st->near, st->normal};
        double last3[3] = {st->last_discovery, st->last_encrypted, st->last_p2p};
        int rc = buf_put(&b, &flows, sizeof(flows)) < 0 || buf_put(&b, d, sizeof(d)) < 0 ||
                 buf_put(&b, last3, sizeof(last3)) < 0;
        for (int i = 0; i < 4 && !rc; i++) rc = put_window(&b, i < 3 ? &st->ips[i] : &st->ports, (int)m->lg_k) < 0;
        PyObject *blob = rc ? NULL : PyBytes_FromStringAndSize((const char *)b.p, (Py_ssize_t)b.n);
        PyMem_Free(b.p);
        PyObject *t = blob == NULL ? NULL : Py_BuildValue("(OOOOON)", st->host, st->first_ts, st->last_ts, st->label,
                                                          st->reported, blob);
        if (t == NULL || PyList_Append(out, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(t);
    }
    return out;
}

static PyObject *host_label(PyObject *o)
{
    if (PyUnicode_Check(o)) {
        if (PyUnicode_Compare(o, s_p2p_host) == 0) return s_p2p_host;
        if (PyUnicode_Compare(o, s_normal_host) == 0) return s_normal_host;
        if (PyUnicode_Compare(o, s_unknown_label) == 0) return s_unknown_label;
    }
    return NULL;
}

/* one exported host back as a HostState, or NULL (ValueError) */
static HostStateObj *import_host(HostModelObj *m, PyObject *item)
{
    PyObject *host, *first_ts, *last_ts, *label, *reported;
    const char *p;
    Py_ssize_t n;
    if (!PyTuple_Check(item) || !PyArg_ParseTuple(item, "UOOOOy#", &host, &first_ts, &last_ts, &label, &reported, &p, &n))
        goto bad;
    if (!(PyFloat_CheckExact(first_ts) || PyLong_CheckExact(first_ts)) ||
        !(PyFloat_CheckExact(last_ts) || PyLong_CheckExact(last_ts)))
        goto bad;
    PyObject *lab = host_label(label), *rep = host_label(reported);
    if (lab == NULL || rep == NULL) goto bad;
    double last = PyFloat_AsDouble(last_ts);
    if (last == -1.0 && PyErr_Occurred()) goto bad;
    HostStateObj *st = new_state(m, host, first_ts, last);
    if (st == NULL) return NULL;
    Py_SETREF(st->last_ts, Py_NewRef(last_ts));
    Py_SETREF(st->label, Py_NewRef(lab));
    Py_SETREF(st->reported, Py_NewRef(rep));
    Rd r = {(const uint8_t *)p, (size_t)n, 0};
    int64_t flows;
    Decay d[5];
    double last3[3];
    int rc = rd(&r, &flows, sizeof(flows)) < 0 || rd(&r, d, sizeof(d)) < 0 || rd(&r, last3, sizeof(last3)) < 0 || flows < 0;
    for (int i = 0; i < 4 && !rc; i++) rc = get_window(&r, i < 3 ? &st->ips[i] : &st->ports, (int)m->lg_k) < 0;
    if (rc || r.off != r.n) {
        Py_DECREF(st);
        if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_MemoryError)) PyErr_Clear();
        if (PyErr_Occurred()) return NULL;
        goto bad;
    }
    st->flows = flows;
    st->p2p = d[0];
    st->enc = d[1];
    st->disc = d[2];
    st->near = d[3];
    st->normal = d[4];
    st->last_discovery = last3[0];
    st->last_encrypted = last3[1];
    st->last_p2p = last3[2];
    return st;
bad:
    PyErr_Clear();
    PyErr_SetString(PyExc_ValueError, "a host's exported state does not parse");
    return NULL;
}

static PyObject *HostModel_import_hosts(HostModelObj *m, PyObject *items)
{
    PyObject *seq = PySequence_Fast(items, "import_hosts takes a list");
    if (seq == NULL) return NULL;
    PyObject *fresh = PyDict_New();
    if (fresh == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        HostStateObj *st = import_host(m, PySequence_Fast_GET_ITEM(seq, i));
        if (st == NULL || PyDict_SetItem(fresh, st->host, (PyObject *)st) < 0) {
            Py_XDECREF(st);
            Py_DECREF(fresh);
            Py_DECREF(seq);
            return NULL;
        }
        Py_DECREF(st);
    }
    Py_DECREF(seq);
    /* all parsed: replace the hosts in place (the bound Decider holds this dict) */
    PyDict_Clear(m->hosts);
    int rc = PyDict_Update(m->hosts, fresh);
    Py_DECREF(fresh);
    if (rc < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *HostModel_get_hosts(HostModelObj *m, void *c) { return Py_NewRef(m->hosts); }
static PyObject *HostModel_get_cfg(HostModelObj *m, void *c) { return Py_NewRef(m->cfg); }

static PyMethodDef HostModel_methods[] = {
    {"observe_flow", (PyCFunction)(void (*)(void))HostModel_observe_flow, METH_FASTCALL,
     "observe_flow(host, ts, remote_h, remote_p, protocol, p2p, peerlike)"},
    {"score", (PyCFunction)(void (*)(void))HostModel_score, METH_VARARGS | METH_KEYWORDS,
     "score(host, ts=None, detail=False) -> HostScore"},
    {"p2p_activity_near", (PyCFunction)(void (*)(void))HostModel_p2p_activity_near, METH_FASTCALL,
     "p2p_activity_near(host, ts) -> 'discovery' | 'p2p_flow' | None"},
    {"distinct", (PyCFunction)(void (*)(void))HostModel_distinct, METH_FASTCALL,
     "distinct(host, ts) -> (remote IPs 10 s, 2 min, 30 min, remote ports 2 min) estimated at ts"},
    {"export_hosts", (PyCFunction)HostModel_export_hosts, METH_NOARGS,
     "export_hosts() -> [(host, first_ts, last_ts, label, reported, blob)] in the model's order (msewatch/state.py)"},
    {"import_hosts", (PyCFunction)HostModel_import_hosts, METH_O,
     "import_hosts(what export_hosts returned): replaces the hosts; ValueError when an entry does not parse"},
    {NULL}};

static PyGetSetDef HostModel_getset[] = {
    {"hosts", (getter)HostModel_get_hosts, NULL, "host -> HostState", NULL},
    {"cfg", (getter)HostModel_get_cfg, NULL, "the HostConfig", NULL},
    {NULL}};

static PyTypeObject HostModelType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "msewatch._decide.HostModel",
    .tp_basicsize = sizeof(HostModelObj),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)HostModel_init,
    .tp_dealloc = (destructor)HostModel_dealloc,
    .tp_traverse = (traverseproc)HostModel_traverse,
    .tp_clear = (inquiry)HostModel_clear,
    .tp_methods = HostModel_methods,
    .tp_getset = HostModel_getset,
    .tp_doc = "HostModel(cfg, composite, HostScore): score/host.py's HostModel in C (composite: the "
              "library's estimate of an out-of-order HLL_8 union image, score/host.py composite_estimate)",
};


/* ------------------------------------------------------------------ Engine.process_evidence */
/* engine.py Engine.process_evidence for evidence the compiled decider takes, with the engine's
   own state (bound once): the same calls in the same order, the rare parts (a confirmed peer
   remembered, a host verdict written) through the engine's Python methods. */

static PyObject *s_now, *s_detector_runs, *s_flow_verdicts, *s_label, *s_orig_h, *s_orig_p, *s_resp_p_name,
    *s_bt_mse, *s_bt_plain, *s_utp, *s_dht2;

static PyObject *Decider_bind(Decider *self, PyObject *args)
{
    PyObject *eng, *lc, *hosts, *pc, *lh, *rp, *hv, *stats, *bias;
    double ft, ttl;
    if (!PyArg_ParseTuple(args, "OO!O!O!OOOOO!dd", &eng, &PyDict_Type, &lc, &HostModelType, &hosts, &PyDict_Type, &pc,
                          &lh, &rp, &hv, &stats, &PyFloat_Type, &bias, &ft, &ttl))
        return NULL;
    Py_XSETREF(self->eng, Py_NewRef(eng));
    Py_XSETREF(self->local_cache, Py_NewRef(lc));
    Py_XSETREF(self->hosts, Py_NewRef(hosts));
    Py_XSETREF(self->peer_cache, Py_NewRef(pc));
    Py_XSETREF(self->local_host, Py_NewRef(lh));
    Py_XSETREF(self->remember_peer, Py_NewRef(rp));
    Py_XSETREF(self->host_verdict, Py_NewRef(hv));
    Py_XSETREF(self->stats, Py_NewRef(stats));
    Py_XSETREF(self->host_bias, Py_NewRef(bias));
    self->family_threshold = ft;
    self->peer_ttl = ttl;
    Py_RETURN_NONE;
}

/* Engine._local_host: the cache, else the engine's method (which fills it) */
static int is_local(Decider *self, PyObject *h)
{
    PyObject *r = PyDict_GetItemWithError(self->local_cache, h);
    if (r != NULL) return PyObject_IsTrue(r);
    if (PyErr_Occurred()) return -1;
    r = PyObject_CallOneArg(self->local_host, h);
    if (r == NULL) return -1;
    int t = PyObject_IsTrue(r);
    Py_DECREF(r);
    return t;
}

/* Engine._peer_cache_hit */
static int peer_seen(Decider *self, PyObject *h, PyObject *port, double now)
{
    PyObject *key = PyTuple_Pack(2, h, port);
    if (key == NULL) return -1;
    PyObject *seen = PyDict_GetItemWithError(self->peer_cache, key);
    Py_DECREF(key);
    if (seen == NULL) return PyErr_Occurred() ? -1 : 0;
    double t = PyFloat_AsDouble(seen);
    if (t == -1.0 && PyErr_Occurred()) return -1;
    return now - t <= self->peer_ttl;
}

static PyObject *Decider_process(Decider *self, PyObject *e)
{
    if (self->eng == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Decider.process before bind");
        return NULL;
    }
    PyObject *refs[32];
    int nrefs = 0;
    Ev *ev = self->ev;
    PyObject *result = NULL, *out = NULL, *res = NULL, *hs = NULL, *near = NULL, *orig_h = NULL, *orig_p = NULL,
             *resp_p = NULL, *touched[2];
    int ntouched = 0;
    int r = read_ev(e, ev, refs, &nrefs);
    if (r <= 0 || !fits_budget(self, ev)) {
        if (r >= 0) result = Py_NewRef(Py_None);
        goto done;
    }
    /* self.now = max(self.now, ev.ts + ev.duration) */
    PyObject *now_obj = PyObject_GetAttr(self->eng, s_now);
    if (now_obj == NULL) goto done;
    double now = PyFloat_AsDouble(now_obj);
    Py_DECREF(now_obj);
    if (now == -1.0 && PyErr_Occurred()) goto done;
    double end = ev->ts + ev->duration;
    if (end > now) {
        PyObject *x = PyFloat_FromDouble(end);
        if (x == NULL || PyObject_SetAttr(self->eng, s_now, x) < 0) {
            Py_XDECREF(x);
            goto done;
        }
        Py_DECREF(x);
        now = end;
    }
    if ((orig_h = PyObject_GetAttr(ev->key, s_orig_h)) == NULL || (orig_p = PyObject_GetAttr(ev->key, s_orig_p)) == NULL ||
        (resp_p = PyObject_GetAttr(ev->key, s_resp_p_name)) == NULL)
        goto done;
    int lo = is_local(self, orig_h);
    if (lo < 0) goto done;
    int local = lo;
    if (!local) {
        int lr = is_local(self, ev->resp_h);
        if (lr < 0) goto done;
        local = !lr;
    }
    PyObject *host = local ? orig_h : ev->resp_h;
    HostModelObj *hm = (HostModelObj *)self->hosts;
    int known = PyDict_Contains(hm->hosts, host);
    if (known < 0) goto done;
    if (known && (hs = hm_score(hm, host, Py_None, 0)) == NULL) goto done;
    PyObject *s_host = hs ? PyTuple_GET_ITEM(hs, 0) : self->host_bias;
    if (!PyFloat_CheckExact(s_host)) {
        result = Py_NewRef(Py_None); /* the steps so far repeat without effect: Python decides */
        goto done;
    }
    int host_family = PyFloat_AS_DOUBLE(s_host) > self->family_threshold;
    if ((near = hm_near(hm, host, ev->ts_obj)) == NULL) goto done;
    int peer_hit = 0;
    if (PyDict_GET_SIZE(self->peer_cache)) {
        peer_hit = peer_seen(self, ev->resp_h, resp_p, now);
        if (peer_hit < 0) goto done;
        if (!peer_hit && !ev->tcp && (peer_hit = peer_seen(self, orig_h, orig_p, now)) < 0) goto done;
    }
    res = decide_core(self, s_host, hs != NULL, host_family, peer_hit, near);
    if (res == NULL) goto done;
    if (res == Py_None) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    PyObject *v = PyTuple_GET_ITEM(res, 0), *fproto = PyTuple_GET_ITEM(res, 1);
    int confirmed = PyTuple_GET_ITEM(res, 2) == Py_True, peerlike = PyTuple_GET_ITEM(res, 3) == Py_True;
    /* stats: detector runs, verdicts by label */
    {
        PyObject *runs = PyObject_GetAttr(self->stats, s_detector_runs);
        if (runs == NULL) goto done;
        PyObject *sum = PyNumber_Add(runs, PyTuple_GET_ITEM(res, 4));
        Py_DECREF(runs);
        if (sum == NULL) goto done;
        int rc = PyObject_SetAttr(self->stats, s_detector_runs, sum);
        Py_DECREF(sum);
        if (rc < 0) goto done;
        PyObject *fv = PyObject_GetAttr(self->stats, s_flow_verdicts);
        if (fv == NULL) goto done;
        PyObject *label = PyObject_GetAttr(v, s_label);
        if (label == NULL) {
            Py_DECREF(fv);
            goto done;
        }
        PyObject *cur = PyDict_Check(fv) ? PyDict_GetItemWithError(fv, label) : NULL;
        PyObject *nv = (cur != NULL) ? PyNumber_Add(cur, int_1) : (PyErr_Occurred() ? NULL : PyLong_FromLong(1));
        rc = nv == NULL ? -1 : PyObject_SetItem(fv, label, nv);
        Py_XDECREF(nv);
        Py_DECREF(label);
        Py_DECREF(fv);
        if (rc < 0) goto done;
    }
    if ((out = PyList_New(1)) == NULL) goto done;
    PyList_SET_ITEM(out, 0, Py_NewRef(v));
    if (confirmed && PyUnicode_Check(fproto) &&
        (PyUnicode_Compare(fproto, s_bt_mse) == 0 || PyUnicode_Compare(fproto, s_bt_plain) == 0 ||
         PyUnicode_Compare(fproto, s_utp) == 0 || PyUnicode_Compare(fproto, s_dht2) == 0)) {
        PyObject *x = PyObject_CallFunctionObjArgs(self->remember_peer, ev->key, ev->ts_obj, NULL);
        if (x == NULL) goto done;
        Py_DECREF(x);
    }
    /* Engine._observe_hosts */
    int lo2 = is_local(self, orig_h);
    if (lo2 < 0) goto done;
    if (lo2) {
        if (hm_observe(hm, orig_h, ev->ts_obj, ev->resp_h, resp_p, fproto, confirmed, peerlike) < 0) goto done;
        touched[ntouched++] = orig_h;
    }
    int lr2 = is_local(self, ev->resp_h);
    if (lr2 < 0) goto done;
    if (lr2 && ev->resp_p >= 1024) {
        if (hm_observe(hm, ev->resp_h, ev->ts_obj, orig_h, orig_p, fproto, confirmed, peerlike) < 0) goto done;
        touched[ntouched++] = ev->resp_h;
    }
    /* Engine._host_verdict for each: the label compared here, the verdict made by the engine */
    for (int i = 0; i < ntouched; i++) {
        PyObject *sto = PyDict_GetItemWithError(hm->hosts, touched[i]);
        if (sto == NULL) {
            if (PyErr_Occurred()) goto done;
            continue;
        }
        PyObject *hs2 = hm_score(hm, touched[i], Py_None, 0);
        if (hs2 == NULL) goto done;
        int same = PyObject_RichCompareBool(PyTuple_GET_ITEM(hs2, 2), ((HostStateObj *)sto)->reported, Py_EQ);
        Py_DECREF(hs2);
        if (same < 0) goto done;
        if (same) continue;
        PyObject *hv = PyObject_CallOneArg(self->host_verdict, touched[i]);
        if (hv == NULL) goto done;
        int t = PyObject_IsTrue(hv);
        if (t > 0 && PyList_Append(out, hv) < 0) t = -1;
        Py_DECREF(hv);
        if (t < 0) goto done;
    }
    result = out;
    out = NULL;
done:
    Py_XDECREF(out);
    Py_XDECREF(res);
    Py_XDECREF(hs);
    Py_XDECREF(near);
    Py_XDECREF(orig_h);
    Py_XDECREF(orig_p);
    Py_XDECREF(resp_p);
    for (int i = 0; i < nrefs; i++) Py_DECREF(refs[i]);
    return result;
}

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "msewatch._decide",
                                       "Deciding one flow in C (see score/flow.py decide_flow).", -1, NULL};

static PyObject *intern(const char *s) { return PyUnicode_InternFromString(s); }

PyMODINIT_FUNC PyInit__decide(void)
{
    init_tables();
    for (int i = 0; i < 64; i++) inv_pow2[i] = ldexp(1.0, -i);
    for (int i = 0; i < N_FEATURES; i++)
        if ((feature_str[i] = intern(FEATURE_NAMES[i])) == NULL) return NULL;
    for (int i = 0; i < N_FAMILIES; i++)
        if ((family_str[i] = intern(FAMILY_NAMES[i])) == NULL) return NULL;
    for (int i = 0; i < N_PROTOCOLS; i++)
        if ((protocol_str[i] = intern(PROTOCOL_NAMES[i])) == NULL) return NULL;
    for (int i = 0; i < N_LABELS; i++)
        if ((label_str[i] = intern(LABEL_NAMES[i])) == NULL) return NULL;
#define S(var, text) if ((var = intern(text)) == NULL) return NULL
    S(s_uid, "uid"); S(s_community_id, "community_id"); S(s_key, "key"); S(s_proto, "proto"); S(s_orig_p, "orig_p"); S(s_resp_p, "resp_p"); S(s_resp_h, "resp_h");
    S(s_sizes, "sizes"); S(s_times, "times"); S(s_bursts, "bursts"); S(s_orig_heads, "orig_heads");
    S(s_resp_heads, "resp_heads"); S(s_orig_pkts, "orig_pkts"); S(s_resp_pkts, "resp_pkts");
    S(s_handshake, "handshake"); S(s_complete, "complete"); S(s_ts, "ts"); S(s_duration, "duration");
    S(s_tcp, "tcp"); S(s_udp, "udp");
#undef S
    if (PyType_Ready(&DeciderType) < 0 || PyType_Ready(&HostStateType) < 0 || PyType_Ready(&HostModelType) < 0)
        return NULL;
#define S2(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL
    S2(s_dht, "dht"); S2(s_tracker, "tracker");
    S2(s_lsd, "lsd"); S2(s_p2p_host, "p2p_host"); S2(s_normal_host, "normal_host"); S2(s_unknown_label, "unknown");
    S2(s_discovery, "discovery"); S2(s_p2p_flow, "p2p_flow");
    if ((int_1024 = PyLong_FromLong(1024)) == NULL || (int_1 = PyLong_FromLong(1)) == NULL) return NULL;
    S2(s_now, "now"); S2(s_detector_runs, "detector_runs"); S2(s_flow_verdicts, "flow_verdicts"); S2(s_label, "label");
    S2(s_orig_h, "orig_h"); S2(s_orig_p, "orig_p"); S2(s_resp_p_name, "resp_p"); S2(s_bt_mse, "bt_mse");
    S2(s_bt_plain, "bt_plain"); S2(s_utp, "utp"); S2(s_dht2, "dht");
    if ((DecayingType = PyStructSequence_NewType(&decaying_desc)) == NULL) return NULL;
#undef S2
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL) return NULL;
    Py_INCREF(&HostModelType);
    Py_INCREF(&HostStateType);
    if (PyModule_AddObject(m, "HostModel", (PyObject *)&HostModelType) < 0 ||
        PyModule_AddObject(m, "HostState", (PyObject *)&HostStateType) < 0)
        return NULL;
    Py_INCREF(&DeciderType);
    if (PyModule_AddObject(m, "Decider", (PyObject *)&DeciderType) < 0) {
        Py_DECREF(&DeciderType);
        Py_DECREF(m);
        return NULL;
    }
    PyObject *names = PyTuple_New(N_FEATURES);
    if (names == NULL) return NULL;
    for (int i = 0; i < N_FEATURES; i++) PyTuple_SET_ITEM(names, i, Py_NewRef(feature_str[i]));
    if (PyModule_AddObject(m, "FEATURES", names) < 0) return NULL;
#ifdef DECIDE_SOURCE_HASH
    if (PyModule_AddStringConstant(m, "SOURCE_HASH", DECIDE_SOURCE_HASH) < 0) return NULL;
#endif
    return m;
}
