"""Capture artifacts a real sensor meets, applied to real captures (docs/evaluation.md).

`msewatch eval --perturb SPEC` rewrites every capture of the corpus with one artifact (or a
combination), writes the result as a new pcap and evaluates the engine on it, so the CI
bars cover what sensors really see, on the committed real-client captures:

    mss=536        TCP re-segmentation: payloads longer than 536 bytes split into segments
    gro[=SEC]      GRO/LRO coalescing: consecutive segments of one flow and direction with
                   contiguous sequence numbers, at most SEC apart (default 0.001), merged
                   into one up to 64 KB
    retrans=P      each TCP payload packet retransmitted with probability P, a minimum RTO
                   (200 ms, + up to 100 ms) later, as a spurious retransmission looks
    loss=P         each packet lost from the capture with probability P
    nostart=N      the first N packets of every TCP connection missing (sensor started or
                   restarted mid-connection, loss at SYN time, asymmetric SYN path); the
                   `midstream` variant (N = 12) shows slices of TLS, SSH and proxy streams
                   that begin after their openings: the false-positive side of that rule
    snaplen=N      frames cut to N bytes (headers plus the first payload bytes)
    oneside        only the originator's packets (asymmetric routing, one tapped fibre)
    vlan[=ID]      an 802.1Q tag on every frame (default VLAN 100)
    ipv6           IPv4 rewritten to IPv6: a.b.c.d -> fd00::a.b.c.d, the LSD group
                   239.192.152.143 -> ff15::efc0:988f, other multicast -> ff0e::a.b.c.d
    seed=N         the random generator's seed (default 1): every rewrite is deterministic

A SPEC joins terms with "+" ("loss=0.02+seed=7"). `VARIANTS` names the standard ones the
CI bars use. The ground truth follows the rewrite: `Rewrite.address` maps an address of the
original capture to the rewritten one (only `ipv6` changes addresses), so labels.csv rows
still find their flows.

Only Ethernet captures are rewritten (the corpus is Ethernet); frames that are not IPv4 or
IPv6 TCP/UDP pass through unchanged (with a VLAN tag under `vlan`).
"""

from __future__ import annotations

import ipaddress
import random
import struct
from dataclasses import dataclass, field
from pathlib import Path

import dpkt

# The standard variants: name -> spec (docs/evaluation.md; tests/test_robustness_bars.py)
VARIANTS: dict[str, str] = {
    "mss536": "mss=536",
    "gro": "gro",
    "retrans5": "retrans=0.05",
    "loss2": "loss=0.02",
    "nostart3": "nostart=3",
    "midstream": "nostart=12",
    "snaplen96": "snaplen=96",
    "oneside": "oneside",
    "vlan": "vlan=100",
    "ipv6": "ipv6",
}

_SYN, _ACK, _FIN, _RST, _PSH = 0x02, 0x10, 0x01, 0x04, 0x08
_LSD_V4 = ipaddress.IPv4Address("239.192.152.143")
_LSD_V6 = ipaddress.IPv6Address("ff15::efc0:988f")
_MAX_GRO = 65535 - 40 - 60  # payload bytes of one coalesced IPv4 super-packet, headers aside


class PerturbError(Exception):
    """A bad SPEC or a capture that cannot be rewritten; the message says which."""


@dataclass(frozen=True)
class Spec:
    mss: int | None = None
    gro: float | None = None
    retrans: float = 0.0
    loss: float = 0.0
    nostart: int = 0
    snaplen: int | None = None
    oneside: bool = False
    vlan: int | None = None
    ipv6: bool = False
    seed: int = 1
    text: str = ""

    @property
    def changes_addresses(self) -> bool:
        return self.ipv6


def parse_spec(text: str) -> Spec:
    """A SPEC string (or a name from VARIANTS) -> Spec; PerturbError names the bad term."""
    text = VARIANTS.get(text, text)
    kw: dict = {"text": text}
    for term in filter(None, (t.strip() for t in text.split("+"))):
        name, eq, value = term.partition("=")
        try:
            if name == "mss":
                kw["mss"] = int(value)
                if kw["mss"] < 1:
                    raise ValueError
            elif name == "gro":
                kw["gro"] = float(value) if eq else 0.001
            elif name in ("retrans", "loss"):
                kw[name] = float(value)
                if not 0.0 <= kw[name] <= 1.0:
                    raise ValueError
            elif name == "nostart":
                kw["nostart"] = int(value)
            elif name == "snaplen":
                kw["snaplen"] = int(value)
                if kw["snaplen"] < 14:
                    raise ValueError
            elif name == "oneside" and not eq:
                kw["oneside"] = True
            elif name == "vlan":
                kw["vlan"] = int(value) if eq else 100
                if not 0 <= kw["vlan"] < 4096:
                    raise ValueError
            elif name == "ipv6" and not eq:
                kw["ipv6"] = True
            elif name == "seed":
                kw["seed"] = int(value)
            else:
                raise PerturbError(
                    f"perturbation {term!r}: unknown; known: mss=N, gro[=SEC], retrans=P, loss=P, nostart=N, "
                    f"snaplen=N, oneside, vlan[=ID], ipv6, seed=N, or one of {', '.join(VARIANTS)}"
                )
        except ValueError:
            raise PerturbError(f"perturbation {term!r}: bad value") from None
    return Spec(**kw)


# ----------------------------------------------------------------------------- addresses
def v6_of(addr: bytes) -> bytes:
    """The IPv6 address an IPv4 address becomes under `ipv6` (16 bytes)."""
    a = ipaddress.IPv4Address(addr)
    if a == _LSD_V4:
        return _LSD_V6.packed
    if a.is_multicast:
        return b"\xff\x0e" + b"\x00" * 10 + addr
    if addr == b"\xff\xff\xff\xff":
        return ipaddress.IPv6Address("ff02::1").packed
    return b"\xfd\x00" + b"\x00" * 10 + addr


@dataclass
class Rewrite:
    """How the ground truth follows a rewrite: address of the original -> rewritten."""

    spec: Spec

    def address(self, host: str) -> str:
        if not self.spec.ipv6:
            return host
        a = ipaddress.ip_address(host)
        if a.version == 6:
            return host
        return str(ipaddress.IPv6Address(v6_of(a.packed)))


# ----------------------------------------------------------------------------- packets
@dataclass(slots=True)
class _Pkt:
    ts: float
    raw: bytes | None  # a frame passed through untouched (not IP TCP/UDP)
    macs: bytes = b""  # destination + source MAC
    version: int = 4
    src: bytes = b""
    dst: bytes = b""
    proto: int = 0
    ttl: int = 64
    l4: bytearray = field(default_factory=bytearray)  # TCP header with options, or UDP header
    payload: bytes = b""

    @property
    def sport(self) -> int:
        return (self.l4[0] << 8) | self.l4[1]

    @property
    def dport(self) -> int:
        return (self.l4[2] << 8) | self.l4[3]

    @property
    def flags(self) -> int:
        return self.l4[13] if self.proto == 6 else 0

    @property
    def seq(self) -> int:
        return struct.unpack_from(">I", self.l4, 4)[0]

    def copy(self, **kw) -> "_Pkt":
        p = _Pkt(self.ts, self.raw, self.macs, self.version, self.src, self.dst, self.proto, self.ttl,
                 bytearray(self.l4), self.payload)
        for k, v in kw.items():
            setattr(p, k, v)
        return p


def _parse(ts: float, frame: bytes) -> _Pkt:
    if len(frame) < 14:
        return _Pkt(ts, frame)
    etype = (frame[12] << 8) | frame[13]
    off = 14
    while etype in (0x8100, 0x88A8) and len(frame) >= off + 4:
        etype = (frame[off + 2] << 8) | frame[off + 3]
        off += 4
    ip = frame[off:]
    if etype == 0x0800 and len(ip) >= 20 and ip[0] >> 4 == 4:
        ihl = (ip[0] & 0x0F) * 4
        total, frag, ttl, proto = struct.unpack_from(">H2xHBB", ip, 2)
        if proto not in (6, 17) or frag & 0x3FFF or total < ihl or len(ip) < total:
            return _Pkt(ts, frame)
        version, src, dst, l4 = 4, ip[12:16], ip[16:20], ip[ihl:total]
    elif etype == 0x86DD and len(ip) >= 40 and ip[6] in (6, 17):
        plen, proto, ttl = struct.unpack_from(">HBB", ip, 4)
        if len(ip) < 40 + plen:
            return _Pkt(ts, frame)
        version, src, dst, l4 = 6, ip[8:24], ip[24:40], ip[40:40 + plen]
    else:
        return _Pkt(ts, frame)
    hlen = ((l4[12] >> 4) * 4) if proto == 6 and len(l4) >= 20 else 8
    if len(l4) < hlen or (proto == 6 and hlen < 20):
        return _Pkt(ts, frame)
    if proto == 17:
        ulen = (l4[4] << 8) | l4[5]
        payload = l4[8:ulen] if 8 <= ulen <= len(l4) else l4[8:]
    else:
        payload = l4[hlen:]
    return _Pkt(ts, None, frame[:12], version, bytes(src), bytes(dst), proto, ttl, bytearray(l4[:hlen]),
                bytes(payload))


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack(f">{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _encode(p: _Pkt, spec: Spec) -> bytes:
    vlan = struct.pack(">HH", 0x8100, spec.vlan) if spec.vlan is not None else b""
    if p.raw is not None:
        return p.raw[:12] + vlan + p.raw[12:] if vlan else p.raw
    l4 = bytearray(p.l4)
    src, dst, version = p.src, p.dst, p.version
    if spec.ipv6 and version == 4:
        src, dst, version = v6_of(src), v6_of(dst), 6
    body_len = len(l4) + len(p.payload)
    if p.proto == 17:
        struct.pack_into(">H", l4, 4, body_len)
        struct.pack_into(">H", l4, 6, 0)
        ck_off = 6
    else:
        struct.pack_into(">H", l4, 16, 0)
        ck_off = 16
    if version == 4:
        pseudo = src + dst + struct.pack(">BBH", 0, p.proto, body_len)
    else:
        pseudo = src + dst + struct.pack(">IxxxB", body_len, p.proto)
    ck = _checksum(pseudo + bytes(l4) + p.payload)
    if p.proto == 17 and ck == 0:
        ck = 0xFFFF
    struct.pack_into(">H", l4, ck_off, ck)
    if version == 4:
        hdr = bytearray(struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + body_len, 0, 0x4000, p.ttl, p.proto, 0, src, dst))
        struct.pack_into(">H", hdr, 10, _checksum(bytes(hdr)))
        etype = b"\x08\x00"
    else:
        hdr = struct.pack(">IHBB16s16s", 0x6 << 28, body_len, p.proto, p.ttl, src, dst)
        etype = b"\x86\xdd"
    return p.macs + vlan + etype + bytes(hdr) + bytes(l4) + p.payload


def _flow_key(p: _Pkt) -> tuple:
    a, b = (p.src, p.sport), (p.dst, p.dport)
    return (p.proto,) + ((a, b) if a <= b else (b, a))


# ----------------------------------------------------------------------------- the artifacts
def _nostart_and_oneside(pkts: list[_Pkt], spec: Spec) -> list[_Pkt]:
    """Drop the first `nostart` packets of each TCP connection and/or the responder's packets.

    A connection starts at its first packet, or again at a SYN after a FIN or RST (port
    reuse); its originator is the SYN sender, the receiver of a lone SYN/ACK, or else the
    first sender (the engine's rule)."""
    out = []
    flows: dict[tuple, list] = {}  # key -> [orig endpoint, packets seen, ended]
    for p in pkts:
        if p.raw is not None:
            out.append(p)
            continue
        k = _flow_key(p)
        st = flows.get(k)
        fl = p.flags
        if st is None or (p.proto == 6 and fl & (_SYN | _ACK) == _SYN and st[2]):
            me = (p.src, p.sport)
            orig = (p.dst, p.dport) if p.proto == 6 and fl & (_SYN | _ACK) == (_SYN | _ACK) else me
            st = flows[k] = [orig, 0, False]
        st[1] += 1
        if p.proto == 6 and fl & (_FIN | _RST):
            st[2] = True
        if p.proto == 6 and st[1] <= spec.nostart:
            continue
        if spec.oneside and (p.src, p.sport) != st[0]:
            continue
        out.append(p)
    return out


def _resegment(pkts: list[_Pkt], mss: int) -> list[_Pkt]:
    out = []
    for p in pkts:
        if p.raw is not None or p.proto != 6 or len(p.payload) <= mss:
            out.append(p)
            continue
        seq, n = p.seq, len(p.payload)
        for i in range(0, n, mss):
            piece = p.copy(payload=p.payload[i:i + mss], ts=p.ts + i // mss * 1e-6)
            struct.pack_into(">I", piece.l4, 4, (seq + i) & 0xFFFFFFFF)
            if i + mss < n:  # PSH and FIN belong to the last piece
                piece.l4[13] &= ~(_PSH | _FIN) & 0xFF
            out.append(piece)
    return out


def _coalesce(pkts: list[_Pkt], window: float) -> list[_Pkt]:
    """GRO/LRO: merge a flow's consecutive same-direction segments with contiguous sequence
    numbers that arrive within `window` seconds, up to 64 KB. Another flow's packets may sit
    in between (GRO works per flow); a packet of the same flow in the other direction, or
    without payload, ends the run."""
    out: list[_Pkt | None] = []
    open_run: dict[tuple, int] = {}  # flow key -> index in `out` of the run being built
    for p in pkts:
        if p.raw is not None or p.proto != 6:
            out.append(p)
            continue
        k = _flow_key(p)
        i = open_run.get(k)
        q = out[i] if i is not None else None
        if (
            q is not None and p.payload and q.src == p.src and q.sport == p.sport
            and not p.flags & (_SYN | _FIN | _RST) and p.ts - q.ts <= window
            and (q.seq + len(q.payload)) & 0xFFFFFFFF == p.seq
            and len(q.payload) + len(p.payload) <= _MAX_GRO
        ):
            merged = q.copy(payload=q.payload + p.payload, ts=p.ts)
            merged.l4[13] |= p.flags & _PSH
            out[i] = merged
            continue
        out.append(p)
        if p.payload and not p.flags & (_SYN | _FIN | _RST):
            open_run[k] = len(out) - 1
        else:
            open_run.pop(k, None)
    return [p for p in out if p is not None]


def rewrite_packets(frames: list[tuple[float, bytes]], spec: Spec) -> list[tuple[float, bytes, int]]:
    """Apply `spec` to (ts, Ethernet frame) pairs -> (ts, captured frame, original length)."""
    rng = random.Random(spec.seed)
    pkts = [_parse(ts, f) for ts, f in frames]
    if spec.nostart or spec.oneside:
        pkts = _nostart_and_oneside(pkts, spec)
    if spec.mss:
        pkts = _resegment(pkts, spec.mss)
    if spec.gro is not None:
        pkts = _coalesce(pkts, spec.gro)
    if spec.retrans:
        extra = []
        for p in pkts:
            if p.raw is None and p.proto == 6 and p.payload and rng.random() < spec.retrans:
                extra.append(p.copy(ts=p.ts + 0.2 + rng.random() * 0.1))
        pkts = sorted(pkts + extra, key=lambda p: p.ts)  # stable: originals stay in order
    if spec.loss:
        pkts = [p for p in pkts if rng.random() >= spec.loss]
    out = []
    for p in pkts:
        frame = _encode(p, spec)
        cap = frame[: spec.snaplen] if spec.snaplen else frame
        out.append((p.ts, cap, len(frame)))
    return out


# ----------------------------------------------------------------------------- files
def read_frames(path: str | Path) -> list[tuple[float, bytes]]:
    """(ts, frame) of an Ethernet pcap or pcapng capture."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
            f.seek(0)
            reader = dpkt.pcapng.Reader(f) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)
            if reader.datalink() != dpkt.pcap.DLT_EN10MB:
                raise PerturbError(f"{path}: link type {reader.datalink()} is not Ethernet; only Ethernet captures are rewritten")
            return [(float(ts), bytes(buf)) for ts, buf in reader]
    except (OSError, ValueError, dpkt.Error) as e:
        raise PerturbError(f"{path}: cannot read: {e}") from None


def write_pcap(path: str | Path, records: list[tuple[float, bytes, int]], snaplen: int = 262144) -> None:
    """A classic little-endian microsecond pcap of Ethernet frames."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1))
        for ts, frame, origlen in records:
            sec = int(ts)
            usec = int(round((ts - sec) * 1e6))
            if usec >= 1_000_000:
                sec, usec = sec + 1, usec - 1_000_000
            f.write(struct.pack("<IIII", sec, usec, len(frame), origlen))
            f.write(frame)


def perturb_pcap(src: str | Path, dst: str | Path, spec: Spec | str) -> Rewrite:
    """Rewrite one capture; returns how its addresses map (for the ground truth)."""
    if isinstance(spec, str):
        spec = parse_spec(spec)
    records = rewrite_packets(read_frames(src), spec)
    write_pcap(dst, records, spec.snaplen or 262144)
    return Rewrite(spec)
