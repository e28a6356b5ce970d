"""The compiled decider (msewatch/_decide.c) against the reference (score.flow.decide_flow and
the verdict Engine._decide_py makes of it): identical verdicts, protocol, confirmation,
peer-likeness and detector runs on every flow of the corpus and on tens of thousands of
mutations of it: sizes moved onto the values the rules test (the MSE steps, the BT lengths,
MSS-sized segments, retransmissions), heads swapped for the starts of other protocols and cut
short, ports, counters, flags and context changed. The digests test (test_verdict_digests.py)
covers whole runs; this one reaches the corners of every detector.

MSEWATCH_DECIDER_FUZZ=N runs N mutations instead of the CI's default."""

from __future__ import annotations

import os
import random
import struct
import sys
from pathlib import Path

import pytest

from msewatch import fastdecide
from msewatch.config import Config, parse_config
from msewatch.engine import Engine, extract_evidence
from msewatch.evidence import FlowEvidence, FlowKey, bursts_of, truncate_to_budget

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "detect"))
from detect_builders import RFC8448_CLIENT_HELLO  # noqa: E402

FUZZ = int(os.environ.get("MSEWATCH_DECIDER_FUZZ", "30000"))


@pytest.fixture(scope="module")
def corpus_evidence() -> list[FlowEvidence]:
    return extract_evidence(sorted(str(p) for p in CORPUS.glob("*.pcap")))


@pytest.fixture(scope="module")
def engine() -> Engine:
    assert fastdecide.available(), fastdecide.status()  # CI builds it: missing is a defect
    eng = Engine()
    assert eng._decide_c is not None
    return eng


def _rand(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


def _heads_library(rng: random.Random) -> list[bytes]:
    bt = b"\x13BitTorrent protocol" + bytes([0, 0, 0, 0, 0, 0x10, 0, 0x05]) + _rand(rng, 20) + b"-TR3000-" + _rand(rng, 12)
    ext = b"d1:md11:ut_metadatai1ee1:v4:test"
    peerwire = (struct.pack(">IB", 2 + len(ext), 20) + b"\x00" + ext + struct.pack(">IBI", 5, 4, 7)
                + struct.pack(">I", 0) + struct.pack(">IB", 1, 2) + struct.pack(">IBIII", 13, 6, 1, 0, 16384))
    krpc_q = b"d1:ad2:id20:" + _rand(rng, 20) + b"9:info_hash20:" + _rand(rng, 20) + b"e1:q9:get_peers1:t2:aa1:y1:qe"
    krpc_r = b"d1:rd2:id20:" + _rand(rng, 20) + b"5:nodes26:" + _rand(rng, 26) + b"e1:t2:aa1:y1:re"
    krpc_weak = b"d1:t2:aa1:y1:q1:q4:ping1:ad2:id20:" + _rand(rng, 20) + b"ee"
    krpc_ip = b"d2:ip6:" + _rand(rng, 6) + b"1:rd2:id20:" + _rand(rng, 20) + b"e1:t2:bb1:y1:re"
    krpc_e = b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee"

    def utp(typ: int, cid: int, seq: int, ack: int, payload: bytes = b"", ext: bytes = b"", wnd: int = 1 << 20,
            tsd: int = 0) -> bytes:
        first_ext = ext[0] if ext else 0
        return struct.pack(">BBHIIIHH", (typ << 4) | 1, first_ext, cid & 0xFFFF, 123456, tsd, wnd, seq & 0xFFFF,
                           ack & 0xFFFF) + ext[1:] + payload

    cid = rng.randrange(65536)
    utps = [utp(4, cid, 100, 0), utp(2, cid, 500, 100, tsd=5), utp(0, cid + 1, 101, 500, bt[:68], tsd=7),
            utp(0, cid + 1, 102, 500, _rand(rng, 120), tsd=7), utp(2, cid, 501, 101, tsd=3),
            utp(0, cid, 502, 102, b"", ext=bytes([1, 0, 4]) + b"\xff\x00\x00\x00", tsd=1)]
    trk_connect = struct.pack(">QII", 0x41727101980, 0, 0x1234)
    trk_reply = struct.pack(">IIQ", 0, 0x1234, 0xABCDEF)
    trk_announce = struct.pack(">QII", 0xABCDEF, 1, 0x99) + _rand(rng, 86)
    trk_scrape = struct.pack(">QII", 0xABCDEF, 2, 0x98) + _rand(rng, 40)
    lsd = (b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\nInfohash: "
           + _rand(rng, 20).hex().upper().encode() + b"\r\ncookie: x\r\n\r\n\r\n")
    dns_q = struct.pack(">HHHHHH", 0x4141, 0x0100, 1, 0, 0, 0) + b"\x07example\x03com\x00" + struct.pack(">HH", 1, 1)
    dns_r = struct.pack(">HHHHHH", 0x4141, 0x8180, 1, 1, 0, 0) + b"\x07example\x03com\x00" + struct.pack(">HH", 1, 1) + \
        b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + b"\x5d\xb8\xd8\x22"
    quic = bytes([0xC3]) + struct.pack(">I", 1) + bytes([8]) + _rand(rng, 8) + bytes([0]) + _rand(rng, 40)
    quic_neg = bytes([0x80]) + struct.pack(">I", 0) + bytes([4]) + _rand(rng, 4) + bytes([4]) + _rand(rng, 4)
    stun = struct.pack(">HHI", 0x0001, 8, 0x2112A442) + _rand(rng, 12) + _rand(rng, 8)
    tracker_get = (b"GET /announce?info_hash=%12%34&peer_id=-qB4500-abcdefghijkl&port=6881&compact=1&event=started"
                   b"&supportcrypto=1 HTTP/1.1\r\nHost: tracker\r\n\r\n")
    tracker_scrape = b"GET /scrape?info_hash=%12%34 HTTP/1.0\r\n\r\n"
    tracker_answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nd8:completei3e10:incompletei1e8:intervali1800e5:peers6:abcdefe"
    http_get = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8\r\n\r\n"
    http_resp = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 5\r\n\r\nhello"
    ssh = b"SSH-2.0-OpenSSH_9.6p1 Debian-3\r\n"
    text = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt " * 3
    return [
        bt, bt[:68], bt + peerwire, peerwire, peerwire[:30], krpc_q, krpc_r, krpc_weak, krpc_ip, krpc_e, *utps,
        trk_connect, trk_reply, trk_announce, trk_scrape, lsd, lsd[:40], dns_q, dns_r, struct.pack(">H", len(dns_q)) + dns_q,
        struct.pack(">H", len(dns_r)) + dns_r, quic, quic_neg, stun, tracker_get, tracker_scrape, tracker_answer,
        http_get, http_resp, ssh, RFC8448_CLIENT_HELLO, bytes([0x17, 3, 3, 0, 40]) + _rand(rng, 40), text,
        b"\xff" * 12 + _rand(rng, 100), _rand(rng, 96), _rand(rng, 256), _rand(rng, 30), _rand(rng, 12), b"",
        bytes(range(32, 127)) + _rand(rng, 60),
    ]


_INTERESTING = (68, 124, 82, 96, 97, 300, 608, 609, 56, 55, 14, 13, 536, 1448, 604, 636, 637, 1, 20, 36, 48, 52)


def _mutate(ev: FlowEvidence, rng: random.Random, lib: list[bytes], heads_pool: list[bytes]) -> FlowEvidence:
    sizes = list(ev.sizes)
    times = list(ev.times)
    proto = ev.key.proto
    for _ in range(rng.randrange(4)):
        op = rng.randrange(7)
        if op == 0 and sizes:  # a size onto a value the rules test
            i = rng.randrange(len(sizes))
            v = rng.choice(_INTERESTING)
            sizes[i] = v if rng.random() < 0.5 else -v
        elif op == 1 and sizes:  # flip a direction
            i = rng.randrange(len(sizes))
            sizes[i] = -sizes[i]
        elif op == 2 and sizes:  # cut the evidence short
            n = rng.randrange(len(sizes) + 1)
            sizes, times = sizes[:n], times[:n]
        elif op == 3 and sizes:  # a retransmission: same size and direction, >= 200 ms later
            i = rng.randrange(len(sizes))
            sizes.insert(i + 1, sizes[i])
            times.insert(i + 1, times[i] + rng.choice((0.0, 0.1, 0.2, 0.25, 1.0)))
        elif op == 4:  # a whole made-up shape
            n = rng.randrange(1, 12)
            sizes, sign = [], 1
            for _ in range(n):
                if rng.random() < 0.6:
                    sign = -sign
                sizes.append(sign * rng.choice(_INTERESTING + (rng.randrange(1, 2000),)))
            times = sorted(rng.choice((0.0, 0.001, 0.3)) * k for k in range(n))
        elif op == 5 and sizes:  # the first packet the sensor saw carried no payload
            times = [t + 0.5 for t in times]
        elif op == 6 and sizes:
            times = [0.0] + [t - times[0] for t in times[1:]]
    times = sorted(times)[: len(sizes)] if len(times) >= len(sizes) else times + [times[-1] if times else 0.0] * (len(sizes) - len(times))
    oh, rh = list(ev.orig_heads), list(ev.resp_heads)
    for heads in (oh, rh):
        for _ in range(rng.randrange(3)):
            op = rng.randrange(5)
            if op == 0:
                new = rng.choice(lib)
            elif op == 1:
                new = rng.choice(heads_pool)
            elif op == 2 and heads:  # cut by a snaplen
                i = rng.randrange(len(heads))
                heads[i] = heads[i][: rng.randrange(len(heads[i]) + 1)]
                continue
            elif op == 3 and heads:
                heads.pop(rng.randrange(len(heads)))
                continue
            else:
                new = _rand(rng, rng.choice((16, 30, 64, 96, 200, 256)))
            if heads and rng.random() < 0.5:
                heads[rng.randrange(len(heads))] = new[:256]
            else:
                heads.append(new[:256])
    if rng.random() < 0.1:
        proto = "udp" if proto == "tcp" else "tcp"
    orig_p, resp_p = ev.key.orig_p, ev.key.resp_p
    if rng.random() < 0.2:
        resp_p = rng.choice((53, 80, 443, 3544, 5353, 6771, 6881, 51413, 1023, 1024, 8080))
    if rng.random() < 0.1:
        orig_p = rng.choice((53, 6881, 40000, 5353, 1000))
    resp_h = ev.key.resp_h
    if rng.random() < 0.05:
        resp_h = rng.choice(("239.192.152.143", "ff15::efc0:988f", "10.77.0.11"))
    bursts = bursts_of(sizes) if rng.random() < 0.9 else ev.bursts
    pos = sum(1 for s in sizes if s > 0)
    return FlowEvidence(
        key=FlowKey(proto, ev.key.orig_h, orig_p, resp_h, resp_p),
        uid=ev.uid,
        community_id=ev.community_id,
        ts=ev.ts,
        sizes=tuple(sizes),
        times=tuple(float(t) for t in times),
        bursts=tuple(bursts),
        orig_heads=tuple(oh),
        resp_heads=tuple(rh),
        orig_pkts=rng.choice((0, pos, pos + 3)) if rng.random() < 0.3 else ev.orig_pkts,
        resp_pkts=rng.choice((0, len(sizes) - pos, 5)) if rng.random() < 0.3 else ev.resp_pkts,
        orig_bytes=ev.orig_bytes,
        resp_bytes=ev.resp_bytes,
        duration=ev.duration,
        handshake=ev.handshake if rng.random() < 0.8 else not ev.handshake,
        closed=ev.closed,
        complete=ev.complete if rng.random() < 0.8 else not ev.complete,
    )


def _utp_flow(rng: random.Random, base: FlowEvidence) -> FlowEvidence:
    """A uTP exchange (BEP 29) whose ids, sequence numbers and types are bent at random."""
    cid = rng.randrange(65536)
    seq, rseq = rng.randrange(65536), rng.randrange(65536)

    def hdr(typ, c, s, a, payload=b"", tsd=0, wnd=1 << 18, ts=999):
        return struct.pack(">BBHIIIHH", (typ << 4) | 1, 0, c & 0xFFFF, ts, tsd, wnd, s & 0xFFFF, a & 0xFFFF) + payload

    oh = [hdr(4, cid, seq, 0)]
    rh = []
    for k in range(rng.randrange(1, 4)):
        oh.append(hdr(0, cid + rng.choice((1, 1, 1, 0, 2)), seq + k + rng.choice((1, 1, 0, 3)), rseq,
                      rng.choice((b"", b"\x13BitTorrent protocol" + bytes(48), rng.randbytes(100))), tsd=5))
    for k in range(rng.randrange(0, 3)):
        rh.append(hdr(rng.choice((2, 2, 0)), cid + rng.choice((0, 0, 1)), rseq + k, seq + rng.choice((0, 1, 2, 9)), tsd=3))
    if rng.random() < 0.3:
        oh = oh[1:] or oh  # the SYN not among the heads
    if rng.random() < 0.2:
        i = rng.randrange(len(oh))
        oh[i] = oh[i][:rng.randrange(len(oh[i]) + 1)]
    sizes = [len(h) for h in oh] + [-len(h) for h in rh]
    rng.shuffle(sizes)
    sizes = [s if s else 20 for s in sizes]
    return FlowEvidence(
        key=FlowKey("udp", base.key.orig_h, rng.choice((6881, 40000, 1000, 3544)), base.key.resp_h,
                    rng.choice((6881, 51413, 53))),
        uid=base.uid, community_id=base.community_id, ts=base.ts, sizes=tuple(sizes),
        times=tuple(0.01 * i for i in range(len(sizes))), bursts=bursts_of(sizes), orig_heads=tuple(oh[:4]),
        resp_heads=tuple(rh[:4]), orig_pkts=len(oh), resp_pkts=rng.choice((len(rh), 0)), orig_bytes=1, resp_bytes=1,
        duration=0.1, handshake=False, closed=False, complete=rng.random() < 0.5)


def _mse_flow(rng: random.Random, base: FlowEvidence) -> FlowEvidence:
    """An MSE-like opening with open or closed bursts, lost steps, retransmissions, one side."""
    steps = [rng.randrange(90, 620), -rng.randrange(90, 620), rng.choice((124, 56, 55, 300, 700, 68)),
             -rng.choice((82, 14, 13, 200, 1448)), rng.choice((68, 1448, 536, 100)), -rng.choice((68, 1448, 536))]
    sizes = []
    for st in steps[: rng.randrange(1, 7)]:
        if abs(st) > 536 and rng.random() < 0.4:
            sizes += [536 if st > 0 else -536, st - 536 if st > 0 else st + 536]
        else:
            sizes.append(st)
    if rng.random() < 0.3 and len(sizes) > 1:
        sizes.pop(rng.randrange(len(sizes)))  # a step lost at the sensor
    if rng.random() < 0.3:
        sizes = [s for s in sizes if s > 0] or [300]
    times = [0.0]
    for _ in sizes[1:]:
        times.append(times[-1] + rng.choice((0.0001, 0.01, 0.25)))
    if rng.random() < 0.3 and sizes:
        i = rng.randrange(len(sizes))
        sizes.insert(i + 1, sizes[i])
        times.insert(i + 1, times[i] + 0.3)
        times = sorted(times)
    oh = (rng.randbytes(rng.choice((256, 30, 96, 12))),) if any(s > 0 for s in sizes) else ()
    rh = (rng.randbytes(rng.choice((256, 40, 100))),) if any(s < 0 for s in sizes) else ()
    if rng.random() < 0.1:
        oh = (bytes(range(32, 127)) * 3,)
    return FlowEvidence(
        key=FlowKey("tcp", base.key.orig_h, 40000, base.key.resp_h, rng.choice((6881, 51413, 443, 22))),
        uid=base.uid, community_id=base.community_id, ts=base.ts, sizes=tuple(sizes), times=tuple(times),
        bursts=bursts_of(sizes), orig_heads=oh, resp_heads=rh,
        orig_pkts=sum(1 for s in sizes if s > 0), resp_pkts=sum(1 for s in sizes if s < 0) if rng.random() < 0.8 else 0,
        orig_bytes=1, resp_bytes=1, duration=times[-1], handshake=rng.random() < 0.7, closed=False,
        complete=rng.random() < 0.5)


def _both(eng: Engine, ev: FlowEvidence, ctx: tuple) -> tuple:
    b = eng.cfg.budget
    ev = truncate_to_budget(ev, b.max_packets, b.max_bursts, b.head_bytes, b.udp_heads) or ev
    ref = eng._decide_py(ev, *ctx)
    got = eng._decide_c(ev, *ctx)
    return ev, ref, got


def _same(ref, got) -> bool:
    return got is not None and ref[0].to_dict() == got[0].to_dict() and ref[0] == got[0] and ref[1:] == got[1:]


_CONTEXTS = [(-3.0, False, False, False, None), (0.5, True, False, False, None), (2.5, True, True, False, None),
             (-3.0, False, False, True, None), (-1.0, True, False, False, "discovery"), (4.0, True, True, True, "p2p_flow"),
             (0.0, True, False, True, "p2p_flow"), (-0.0, True, False, False, None)]


def test_every_corpus_flow_in_every_context(engine, corpus_evidence):
    for ev in corpus_evidence:
        for ctx in _CONTEXTS:
            ev2, ref, got = _both(engine, ev, ctx)
            assert got is not None, f"the compiled decider left a corpus flow to the reference: {ev2}"
            assert _same(ref, got), f"{ctx}\n{ev2}\nref {ref}\ngot {got}"


def test_mutated_evidence(engine, corpus_evidence):
    rng = random.Random(12)
    lib = _heads_library(rng)
    pool = [h for ev in corpus_evidence for h in ev.orig_heads + ev.resp_heads]
    left = 0
    for i in range(FUZZ):
        base = rng.choice(corpus_evidence)
        kind = rng.random()
        if kind < 0.15:
            ev = _utp_flow(rng, base)
        elif kind < 0.35:
            ev = _mse_flow(rng, base)
        else:
            ev = _mutate(base, rng, lib, pool)
        if rng.random() < 0.2:
            ev = _mutate(ev, rng, lib, pool)
        ctx = rng.choice(_CONTEXTS)
        ev2, ref, got = _both(engine, ev, ctx)
        if got is None:
            left += 1
            continue
        assert _same(ref, got), f"case {i} {ctx}\n{ev2}\nref {ref}\ngot {got}"
    assert left <= FUZZ // 100, f"{left} of {FUZZ} left to the reference"


def test_other_parameters_and_weights(corpus_evidence):
    """Detector parameters and weights from the config reach the compiled decider."""
    cfg = parse_config({
        "detect": {"bt_len_window": 6, "mse_partial_value": 0.6, "report_info_hash": False, "popcount_sigmas": 3.5,
                   "min_random_len": 24, "printable_run": 12, "utp_excluded_ports": [6881], "dns_ports": [53, 5300]},
        "scoring": {"weights": {"mse_partial": 4.0, "fully_encrypted": 2.5, "tls_like": -6.0}, "t_high": 0.85,
                    "min_packets_normal": 3, "alpha": 0.7},
        "budget": {"max_packets": 20, "max_bursts": 6, "head_bytes": 128, "udp_heads": 2},
    })
    eng = Engine(cfg)
    assert eng._decide_c is not None
    rng = random.Random(5)
    lib = _heads_library(rng)
    pool = [h for ev in corpus_evidence for h in ev.orig_heads + ev.resp_heads]
    for i, ev in enumerate(corpus_evidence + [_mutate(e, rng, lib, pool) for e in corpus_evidence]):
        ev2, ref, got = _both(eng, ev, _CONTEXTS[i % len(_CONTEXTS)])
        assert got is not None and _same(ref, got), f"{ev2}\nref {ref}\ngot {got}"


def test_parameters_the_compiled_decider_does_not_take_leave_deciding_to_python():
    cfg = parse_config({"detect": {"printable_prefix_len": 0}})
    assert Engine(cfg)._decide_c is None
    assert Engine(Config())._decide_c is not None


def test_evidence_it_does_not_take_goes_to_the_reference(engine, corpus_evidence):
    ev = next(e for e in corpus_evidence if e.sizes)
    odd = [
        FlowEvidence(**{**{f: getattr(ev, f) for f in FlowEvidence.__slots__}, "ts": int(ev.ts)}),
        FlowEvidence(**{**{f: getattr(ev, f) for f in FlowEvidence.__slots__}, "sizes": (1 << 50,) + ev.sizes[1:]}),
        FlowEvidence(**{**{f: getattr(ev, f) for f in FlowEvidence.__slots__},
                        "key": FlowKey("sctp", "10.0.0.1", 1, "10.0.0.2", 2)}),
    ]
    for o in odd:
        assert engine._decide_c(o, -3.0, False, False, False, None) is None
        assert engine.process_evidence(o)  # decided by the reference


def test_process_evidence_in_c_equals_the_python_steps(corpus_evidence):
    """Engine.process_evidence's compiled path (Decider.process over the engine's state)
    against the Python steps with the same deciders: same verdicts, stats, peer cache and
    host states over a long stream of corpus flows and mutations (peers remembered, host
    verdicts written, evidence beyond the budget cut)."""
    rng = random.Random(21)
    lib = _heads_library(rng)
    pool = [h for ev in corpus_evidence for h in ev.orig_heads + ev.resp_heads]
    fast, slow = Engine(), Engine()
    assert fast._process_c is not None
    slow._process_c = None
    stream = []
    for i in range(6000):
        base = rng.choice(corpus_evidence)
        kind = rng.random()
        ev = base if kind < 0.5 else _utp_flow(rng, base) if kind < 0.6 else _mse_flow(rng, base) if kind < 0.7 else \
            _mutate(base, rng, lib, pool)
        if rng.random() < 0.01:  # beyond the budget: the engine cuts it
            ev = FlowEvidence(**{**{f: getattr(ev, f) for f in FlowEvidence.__slots__},
                                 "sizes": ev.sizes * 40, "times": ev.times * 40})
        stream.append(ev)
    for i, ev in enumerate(stream):
        a = [v.to_dict() for v in fast.process_evidence(ev)]
        b = [v.to_dict() for v in slow.process_evidence(ev)]
        assert a == b, (i, ev)
    assert fast.stats == slow.stats and fast.now == slow.now
    assert list(fast._peer_cache.items()) == list(slow._peer_cache.items()) and fast._peer_cache
    assert fast._local_cache == slow._local_cache
    assert [v.to_dict() for v in fast.flush()] == [v.to_dict() for v in slow.flush()]
    assert sum(1 for v in fast.stats.flow_verdicts.values()) and fast.stats.evidence_truncated > 0


def test_an_engine_subclass_that_changes_a_step_gets_the_python_path():
    class Mine(Engine):
        def _local_host(self, h: str) -> bool:
            return True

    assert Mine()._process_c is None and Engine()._process_c is not None
