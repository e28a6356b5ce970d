"""The evidence contract: what is collected per connection, identically by the
Zeek scripts and by the offline pcap extractor. docs/evidence.md is its prose twin.

Everything here is immutable; the engine builds a `FlowEvidence` snapshot from its
mutable per-flow state whenever it scores a flow, and detectors only ever see snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The version of MSEWatch::flow_evidence the Zeek package publishes (docs/evidence.md, "On the
# Zeek wire"): 2 packs the per-packet vectors into strings; 1 (typed vectors) is still read,
# from older packages and from evidence an older package saved at a graceful stop.
EVIDENCE_VERSION = 2
EVIDENCE_VERSIONS = (1, 2)
MIN_RTO = 0.2  # seconds: Linux's minimum TCP retransmission timeout (TCP_RTO_MIN)

TCP = "tcp"
UDP = "udp"


@dataclass(frozen=True, slots=True)
class FlowKey:
    """Who talks to whom. orig = the TCP SYN sender, or the first UDP sender."""

    proto: str  # "tcp" | "udp"
    orig_h: str
    orig_p: int
    resp_h: str
    resp_p: int


@dataclass(frozen=True, slots=True)
class FlowEvidence:
    """Bounded early-connection evidence of one flow (or a prefix of it).

    sizes:  signed payload sizes of the first N payload-bearing packets
            (+ orig->resp, - resp->orig).
    times:  seconds since `ts` of each packet in `sizes` (same length).
    bursts: signed accumulated payload bytes of the first K direction runs.
            The last burst may still be growing while the flow is open.
    orig_heads / resp_heads: the first <= H bytes of the first payload packet of
            that direction (TCP: one entry at most; UDP: the first few datagrams).
    Counters cover the whole flow so far, also after the budget was spent.
    """

    key: FlowKey
    uid: str
    community_id: str
    ts: float
    sizes: tuple[int, ...]
    times: tuple[float, ...]
    bursts: tuple[int, ...]
    orig_heads: tuple[bytes, ...]
    resp_heads: tuple[bytes, ...]
    orig_pkts: int = 0
    resp_pkts: int = 0
    orig_bytes: int = 0  # payload bytes
    resp_bytes: int = 0
    duration: float = 0.0
    # TCP only: SYN from orig and SYN/ACK from resp seen (the flow start was observed)
    handshake: bool = False
    # TCP only: FIN or RST seen from either side
    closed: bool = False
    # True once the evidence budget is spent or the flow has ended: nothing more will come.
    complete: bool = False

    @property
    def proto(self) -> str:
        return self.key.proto

    # --- what the capture shows of the flow (docs/evidence.md, "Derived facts") -----------
    # Derived from the fields above only, so evidence from Zeek and from a pcap reach the
    # same rules; every detector asks here rather than re-deriving it.

    @property
    def start_seen(self) -> bool:
        """TCP: the SYN and the SYN/ACK were seen. UDP has no start to miss."""
        return self.handshake or self.key.proto != TCP

    @property
    def one_sided(self) -> str | None:
        """"orig" when only the originator's packets were seen, "resp" when only the
        responder's, None when both sides were (or nothing was)."""
        if self.orig_pkts and not self.resp_pkts:
            return "orig"
        if self.resp_pkts and not self.orig_pkts:
            return "resp"
        return None

    @property
    def first_packet_payload(self) -> bool:
        """The first packet the sensor saw carried payload (times[0] == 0): with the start
        not seen, the stream is in view from that payload's first byte, not from a pure
        ACK somewhere in the middle."""
        return bool(self.times) and self.times[0] == 0.0

    def head_captured(self, head_bytes: int = 256) -> tuple[int | None, int | None]:
        """(orig, resp): the captured length of a head the capture cut short (snaplen),
        or None when the heads of that direction hold what the budget asks for.

        A head is cut when it is shorter than min(|size| of its packet, head_bytes):
        sizes are always the header lengths, heads what was captured."""
        out: list[int | None] = []
        for heads, positive in ((self.orig_heads, True), (self.resp_heads, False)):
            sizes = [abs(s) for s in self.sizes if (s > 0) == positive]
            cut = None
            for head, size in zip(heads, sizes):
                if len(head) < min(size, head_bytes):
                    cut = len(head) if cut is None else min(cut, len(head))
            out.append(cut)
        return out[0], out[1]

    def sizes_without_retransmissions(self, min_rto: float = MIN_RTO) -> tuple[int, ...]:
        """`sizes` without the packets that look like TCP retransmissions: the same size
        and direction as the previous payload packet of the same run, at least one minimum
        RTO later. Retransmissions stay in the evidence (Zeek's tcp_packet sees them too);
        a shape that sums a run counts them once this way. A sender splits a message into
        back-to-back segments, microseconds apart, never one RTO apart."""
        sizes, times = self.sizes, self.times
        if self.key.proto != TCP or len(sizes) < 2:
            return sizes
        out = [sizes[0]]
        last_t = times[0]
        for s, t in zip(sizes[1:], times[1:]):
            if s == out[-1] and t - last_t >= min_rto:
                continue
            out.append(s)
            last_t = t
        return tuple(out) if len(out) != len(sizes) else sizes

    def prefix(self, n: int) -> "FlowEvidence":
        """The evidence as it stood after the first `n` payload packets.

        Used to find the earliest packet at which a decision could be made. Counters are
        approximated from the recorded sizes, except that a side seen at all in the whole
        evidence stays seen (`one_sided` is a property of the capture, and a side's pure
        ACKs are counted in the counters before its first payload)."""
        if n >= len(self.sizes):
            return self
        sizes = self.sizes[:n]
        pos = [s for s in sizes if s > 0]
        neg_n = n - len(pos)
        return FlowEvidence(
            key=self.key,
            uid=self.uid,
            community_id=self.community_id,
            ts=self.ts,
            sizes=sizes,
            times=self.times[:n],
            bursts=bursts_of(sizes),
            orig_heads=self.orig_heads if pos else (),
            resp_heads=self.resp_heads if neg_n else (),
            orig_pkts=max(len(pos), 1 if self.orig_pkts else 0),
            resp_pkts=max(neg_n, 1 if self.resp_pkts else 0),
            orig_bytes=sum(pos),
            resp_bytes=sum(pos) - sum(sizes),
            duration=self.times[n - 1] if n else 0.0,
            handshake=self.handshake,
            closed=False,
            complete=False,
        )


def truncate_to_budget(
    ev: FlowEvidence, max_packets: int, max_bursts: int, head_bytes: int, udp_heads: int
) -> FlowEvidence | None:
    """The evidence cut to the budgets, or None when it already fits.

    The live path receives evidence from outside (a Zeek with other options, or anyone who
    can publish on the topic); beyond the budget nothing is decided, so nothing beyond it
    is kept: at most `max_packets` sizes within `max_bursts` direction runs, heads of at
    most `head_bytes`, one per direction for TCP and `udp_heads` for UDP."""
    per_dir = 1 if ev.key.proto == TCP else udp_heads
    n = min(len(ev.sizes), max_packets)
    runs = 0
    for i in range(n):
        if i == 0 or (ev.sizes[i] > 0) != (ev.sizes[i - 1] > 0):
            runs += 1
            if runs > max_bursts:
                n = i
                break
    heads_fit = all(
        len(hs) <= per_dir and all(len(h) <= head_bytes for h in hs) for hs in (ev.orig_heads, ev.resp_heads)
    )
    if (
        n == len(ev.sizes)
        and len(ev.times) == n
        and heads_fit
        and len(ev.bursts) <= max_bursts
    ):
        return None
    sizes = ev.sizes[:n]
    return FlowEvidence(
        key=ev.key,
        uid=ev.uid,
        community_id=ev.community_id,
        ts=ev.ts,
        sizes=sizes,
        times=ev.times[:n],
        bursts=bursts_of(sizes, max_bursts),
        orig_heads=tuple(h[:head_bytes] for h in ev.orig_heads[:per_dir]),
        resp_heads=tuple(h[:head_bytes] for h in ev.resp_heads[:per_dir]),
        orig_pkts=ev.orig_pkts,
        resp_pkts=ev.resp_pkts,
        orig_bytes=ev.orig_bytes,
        resp_bytes=ev.resp_bytes,
        duration=ev.duration,
        handshake=ev.handshake,
        closed=ev.closed,
        complete=ev.complete,
    )


def bursts_of(sizes: tuple[int, ...] | list[int], limit: int = 1 << 30) -> tuple[int, ...]:
    """Signed direction runs of a signed size sequence (SPID's accumulated direction bytes)."""
    out: list[int] = []
    for s in sizes:
        if out and (s > 0) == (out[-1] > 0):
            out[-1] += s
        elif len(out) < limit:
            out.append(s)
        else:
            break
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Observation:
    """One detector finding: a feature value with the reasons behind it.

    feature: the weight name in the scoring config (scoring.weights.<feature>).
    family:  independent evidence family; encrypted flows need >= 2 distinct families.
    protocol: the protocol this finding points at: a P2P protocol (bt_mse, bt_plain, utp,
              dht, tracker, lsd); for negative evidence the other protocol recognised (tls,
              ssh, http, dns, quic, stun); None for generic evidence (randomness, context).
    value:   strength in [0, 1]; the contribution to the score is weight * value.
    """

    feature: str
    family: str
    value: float
    protocol: str | None
    reasons: tuple[str, ...] = field(default=())


# Evidence families (for the ">= 2 independent families" rule on encrypted flows)
FAMILY_SHAPE = "handshake_shape"  # burst/size shape of the opening exchange
FAMILY_RANDOM = "randomness"  # first payloads look uniformly random
FAMILY_PLAINTEXT = "plaintext_signature"  # literal protocol bytes (definitive on their own)
FAMILY_HOST = "host_context"  # the host's behaviour (fan-out, discovery nearby)
FAMILY_PEER = "peer_cache"  # endpoint seen before in a recognised P2P flow
FAMILY_NEGATIVE = "negative"  # evidence for a known non-P2P protocol
CONTEXT_FAMILIES = frozenset({FAMILY_HOST, FAMILY_PEER})  # not the flow's own evidence

PROTOCOLS = ("bt_mse", "bt_plain", "utp", "dht", "tracker", "lsd")
# the non-P2P protocols detectors recognise (protocol of FAMILY_NEGATIVE observations)
OTHER_PROTOCOLS = ("tls", "ssh", "http", "dns", "quic", "stun")
