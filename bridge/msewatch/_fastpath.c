/* msewatch._fastpath: the offline packet path in C.
 *
 * Two types:
 *   Reader     frames pcap / pcapng records from a file descriptor and decodes
 *              Ethernet / VLAN / SLL / SLL2 / raw / null frames, IPv4 / IPv6, TCP / UDP:
 *              a line-by-line port of msewatch/sources/pcap.py (same counters, same
 *              errors with the same byte offsets).
 *   FlowTable  the per-flow state machine of Engine.process_packet: flow table with LRU
 *              eviction at max_flows, idle-timeout sweeps, the evidence budget, heads,
 *              burst counting, emission on budget / close / eviction / timeout / flush.
 *
 * Python is called once per emitted flow (the `emit` callback builds the engine's _Flow
 * and calls Engine._emit, so evidence snapshots, uids and deciding stay in Python and in
 * the same order), once per idle sweep (peer-cache expiry) and for the rare pcapng
 * interface block. msewatch/fastpath.py is the driver; the pure-Python path stays the
 * reference, and tests/fastpath compares the two on every corpus capture.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* link kinds: the same numbers as sources/pcap.py's _ETHERNET, _SLL, _SLL2, _RAW_IP, _NULL */
enum { K_ETHERNET = 0, K_SLL = 1, K_SLL2 = 2, K_RAW = 3, K_NULL = 4 };
/* _Flow.st bits: the same numbers as engine.py's _S_* */
enum { S_SYN = 1, S_SYNACK = 2, S_OFIN = 4, S_RFIN = 8, S_RST = 16, S_DONE = 32 };
enum { F_FIN = 0x01, F_SYN = 0x02, F_RST = 0x04, F_ACK = 0x10 };

#define CHUNK (1 << 20)
#define MAX_BLOCK_LEN ((16 << 20) + 65536)

/* ------------------------------------------------------------------ decoding */

typedef struct {
    unsigned long long packets, decoded, bad, nonip, other, frags;
} DStats;

typedef struct {
    double ts;
    int proto;
    int alen; /* 4 or 16 */
    const uint8_t *src, *dst;
    unsigned sport, dport, flags;
    const uint8_t *payload;
    Py_ssize_t caplen;  /* payload bytes the capture holds (and the IP/UDP lengths allow) */
    Py_ssize_t wirelen; /* payload length the IP/TCP/UDP headers announce */
} Pkt;

static inline unsigned be16(const uint8_t *p) { return ((unsigned)p[0] << 8) | p[1]; }
static inline uint32_t rd32(const uint8_t *p, int big)
{
    return big ? ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3])
               : ((uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]);
}
static inline unsigned rd16(const uint8_t *p, int big)
{
    return big ? ((unsigned)p[0] << 8 | p[1]) : ((unsigned)p[1] << 8 | p[0]);
}

/* sources/pcap.py _decode: 1 = decoded into *p, 0 = skipped (counted in *st) */
static int decode(const uint8_t *buf, Py_ssize_t off, Py_ssize_t end, int kind, Pkt *p, DStats *st)
{
    int want;
    if (kind == K_ETHERNET || kind == K_SLL || kind == K_SLL2) {
        unsigned etype;
        if (kind == K_ETHERNET) {
            if (end - off < 14) { st->bad++; return 0; }
            etype = be16(buf + off + 12);
            off += 14;
        } else if (kind == K_SLL) {
            if (end - off < 16) { st->bad++; return 0; }
            etype = be16(buf + off + 14);
            off += 16;
        } else {
            if (end - off < 20) { st->bad++; return 0; }
            etype = be16(buf + off);
            off += 20;
        }
        while (etype == 0x8100 || etype == 0x88A8 || etype == 0x9100) {
            if (end - off < 4) { st->bad++; return 0; }
            etype = be16(buf + off + 2);
            off += 4;
        }
        if (etype == 0x0800) want = 4;
        else if (etype == 0x86DD) want = 6;
        else { st->nonip++; return 0; }
    } else if (kind == K_RAW) {
        want = 0;
    } else { /* K_NULL: AF_ value in whichever byte order wrote it */
        uint32_t af;
        if (end - off < 4) { st->bad++; return 0; }
        af = rd32(buf + off, 0);
        if (af > 0xFFFF) af = rd32(buf + off, 1);
        off += 4;
        if (af == 2) want = 4;
        else if (af == 10 || af == 23 || af == 24 || af == 28 || af == 30) want = 6;
        else { st->nonip++; return 0; }
    }

    if (end - off < 20) { st->bad++; return 0; }
    int version = buf[off] >> 4;
    if (want && version != want) { st->bad++; return 0; }
    Py_ssize_t ip_end, wire_end, l4;
    int proto;
    if (version == 4) {
        Py_ssize_t ihl = (buf[off] & 0x0F) << 2;
        unsigned total_len = be16(buf + off + 2), frag = be16(buf + off + 6);
        proto = buf[off + 9];
        if (ihl < 20 || off + ihl > end) { st->bad++; return 0; }
        if (total_len == 0) {
            ip_end = wire_end = end; /* TSO: the captured length is the only length there is */
        } else if ((Py_ssize_t)total_len < ihl) {
            st->bad++; return 0;
        } else {
            wire_end = ip_end = off + total_len;
            if (ip_end > end) ip_end = end;
        }
        if (frag & 0x3FFF) { st->frags++; return 0; }
        p->src = buf + off + 12;
        p->dst = buf + off + 16;
        p->alen = 4;
        l4 = off + ihl;
    } else if (version == 6) {
        if (end - off < 40) { st->bad++; return 0; }
        unsigned payload_len = be16(buf + off + 4);
        proto = buf[off + 6];
        p->src = buf + off + 8;
        p->dst = buf + off + 24;
        p->alen = 16;
        l4 = off + 40;
        if (payload_len == 0) {
            ip_end = wire_end = end;
        } else {
            wire_end = ip_end = l4 + payload_len;
            if (ip_end > end) ip_end = end;
        }
        while (proto != 6 && proto != 17) {
            if (proto == 0 || proto == 43 || proto == 60 || proto == 51) {
                Py_ssize_t ext_len;
                if (ip_end - l4 < 8) { st->bad++; return 0; }
                if (proto == 51) ext_len = ((Py_ssize_t)buf[l4 + 1] + 2) << 2;
                else ext_len = ((Py_ssize_t)buf[l4 + 1] + 1) << 3;
                if (l4 + ext_len > ip_end) { st->bad++; return 0; }
                proto = buf[l4];
                l4 += ext_len;
            } else if (proto == 44) {
                if (ip_end - l4 < 8) { st->bad++; return 0; }
                if (be16(buf + l4 + 2) & 0xFFF9) { st->frags++; return 0; }
                proto = buf[l4];
                l4 += 8;
            } else {
                st->other++; return 0;
            }
        }
    } else {
        st->bad++; return 0;
    }

    if (proto == 6) {
        if (ip_end - l4 < 20) { st->bad++; return 0; }
        Py_ssize_t data_off = (buf[l4 + 12] >> 4) << 2;
        if (data_off < 20 || l4 + data_off > ip_end) { st->bad++; return 0; }
        p->proto = 6;
        p->sport = be16(buf + l4);
        p->dport = be16(buf + l4 + 2);
        p->flags = buf[l4 + 13];
        p->payload = buf + l4 + data_off;
        p->caplen = ip_end - (l4 + data_off);
        p->wirelen = wire_end - (l4 + data_off);
        return 1;
    }
    if (proto == 17) {
        if (ip_end - l4 < 8) { st->bad++; return 0; }
        unsigned udp_len = be16(buf + l4 + 4);
        if (udp_len) {
            if (udp_len < 8) { st->bad++; return 0; }
            if (l4 + (Py_ssize_t)udp_len < ip_end) ip_end = l4 + udp_len;
            if (l4 + (Py_ssize_t)udp_len < wire_end) wire_end = l4 + udp_len;
        }
        p->proto = 17;
        p->sport = be16(buf + l4);
        p->dport = be16(buf + l4 + 2);
        p->flags = 0;
        p->payload = buf + l4 + 8;
        p->caplen = ip_end - (l4 + 8);
        p->wirelen = wire_end - (l4 + 8);
        return 1;
    }
    st->other++;
    return 0;
}

/* ------------------------------------------------------------------ flow table */

typedef struct Ev {
    int32_t *sizes;
    double *times;
    uint16_t n, cap;
    uint8_t no, nr, hcap;
    PyObject *heads[]; /* [0, hcap): orig heads, [hcap, 2*hcap): resp heads (bytes) */
} Ev;

typedef struct Flow {
    struct Flow *hnext, *prev, *next;
    double ts, last;
    unsigned long long opkts, rpkts, obytes, rbytes;
    Ev *ev;
    uint32_t hash;
    uint16_t op, rp, nb;
    uint8_t proto, alen, st, spare;
    uint8_t oh[16], rh[16];
} Flow;

typedef struct {
    uint8_t alen, plen;
    uint8_t net[16];
} Net;

typedef struct {
    PyObject_HEAD
    Flow **buckets;
    size_t nbuckets, count;
    Flow *head, *tail; /* LRU: head = least recently active */
    /* budget and table config (engine.py's Engine.__init__) */
    int max_packets, max_bursts, head_bytes, udp_heads;
    double max_age;
    size_t max_flows;
    double tcp_timeout, udp_timeout, min_timeout, sweep_every, next_sweep;
    int size_from_headers;
    PyObject *emit_cb, *sweep_cb;
    /* --jobs (msewatch/jobs.py). Planning pass: `record` is a list, and each emission appends
     * (scoring host, other local endpoint or None) to it instead of calling emit. Worker pass:
     * `owners` holds the shard of every emission in order; only shard `shard_k`'s are emitted. */
    PyObject *record;
    PyObject *owners;
    int shard_k;
    Net *nets;
    int nnets;
    /* counters the driver adds to EngineStats */
    unsigned long long packets, flows, evicted, expired, emitted;
    unsigned long long seq;     /* emissions so far, own and foreign: the global emission order */
    unsigned long long skipped; /* foreign emissions since the last callback (uids to draw) */
    double now;
    int now_fresh; /* the next callback passes `now` (the engine sets Engine.now from it) */
    double last_ts;
    int pause;
} FlowTable;

static PyTypeObject FlowTableType;

static inline uint64_t mix64(uint64_t h)
{
    h ^= h >> 33; h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t v; memcpy(&v, p, 8); return v;
}

static uint32_t endpoint_pair_hash(int proto, int alen, const uint8_t *a, unsigned ap, const uint8_t *b, unsigned bp)
{
    /* direction-independent: hash the two endpoints in the engine's key order */
    int a_first = memcmp(a, b, alen) < 0 || (memcmp(a, b, alen) == 0 && ap <= bp);
    const uint8_t *lo = a_first ? a : b, *hi = a_first ? b : a;
    unsigned lop = a_first ? ap : bp, hip = a_first ? bp : ap;
    uint64_t h = (uint64_t)proto << 40 | (uint64_t)lop << 16 | hip;
    if (alen == 4) {
        uint32_t x, y; memcpy(&x, lo, 4); memcpy(&y, hi, 4);
        h = mix64(h ^ ((uint64_t)x << 32 | y));
    } else {
        h = mix64(h ^ load64(lo)) ^ load64(lo + 8);
        h = mix64(h) ^ load64(hi);
        h = mix64(h) ^ load64(hi + 8);
        h = mix64(h);
    }
    return (uint32_t)(h ^ (h >> 32));
}

static int is_local(const FlowTable *t, const uint8_t *a, int alen)
{
    for (int i = 0; i < t->nnets; i++) {
        const Net *n = &t->nets[i];
        if (n->alen != alen) continue;
        int full = n->plen >> 3, rest = n->plen & 7;
        if (memcmp(a, n->net, full)) continue;
        if (rest && ((a[full] ^ n->net[full]) & (0xFF00 >> rest) & 0xFF)) continue;
        return 1;
    }
    return 0;
}

static void ev_free(Ev *ev)
{
    if (!ev) return;
    for (int i = 0; i < ev->no; i++) Py_DECREF(ev->heads[i]);
    for (int i = 0; i < ev->nr; i++) Py_DECREF(ev->heads[ev->hcap + i]);
    PyMem_Free(ev->sizes);
    PyMem_Free(ev->times);
    PyMem_Free(ev);
}

static void lru_unlink(FlowTable *t, Flow *f)
{
    if (f->prev) f->prev->next = f->next; else t->head = f->next;
    if (f->next) f->next->prev = f->prev; else t->tail = f->prev;
    f->prev = f->next = NULL;
}

static void lru_append(FlowTable *t, Flow *f)
{
    f->prev = t->tail;
    f->next = NULL;
    if (t->tail) t->tail->next = f; else t->head = f;
    t->tail = f;
}

static void hash_unlink(FlowTable *t, Flow *f)
{
    Flow **pp = &t->buckets[f->hash & (t->nbuckets - 1)];
    while (*pp != f) pp = &(*pp)->hnext;
    *pp = f->hnext;
    f->hnext = NULL;
}

static int hash_grow(FlowTable *t)
{
    size_t nb = t->nbuckets * 2;
    Flow **b = PyMem_Calloc(nb, sizeof(Flow *));
    if (!b) { PyErr_NoMemory(); return -1; }
    for (size_t i = 0; i < t->nbuckets; i++) {
        Flow *f = t->buckets[i];
        while (f) {
            Flow *nx = f->hnext;
            size_t j = f->hash & (nb - 1);
            f->hnext = b[j];
            b[j] = f;
            f = nx;
        }
    }
    PyMem_Free(t->buckets);
    t->buckets = b;
    t->nbuckets = nb;
    return 0;
}

/* Remove f from the table (hash + LRU); the caller emits and/or frees it. */
static void table_remove(FlowTable *t, Flow *f)
{
    hash_unlink(t, f);
    lru_unlink(t, f);
    t->count--;
}

static PyObject *bytes_list(Ev *ev, int orig)
{
    int n = orig ? ev->no : ev->nr;
    PyObject **src = orig ? ev->heads : ev->heads + ev->hcap;
    PyObject *l = PyList_New(n);
    if (!l) return NULL;
    for (int i = 0; i < n; i++) { Py_INCREF(src[i]); PyList_SET_ITEM(l, i, src[i]); }
    return l;
}

static PyObject *empty_tuple(void) { return PyTuple_New(0); }

/* The evidence fields of f as the Python objects _Flow holds: sizes, times, oheads, rheads
 * (lists, or () where the engine keeps its shared empty tuple). New references in out[0..3]. */
static int flow_evidence_objects(Flow *f, PyObject **out)
{
    Ev *ev = f->ev;
    out[0] = out[1] = out[2] = out[3] = NULL;
    if (!ev || ev->n == 0) {
        out[0] = empty_tuple();
        out[1] = empty_tuple();
    } else {
        out[0] = PyList_New(ev->n);
        out[1] = PyList_New(ev->n);
        if (out[0] && out[1]) {
            for (int i = 0; i < ev->n; i++) {
                PyObject *s = PyLong_FromLong(ev->sizes[i]);
                PyObject *tm = PyFloat_FromDouble(ev->times[i]);
                if (!s || !tm) { Py_XDECREF(s); Py_XDECREF(tm); goto fail; }
                PyList_SET_ITEM(out[0], i, s);
                PyList_SET_ITEM(out[1], i, tm);
            }
        }
    }
    out[2] = (ev && ev->no) ? bytes_list(ev, 1) : empty_tuple();
    out[3] = (ev && ev->nr) ? bytes_list(ev, 0) : empty_tuple();
    if (out[0] && out[1] && out[2] && out[3]) return 0;
fail:
    for (int i = 0; i < 4; i++) Py_CLEAR(out[i]);
    return -1;
}

static PyObject *addr_bytes(const uint8_t *a, int alen)
{
    return PyBytes_FromStringAndSize((const char *)a, alen);
}

/* the planning pass: who decides this flow (Engine.process_evidence's scoring host) and the
 * other endpoint when it is local too (its host state is touched by the same decision) */
static int record_emission(FlowTable *t, Flow *f)
{
    int ol = is_local(t, f->oh, f->alen), rl = is_local(t, f->rh, f->alen);
    const uint8_t *host = (ol || !rl) ? f->oh : f->rh;
    PyObject *h = addr_bytes(host, f->alen), *other;
    if (!h) return -1;
    if (ol && rl) other = addr_bytes(host == f->oh ? f->rh : f->oh, f->alen);
    else { Py_INCREF(Py_None); other = Py_None; }
    PyObject *item = other ? PyTuple_Pack(2, h, other) : NULL;
    Py_DECREF(h);
    Py_XDECREF(other);
    if (!item) return -1;
    int rc = PyList_Append(t->record, item);
    Py_DECREF(item);
    return rc;
}

/* Engine._emit for f: mark it decided, free its evidence, and (unless it belongs to another
 * shard) call emit(seq, skipped, now, proto, oh, op, rh, rp, ts, last, sizes, times, nb,
 * oheads, rheads, opkts, rpkts, obytes, rbytes, st). */
static int emit(FlowTable *t, Flow *f)
{
    uint8_t st = f->st;
    f->st |= S_DONE;
    unsigned long long seq = t->seq++;
    int foreign = 0;
    if (t->record) {
        foreign = 1;
        if (record_emission(t, f) < 0) return -1;
    } else if (t->owners) {
        Py_ssize_t n = PyBytes_GET_SIZE(t->owners);
        int shard = (Py_ssize_t)seq < n ? ((const uint8_t *)PyBytes_AS_STRING(t->owners))[seq] : 0;
        foreign = shard != t->shard_k;
    }
    if (foreign) {
        ev_free(f->ev);
        f->ev = NULL;
        t->skipped++;
        return 0;
    }
    PyObject *evo[4];
    if (flow_evidence_objects(f, evo) < 0) return -1;
    ev_free(f->ev);
    f->ev = NULL;
    PyObject *args[20];
    int k = 0;
    args[k++] = PyLong_FromUnsignedLongLong(seq);
    args[k++] = PyLong_FromUnsignedLongLong(t->skipped);
    if (t->now_fresh) args[k++] = PyFloat_FromDouble(t->now);
    else { Py_INCREF(Py_None); args[k++] = Py_None; }
    args[k++] = PyLong_FromLong(f->proto);
    args[k++] = addr_bytes(f->oh, f->alen);
    args[k++] = PyLong_FromLong(f->op);
    args[k++] = addr_bytes(f->rh, f->alen);
    args[k++] = PyLong_FromLong(f->rp);
    args[k++] = PyFloat_FromDouble(f->ts);
    args[k++] = PyFloat_FromDouble(f->last);
    args[k++] = evo[0];
    args[k++] = evo[1];
    args[k++] = PyLong_FromLong(f->nb);
    args[k++] = evo[2];
    args[k++] = evo[3];
    args[k++] = PyLong_FromUnsignedLongLong(f->opkts);
    args[k++] = PyLong_FromUnsignedLongLong(f->rpkts);
    args[k++] = PyLong_FromUnsignedLongLong(f->obytes);
    args[k++] = PyLong_FromUnsignedLongLong(f->rbytes);
    args[k++] = PyLong_FromLong(st);
    PyObject *r = NULL;
    int ok = 1;
    for (int i = 0; i < k; i++) if (!args[i]) ok = 0;
    if (ok) {
        t->now_fresh = 0;
        t->skipped = 0;
        t->emitted++;
        r = PyObject_Vectorcall(t->emit_cb, args, k, NULL);
    }
    for (int i = 0; i < k; i++) Py_XDECREF(args[i]);
    if (!r) return -1;
    if (PyObject_IsTrue(r)) t->pause = 1;
    Py_DECREF(r);
    return 0;
}

/* Engine._retire / _finish: drop f from the table; decide it if it was not yet */
static int retire(FlowTable *t, Flow *f)
{
    table_remove(t, f);
    int rc = 0;
    if (!(f->st & S_DONE)) rc = emit(t, f);
    ev_free(f->ev);
    PyMem_Free(f);
    return rc;
}

static int call_sweep(FlowTable *t, double ts)
{
    if (t->sweep_cb == Py_None) return 0;
    PyObject *args[2];
    args[0] = t->now_fresh ? PyFloat_FromDouble(t->now) : (Py_INCREF(Py_None), Py_None);
    args[1] = PyFloat_FromDouble(ts);
    PyObject *r = NULL;
    if (args[0] && args[1]) {
        t->now_fresh = 0;
        r = PyObject_Vectorcall(t->sweep_cb, args, 2, NULL);
    }
    Py_XDECREF(args[0]);
    Py_XDECREF(args[1]);
    if (!r) return -1;
    Py_DECREF(r);
    return 0;
}

/* Engine._sweep */
static int sweep(FlowTable *t, double ts)
{
    t->next_sweep = ts + t->sweep_every;
    double horizon = ts - t->min_timeout;
    Flow *f = t->head;
    while (f) {
        if (f->last > horizon) break;
        Flow *nx = f->next;
        double to = f->proto == 6 ? t->tcp_timeout : t->udp_timeout;
        if (ts - f->last >= to) {
            t->expired++;
            if (retire(t, f) < 0) return -1;
        }
        f = nx;
    }
    return call_sweep(t, ts);
}

/* Engine._new_flow: orig = SYN sender; a lone SYN/ACK means dst is orig */
static Flow *new_flow(FlowTable *t, const Pkt *p, uint32_t hash)
{
    Flow *f = PyMem_Calloc(1, sizeof(Flow));
    if (!f) { PyErr_NoMemory(); return NULL; }
    f->proto = (uint8_t)p->proto;
    f->alen = (uint8_t)p->alen;
    f->hash = hash;
    f->ts = f->last = p->ts;
    if (p->proto == 6 && (p->flags & (F_SYN | F_ACK)) == (F_SYN | F_ACK)) {
        memcpy(f->oh, p->dst, p->alen); f->op = (uint16_t)p->dport;
        memcpy(f->rh, p->src, p->alen); f->rp = (uint16_t)p->sport;
    } else {
        memcpy(f->oh, p->src, p->alen); f->op = (uint16_t)p->sport;
        memcpy(f->rh, p->dst, p->alen); f->rp = (uint16_t)p->dport;
    }
    if (t->count >= t->max_flows && t->head) {
        Flow *old = t->head;
        t->evicted++;
        if (retire(t, old) < 0) { PyMem_Free(f); return NULL; }
    }
    if (t->count + 1 > t->nbuckets && hash_grow(t) < 0) { PyMem_Free(f); return NULL; }
    size_t j = hash & (t->nbuckets - 1);
    f->hnext = t->buckets[j];
    t->buckets[j] = f;
    lru_append(t, f);
    t->count++;
    t->flows++;
    return f;
}

static Ev *ev_new(FlowTable *t, int proto)
{
    int hcap = proto == 6 ? 1 : t->udp_heads;
    Ev *ev = PyMem_Calloc(1, sizeof(Ev) + 2 * (size_t)hcap * sizeof(PyObject *));
    if (!ev) { PyErr_NoMemory(); return NULL; }
    ev->hcap = (uint8_t)hcap;
    return ev;
}

static int ev_push(FlowTable *t, Ev *ev, int32_t size, double tm)
{
    if (ev->n == ev->cap) {
        int cap = ev->cap ? ev->cap * 2 : 4;
        if (cap > t->max_packets) cap = t->max_packets;
        int32_t *s = PyMem_Realloc(ev->sizes, cap * sizeof(int32_t));
        if (!s) { PyErr_NoMemory(); return -1; }
        ev->sizes = s;
        double *d = PyMem_Realloc(ev->times, cap * sizeof(double));
        if (!d) { PyErr_NoMemory(); return -1; }
        ev->times = d;
        ev->cap = (uint16_t)cap;
    }
    ev->sizes[ev->n] = size;
    ev->times[ev->n] = tm;
    ev->n++;
    return 0;
}

static inline int same(const uint8_t *a, const uint8_t *b, int alen) { return memcmp(a, b, alen) == 0; }

/* Engine.process_packet */
static int table_packet(FlowTable *t, const Pkt *p)
{
    t->packets++;
    t->now = t->last_ts = p->ts;
    t->now_fresh = 1;
    if (p->ts >= t->next_sweep && sweep(t, p->ts) < 0) return -1;
    uint32_t hash = endpoint_pair_hash(p->proto, p->alen, p->src, p->sport, p->dst, p->dport);
    Flow *f = t->buckets[hash & (t->nbuckets - 1)];
    for (; f; f = f->hnext) {
        if (f->hash != hash || f->proto != p->proto || f->alen != p->alen) continue;
        if ((f->op == p->sport && f->rp == p->dport && same(f->oh, p->src, p->alen) && same(f->rh, p->dst, p->alen)) ||
            (f->op == p->dport && f->rp == p->sport && same(f->oh, p->dst, p->alen) && same(f->rh, p->src, p->alen)))
            break;
    }
    unsigned flags = p->flags;
    if (f == NULL || (p->proto == 6 && (flags & (F_SYN | F_ACK)) == F_SYN && (f->st & S_DONE) && (f->st & (S_RST | S_OFIN)))) {
        if (f && retire(t, f) < 0) return -1;
        f = new_flow(t, p, hash);
        if (!f) return -1;
    } else if (f != t->tail) {
        lru_unlink(t, f);
        lru_append(t, f);
    }
    f->last = p->ts;
    Py_ssize_t n = t->size_from_headers ? p->wirelen : p->caplen;
    int is_orig = p->sport == f->op && same(p->src, f->oh, p->alen);
    if (is_orig) { f->opkts++; f->obytes += n; }
    else { f->rpkts++; f->rbytes += n; }
    uint8_t st = f->st;
    if (p->proto == 6 && (flags & (F_SYN | F_FIN | F_RST))) {
        if (flags & F_SYN) {
            if (is_orig) { if (!(flags & F_ACK)) st |= S_SYN; }
            else if (flags & F_ACK) st |= S_SYNACK;
        }
        if (flags & F_FIN) st |= is_orig ? S_OFIN : S_RFIN;
        if (flags & F_RST) st |= S_RST;
        f->st = st;
    }
    if (st & S_DONE) return 0;
    if (n) {
        if (p->ts - f->ts > t->max_age) return emit(t, f);
        int32_t signed_n = is_orig ? (int32_t)n : -(int32_t)n;
        Ev *ev = f->ev;
        if (!ev) {
            ev = f->ev = ev_new(t, p->proto);
            if (!ev) return -1;
        }
        if (ev->n == 0) {
            if (ev_push(t, ev, signed_n, p->ts - f->ts) < 0) return -1;
            f->nb = 1;
        } else {
            if ((ev->sizes[ev->n - 1] > 0) != is_orig) { /* a new direction run */
                if (f->nb >= t->max_bursts) return emit(t, f); /* a K+1-th burst: the budget is spent */
                f->nb++;
            }
            if (ev_push(t, ev, signed_n, p->ts - f->ts) < 0) return -1;
        }
        uint8_t *cnt = is_orig ? &ev->no : &ev->nr;
        if (*cnt < ev->hcap) {
            Py_ssize_t hl = p->caplen < t->head_bytes ? p->caplen : t->head_bytes;
            PyObject *h = PyBytes_FromStringAndSize((const char *)p->payload, hl);
            if (!h) return -1;
            ev->heads[(is_orig ? 0 : ev->hcap) + *cnt] = h;
            (*cnt)++;
        }
        if (ev->n >= t->max_packets) return emit(t, f);
    }
    if ((st & S_RST) || (st & (S_OFIN | S_RFIN)) == (S_OFIN | S_RFIN)) return emit(t, f);
    return 0;
}

static int nets_from_list(FlowTable *t, PyObject *nets)
{
    if (nets == Py_None) return 0;
    PyObject *seq = PySequence_Fast(nets, "local_nets must be a sequence of (address bytes, prefix length)");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    t->nets = PyMem_Calloc(n ? n : 1, sizeof(Net));
    if (!t->nets) { Py_DECREF(seq); PyErr_NoMemory(); return -1; }
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *a;
        Py_ssize_t alen;
        int plen;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "y#i", &a, &alen, &plen)) { Py_DECREF(seq); return -1; }
        if ((alen != 4 && alen != 16) || plen < 0 || plen > alen * 8) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ValueError, "bad local network");
            return -1;
        }
        t->nets[i].alen = (uint8_t)alen;
        t->nets[i].plen = (uint8_t)plen;
        memcpy(t->nets[i].net, a, alen);
    }
    t->nnets = (int)n;
    Py_DECREF(seq);
    return 0;
}

static int FlowTable_init(FlowTable *t, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"max_packets", "max_bursts", "head_bytes", "udp_heads", "max_age",
                             "max_flows", "tcp_timeout", "udp_timeout", "sweep_every", "next_sweep",
                             "emit", "sweep", "size_from_headers", "record", "local_nets", "owners", "shard_k",
                             NULL};
    Py_ssize_t max_flows;
    PyObject *emit_cb, *sweep_cb, *nets = Py_None, *record = Py_None, *owners = Py_None;
    t->shard_k = 0;
    t->size_from_headers = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iiiidnddddOO|pOOOi", kwlist, &t->max_packets, &t->max_bursts,
                                     &t->head_bytes, &t->udp_heads, &t->max_age, &max_flows, &t->tcp_timeout,
                                     &t->udp_timeout, &t->sweep_every, &t->next_sweep, &emit_cb, &sweep_cb,
                                     &t->size_from_headers, &record, &nets, &owners, &t->shard_k))
        return -1;
    if ((record != Py_None && !PyList_Check(record)) || (owners != Py_None && !PyBytes_Check(owners))) {
        PyErr_SetString(PyExc_TypeError, "FlowTable: record must be a list and owners bytes");
        return -1;
    }
    if (t->buckets) { PyErr_SetString(PyExc_RuntimeError, "FlowTable already initialised"); return -1; }
    if (t->max_packets < 1 || t->max_packets > 65535 || t->max_bursts < 1 || t->max_bursts > 65535 ||
        t->head_bytes < 0 || t->udp_heads < 1 || t->udp_heads > 255 || max_flows < 1 ||
        t->shard_k < 0 || t->shard_k > 255) {
        PyErr_SetString(PyExc_ValueError, "FlowTable: parameter out of range");
        return -1;
    }
    if (!PyCallable_Check(emit_cb) || (sweep_cb != Py_None && !PyCallable_Check(sweep_cb))) {
        PyErr_SetString(PyExc_TypeError, "FlowTable: emit and sweep must be callables");
        return -1;
    }
    t->max_flows = (size_t)max_flows;
    t->min_timeout = t->tcp_timeout < t->udp_timeout ? t->tcp_timeout : t->udp_timeout;
    t->nbuckets = 1024;
    t->buckets = PyMem_Calloc(t->nbuckets, sizeof(Flow *));
    if (!t->buckets) { PyErr_NoMemory(); return -1; }
    Py_INCREF(emit_cb);
    t->emit_cb = emit_cb;
    Py_INCREF(sweep_cb);
    t->sweep_cb = sweep_cb;
    if (record != Py_None) { Py_INCREF(record); t->record = record; }
    if (owners != Py_None) { Py_INCREF(owners); t->owners = owners; }
    return nets_from_list(t, nets);
}

static void table_free_flows(FlowTable *t)
{
    Flow *f = t->head;
    while (f) {
        Flow *nx = f->next;
        ev_free(f->ev);
        PyMem_Free(f);
        f = nx;
    }
    t->head = t->tail = NULL;
    t->count = 0;
    if (t->buckets) memset(t->buckets, 0, t->nbuckets * sizeof(Flow *));
}

static int FlowTable_traverse(FlowTable *t, visitproc visit, void *arg)
{
    Py_VISIT(t->emit_cb);
    Py_VISIT(t->sweep_cb);
    Py_VISIT(t->record);
    Py_VISIT(t->owners);
    return 0;
}

static int FlowTable_clear(FlowTable *t)
{
    Py_CLEAR(t->emit_cb);
    Py_CLEAR(t->sweep_cb);
    Py_CLEAR(t->record);
    Py_CLEAR(t->owners);
    return 0;
}

static void FlowTable_dealloc(FlowTable *t)
{
    PyObject_GC_UnTrack(t);
    table_free_flows(t);
    PyMem_Free(t->buckets);
    PyMem_Free(t->nets);
    FlowTable_clear(t);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static PyObject *FlowTable_packet(FlowTable *t, PyObject *const *args, Py_ssize_t nargs)
{
    /* packet(ts, proto, src, sport, dst, dport, flags, payload[, wirelen]): Engine.process_packet's
     * signature, for direct feeding (benchmarks, unit tests) */
    if (nargs != 8 && nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "packet() takes 8 or 9 arguments");
        return NULL;
    }
    Pkt p;
    Py_buffer src, dst, pl;
    p.ts = PyFloat_AsDouble(args[0]);
    p.proto = (int)PyLong_AsLong(args[1]);
    p.sport = (unsigned)PyLong_AsLong(args[3]);
    p.dport = (unsigned)PyLong_AsLong(args[5]);
    p.flags = (unsigned)PyLong_AsLong(args[6]);
    if (PyErr_Occurred()) return NULL;
    if (p.proto != 6 && p.proto != 17) { PyErr_SetString(PyExc_ValueError, "proto must be 6 or 17"); return NULL; }
    if (PyObject_GetBuffer(args[2], &src, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(args[4], &dst, PyBUF_SIMPLE) < 0) { PyBuffer_Release(&src); return NULL; }
    if (PyObject_GetBuffer(args[7], &pl, PyBUF_SIMPLE) < 0) { PyBuffer_Release(&src); PyBuffer_Release(&dst); return NULL; }
    PyObject *r = NULL;
    if (src.len != dst.len || (src.len != 4 && src.len != 16)) {
        PyErr_SetString(PyExc_ValueError, "addresses must both be 4 or both 16 bytes");
    } else {
        p.alen = (int)src.len;
        p.src = src.buf;
        p.dst = dst.buf;
        p.payload = pl.buf;
        p.caplen = pl.len;
        p.wirelen = nargs == 9 ? PyLong_AsSsize_t(args[8]) : pl.len;
        if (!PyErr_Occurred() && table_packet(t, &p) == 0) {
            Py_INCREF(Py_None);
            r = Py_None;
        }
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    PyBuffer_Release(&pl);
    return r;
}

static PyObject *FlowTable_flush(FlowTable *t, PyObject *unused)
{
    /* Engine.flush's flow part: decide every open flow, least recently active first */
    while (t->head) {
        if (retire(t, t->head) < 0) return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *FlowTable_export(FlowTable *t, PyObject *unused)
{
    /* Every tracked flow, least recently active first, as
     * (proto, oh, op, rh, rp, ts, last, sizes, times, nb, oheads, rheads, opkts, rpkts, obytes, rbytes, st);
     * the table is left empty. The driver turns these into the engine's _Flow objects. */
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    for (Flow *f = t->head; f; f = f->next) {
        PyObject *evo[4];
        if (flow_evidence_objects(f, evo) < 0) { Py_DECREF(out); return NULL; }
        PyObject *item = Py_BuildValue("(iNiNiddNNiNNKKKKi)", f->proto, addr_bytes(f->oh, f->alen), f->op,
                                       addr_bytes(f->rh, f->alen), f->rp, f->ts, f->last, evo[0], evo[1], f->nb,
                                       evo[2], evo[3], f->opkts, f->rpkts, f->obytes, f->rbytes, f->st);
        if (!item || PyList_Append(out, item) < 0) { Py_XDECREF(item); Py_DECREF(out); return NULL; }
        Py_DECREF(item);
    }
    table_free_flows(t);
    return out;
}

static PyObject *FlowTable_take_counters(FlowTable *t, PyObject *unused)
{
    /* (packets, flows, evicted, expired) since the last call */
    PyObject *r = Py_BuildValue("(KKKK)", t->packets, t->flows, t->evicted, t->expired);
    t->packets = t->flows = t->evicted = t->expired = 0;
    return r;
}

static PyObject *FlowTable_sync_now(FlowTable *t, PyObject *unused)
{
    /* Engine.now after the last packet, or None when a callback already set it since */
    if (t->now_fresh) {
        t->now_fresh = 0;
        return PyFloat_FromDouble(t->now);
    }
    Py_RETURN_NONE;
}

static PyObject *FlowTable_get_len(FlowTable *t, void *c) { return PyLong_FromSize_t(t->count); }
static PyObject *FlowTable_get_next_sweep(FlowTable *t, void *c) { return PyFloat_FromDouble(t->next_sweep); }
static PyObject *FlowTable_get_seq(FlowTable *t, void *c) { return PyLong_FromUnsignedLongLong(t->seq); }
static PyObject *FlowTable_get_skipped(FlowTable *t, void *c) { return PyLong_FromUnsignedLongLong(t->skipped); }
static PyObject *FlowTable_get_memory(FlowTable *t, void *c)
{
    /* bytes the table holds in C (flows, buckets, evidence arrays; not the head bytes objects) */
    size_t b = t->nbuckets * sizeof(Flow *) + t->count * sizeof(Flow);
    for (Flow *f = t->head; f; f = f->next)
        if (f->ev) b += sizeof(Ev) + 2 * f->ev->hcap * sizeof(PyObject *) + f->ev->cap * (sizeof(int32_t) + sizeof(double));
    return PyLong_FromSize_t(b);
}

static PyMethodDef FlowTable_methods[] = {
    {"packet", (PyCFunction)(void (*)(void))FlowTable_packet, METH_FASTCALL, "Engine.process_packet in C"},
    {"flush", (PyCFunction)FlowTable_flush, METH_NOARGS, "decide every open flow (LRU order) and empty the table"},
    {"export", (PyCFunction)FlowTable_export, METH_NOARGS, "hand every tracked flow back to Python; empties the table"},
    {"take_counters", (PyCFunction)FlowTable_take_counters, METH_NOARGS, "(packets, flows, evicted, expired) since last call"},
    {"sync_now", (PyCFunction)FlowTable_sync_now, METH_NOARGS, "the last packet's ts if no callback has seen it yet"},
    {NULL}};

static PyGetSetDef FlowTable_getset[] = {
    {"tracked", (getter)FlowTable_get_len, NULL, "flows tracked", NULL},
    {"next_sweep", (getter)FlowTable_get_next_sweep, NULL, "capture time of the next idle sweep", NULL},
    {"seq", (getter)FlowTable_get_seq, NULL, "emissions so far (own and other shards')", NULL},
    {"skipped", (getter)FlowTable_get_skipped, NULL, "other shards' emissions since the last callback", NULL},
    {"memory", (getter)FlowTable_get_memory, NULL, "bytes held in C structures", NULL},
    {NULL}};

static PyTypeObject FlowTableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "msewatch._fastpath.FlowTable",
    .tp_basicsize = sizeof(FlowTable),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The per-flow state machine of Engine.process_packet, in C.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FlowTable_init,
    .tp_dealloc = (destructor)FlowTable_dealloc,
    .tp_traverse = (traverseproc)FlowTable_traverse,
    .tp_clear = (inquiry)FlowTable_clear,
    .tp_methods = FlowTable_methods,
    .tp_getset = FlowTable_getset,
};

/* ------------------------------------------------------------------ reader */

typedef struct {
    int kind; /* -1: unsupported link type (raise when a packet arrives on it) */
    long linktype;
    unsigned long long divisor; /* 0: exotic (timestamps computed in Python) */
    long long ts_offset;
    unsigned long snaplen;
    PyObject *py_divisor, *py_ts_offset;
} Iface;

typedef struct {
    PyObject_HEAD
    int fd;
    PyObject *name;    /* str: the file name for messages */
    PyObject *err_cls; /* PcapError */
    int format;        /* 0 pcap, 1 pcapng */
    uint8_t *buf;
    size_t cap, len, pos;
    long long base; /* file offset of buf[0] */
    /* pcap */
    int big, rec_len, kind;
    double divisor;
    uint32_t max_caplen;
    /* pcapng */
    int little;
    Iface *ifaces;
    int nifaces, ifcap;
    double last_ts;
    PyObject *idb_cb, *link_cb, *ts_cb;
    DStats st;
    long long bytes_read;
    PyObject *exc_type, *exc, *exc_tb; /* read(): an error met after some packets, raised by the next call */
} Reader;

static PyObject *pcap_error(Reader *r, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    PyObject *s = PyUnicode_FromFormat("%U: %s", r->name, msg);
    if (s) {
        PyErr_SetObject(r->err_cls, s);
        Py_DECREF(s);
    }
    return NULL;
}

/* Make at least `need` bytes available from pos. 1: available; 0: end of file first; -1: error */
static int ensure(Reader *r, size_t need)
{
    while (r->len - r->pos < need) {
        if (r->pos) { /* keep the unread tail only */
            memmove(r->buf, r->buf + r->pos, r->len - r->pos);
            r->len -= r->pos;
            r->base += (long long)r->pos;
            r->pos = 0;
        }
        if (r->cap < need + CHUNK) {
            size_t nc = need + 2 * (size_t)CHUNK;
            uint8_t *nb = PyMem_Realloc(r->buf, nc);
            if (!nb) { PyErr_NoMemory(); return -1; }
            r->buf = nb;
            r->cap = nc;
        }
        ssize_t got;
        int err = 0;
        Py_BEGIN_ALLOW_THREADS
        do {
            got = read(r->fd, r->buf + r->len, r->cap - r->len);
        } while (got < 0 && errno == EINTR);
        if (got < 0) err = errno;
        Py_END_ALLOW_THREADS
        if (got < 0) {
            pcap_error(r, "cannot read: %s", strerror(err));
            return -1;
        }
        if (got == 0) return 0;
        r->len += (size_t)got;
    }
    return 1;
}

/* One classic pcap record. 1: frame, caplen and ts set; 0: clean end of file; -1: error */
static int pcap_next(Reader *r, const uint8_t **frame, Py_ssize_t *caplen, double *ts)
{
    int a = ensure(r, r->rec_len);
    if (a < 0) return -1;
    if (a == 0) {
        if (r->len > r->pos) {
            pcap_error(r, "truncated packet record header at byte offset %lld (%zu of %d bytes)",
                       r->base + (long long)r->pos, r->len - r->pos, r->rec_len);
            return -1;
        }
        return 0;
    }
    const uint8_t *h = r->buf + r->pos;
    uint32_t sec = rd32(h, r->big), frac = rd32(h + 4, r->big), cl = rd32(h + 8, r->big);
    if (cl > r->max_caplen) {
        pcap_error(r, "corrupt packet record at byte offset %lld (captured length %lu exceeds %lu)",
                   r->base + (long long)r->pos, (unsigned long)cl, (unsigned long)r->max_caplen);
        return -1;
    }
    a = ensure(r, (size_t)r->rec_len + cl);
    if (a < 0) return -1;
    if (a == 0) {
        pcap_error(r, "truncated packet record at byte offset %lld (captured length %lu, %zd bytes left in file)",
                   r->base + (long long)r->pos, (unsigned long)cl,
                   (Py_ssize_t)r->len - (Py_ssize_t)(r->pos + r->rec_len));
        return -1;
    }
    *frame = r->buf + r->pos + r->rec_len;
    *caplen = cl;
    *ts = (double)sec + (double)frac / r->divisor;
    r->pos += (size_t)r->rec_len + cl;
    r->st.packets++;
    r->bytes_read = r->base + (long long)r->pos;
    return 1;
}

static PyObject *call_link_error(Reader *r, long linktype, int iface_id)
{
    PyObject *res = PyObject_CallFunction(r->link_cb, "li", linktype, iface_id);
    if (res) { /* the callback must raise; if it does not, this is still an error */
        Py_DECREF(res);
        pcap_error(r, "unsupported link type %ld on pcapng interface %d", linktype, iface_id);
    }
    return NULL;
}

static int add_iface(Reader *r, PyObject *block, long long offset)
{
    PyObject *res = PyObject_CallFunction(r->idb_cb, "OiL", block, r->little, offset);
    if (!res) return -1;
    long linktype, kind;
    unsigned long snaplen;
    PyObject *div, *tsoff;
    if (!PyArg_ParseTuple(res, "llOOk", &linktype, &kind, &div, &tsoff, &snaplen)) { Py_DECREF(res); return -1; }
    if (r->nifaces == r->ifcap) {
        int nc = r->ifcap ? r->ifcap * 2 : 4;
        Iface *ni = PyMem_Realloc(r->ifaces, nc * sizeof(Iface));
        if (!ni) { Py_DECREF(res); PyErr_NoMemory(); return -1; }
        r->ifaces = ni;
        r->ifcap = nc;
    }
    Iface *f = &r->ifaces[r->nifaces];
    f->kind = (int)kind;
    f->linktype = linktype;
    f->snaplen = snaplen;
    Py_INCREF(div);
    Py_INCREF(tsoff);
    f->py_divisor = div;
    f->py_ts_offset = tsoff;
    /* exact in C when both the divisor and the offset stay within a double's integer range */
    int overflow = 0;
    unsigned long long d = PyLong_AsUnsignedLongLong(div);
    if (PyErr_Occurred()) { PyErr_Clear(); overflow = 1; }
    long long o = PyLong_AsLongLongAndOverflow(tsoff, &overflow);
    if (PyErr_Occurred()) { PyErr_Clear(); overflow = 1; }
    f->divisor = (!overflow && d >= 1 && d <= (1ULL << 53) && o > -(1LL << 52) && o < (1LL << 52)) ? d : 0;
    f->ts_offset = o;
    r->nifaces++;
    Py_DECREF(res);
    return 0;
}

static void clear_ifaces(Reader *r)
{
    for (int i = 0; i < r->nifaces; i++) {
        Py_CLEAR(r->ifaces[i].py_divisor);
        Py_CLEAR(r->ifaces[i].py_ts_offset);
    }
    r->nifaces = 0;
}

static int iface_ts(Reader *r, Iface *f, uint64_t tick, double *ts)
{
    if (f->divisor) {
        uint64_t sec = tick / f->divisor, frac = tick % f->divisor;
        if (sec < (1ULL << 52)) {
            /* int + int exact, then int + float as Python rounds it (both < 2**53) */
            *ts = (double)((long long)sec + f->ts_offset) + (double)frac / (double)f->divisor;
            return 0;
        }
    }
    PyObject *res = PyObject_CallFunction(r->ts_cb, "KOO", (unsigned long long)tick, f->py_divisor, f->py_ts_offset);
    if (!res) return -1;
    *ts = PyFloat_AsDouble(res);
    Py_DECREF(res);
    return PyErr_Occurred() ? -1 : 0;
}

/* The next packet of a pcapng file (sources/pcap.py _iter_pcapng). 1 / 0 / -1 as pcap_next. */
static int pcapng_next(Reader *r, const uint8_t **frame, Py_ssize_t *caplen, double *ts, int *kind)
{
    for (;;) {
        int a = ensure(r, 12);
        if (a < 0) return -1;
        if (a == 0) {
            if (r->len > r->pos) {
                pcap_error(r, "truncated pcapng block header at byte offset %lld (%zu bytes)",
                           r->base + (long long)r->pos, r->len - r->pos);
                return -1;
            }
            return 0;
        }
        long long offset = r->base + (long long)r->pos;
        const uint8_t *b = r->buf + r->pos;
        if (b[0] == 0x0a && b[1] == 0x0d && b[2] == 0x0d && b[3] == 0x0a) {
            if (b[8] == 0x4d && b[9] == 0x3c && b[10] == 0x2b && b[11] == 0x1a) r->little = 1;
            else if (b[8] == 0x1a && b[9] == 0x2b && b[10] == 0x3c && b[11] == 0x4d) r->little = 0;
            else {
                pcap_error(r, "corrupt section header block at byte offset %lld (byte-order magic 0x%02x%02x%02x%02x)",
                           offset, b[8], b[9], b[10], b[11]);
                return -1;
            }
        }
        int big = !r->little;
        uint32_t btype = rd32(b, big), blen = rd32(b + 4, big);
        if (blen < 12 || (blen & 3) || blen > MAX_BLOCK_LEN) {
            pcap_error(r, "corrupt pcapng block at byte offset %lld (type 0x%08lx, total length %lu)", offset,
                       (unsigned long)btype, (unsigned long)blen);
            return -1;
        }
        a = ensure(r, blen);
        if (a < 0) return -1;
        if (a == 0) {
            pcap_error(r, "truncated pcapng block at byte offset %lld (type 0x%08lx, total length %lu, %zu bytes left in file)",
                       offset, (unsigned long)btype, (unsigned long)blen, r->len - r->pos);
            return -1;
        }
        b = r->buf + r->pos;
        if (rd32(b + blen - 4, big) != blen) {
            pcap_error(r, "corrupt pcapng block at byte offset %lld (type 0x%08lx: leading and trailing total lengths differ)",
                       offset, (unsigned long)btype);
            return -1;
        }
        const uint8_t *body = b + 8;
        size_t block_end = blen - 4; /* relative to b */
        r->pos += blen;
        r->bytes_read = r->base + (long long)r->pos;
        Iface *iface;
        int iface_id;
        size_t start, cl;
        double t;
        if (btype == 6 || btype == 2) {
            if (blen < 32) {
                pcap_error(r, "corrupt packet block at byte offset %lld (total length %lu)", offset, (unsigned long)blen);
                return -1;
            }
            uint32_t ts_high, ts_low;
            if (btype == 6) {
                uint32_t id = rd32(body, big);
                ts_high = rd32(body + 4, big);
                ts_low = rd32(body + 8, big);
                cl = rd32(body + 12, big);
                start = 8 + 20;
                if (start + cl > block_end) {
                    pcap_error(r, "corrupt packet block at byte offset %lld (captured length %zu exceeds the block)", offset, cl);
                    return -1;
                }
                if (id >= (uint32_t)r->nifaces) {
                    pcap_error(r, "packet block at byte offset %lld names interface %lu, but only %d are described",
                               offset, (unsigned long)id, r->nifaces);
                    return -1;
                }
                iface_id = (int)id;
            } else {
                unsigned id = rd16(body, big);
                ts_high = rd32(body + 4, big);
                ts_low = rd32(body + 8, big);
                cl = rd32(body + 12, big);
                start = 8 + 20;
                if (start + cl > block_end) {
                    pcap_error(r, "corrupt packet block at byte offset %lld (captured length %zu exceeds the block)", offset, cl);
                    return -1;
                }
                if (id >= (unsigned)r->nifaces) {
                    pcap_error(r, "packet block at byte offset %lld names interface %u, but only %d are described",
                               offset, id, r->nifaces);
                    return -1;
                }
                iface_id = (int)id;
            }
            iface = &r->ifaces[iface_id];
            if (iface_ts(r, iface, ((uint64_t)ts_high << 32) | ts_low, &t) < 0) return -1;
        } else if (btype == 3) {
            if (blen < 16) {
                pcap_error(r, "corrupt simple packet block at byte offset %lld (total length %lu)", offset, (unsigned long)blen);
                return -1;
            }
            if (!r->nifaces) {
                pcap_error(r, "simple packet block at byte offset %lld before any interface description block", offset);
                return -1;
            }
            iface = &r->ifaces[0];
            iface_id = 0;
            uint32_t origlen = rd32(body, big);
            start = 8 + 4;
            cl = origlen < block_end - start ? origlen : block_end - start;
            if (iface->snaplen && cl > iface->snaplen) cl = iface->snaplen;
            t = r->last_ts;
        } else if (btype == 1) {
            if (blen < 20) {
                pcap_error(r, "corrupt interface description block at byte offset %lld (total length %lu)", offset,
                           (unsigned long)blen);
                return -1;
            }
            PyObject *blk = PyBytes_FromStringAndSize((const char *)b, blen);
            if (!blk) return -1;
            int rc = add_iface(r, blk, offset);
            Py_DECREF(blk);
            if (rc < 0) return -1;
            continue;
        } else if (btype == 0x0A0D0D0A) {
            if (blen < 28) {
                pcap_error(r, "corrupt section header block at byte offset %lld (total length %lu)", offset, (unsigned long)blen);
                return -1;
            }
            unsigned major = rd16(body + 4, big);
            if (major != 1) {
                pcap_error(r, "unsupported pcapng version %u at byte offset %lld", major, offset);
                return -1;
            }
            clear_ifaces(r);
            continue;
        } else {
            continue;
        }
        if (iface->kind < 0) {
            call_link_error(r, iface->linktype, iface_id);
            return -1;
        }
        r->last_ts = t;
        r->st.packets++;
        *frame = b + start;
        *caplen = (Py_ssize_t)cl;
        *ts = t;
        *kind = iface->kind;
        return 1;
    }
}

static int Reader_init(Reader *r, PyObject *args, PyObject *kw)
{
    /* Reader(fd, name, err_cls, head, format, *, big, divisor, rec_len, kind, max_caplen,
     *        idb, link_error, exotic_ts) */
    static char *kwlist[] = {"fd", "name", "err_cls", "head", "format", "big", "divisor", "rec_len", "kind",
                             "max_caplen", "idb", "link_error", "exotic_ts", NULL};
    Py_buffer head;
    PyObject *idb = Py_None, *link = Py_None, *tsx = Py_None;
    unsigned long max_caplen = 0;
    r->big = 0; r->divisor = 1e6; r->rec_len = 16; r->kind = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iUOy*i|$pdiikOOO", kwlist, &r->fd, &r->name, &r->err_cls, &head,
                                     &r->format, &r->big, &r->divisor, &r->rec_len, &r->kind, &max_caplen, &idb,
                                     &link, &tsx))
        return -1;
    r->max_caplen = (uint32_t)max_caplen;
    Py_INCREF(r->name);
    Py_INCREF(r->err_cls);
    Py_INCREF(idb); r->idb_cb = idb;
    Py_INCREF(link); r->link_cb = link;
    Py_INCREF(tsx); r->ts_cb = tsx;
    r->little = 1;
    r->cap = 2 * (size_t)CHUNK;
    r->buf = PyMem_Malloc(r->cap);
    if (!r->buf) { PyBuffer_Release(&head); PyErr_NoMemory(); return -1; }
    memcpy(r->buf, head.buf, head.len);
    r->len = (size_t)head.len;
    r->pos = 0;
    r->base = 0;
    if (r->format == 0) { /* the driver read the 24-byte file header; records start here */
        r->base = head.len;
        r->len = 0;
    }
    r->bytes_read = r->base;
    PyBuffer_Release(&head);
    return 0;
}

static int Reader_traverse(Reader *r, visitproc visit, void *arg)
{
    Py_VISIT(r->idb_cb);
    Py_VISIT(r->link_cb);
    Py_VISIT(r->ts_cb);
    Py_VISIT(r->err_cls);
    Py_VISIT(r->exc_type);
    Py_VISIT(r->exc);
    Py_VISIT(r->exc_tb);
    return 0;
}

static int Reader_clear(Reader *r)
{
    Py_CLEAR(r->idb_cb);
    Py_CLEAR(r->link_cb);
    Py_CLEAR(r->ts_cb);
    Py_CLEAR(r->err_cls);
    Py_CLEAR(r->exc_type);
    Py_CLEAR(r->exc);
    Py_CLEAR(r->exc_tb);
    return 0;
}

static void Reader_dealloc(Reader *r)
{
    PyObject_GC_UnTrack(r);
    clear_ifaces(r);
    PyMem_Free(r->ifaces);
    PyMem_Free(r->buf);
    Py_CLEAR(r->name);
    Reader_clear(r);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

/* next decoded packet: 1 / 0 (end) / -1 */
static int reader_next(Reader *r, Pkt *p)
{
    for (;;) {
        const uint8_t *frame;
        Py_ssize_t cl;
        double ts;
        int kind = r->kind, a;
        if (r->format == 0) a = pcap_next(r, &frame, &cl, &ts);
        else a = pcapng_next(r, &frame, &cl, &ts, &kind);
        if (a <= 0) return a;
        if (decode(frame, 0, cl, kind, p, &r->st)) {
            r->st.decoded++;
            p->ts = ts;
            return 1;
        }
    }
}

static PyObject *Reader_run(Reader *r, PyObject *args)
{
    /* run(table, max_packets): feed decoded packets to the table until the end of the file
     * (returns False), or until max_packets were decoded or the table asked for a pause
     * (returns True). Errors raise (PcapError from the file, or what a callback raised). */
    FlowTable *t;
    long long maxp;
    if (!PyArg_ParseTuple(args, "O!L", &FlowTableType, &t, &maxp)) return NULL;
    Pkt p;
    t->pause = 0;
    for (long long i = 0; i < maxp; i++) {
        int a = reader_next(r, &p);
        if (a < 0) return NULL;
        if (a == 0) Py_RETURN_FALSE;
        if (table_packet(t, &p) < 0) return NULL;
        if (t->pause) break;
    }
    Py_RETURN_TRUE;
}

static PyObject *Reader_read(Reader *r, PyObject *args)
{
    /* read(max_packets): the next decoded packets as sources.pcap tuples
     * (ts, proto, src, sport, dst, dport, flags, payload); [] at the end (for parity tests) */
    long long maxp;
    if (!PyArg_ParseTuple(args, "L", &maxp)) return NULL;
    if (r->exc_type) {
        PyErr_Restore(r->exc_type, r->exc, r->exc_tb);
        r->exc_type = r->exc = r->exc_tb = NULL;
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    Pkt p;
    for (long long i = 0; i < maxp; i++) {
        int a = reader_next(r, &p);
        if (a < 0) {
            if (PyList_GET_SIZE(out) == 0) { Py_DECREF(out); return NULL; }
            PyErr_Fetch(&r->exc_type, &r->exc, &r->exc_tb); /* deliver the packets before it first */
            return out;
        }
        if (a == 0) break;
        PyObject *item = Py_BuildValue("(diy#iy#iiy#n)", p.ts, p.proto, p.src, (Py_ssize_t)p.alen, p.sport, p.dst,
                                       (Py_ssize_t)p.alen, p.dport, p.flags, p.payload, p.caplen, p.wirelen);
        if (!item || PyList_Append(out, item) < 0) { Py_XDECREF(item); Py_DECREF(out); return NULL; }
        Py_DECREF(item);
    }
    return out;
}

static PyObject *Reader_stats(Reader *r, PyObject *unused)
{
    /* (packets, decoded, skipped_bad_header, skipped_non_ip, skipped_other_proto, fragments, bytes_read) */
    return Py_BuildValue("(KKKKKKL)", r->st.packets, r->st.decoded, r->st.bad, r->st.nonip, r->st.other,
                         r->st.frags, r->bytes_read);
}

static PyMethodDef Reader_methods[] = {
    {"run", (PyCFunction)Reader_run, METH_VARARGS, "feed decoded packets to a FlowTable"},
    {"read", (PyCFunction)Reader_read, METH_VARARGS, "decode the next packets into tuples"},
    {"stats", (PyCFunction)Reader_stats, METH_NOARGS, "ReadStats fields as a tuple"},
    {NULL}};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "msewatch._fastpath.Reader",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "pcap / pcapng records from a file descriptor, decoded to TCP/UDP packets.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Reader_init,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_traverse = (traverseproc)Reader_traverse,
    .tp_clear = (inquiry)Reader_clear,
    .tp_methods = Reader_methods,
};

/* ------------------------------------------------------------------ module */

static PyMethodDef module_methods[] = {{NULL}};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "msewatch._fastpath", "The offline packet path in C (see msewatch.fastpath).", -1,
    module_methods};

PyMODINIT_FUNC PyInit__fastpath(void)
{
    if (PyType_Ready(&FlowTableType) < 0 || PyType_Ready(&ReaderType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    Py_INCREF(&FlowTableType);
    Py_INCREF(&ReaderType);
    if (PyModule_AddObject(m, "FlowTable", (PyObject *)&FlowTableType) < 0 ||
        PyModule_AddObject(m, "Reader", (PyObject *)&ReaderType) < 0 ||
        PyModule_AddIntConstant(m, "KIND_ETHERNET", K_ETHERNET) < 0 ||
        PyModule_AddIntConstant(m, "KIND_SLL", K_SLL) < 0 || PyModule_AddIntConstant(m, "KIND_SLL2", K_SLL2) < 0 ||
        PyModule_AddIntConstant(m, "KIND_RAW_IP", K_RAW) < 0 || PyModule_AddIntConstant(m, "KIND_NULL", K_NULL) < 0 ||
        PyModule_AddIntConstant(m, "S_SYN", S_SYN) < 0 || PyModule_AddIntConstant(m, "S_SYNACK", S_SYNACK) < 0 ||
        PyModule_AddIntConstant(m, "S_OFIN", S_OFIN) < 0 || PyModule_AddIntConstant(m, "S_RFIN", S_RFIN) < 0 ||
        PyModule_AddIntConstant(m, "S_RST", S_RST) < 0 || PyModule_AddIntConstant(m, "S_DONE", S_DONE) < 0 ||
        PyModule_AddIntConstant(m, "ABI", 1) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#ifdef FASTPATH_SOURCE_HASH
    /* setup.py: CRC-32 of this file, so a development checkout notices a stale build */
    if (PyModule_AddStringConstant(m, "SOURCE_HASH", FASTPATH_SOURCE_HASH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#endif
    return m;
}
