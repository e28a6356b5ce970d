"""Build FlowEvidence snapshots the way the collectors would, from a packet script."""

from __future__ import annotations

import random

from msewatch.evidence import TCP, UDP, FlowEvidence, FlowKey, bursts_of

HEAD_LIMIT = 256
UDP_HEADS = 4


def rand(n: int, seed: int = 1) -> bytes:
    """Deterministic uniform bytes (stand-in for os.urandom)."""
    return random.Random(seed).randbytes(n)


def evidence(
    packets: list[tuple[str, bytes]],
    *,
    proto: str = TCP,
    orig: tuple[str, int] = ("10.0.0.1", 50123),
    resp: tuple[str, int] = ("192.0.2.7", 51413),
    handshake: bool | None = None,
    complete: bool = False,
) -> FlowEvidence:
    """packets: ("o"|"r", payload) in wire order; zero-length payloads are not recorded."""
    sizes: list[int] = []
    times: list[float] = []
    oh: list[bytes] = []
    rh: list[bytes] = []
    max_heads = 1 if proto == TCP else UDP_HEADS
    for i, (d, payload) in enumerate(packets):
        if not payload:
            continue
        sizes.append(len(payload) if d == "o" else -len(payload))
        times.append(0.01 * i)
        heads = oh if d == "o" else rh
        if len(heads) < max_heads:
            heads.append(payload[:HEAD_LIMIT])
    ob = sum(s for s in sizes if s > 0)
    rb = -sum(s for s in sizes if s < 0)
    return FlowEvidence(
        key=FlowKey(proto, orig[0], orig[1], resp[0], resp[1]),
        uid="Ctest",
        community_id="1:test",
        ts=1700000000.0,
        sizes=tuple(sizes),
        times=tuple(times),
        bursts=bursts_of(tuple(sizes)),
        orig_heads=tuple(oh),
        resp_heads=tuple(rh),
        orig_pkts=sum(1 for s in sizes if s > 0),
        resp_pkts=sum(1 for s in sizes if s < 0),
        orig_bytes=ob,
        resp_bytes=rb,
        duration=times[-1] if times else 0.0,
        handshake=(proto == TCP) if handshake is None else handshake,
        complete=complete,
    )


def udp(packets: list[tuple[str, bytes]], **kw: object) -> FlowEvidence:
    kw.setdefault("orig", ("10.0.0.1", 40000))
    kw.setdefault("resp", ("198.51.100.9", 6881))
    return evidence(packets, proto=UDP, **kw)  # type: ignore[arg-type]


def features(obs: list) -> dict:
    """feature -> Observation (each detector emits a feature at most once)."""
    return {o.feature: o for o in obs}


def reason(obs, name: str) -> str | None:
    """The value of reason `name=...` in an Observation, or None."""
    for r in obs.reasons:
        k, _, v = r.partition("=")
        if k == name:
            return v
    return None


# RFC 8448 §3 "Simple 1-RTT Handshake": the client's ClientHello record, verbatim.
RFC8448_CLIENT_HELLO = bytes.fromhex(
    "16 03 01 00 c4 01 00 00 c0 03 03 cb 34 ec b1 e7 81 63 ba 1c 38 c6 da"
    "cb 19 6a 6d ff a2 1a 8d 99 12 ec 18 a2 ef 62 83 02 4d ec e7 00 00 06"
    "13 01 13 03 13 02 01 00 00 91 00 00 00 0b 00 09 00 00 06 73 65 72 76"
    "65 72 ff 01 00 01 00 00 0a 00 14 00 12 00 1d 00 17 00 18 00 19 01 00"
    "01 01 01 02 01 03 01 04 00 23 00 00 00 33 00 26 00 24 00 1d 00 20 99"
    "38 1d e5 60 e4 bd 43 d2 3d 8e 43 5a 7d ba fe b3 c0 6e 51 c1 3c ae 4d"
    "54 13 69 1e 52 9a af 2c 00 2b 00 03 02 03 04 00 0d 00 20 00 1e 04 03"
    "05 03 06 03 02 03 08 04 08 05 08 06 04 01 05 01 06 01 02 01 04 02 05"
    "02 06 02 02 02 00 2d 00 02 01 01 00 1c 00 02 40 01"
)


def mse_packets(
    pad_a: int = 200,
    pad_b: int = 150,
    step3: int = 124,
    step4: int = 82,
    split_step1: bool = True,
) -> list[tuple[str, bytes]]:
    """An MSE/PE opening: Ya+PadA, Yb+PadB, step 3, step 4 (all random on the wire).

    Defaults follow Transmission: step 3 = 56 + PadC 0 + IA 68 = 124, step 4 = 14 + 68.
    """
    step1 = rand(96 + pad_a, seed=1)
    pkts: list[tuple[str, bytes]] = []
    if split_step1:  # TCP segmentation: the bursts, not the packets, carry the shape
        pkts += [("o", step1[:150]), ("o", step1[150:])]
    else:
        pkts.append(("o", step1))
    pkts.append(("r", rand(96 + pad_b, seed=2)))
    pkts.append(("o", rand(step3, seed=3)))
    pkts.append(("r", rand(step4, seed=4)))
    return pkts
