/* msewatch._wire: the two messages the live bridge handles per flow, in C.
 *
 *   EvidenceDecoder.decode(raw)   a data-message carrying MSEWatch::flow_evidence, read
 *                                 straight from its JSON bytes into a FlowEvidence, with the
 *                                 checks of wire/events.py fast_evidence (which, with the
 *                                 generic v1 codec behind it, stays the reference);
 *   VerdictEncoder.encode(v, t)   a FlowVerdict as the JSON bytes of an MSEWatch::verdict
 *                                 data-message on topic t, byte-identical to
 *                                 wire/events.py encode_verdict.
 *
 * Both accept only the shape Zeek and the bridge write (compact or spaced JSON, keys in
 * Broker's order, no string escapes, timestamps without an offset in UTC, timespans in
 * whole ns/us/ms/s) and return None for anything else: the caller then takes the Python
 * path, which either does the same or raises the precise WireError. So the compiled code
 * never has to be right about an odd message, only never wrong about a common one
 * (tests/wire/test_fast_wire.py holds the two paths equal).
 *
 * A message up to 1 MiB is read whole, as the Python path reads it (or left to it). A larger
 * one - which the Python path is not given at all (wire/events.py MAX_GENERIC_MESSAGE) - is
 * read within the largest budget the configuration allows: beyond 1,025 sizes / times, 65
 * bursts, 17 heads per direction and 257 bytes per head, elements are only checked for their
 * JSON structure and @data-type and counted (so a 16 MiB message costs milliseconds, not
 * seconds). The evidence it returns then still exceeds every budget, so
 * Engine.process_evidence cuts it to the budget and counts it as it would the whole message;
 * the values beyond the budget are never read (docs/architecture.md, "Budgets and memory").
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define KEEP_SIZES 1025 /* budget.max_packets <= 1024, + 1 */
#define KEEP_BURSTS 65  /* budget.max_bursts <= 64, + 1 */
#define KEEP_HEADS 17   /* budget.udp_heads <= 16, + 1 */
#define KEEP_HEAD_BYTES 257
#define BOUNDED_ABOVE (1 << 20) /* bytes: wire/events.py MAX_GENERIC_MESSAGE */

static PyObject *s_tcp, *s_udp, *s_icmp, *s_unknown_proto;

/* ------------------------------------------------------------------ a cursor over JSON */

typedef struct {
    const unsigned char *p, *end;
} Cur;

static inline void ws(Cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t')) c->p++;
}

static inline int ch(Cur *c, unsigned char x)
{
    ws(c);
    if (c->p < c->end && *c->p == x) {
        c->p++;
        return 1;
    }
    return 0;
}

/* the exact literal (after whitespace) */
static inline int lit(Cur *c, const char *s, size_t n)
{
    ws(c);
    if ((size_t)(c->end - c->p) >= n && memcmp(c->p, s, n) == 0) {
        c->p += n;
        return 1;
    }
    return 0;
}
#define LIT(c, s) lit(c, s, sizeof(s) - 1)

/* bytes that end or break a plain string: '"', '\\' and the control characters */
static unsigned char STR_STOP[256];
/* hex digit values, 0xFF for the rest */
static unsigned char HEXV[256];

static void init_tables(void)
{
    for (int i = 0; i < 256; i++) {
        STR_STOP[i] = i < 0x20 || i == '"' || i == '\\' || i >= 0x80; /* >= 0x80: checked as UTF-8 */
        HEXV[i] = 0xFF;
    }
    for (int i = 0; i < 10; i++) HEXV['0' + i] = (unsigned char)i;
    for (int i = 0; i < 6; i++) HEXV['a' + i] = HEXV['A' + i] = (unsigned char)(10 + i);
}

/* the length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong forms, no
   surrogates, nothing above U+10FFFF), 0 if there is none: what Python's strict decoder
   and orjson accept */
static int utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned char b = p[0];
    if (b >= 0xC2 && b <= 0xDF) return (end - p >= 2 && (p[1] & 0xC0) == 0x80) ? 2 : 0;
    if (b >= 0xE0 && b <= 0xEF) {
        if (end - p < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
        if (b == 0xE0 && p[1] < 0xA0) return 0; /* overlong */
        if (b == 0xED && p[1] >= 0xA0) return 0; /* a surrogate */
        return 3;
    }
    if (b >= 0xF0 && b <= 0xF4) {
        if (end - p < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return 0;
        if (b == 0xF0 && p[1] < 0x90) return 0; /* overlong */
        if (b == 0xF4 && p[1] >= 0x90) return 0; /* above U+10FFFF */
        return 4;
    }
    return 0;
}

/* a JSON string without escapes or control characters, well-formed UTF-8: its bytes */
static int str(Cur *c, const unsigned char **s, Py_ssize_t *n)
{
    ws(c);
    if (c->p >= c->end || *c->p != '"') return 0;
    const unsigned char *a = ++c->p, *p = a, *end = c->end;
    for (;;) {
        while (p < end && !STR_STOP[*p]) p++;
        if (p >= end) return 0;
        if (*p < 0x80) break; /* '"', '\\' or a control character */
        int k = utf8_seq(p, end);
        if (!k) return 0;
        p += k;
    }
    if (*p != '"') return 0;
    *s = a;
    *n = p - a;
    c->p = p + 1;
    return 1;
}

/* a JSON integer (no fraction, no exponent) within int64 / uint64 */
static int int64v(Cur *c, int64_t *out)
{
    ws(c);
    int neg = 0;
    if (c->p < c->end && *c->p == '-') {
        neg = 1;
        c->p++;
    }
    if (c->p >= c->end || *c->p < '0' || *c->p > '9') return 0;
    if (*c->p == '0' && c->p + 1 < c->end && c->p[1] >= '0' && c->p[1] <= '9') return 0;
    uint64_t v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        unsigned d = *c->p - '0';
        if (v > (UINT64_MAX - d) / 10) return 0;
        v = v * 10 + d;
        c->p++;
    }
    if (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E')) return 0;
    if (neg) {
        if (v > (uint64_t)INT64_MAX + 1) return 0;
        *out = (int64_t)(0 - v);
    } else {
        if (v > (uint64_t)INT64_MAX) return 0;
        *out = (int64_t)v;
    }
    return 1;
}

static int uint64v(Cur *c, uint64_t *out)
{
    ws(c);
    if (c->p >= c->end || *c->p < '0' || *c->p > '9') return 0;
    if (*c->p == '0' && c->p + 1 < c->end && c->p[1] >= '0' && c->p[1] <= '9') return 0;
    uint64_t v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        unsigned d = *c->p - '0';
        if (v > (UINT64_MAX - d) / 10) return 0;
        v = v * 10 + d;
        c->p++;
    }
    if (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E')) return 0;
    *out = v;
    return 1;
}

/* one JSON scalar, unread: a number, a plain string, true, false or null (values beyond the
   budget: their structure is checked, not their meaning) */
static int skip_scalar(Cur *c)
{
    ws(c);
    if (c->p >= c->end) return 0;
    unsigned char x = *c->p;
    if (x == '"') {
        const unsigned char *s;
        Py_ssize_t n;
        return str(c, &s, &n);
    }
    if (x == '-' || (x >= '0' && x <= '9')) { /* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
        const unsigned char *p = c->p, *e = c->end;
        if (*p == '-') p++;
        if (p >= e || *p < '0' || *p > '9') return 0;
        if (*p == '0')
            p++;
        else
            while (p < e && *p >= '0' && *p <= '9') p++;
        if (p < e && *p == '.') {
            p++;
            if (p >= e || *p < '0' || *p > '9') return 0;
            while (p < e && *p >= '0' && *p <= '9') p++;
        }
        if (p < e && (*p == 'e' || *p == 'E')) {
            p++;
            if (p < e && (*p == '+' || *p == '-')) p++;
            if (p >= e || *p < '0' || *p > '9') return 0;
            while (p < e && *p >= '0' && *p <= '9') p++;
        }
        c->p = p;
        return 1;
    }
    return LIT(c, "true") || LIT(c, "false") || LIT(c, "null");
}

/* {"@data-type":"<type>","data": ... : positioned at the data value */
static int typed_open(Cur *c, const char *type)
{
    /* the compact form in one comparison */
    char pre[64];
    size_t tl = strlen(type);
    if (tl < 40) {
        memcpy(pre, "{\"@data-type\":\"", 15);
        memcpy(pre + 15, type, tl);
        memcpy(pre + 15 + tl, "\",\"data\":", 9);
        size_t pl = 24 + tl;
        if ((size_t)(c->end - c->p) >= pl && memcmp(c->p, pre, pl) == 0) {
            c->p += pl;
            return 1;
        }
    }
    const unsigned char *s;
    Py_ssize_t n;
    if (!ch(c, '{') || !LIT(c, "\"@data-type\"") || !ch(c, ':') || !str(c, &s, &n)) return 0;
    if ((size_t)n != tl || memcmp(s, type, n) != 0) return 0;
    return ch(c, ',') && LIT(c, "\"data\"") && ch(c, ':');
}
#define typed_close(c) ch(c, '}')

/* a vector's elements: typed_open(c, "vector") && ch(c, '['), then per element
   vec_next(c, &first) until it returns 0 (end) or -1 (error) */
static int vec_next(Cur *c, int *first)
{
    ws(c);
    if (c->p < c->end && *c->p == ']') {
        c->p++;
        return 0;
    }
    if (!*first && !ch(c, ',')) return -1;
    *first = 0;
    return 1;
}

/* ------------------------------------------------------------------ values */

static PyObject *utf8(const unsigned char *s, Py_ssize_t n)
{
    PyObject *o = PyUnicode_DecodeUTF8((const char *)s, n, NULL);
    if (o == NULL) PyErr_Clear();
    return o;
}

/* a timespan "<digits><ns|us|ms|s>" in ns (wire/events.py _span_ns, parse_timespan) */
static int timespan(const unsigned char *s, Py_ssize_t n, int64_t *ns)
{
    int64_t mult;
    Py_ssize_t k;
    if (n >= 3 && s[n - 1] == 's' && (s[n - 2] == 'n' || s[n - 2] == 'u' || s[n - 2] == 'm')) {
        mult = s[n - 2] == 'n' ? 1 : s[n - 2] == 'u' ? 1000 : 1000000;
        k = n - 2;
    } else if (n >= 2 && s[n - 1] == 's' && s[n - 2] >= '0' && s[n - 2] <= '9') {
        mult = 1000000000;
        k = n - 1;
    } else
        return 0;
    if (k < 1 || k > 19) return 0;
    uint64_t v = 0;
    for (Py_ssize_t i = 0; i < k; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (s[i] - '0');
    }
    if (v > (uint64_t)INT64_MAX / (uint64_t)mult) return 0;
    *ns = (int64_t)(v * (uint64_t)mult);
    return 1;
}

static int digits(const unsigned char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* "YYYY-MM-DDThh:mm:ss[.f{1,9}]" in UTC -> seconds since the epoch, as
   datetime(..., tzinfo=UTC).timestamp() computes it; 0 = not this form (Python decides) */
static int timestamp_utc(const unsigned char *s, Py_ssize_t n, double *out)
{
    int y, mo, d, hh, mi, ss, micro = 0;
    if (n < 19 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':') return 0;
    if (!digits(s, 4, &y) || !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &d) || !digits(s + 11, 2, &hh) ||
        !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &ss))
        return 0;
    if (n > 19) {
        if (s[19] != '.' || n - 20 < 1 || n - 20 > 9) return 0;
        int f = 0, k = (int)(n - 20);
        for (int i = 0; i < k; i++) {
            if (s[20 + i] < '0' || s[20 + i] > '9') return 0;
            if (i < 6) f = f * 10 + (s[20 + i] - '0');
        }
        for (int i = k; i < 6; i++) f *= 10;
        micro = f;
    }
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1 || mo < 1 || mo > 12 || hh > 23 || mi > 59 || ss > 59) return 0;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d < 1 || d > mdays[mo - 1] + (mo == 2 && leap)) return 0;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss;
    int64_t us = secs * 1000000 + micro;
    if (us >= ((int64_t)1 << 53) || us <= -((int64_t)1 << 53)) return 0; /* beyond exact doubles */
    *out = (double)us / 1e6;
    return 1;
}

/* ------------------------------------------------------------------ EvidenceDecoder */

enum {
    E_KEY, E_UID, E_COMMUNITY_ID, E_TS, E_SIZES, E_TIMES, E_BURSTS, E_ORIG_HEADS, E_RESP_HEADS, E_ORIG_PKTS,
    E_RESP_PKTS, E_ORIG_BYTES, E_RESP_BYTES, E_DURATION, E_HANDSHAKE, E_CLOSED, E_COMPLETE, N_EFIELDS
};
static const char *EFIELD_NAMES[N_EFIELDS] = {
    "key", "uid", "community_id", "ts", "sizes", "times", "bursts", "orig_heads", "resp_heads", "orig_pkts",
    "resp_pkts", "orig_bytes", "resp_bytes", "duration", "handshake", "closed", "complete"};
enum { K_PROTO, K_ORIG_H, K_ORIG_P, K_RESP_H, K_RESP_P, N_KFIELDS };
static const char *KFIELD_NAMES[N_KFIELDS] = {"proto", "orig_h", "orig_p", "resp_h", "resp_p"};

typedef struct {
    PyObject_HEAD
    PyTypeObject *ev_type, *key_type;
    PyObject *efield[N_EFIELDS], *kfield[N_KFIELDS];
    PyObject *norm_addr; /* wire/events.py _norm_addr (cached) */
    PyObject *parse_ts;  /* text -> epoch seconds (the codec's parse_timestamp): other zones, offsets */
    int utc;             /* the codec reads offset-less timestamps as UTC */
} Decoder;

static int slots_of(PyTypeObject *t, const char **names, int n, PyObject **out)
{
    for (int i = 0; i < n; i++) {
        PyObject *d = PyDict_GetItemString(t->tp_dict, names[i]);
        if (d == NULL || strcmp(Py_TYPE(d)->tp_name, "member_descriptor") != 0) {
            PyErr_Format(PyExc_ValueError, "%s.%s is not a slot", t->tp_name, names[i]);
            return -1;
        }
        Py_XSETREF(out[i], Py_NewRef(d));
    }
    return 0;
}

static int setf(PyObject *descr, PyObject *obj, PyObject *value /* stolen */)
{
    if (value == NULL) return -1;
    int r = Py_TYPE(descr)->tp_descr_set(descr, obj, value);
    Py_DECREF(value);
    return r;
}

static void Decoder_dealloc(Decoder *self)
{
    Py_XDECREF(self->ev_type);
    Py_XDECREF(self->key_type);
    for (int i = 0; i < N_EFIELDS; i++) Py_XDECREF(self->efield[i]);
    for (int i = 0; i < N_KFIELDS; i++) Py_XDECREF(self->kfield[i]);
    Py_XDECREF(self->norm_addr);
    Py_XDECREF(self->parse_ts);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* EvidenceDecoder(FlowEvidence, FlowKey, norm_addr, parse_timestamp, utc) */
static int Decoder_init(Decoder *self, PyObject *args, PyObject *kw)
{
    PyObject *et, *kt, *na, *pt;
    int utc;
    if (!PyArg_ParseTuple(args, "O!O!OOp", &PyType_Type, &et, &PyType_Type, &kt, &na, &pt, &utc)) return -1;
    if (slots_of((PyTypeObject *)et, EFIELD_NAMES, N_EFIELDS, self->efield) < 0 ||
        slots_of((PyTypeObject *)kt, KFIELD_NAMES, N_KFIELDS, self->kfield) < 0)
        return -1;
    Py_XSETREF(self->ev_type, (PyTypeObject *)Py_NewRef(et));
    Py_XSETREF(self->key_type, (PyTypeObject *)Py_NewRef(kt));
    Py_XSETREF(self->norm_addr, Py_NewRef(na));
    Py_XSETREF(self->parse_ts, Py_NewRef(pt));
    self->utc = utc;
    return 0;
}

/* an address: its canonical text (norm_addr), NULL = not one (Python decides) */
static PyObject *address(Decoder *self, Cur *c)
{
    const unsigned char *s;
    Py_ssize_t n;
    if (!typed_open(c, "address") || !str(c, &s, &n) || !typed_close(c)) return NULL;
    PyObject *t = utf8(s, n);
    if (t == NULL) return NULL;
    PyObject *r = PyObject_CallOneArg(self->norm_addr, t);
    Py_DECREF(t);
    if (r == NULL) PyErr_Clear();
    return r;
}

/* a port "<n>/<tcp|udp>" */
static int port(Cur *c, int64_t *num, int *tcp)
{
    const unsigned char *s;
    Py_ssize_t n;
    if (!typed_open(c, "port") || !str(c, &s, &n) || !typed_close(c)) return 0;
    Py_ssize_t slash = -1;
    for (Py_ssize_t i = 0; i < n; i++)
        if (s[i] == '/') {
            slash = i;
            break;
        }
    if (slash < 1 || slash > 5) return 0;
    int v = 0;
    if (!digits(s, (int)slash, &v) || v > 65535) return 0;
    Py_ssize_t pl = n - slash - 1;
    if (pl == 3 && memcmp(s + slash + 1, "tcp", 3) == 0)
        *tcp = 1;
    else if (pl == 3 && memcmp(s + slash + 1, "udp", 3) == 0)
        *tcp = 0;
    else
        return 0;
    *num = v;
    return 1;
}

static PyObject *count_obj(Cur *c)
{
    uint64_t v;
    if (!typed_open(c, "count") || !uint64v(c, &v) || !typed_close(c)) return NULL;
    return PyLong_FromUnsignedLongLong(v);
}

static int boolean(Cur *c, int *out)
{
    if (!typed_open(c, "boolean")) return 0;
    if (LIT(c, "true"))
        *out = 1;
    else if (LIT(c, "false"))
        *out = 0;
    else
        return 0;
    return typed_close(c);
}

static PyObject *timespan_seconds(Cur *c)
{
    const unsigned char *s;
    Py_ssize_t n;
    int64_t ns;
    if (!typed_open(c, "timespan") || !str(c, &s, &n) || !typed_close(c) || !timespan(s, n, &ns)) return NULL;
    return PyFloat_FromDouble((double)ns / 1e9);
}

/* items[0:n] as a tuple that takes over their references; NULL (and the items released) if
   the tuple cannot be made */
static PyObject *steal_tuple(PyObject **items, Py_ssize_t n)
{
    PyObject *t = PyTuple_New(n);
    if (t == NULL) {
        for (Py_ssize_t i = 0; i < n; i++) Py_DECREF(items[i]);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) PyTuple_SET_ITEM(t, i, items[i]);
    return t;
}

/* a vector of integers: the first `keep` (<= KEEP_SIZES) as a tuple, the rest counted (*total)
   and, only in a message bounded by the budget (`bounded`), not read; otherwise more than
   `keep` make the whole message one for the Python path (NULL, no error set) */
static PyObject *ints(Cur *c, Py_ssize_t keep, Py_ssize_t *total, int bounded)
{
    if (!typed_open(c, "vector") || !ch(c, '[')) return NULL;
    PyObject *items[KEEP_SIZES];
    Py_ssize_t k = 0, kept = 0;
    int first = 1, r;
    while ((r = vec_next(c, &first)) == 1) {
        int64_t v;
        if (!typed_open(c, "integer")) goto bad;
        if (kept < keep) {
            if (!int64v(c, &v) || !typed_close(c)) goto bad;
            PyObject *o = PyLong_FromLongLong(v);
            if (o == NULL) goto bad;
            items[kept++] = o;
        } else if (!bounded || !skip_scalar(c) || !typed_close(c))
            goto bad;
        k++;
    }
    if (r < 0 || !typed_close(c)) goto bad;
    *total = k;
    return steal_tuple(items, kept);
bad:
    for (Py_ssize_t i = 0; i < kept; i++) Py_DECREF(items[i]);
    return NULL;
}

static PyObject *spans(Cur *c, Py_ssize_t keep, Py_ssize_t *total, int bounded)
{
    if (!typed_open(c, "vector") || !ch(c, '[')) return NULL;
    PyObject *items[KEEP_SIZES];
    Py_ssize_t k = 0, kept = 0;
    int first = 1, r;
    while ((r = vec_next(c, &first)) == 1) {
        const unsigned char *s;
        Py_ssize_t n;
        if (!typed_open(c, "timespan")) goto bad;
        if (kept >= keep) {
            if (!bounded || !skip_scalar(c) || !typed_close(c)) goto bad;
            k++;
            continue;
        }
        if (!str(c, &s, &n) || !typed_close(c)) goto bad;
        {
            int64_t ns;
            if (!timespan(s, n, &ns)) goto bad;
            PyObject *o = PyFloat_FromDouble((double)ns / 1e9);
            if (o == NULL) goto bad;
            items[kept++] = o;
        }
        k++;
    }
    if (r < 0 || !typed_close(c)) goto bad;
    *total = k;
    return steal_tuple(items, kept);
bad:
    for (Py_ssize_t i = 0; i < kept; i++) Py_DECREF(items[i]);
    return NULL;
}

/* a hex string "...": up to `keep` bytes decoded into out (*nb), the rest checked (*whole: all
   its bytes); 0 = not hex */
static int hexstr(Cur *c, unsigned char *out, Py_ssize_t keep, Py_ssize_t *nb, Py_ssize_t *whole)
{
    ws(c);
    if (c->p >= c->end || *c->p != '"') return 0;
    const unsigned char *p = c->p + 1, *end = c->end;
    Py_ssize_t k = 0;
    for (;;) {
        if (p >= end) return 0;
        if (*p == '"') break;
        if (p + 1 >= end) return 0;
        unsigned hi = HEXV[p[0]], lo = HEXV[p[1]];
        if ((hi | lo) == 0xFF) return 0;
        if (k < keep) out[k] = (unsigned char)(hi << 4 | lo);
        k++;
        p += 2;
    }
    *nb = k < keep ? k : keep;
    *whole = k;
    c->p = p + 1;
    return 1;
}

static PyObject *heads(Cur *c, int bounded)
{
    if (!typed_open(c, "vector") || !ch(c, '[')) return NULL;
    PyObject *items[KEEP_HEADS];
    int nitems = 0;
    int first = 1, r;
    Py_ssize_t k = 0;
    unsigned char tmp[KEEP_HEAD_BYTES];
    while ((r = vec_next(c, &first)) == 1) {
        if (!typed_open(c, "string")) goto bad;
        if (k < KEEP_HEADS) {
            Py_ssize_t nb, whole;
            if (!hexstr(c, tmp, KEEP_HEAD_BYTES, &nb, &whole) || (!bounded && whole > nb)) goto bad;
            PyObject *b = PyBytes_FromStringAndSize((const char *)tmp, nb);
            if (b == NULL) goto bad;
            items[nitems++] = b;
        } else if (!bounded || !skip_scalar(c))
            goto bad;
        if (!typed_close(c)) goto bad;
        k++;
    }
    if (r < 0 || !typed_close(c)) goto bad;
    return steal_tuple(items, nitems);
bad:
    for (int i = 0; i < nitems; i++) Py_DECREF(items[i]);
    return NULL;
}

/* ------------------------------------------------------------------ evidence version 2
 * The per-packet vectors packed into one string each (wire/events.py unpack_*, whose grammar
 * this is): integers joined by ',' ("" = none), heads as hex each followed by ','. Anything
 * else - escapes in the JSON string included - leaves the message to the Python path. */

/* a string argument {"@data-type":"string","data":"..."}: the bytes up to the first '"',
   unchecked - the grammar below admits none of the bytes that a JSON string escapes or that
   need a UTF-8 check, so one pass (the parse) checks them, after memchr found the end */
static int packed_str(Cur *c, const unsigned char **s, Py_ssize_t *n)
{
    if (!typed_open(c, "string")) return 0;
    ws(c);
    if (c->p >= c->end || *c->p != '"') return 0;
    const unsigned char *a = c->p + 1, *q = memchr(a, '"', (size_t)(c->end - a));
    if (q == NULL) return 0;
    *s = a;
    *n = q - a;
    c->p = q + 1;
    return typed_close(c);
}

/* s[0:n] as integers joined by ',': "0" | "-"?[1-9][0-9]{0,18} within int64 (`sign`), or
   "0" | [1-9][0-9]{0,18} within int64 read as nanoseconds -> float seconds (!`sign`). The
   first `keep` as a tuple, the rest counted (*total) and, only when `bounded`, checked but
   not kept; otherwise more than `keep` leave the message to the Python path (NULL) */
static PyObject *packed_ints(const unsigned char *s, Py_ssize_t n, Py_ssize_t keep, Py_ssize_t *total, int bounded,
                             int sign)
{
    PyObject *items[KEEP_SIZES];
    Py_ssize_t k = 0, kept = 0;
    const unsigned char *p = s, *end = s + n;
    if (n > 0) {
        for (;;) {
            int neg = 0;
            if (sign && p < end && *p == '-') {
                neg = 1;
                p++;
            }
            if (p >= end || *p < '0' || *p > '9') goto bad;
            uint64_t v = 0;
            if (*p == '0') {
                if (neg) goto bad; /* "-0" */
                p++;
            } else {
                int nd = 0;
                while (p < end && *p >= '0' && *p <= '9') {
                    if (++nd > 19) goto bad;
                    v = v * 10 + (uint64_t)(*p - '0'); /* 19 digits < 2**64 */
                    p++;
                }
            }
            if (v > (uint64_t)INT64_MAX + (uint64_t)neg) goto bad;
            if (kept < keep) {
                PyObject *o;
                if (sign)
                    o = PyLong_FromLongLong(neg ? (int64_t)(0 - v) : (int64_t)v);
                else
                    o = PyFloat_FromDouble((double)(int64_t)v / 1e9);
                if (o == NULL) goto bad;
                items[kept++] = o;
            } else if (!bounded)
                goto bad;
            k++;
            if (p == end) break;
            if (*p != ',' || ++p == end) goto bad;
        }
    }
    *total = k;
    return steal_tuple(items, kept);
bad:
    for (Py_ssize_t i = 0; i < kept; i++) Py_DECREF(items[i]);
    return NULL;
}

/* s[0:n] as hex heads each followed by ',' (either case, even length): the first KEEP_HEADS of
   at most KEEP_HEAD_BYTES bytes each; more, or longer, only when `bounded` (then only checked) */
static PyObject *packed_heads(const unsigned char *s, Py_ssize_t n, int bounded)
{
    PyObject *items[KEEP_HEADS];
    int nitems = 0;
    Py_ssize_t k = 0;
    unsigned char tmp[KEEP_HEAD_BYTES];
    const unsigned char *p = s, *end = s + n;
    while (p < end) {
        Py_ssize_t nb = 0;
        while (p < end && *p != ',') {
            if (p + 1 >= end) goto bad;
            unsigned hi = HEXV[p[0]], lo = HEXV[p[1]];
            if ((hi | lo) == 0xFF) goto bad;
            if (nb < KEEP_HEAD_BYTES) tmp[nb] = (unsigned char)(hi << 4 | lo);
            else if (!bounded) goto bad;
            nb++;
            p += 2;
        }
        if (p >= end) goto bad; /* the last head has no ',' */
        p++;
        if (k < KEEP_HEADS) {
            PyObject *b = PyBytes_FromStringAndSize((const char *)tmp, nb < KEEP_HEAD_BYTES ? nb : KEEP_HEAD_BYTES);
            if (b == NULL) goto bad;
            items[nitems++] = b;
        } else if (!bounded)
            goto bad;
        k++;
    }
    return steal_tuple(items, nitems);
bad:
    for (int i = 0; i < nitems; i++) Py_DECREF(items[i]);
    return NULL;
}

static int get_buffer(PyObject *raw, const unsigned char **p, Py_ssize_t *n, Py_buffer *view)
{
    view->obj = NULL;
    if (PyUnicode_Check(raw)) {
        const char *s = PyUnicode_AsUTF8AndSize(raw, n);
        if (s == NULL) {
            PyErr_Clear();
            return 0;
        }
        *p = (const unsigned char *)s;
        return 1;
    }
    if (PyBytes_Check(raw)) {
        *p = (const unsigned char *)PyBytes_AS_STRING(raw);
        *n = PyBytes_GET_SIZE(raw);
        return 1;
    }
    if (PyObject_GetBuffer(raw, view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return 0;
    }
    *p = view->buf;
    *n = view->len;
    return 1;
}

/* decode(raw) -> FlowEvidence, or None when raw is not a canonical flow_evidence message */
static PyObject *Decoder_decode(Decoder *self, PyObject *raw)
{
    const unsigned char *p;
    Py_ssize_t n;
    Py_buffer view;
    if (!get_buffer(raw, &p, &n, &view)) Py_RETURN_NONE;
    Cur cc = {p, p + n}, *c = &cc;
    /* Only a message larger than any the Python path reads (wire/events.py MAX_GENERIC_MESSAGE)
       is read within the budget; a smaller one is read whole, exactly as the Python path does,
       or left to it. */
    int bounded = n > BOUNDED_ABOVE;
    PyObject *v[N_EFIELDS] = {NULL};
    PyObject *kv[N_KFIELDS] = {NULL};
    PyObject *result = NULL;
    const unsigned char *s;
    Py_ssize_t sn;
    int tcp_o, tcp_r;
    int64_t op, rp;
    uint64_t ver;
    Py_ssize_t nsizes, ntimes, nbursts;
    /* {"type":"data-message","topic":"...","@data-type":"vector","data":[count 1, count 1, */
    if (!ch(c, '{') || !LIT(c, "\"type\"") || !ch(c, ':') || !LIT(c, "\"data-message\"") || !ch(c, ',') ||
        !LIT(c, "\"topic\"") || !ch(c, ':') || !str(c, &s, &sn) || !ch(c, ',') || !LIT(c, "\"@data-type\"") ||
        !ch(c, ':') || !LIT(c, "\"vector\"") || !ch(c, ',') || !LIT(c, "\"data\"") || !ch(c, ':') || !ch(c, '['))
        goto none;
    for (int i = 0; i < 2; i++) {
        if (!typed_open(c, "count") || !uint64v(c, &ver) || ver != 1 || !typed_close(c) || !ch(c, ',')) goto none;
    }
    /* {"@data-type":"vector","data":[{"@data-type":"string","data":"MSEWatch::flow_evidence"},
       {"@data-type":"vector","data":[ the 21 arguments ]}]} */
    if (!typed_open(c, "vector") || !ch(c, '[') || !typed_open(c, "string") || !str(c, &s, &sn) ||
        sn != 23 || memcmp(s, "MSEWatch::flow_evidence", 23) != 0 || !typed_close(c) || !ch(c, ',') ||
        !typed_open(c, "vector") || !ch(c, '['))
        goto none;
    /* 0 version: 1 (typed vectors) or 2 (packed) */
    if (!typed_open(c, "count") || !uint64v(c, &ver) || (ver != 1 && ver != 2) || !typed_close(c) || !ch(c, ','))
        goto none;
    /* 1 uid, 2 community_id */
    if (!typed_open(c, "string") || !str(c, &s, &sn) || !typed_close(c) || !ch(c, ',')) goto none;
    if ((v[E_UID] = utf8(s, sn)) == NULL) goto none;
    if (!typed_open(c, "string") || !str(c, &s, &sn) || !typed_close(c) || !ch(c, ',')) goto none;
    if ((v[E_COMMUNITY_ID] = utf8(s, sn)) == NULL) goto none;
    /* 3 orig_h, 4 orig_p, 5 resp_h, 6 resp_p */
    if ((kv[K_ORIG_H] = address(self, c)) == NULL || !ch(c, ',')) goto none;
    if (!port(c, &op, &tcp_o) || !ch(c, ',')) goto none;
    if ((kv[K_RESP_H] = address(self, c)) == NULL || !ch(c, ',')) goto none;
    if (!port(c, &rp, &tcp_r) || tcp_r != tcp_o || !ch(c, ',')) goto none;
    /* 7 ts */
    if (!typed_open(c, "timestamp") || !str(c, &s, &sn) || !typed_close(c) || !ch(c, ',')) goto none;
    {
        double ts;
        if (self->utc && timestamp_utc(s, sn, &ts))
            v[E_TS] = PyFloat_FromDouble(ts);
        else {
            PyObject *t = utf8(s, sn);
            if (t == NULL) goto none;
            v[E_TS] = PyObject_CallOneArg(self->parse_ts, t);
            Py_DECREF(t);
            if (v[E_TS] == NULL) {
                PyErr_Clear();
                goto none;
            }
        }
        if (v[E_TS] == NULL) goto error;
    }
    if (ver == 2) {
        /* 8 sizes, 9 times, 10 bursts, 11 orig_heads, 12 resp_heads: packed strings */
        if (!packed_str(c, &s, &sn) || (v[E_SIZES] = packed_ints(s, sn, KEEP_SIZES, &nsizes, bounded, 1)) == NULL ||
            !ch(c, ','))
            goto none;
        if (!packed_str(c, &s, &sn) || (v[E_TIMES] = packed_ints(s, sn, KEEP_SIZES, &ntimes, bounded, 0)) == NULL ||
            ntimes != nsizes || !ch(c, ','))
            goto none;
        if (!packed_str(c, &s, &sn) || (v[E_BURSTS] = packed_ints(s, sn, KEEP_BURSTS, &nbursts, bounded, 1)) == NULL ||
            !ch(c, ','))
            goto none;
        if (!packed_str(c, &s, &sn) || (v[E_ORIG_HEADS] = packed_heads(s, sn, bounded)) == NULL || !ch(c, ','))
            goto none;
        if (!packed_str(c, &s, &sn) || (v[E_RESP_HEADS] = packed_heads(s, sn, bounded)) == NULL || !ch(c, ','))
            goto none;
    } else {
        /* 8 sizes, 9 times, 10 bursts */
        if ((v[E_SIZES] = ints(c, KEEP_SIZES, &nsizes, bounded)) == NULL || !ch(c, ',')) goto none;
        if ((v[E_TIMES] = spans(c, KEEP_SIZES, &ntimes, bounded)) == NULL || ntimes != nsizes || !ch(c, ','))
            goto none;
        if ((v[E_BURSTS] = ints(c, KEEP_BURSTS, &nbursts, bounded)) == NULL || !ch(c, ',')) goto none;
        /* 11 orig_heads, 12 resp_heads */
        if ((v[E_ORIG_HEADS] = heads(c, bounded)) == NULL || !ch(c, ',')) goto none;
        if ((v[E_RESP_HEADS] = heads(c, bounded)) == NULL || !ch(c, ',')) goto none;
    }
    /* 13-16 counters */
    for (int i = E_ORIG_PKTS; i <= E_RESP_BYTES; i++)
        if ((v[i] = count_obj(c)) == NULL || !ch(c, ',')) goto none;
    /* 17 duration */
    if ((v[E_DURATION] = timespan_seconds(c)) == NULL || !ch(c, ',')) goto none;
    /* 18-20 flags */
    for (int i = E_HANDSHAKE; i <= E_COMPLETE; i++) {
        int b;
        if (!boolean(c, &b) || (i < E_COMPLETE && !ch(c, ','))) goto none;
        v[i] = Py_NewRef(b ? Py_True : Py_False);
    }
    /* ]}]}]} and nothing after */
    if (!ch(c, ']') || !ch(c, '}') || !ch(c, ']') || !ch(c, '}') || !ch(c, ']') || !ch(c, '}')) goto none;
    ws(c);
    if (c->p != c->end) goto none;
    {
        PyObject *key = self->key_type->tp_alloc(self->key_type, 0);
        if (key == NULL) goto error;
        kv[K_PROTO] = Py_NewRef(tcp_o ? s_tcp : s_udp);
        kv[K_ORIG_P] = PyLong_FromLongLong(op);
        kv[K_RESP_P] = PyLong_FromLongLong(rp);
        for (int i = 0; i < N_KFIELDS; i++) {
            if (setf(self->kfield[i], key, kv[i]) < 0) {
                kv[i] = NULL;
                for (int j = i + 1; j < N_KFIELDS; j++) Py_CLEAR(kv[j]);
                Py_DECREF(key);
                goto error;
            }
            kv[i] = NULL;
        }
        v[E_KEY] = key;
        PyObject *ev = self->ev_type->tp_alloc(self->ev_type, 0);
        if (ev == NULL) goto error;
        for (int i = 0; i < N_EFIELDS; i++) {
            if (setf(self->efield[i], ev, v[i]) < 0) {
                v[i] = NULL;
                Py_DECREF(ev);
                goto error;
            }
            v[i] = NULL;
        }
        result = ev;
    }
    goto done;
none:
    if (PyErr_Occurred()) goto error;
    result = Py_NewRef(Py_None);
    goto done;
error:
    result = NULL;
done:
    for (int i = 0; i < N_EFIELDS; i++) Py_XDECREF(v[i]);
    for (int i = 0; i < N_KFIELDS; i++) Py_XDECREF(kv[i]);
    if (view.obj) PyBuffer_Release(&view);
    return result;
}

static PyMethodDef Decoder_methods[] = {
    {"decode", (PyCFunction)Decoder_decode, METH_O,
     "decode(raw) -> FlowEvidence, or None when raw is not a canonical MSEWatch::flow_evidence data-message"},
    {NULL}};

static PyTypeObject DecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "msewatch._wire.EvidenceDecoder",
    .tp_basicsize = sizeof(Decoder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Decoder_init,
    .tp_dealloc = (destructor)Decoder_dealloc,
    .tp_methods = Decoder_methods,
    .tp_doc = "EvidenceDecoder(FlowEvidence, FlowKey, norm_addr, parse_timestamp, utc)",
};

/* ------------------------------------------------------------------ VerdictEncoder */

typedef struct {
    char *b;
    Py_ssize_t n, cap;
} Buf;

static int grow(Buf *b, Py_ssize_t more)
{
    if (b->n + more <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 1024;
    while (cap < b->n + more) cap *= 2;
    char *nb = PyMem_Realloc(b->b, cap);
    if (nb == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->b = nb;
    b->cap = cap;
    return 0;
}

static int put(Buf *b, const char *s, Py_ssize_t n)
{
    if (grow(b, n) < 0) return -1;
    memcpy(b->b + b->n, s, n);
    b->n += n;
    return 0;
}
#define PUT(b, lit) put(b, lit, sizeof(lit) - 1)

/* a str as a JSON string, when it needs no escape: 0 = it does (Python encodes), -1 error */
static int put_str(Buf *b, PyObject *o)
{
    if (!PyUnicode_Check(o)) return 0;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(o, &n);
    if (s == NULL) {
        PyErr_Clear();
        return 0;
    }
    const unsigned char *u = (const unsigned char *)s;
    for (Py_ssize_t i = 0; i < n; i++)
        if (STR_STOP[u[i]]) return 0;
    if (grow(b, n + 2) < 0) return -1;
    b->b[b->n++] = '"';
    memcpy(b->b + b->n, s, n);
    b->n += n;
    b->b[b->n++] = '"';
    return 1;
}

/* decimal digits of v (>= 0) */
static char *put_uint(char *o, unsigned long long v)
{
    char tmp[24];
    int k = 0;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (k) *o++ = tmp[--k];
    return o;
}

static char *put_2(char *o, int v)
{
    *o++ = (char)('0' + v / 10);
    *o++ = (char)('0' + v % 10);
    return o;
}

typedef struct {
    PyObject_HEAD
    PyObject *norm_addr;
    int utc;
    Buf buf;
} Encoder;

static void Encoder_dealloc(Encoder *self)
{
    Py_XDECREF(self->norm_addr);
    PyMem_Free(self->buf.b);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* VerdictEncoder(norm_addr, utc) */
static int Encoder_init(Encoder *self, PyObject *args, PyObject *kw)
{
    PyObject *na;
    int utc;
    if (!PyArg_ParseTuple(args, "Op", &na, &utc)) return -1;
    Py_XSETREF(self->norm_addr, Py_NewRef(na));
    self->utc = utc;
    return 0;
}

static PyObject *s_uid, *s_key, *s_label, *s_protocol, *s_probability, *s_reasons, *s_decided_at,
    *s_decided_at_packet, *s_proto, *s_orig_h, *s_orig_p, *s_resp_h, *s_resp_p;

/* _PyTime_RoundHalfEven */
static double round_half_even(double x)
{
    double r = round(x);
    if (fabs(x - r) == 0.5) r = 2.0 * round(x / 2.0);
    return r;
}

/* codec.format_timestamp(timestamp_of(epoch)) with a UTC codec: "YYYY-MM-DDThh:mm:ss.mmm" */
static int put_timestamp(Buf *b, double epoch)
{
    if (!isfinite(epoch)) return 0;
    double intpart;
    volatile double frac = modf(epoch, &intpart);
    frac *= 1e6;
    frac = round_half_even(frac);
    if (frac >= 1e6) {
        frac -= 1e6;
        intpart += 1.0;
    } else if (frac < 0) {
        frac += 1e6;
        intpart -= 1.0;
    }
    if (!(intpart > -62135596800.0 && intpart < 253402300800.0)) return 0; /* datetime's years 1..9999 */
    time_t t = (time_t)intpart;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL) return 0;
    int sec = tm.tm_sec > 59 ? 59 : tm.tm_sec, year = tm.tm_year + 1900, ms = (int)((long)frac / 1000);
    char tmp[48], *o = tmp;
    *o++ = '"';
    o = put_2(o, year / 100);
    o = put_2(o, year % 100);
    *o++ = '-';
    o = put_2(o, tm.tm_mon + 1);
    *o++ = '-';
    o = put_2(o, tm.tm_mday);
    *o++ = 'T';
    o = put_2(o, tm.tm_hour);
    *o++ = ':';
    o = put_2(o, tm.tm_min);
    *o++ = ':';
    o = put_2(o, sec);
    *o++ = '.';
    *o++ = (char)('0' + ms / 100);
    o = put_2(o, ms % 100);
    *o++ = '"';
    return put(b, tmp, o - tmp) < 0 ? -1 : 1;
}

/* wire/v1.py real_text: "%f" when it is exact (float("%f" % x) == x), else repr. "%f" prints
   x rounded to 6 decimals, r / 10**6; it is exact when the double nearest r / 10**6 is x, and
   then r is x * 10**6 rounded (x is within half an ulp of r / 10**6, far from a tie) */
static int put_real(Buf *b, double x)
{
    if (!isfinite(x)) return 0;
    double r = nearbyint(x * 1e6);
    if (fabs(x) < 4e9 && r / 1e6 == x) {
        char tmp[40], *o = tmp;
        unsigned long long u = (unsigned long long)fabs(r);
        if (signbit(x)) *o++ = '-';
        o = put_uint(o, u / 1000000);
        *o++ = '.';
        unsigned long long f = u % 1000000;
        for (unsigned long long d = 100000; d; d /= 10) *o++ = (char)('0' + (f / d) % 10);
        return put(b, tmp, o - tmp) < 0 ? -1 : 1;
    }
    char *s = NULL;
    if (!(fabs(x) < 4e9)) { /* large: the test above does not apply; as real_text does it */
        s = PyOS_double_to_string(x, 'f', 6, 0, NULL);
        if (s == NULL) return -1;
        double back = PyOS_string_to_double(s, NULL, NULL);
        if (back == -1.0 && PyErr_Occurred()) {
            PyMem_Free(s);
            return -1;
        }
        if (back != x) {
            PyMem_Free(s);
            s = NULL;
        }
    }
    if (s == NULL && (s = PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0, NULL)) == NULL) return -1;
    int rc = put(b, s, (Py_ssize_t)strlen(s));
    PyMem_Free(s);
    return rc < 0 ? -1 : 1;
}

static int put_addr(Encoder *self, Buf *b, PyObject *h)
{
    if (!PyUnicode_Check(h)) return 0;
    PyObject *a = PyObject_CallOneArg(self->norm_addr, h);
    if (a == NULL) {
        PyErr_Clear();
        return 0;
    }
    if (PUT(b, "{\"@data-type\":\"address\",\"data\":") < 0) {
        Py_DECREF(a);
        return -1;
    }
    int r = put_str(b, a);
    Py_DECREF(a);
    if (r <= 0) return r;
    return PUT(b, "}") < 0 ? -1 : 1;
}

static int put_port(Buf *b, PyObject *num, const char *proto)
{
    if (!PyLong_CheckExact(num)) return 0;
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(num, &overflow);
    if (overflow || v < 0 || v > 65535) return 0;
    char tmp[64], *o = tmp;
    static const char PORT[] = "{\"@data-type\":\"port\",\"data\":\"";
    memcpy(o, PORT, sizeof PORT - 1);
    o = put_uint(o + sizeof PORT - 1, (unsigned long long)v);
    *o++ = '/';
    memcpy(o, proto, 3);
    o += 3;
    *o++ = '"';
    *o++ = '}';
    return put(b, tmp, o - tmp) < 0 ? -1 : 1;
}

static int put_typed_str(Buf *b, PyObject *s)
{
    if (PUT(b, "{\"@data-type\":\"string\",\"data\":") < 0) return -1;
    int r = put_str(b, s);
    if (r <= 0) return r;
    return PUT(b, "}") < 0 ? -1 : 1;
}

/* encode(v, topic) -> bytes, or None when the verdict needs the Python encoder */
static PyObject *Encoder_encode(Encoder *self, PyObject *args)
{
    PyObject *v, *topic;
    if (!PyArg_ParseTuple(args, "OO", &v, &topic)) return NULL;
    if (!self->utc || !PyUnicode_CheckExact(topic)) Py_RETURN_NONE;
    PyObject *o[13] = {NULL};
    PyObject *names[13] = {s_uid, s_key, s_label, s_protocol, s_probability, s_reasons, s_decided_at,
                           s_decided_at_packet, NULL, NULL, NULL, NULL, NULL};
    PyObject *result = NULL;
    Buf *b = &self->buf;
    b->n = 0;
    int r = 0;
    for (int i = 0; i < 8; i++)
        if ((o[i] = PyObject_GetAttr(v, names[i])) == NULL) goto error;
    PyObject *key = o[1];
    PyObject *knames[5] = {s_proto, s_orig_h, s_orig_p, s_resp_h, s_resp_p};
    for (int i = 0; i < 5; i++)
        if ((o[8 + i] = PyObject_GetAttr(key, knames[i])) == NULL) goto error;
    const char *proto;
    if (PyUnicode_Check(o[8]) && PyUnicode_Compare(o[8], s_tcp) == 0)
        proto = "tcp";
    else if (PyUnicode_Check(o[8]) && PyUnicode_Compare(o[8], s_udp) == 0)
        proto = "udp";
    else
        goto none;
    if (PyErr_Occurred()) goto error;
    /* protocol: `v.protocol or "unknown"` */
    PyObject *protocol = o[3];
    int t = PyObject_IsTrue(protocol);
    if (t < 0) goto error;
    if (!t) protocol = s_unknown_proto;
    if (!PyFloat_CheckExact(o[4]) || !PyFloat_CheckExact(o[6]) || !PyLong_CheckExact(o[7]) || !PyTuple_CheckExact(o[5]))
        goto none;
    if (PUT(b, "{\"type\":\"data-message\",\"topic\":") < 0) goto error;
    if ((r = put_str(b, topic)) <= 0) goto check;
    if (PUT(b, ",\"@data-type\":\"vector\",\"data\":[{\"@data-type\":\"count\",\"data\":1},{\"@data-type\":\"count\",\"data\":1},"
               "{\"@data-type\":\"vector\",\"data\":[{\"@data-type\":\"string\",\"data\":\"MSEWatch::verdict\"},"
               "{\"@data-type\":\"vector\",\"data\":[") < 0)
        goto error;
    if ((r = put_typed_str(b, o[0])) <= 0 || PUT(b, ",") < 0) goto check;
    if ((r = put_addr(self, b, o[9])) <= 0 || PUT(b, ",") < 0) goto check;
    if ((r = put_port(b, o[10], proto)) <= 0 || PUT(b, ",") < 0) goto check;
    if ((r = put_addr(self, b, o[11])) <= 0 || PUT(b, ",") < 0) goto check;
    if ((r = put_port(b, o[12], proto)) <= 0 || PUT(b, ",") < 0) goto check;
    if ((r = put_typed_str(b, o[2])) <= 0 || PUT(b, ",") < 0) goto check;
    if ((r = put_typed_str(b, protocol)) <= 0) goto check;
    if (PUT(b, ",{\"@data-type\":\"real\",\"data\":") < 0) goto error;
    if ((r = put_real(b, PyFloat_AS_DOUBLE(o[4]))) <= 0) goto check;
    if (PUT(b, "},{\"@data-type\":\"vector\",\"data\":[") < 0) goto error;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(o[5]); i++) {
        if (i && PUT(b, ",") < 0) goto error;
        if ((r = put_typed_str(b, PyTuple_GET_ITEM(o[5], i))) <= 0) goto check;
    }
    if (PUT(b, "]},{\"@data-type\":\"timestamp\",\"data\":") < 0) goto error;
    if ((r = put_timestamp(b, PyFloat_AS_DOUBLE(o[6]))) <= 0) goto check;
    {
        int overflow;
        long long pk = PyLong_AsLongLongAndOverflow(o[7], &overflow);
        if (overflow) goto none;
        char tmp[80], *o = tmp;
        static const char COUNT[] = "},{\"@data-type\":\"count\",\"data\":";
        memcpy(o, COUNT, sizeof COUNT - 1);
        o = put_uint(o + sizeof COUNT - 1, pk < 0 ? 0ULL : (unsigned long long)pk);
        memcpy(o, "}]}]}]}", 7);
        o += 7;
        if (put(b, tmp, o - tmp) < 0) goto error;
    }
    result = PyBytes_FromStringAndSize(b->b, b->n);
    goto done;
check:
    if (r < 0 || PyErr_Occurred()) goto error;
none:
    result = Py_NewRef(Py_None);
    goto done;
error:
    result = NULL;
done:
    for (int i = 0; i < 13; i++) Py_XDECREF(o[i]);
    return result;
}

static PyMethodDef Encoder_methods[] = {
    {"encode", (PyCFunction)Encoder_encode, METH_VARARGS,
     "encode(flow_verdict, topic) -> the MSEWatch::verdict data-message as JSON bytes, or None (Python encodes it)"},
    {NULL}};

static PyTypeObject EncoderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "msewatch._wire.VerdictEncoder",
    .tp_basicsize = sizeof(Encoder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Encoder_init,
    .tp_dealloc = (destructor)Encoder_dealloc,
    .tp_methods = Encoder_methods,
    .tp_doc = "VerdictEncoder(norm_addr, utc)",
};

/* ------------------------------------------------------------------ client frames */

/* client_frames(messages, keys, at) -> bytes: each message (bytes) as a client's text frame
   (RFC 6455 5.2: FIN, opcode 1, the mask bit, the length in 7, 7+16 or 7+64 bits, the
   4-byte mask key, the payload XORed with it), the i-th frame masked with keys[at + 4i :
   at + 4i + 4], all in one bytes object: what BridgeConnection.send_texts builds in Python
   with websockets' apply_mask, in one call per write. */
static PyObject *client_frames(PyObject *mod, PyObject *args)
{
    PyObject *msgs;
    Py_buffer keys;
    Py_ssize_t at;
    if (!PyArg_ParseTuple(args, "O!y*n", &PyList_Type, &msgs, &keys, &at)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(msgs), total = 0;
    PyObject *out = NULL;
    if (at < 0 || n > (keys.len - at) / 4) {
        PyErr_SetString(PyExc_ValueError, "client_frames: not enough mask keys");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *m = PyList_GET_ITEM(msgs, i);
        if (!PyBytes_Check(m)) {
            PyErr_SetString(PyExc_TypeError, "client_frames: messages must be bytes");
            goto done;
        }
        Py_ssize_t len = PyBytes_GET_SIZE(m);
        total += (len < 126 ? 2 : len < 65536 ? 4 : 10) + 4 + len;
    }
    out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL) goto done;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    const unsigned char *k = (const unsigned char *)keys.buf + at;
    for (Py_ssize_t i = 0; i < n; i++, k += 4) {
        PyObject *m = PyList_GET_ITEM(msgs, i);
        Py_ssize_t len = PyBytes_GET_SIZE(m);
        const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(m);
        *o++ = 0x81;
        if (len < 126) {
            *o++ = (unsigned char)(0x80 | len);
        } else if (len < 65536) {
            *o++ = 0xFE;
            *o++ = (unsigned char)(len >> 8);
            *o++ = (unsigned char)len;
        } else {
            *o++ = 0xFF;
            for (int b = 7; b >= 0; b--) *o++ = (unsigned char)((unsigned long long)len >> (8 * b));
        }
        memcpy(o, k, 4);
        o += 4;
        uint32_t k32;
        memcpy(&k32, k, 4);
        uint64_t k64 = ((uint64_t)k32 << 32) | k32;
        Py_ssize_t j = 0;
        for (; j + 8 <= len; j += 8) {
            uint64_t w;
            memcpy(&w, p + j, 8);
            w ^= k64;
            memcpy(o + j, &w, 8);
        }
        for (; j < len; j++) o[j] = p[j] ^ k[j & 3];
        o += len;
    }
done:
    PyBuffer_Release(&keys);
    return out;
}

static PyMethodDef module_methods[] = {
    {"client_frames", client_frames, METH_VARARGS,
     "client_frames(messages, keys, at) -> the messages (bytes) as masked client text frames, "
     "the i-th with mask key keys[at + 4i : at + 4i + 4], in one bytes object"},
    {NULL}};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "msewatch._wire",
                                       "flow_evidence decoding and verdict encoding in C (see msewatch.wire.events).",
                                       -1, module_methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__wire(void)
{
    init_tables();
#define S(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL
    S(s_tcp, "tcp"); S(s_udp, "udp"); S(s_icmp, "icmp"); S(s_unknown_proto, "unknown");
    S(s_uid, "uid"); S(s_key, "key"); S(s_label, "label"); S(s_protocol, "protocol");
    S(s_probability, "probability"); S(s_reasons, "reasons"); S(s_decided_at, "decided_at");
    S(s_decided_at_packet, "decided_at_packet"); S(s_proto, "proto"); S(s_orig_h, "orig_h");
    S(s_orig_p, "orig_p"); S(s_resp_h, "resp_h"); S(s_resp_p, "resp_p");
#undef S
    if (PyType_Ready(&DecoderType) < 0 || PyType_Ready(&EncoderType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL) return NULL;
    Py_INCREF(&DecoderType);
    Py_INCREF(&EncoderType);
    if (PyModule_AddObject(m, "EvidenceDecoder", (PyObject *)&DecoderType) < 0 ||
        PyModule_AddObject(m, "VerdictEncoder", (PyObject *)&EncoderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#ifdef WIRE_SOURCE_HASH
    if (PyModule_AddStringConstant(m, "SOURCE_HASH", WIRE_SOURCE_HASH) < 0) return NULL;
#endif
    return m;
}
