"""The MSE/PE handshake shape (Vuze MSE spec; PROTOCOL-FACTS §1.3-§1.4).

Passive invariants that need no decryption:
  burst 1 (A->B) = Ya + PadA          96..608, random from byte 0, not a plain BT handshake
  burst 2 (B->A) = Yb + PadB          96..608, random from byte 0
  burst 3 (A->B) = step 3             >= 56   (124 exactly: Transmission/rTorrent;
                                               124..636: libtorrent, PadC + 68-byte IA)
  burst 4 (B->A) = step 4 (+payload)  >= 14, no upper bound (ENCRYPT2 payload may coalesce)
Bursts, not packets: TCP may split a 600-byte step 1 into several segments. Step 1 and
step 3 never coalesce into one burst because A waits for Yb before it can compute S.
"""

from __future__ import annotations

from ..evidence import FAMILY_SHAPE, TCP, FlowEvidence, Observation, bursts_of
from .params import DetectParams
from .randomness import random_verdict

_BT_HANDSHAKE = b"\x13BitTorrent protocol"


def step3_layout(size: int, p: DetectParams) -> str:
    """Name the client layout a step-3 burst size is typical of."""
    if size == p.mse_step3_exact:
        return "transmission_like"  # PadC = 0, IA = 68-byte BT handshake (also rTorrent)
    if p.mse_step3_exact < size <= p.mse_step3_ia_max:
        return "libtorrent_like"  # random PadC + 68-byte IA
    if size < p.mse_step3_exact:
        return "no_ia_like"  # IA = 0 (aria2: 56..568) or a short IA
    return "coalesced"  # step 3 plus data sent before step 4 arrived


def bt_length_through_rc4(sizes, b, p: DetectParams) -> str | None:
    """Where the 68-byte BitTorrent handshake shows through the stream cipher, if it does.

    RC4 keeps lengths, so the encrypted BT handshake that follows (or is the IA of) the MSE
    exchange is visible as a size: a 68-byte segment right after steps 1-2, a step 3 of
    exactly 56 + 68 = 124 (PadC = 0, IA = handshake: Transmission, rTorrent), or a step 4
    of exactly 14 + 68 = 82 (PadD = 0, handshake appended). A fully-encrypted proxy has no
    such length: AEAD chunks carry 34 bytes of overhead each (shadowsocks), so the full
    four-step shape without it is ambiguous and counts only as a partial match.
    """
    if len(b) >= 3 and b[2] == p.mse_step3_exact:
        return "step3=124"
    if len(b) >= 4 and -b[3] == p.mse_step4_min + p.bt_handshake_len:
        return "step4=82"
    i = bt_segment(sizes, p)
    return None if i is None else f"bt_len=68@{i + 1}"


def bt_segment(sizes, p: DetectParams, runs: int | None = None) -> int | None:
    """Index of a 68-byte segment that can be the BitTorrent handshake after steps 1-2.

    It must come among the first `bt_len_window` packets and within the exchange's runs
    (`bt_len_runs`: A's step 3, B's step 4, or the run right after), and must not be the
    tail of a segmented larger write: a segment right after a full-sized one of its
    direction (at least 536 bytes and the largest size that direction repeats, i.e. the
    MSS) is the rest of that write (a proxy's 604-byte chunk at MSS 536: 536 + 68)."""
    runs = p.bt_len_runs if runs is None else runs
    run = 0
    full: dict[bool, int] = {}
    for orig in (True, False):
        same = [abs(x) for x in sizes if (x > 0) == orig]
        top = max(same, default=0)
        full[orig] = top if top >= 536 and same.count(top) >= 2 else -1
    for i, x in enumerate(sizes[: p.bt_len_window]):
        if i == 0 or (x > 0) != (sizes[i - 1] > 0):
            run += 1
            if run > runs:
                return None
        if i < 2 or abs(x) != p.bt_handshake_len:
            continue
        prev = sizes[i - 1]
        if (prev > 0) == (x > 0) and abs(prev) == full[x > 0]:
            continue  # the tail of a segmented write
        return i
    return None


def _ssh_lattice(sizes, p: DetectParams) -> bool:
    """The sizes sit on SSH's lattice: every one a multiple of 4, as SSH binary packets are
    in every common mode (4-byte length + a padded block multiple of 8 + a MAC of 8, 16,
    20, 32 or 64 bytes). A mid-stream slice of an SSH session can look random from its
    first byte; an MSE exchange has random pad lengths, each on the lattice one time in
    four. Judged only on three or more sizes besides the fixed BT lengths (68, 124), so
    an MSE flow is turned away at most one time in 64."""
    free = [s for s in sizes if abs(s) not in (p.bt_handshake_len, p.mse_step3_exact)]
    return len(free) >= 3 and all(s % 4 == 0 for s in free)


def _one_sided(ev: FlowEvidence, p: DetectParams, orig: bytes, cut: int | None) -> list[Observation]:
    """Only the originator's packets: step 1, step 3 and the BT handshake length.

    A waits for Yb before it can send step 3, so its first payload is step 1 whole
    (96..608 bytes, random from byte 0); its next segment is step 3 (>= 56 bytes; a
    retransmitted step 1 in between would be as long, and passes too). The exchange is
    BitTorrent's once the handshake length shows: step 3 = 124 exactly (PadC = 0 + 68-byte
    IA: Transmission, rTorrent) or a 68-byte segment after it (libtorrent, aria2);
    without it the opening is a partial match that only the peer cache may lift."""
    sz = ev.sizes
    if len(sz) < 2 or not all(s > 0 for s in sz):
        return []
    s1, s3 = sz[0], sz[1]
    if not (p.mse_step12_min <= s1 <= p.mse_step12_max and s3 >= p.mse_step3_min):
        return []
    if orig.startswith(_BT_HANDSHAKE) or orig.startswith(b"\xff" * p.mse_ff_prefix):
        return []
    v = random_verdict(orig, p, truncated=cut is not None, prefix_exempt=False)
    if not v.random:
        return []
    reasons = ["one_sided=1", f"step1={s1}", f"step3={s3}", f"popcount_orig={v.popcount:.2f}"]
    if cut is not None:
        reasons.append(f"head_captured={cut}")
    window = sz[:p.bt_len_window]
    i = bt_segment(sz, p, runs=1)
    if s3 == p.mse_step3_exact:
        bt_len = "step3=124"
    elif i is not None:
        bt_len = f"bt_len=68@{i + 1}"
    else:
        bt_len = None
    if bt_len is None or _ssh_lattice(window, p):
        reasons.append("bt_len=absent" if bt_len is None else "ssh_lattice=1")
        return [Observation("mse_partial", FAMILY_SHAPE, p.mse_partial_value, "bt_mse", tuple(reasons))]
    reasons.append(bt_len)
    return [Observation("mse_handshake", FAMILY_SHAPE, p.mse_one_sided_value, "bt_mse", tuple(reasons))]


def _step_lost(ev: FlowEvidence, p: DetectParams, sizes, cut_o: int | None, cut_r: int | None) -> list[Observation]:
    """The exchange with one of steps 1-3 missing from the capture (loss at the sensor).

    With the TCP start seen, the first payload packets are the exchange's, one segment per
    step (steps 1 and 2 are at most 608 bytes, below any MSS): step 1 lost leaves B's Yb
    first, then A's step 3 and B's step 4; step 2 lost leaves A's step 1 and step 3 back to
    back; step 3 lost leaves B's Yb and step 4 back to back. Only with the BitTorrent
    handshake length showing (step 3 = 124, step 4 = 82, or a 68-byte segment) does this
    count: three steps alone say little."""
    if not ev.handshake or len(sizes) < 3 or not ev.orig_heads:
        return []
    lo, hi = p.mse_step12_min, p.mse_step12_max
    orig = ev.orig_heads[0]
    resp = ev.resp_heads[0] if ev.resp_heads else None
    s3 = s4 = None
    if sizes[0] > 0 and sizes[1] > 0:
        lost, y, s3 = "step2", sizes[0], sizes[1]
    elif sizes[0] < 0 and sizes[1] > 0:
        lost, y, s3 = "step1", -sizes[0], sizes[1]
    elif sizes[0] > 0 and sizes[1] < 0 and sizes[2] < 0:
        lost, y, s4 = "step3", sizes[0], -sizes[2]
        if not lo <= -sizes[1] <= hi:
            return []
    else:
        return []
    if not lo <= y <= hi or (s3 is not None and s3 < p.mse_step3_min):
        return []
    if orig.startswith(_BT_HANDSHAKE) or orig.startswith(b"\xff" * p.mse_ff_prefix):
        return []
    if resp is not None and resp.startswith(b"\xff" * p.mse_ff_prefix):
        return []
    ov = random_verdict(orig, p, truncated=cut_o is not None, prefix_exempt=False)
    rv = random_verdict(resp, p, truncated=cut_r is not None, prefix_exempt=False) if resp is not None else None
    if not ov.random or (rv is not None and not rv.random and len(resp) >= p.min_random_len):
        return []
    if lost == "step1" and (rv is None or not rv.random):
        return []  # the key is B's: it must be there and random
    if s4 is None:
        after = [x for x in sizes[2:] if x < 0][:1]  # B's next packet: step 4
        s4 = -after[0] if after else None
    if s4 is not None and s4 < p.mse_step4_min:
        return []
    if s3 == p.mse_step3_exact:
        bt_len = "step3=124"
    elif s4 == p.mse_step4_min + p.bt_handshake_len:
        bt_len = "step4=82"
    elif bt_segment(sizes, p, runs=p.bt_len_runs - 1) is not None:  # one run fewer: one step is gone
        bt_len = "bt_len=68"
    else:
        return []
    reasons = (f"lost={lost}", f"key={y}", f"popcount_orig={ov.popcount:.2f}", bt_len)
    return [Observation("mse_handshake", FAMILY_SHAPE, p.mse_step_lost_value, "bt_mse", reasons)]


def mse_handshake(ev: FlowEvidence, p: DetectParams) -> list[Observation]:
    """mse_partial for an opening shaped like MSE, mse_handshake once the BitTorrent
    handshake's length shows through RC4 (the exchange is then specific to BitTorrent):
    with both sides seen, with only the originator's (one tapped fibre), or with step 1
    or 2 lost from the capture."""
    out = _mse_handshake(ev, p)
    if out and out[0].feature == "mse_handshake":
        return out
    if ev.key.proto != TCP or ev.one_sided:
        return out
    lost = _step_lost(ev, p, ev.sizes_without_retransmissions(), *ev.head_captured(p.head_bytes))
    return lost or out


def _mse_handshake(ev: FlowEvidence, p: DetectParams) -> list[Observation]:
    """mse_partial for the first two or three bursts, mse_handshake once the BitTorrent
    handshake's length shows through RC4 (the MSE exchange is then specific to BitTorrent)."""
    if ev.key.proto != TCP or not ev.bursts or ev.bursts[0] <= 0:
        return []  # needs A speaking first
    cut_o, cut_r = ev.head_captured(p.head_bytes)
    if ev.one_sided == "orig":
        return _one_sided(ev, p, ev.orig_heads[0], cut_o) if ev.orig_heads else []
    # the steps are runs of bytes: a retransmitted segment must not count twice
    sizes = ev.sizes_without_retransmissions()
    bursts = ev.bursts if sizes is ev.sizes else bursts_of(sizes)
    if len(bursts) < 2:
        return []  # then B
    lo, hi = p.mse_step12_min, p.mse_step12_max
    b1, b2 = bursts[0], -bursts[1]
    # burst 2 may still grow while it is the last one, but it is already out of range
    # if too big, and A cannot have started burst 2 with less than 96 bytes sent (spec:
    # B terminates below 96 bytes), so < 96 here is "not yet" at worst: no match either way
    if not (lo <= b1 <= hi and lo <= b2 <= hi):
        return []
    if not ev.orig_heads or not ev.resp_heads:
        return []
    orig, resp = ev.orig_heads[0], ev.resp_heads[0]
    if orig.startswith(_BT_HANDSHAKE):
        return []
    ff = b"\xff" * p.mse_ff_prefix
    if orig.startswith(ff) or resp.startswith(ff):
        return []  # a DH public value is < P, and P starts with 64 one-bits
    # Ya and Yb are uniformly random: a printable prefix (Ex2) is 0.26 % likely and no
    # reason to doubt a key whose whole head passes Ex1, Ex3 and Ex4
    ov = random_verdict(orig, p, truncated=cut_o is not None, prefix_exempt=False)
    rv = random_verdict(resp, p, truncated=cut_r is not None, prefix_exempt=False)
    if not (ov.random and rv.random):
        return []

    reasons = [
        f"burst1={b1}",
        f"burst2={b2}",
        f"popcount_orig={ov.popcount:.2f}",
        f"popcount_resp={rv.popcount:.2f}",
    ]
    if cut_o is not None:
        reasons.append(f"head_captured={cut_o}")
    if cut_r is not None:
        reasons.append(f"head_captured_resp={cut_r}")
    feature, value = "mse_partial", p.mse_partial_value
    if sizes is not ev.sizes:
        reasons.append(f"retransmissions={len(ev.sizes) - len(sizes)}")
    nb = len(bursts)
    if nb >= 3:
        b3 = bursts[2]
        b3_final = nb >= 4 or ev.complete
        if b3 < p.mse_step3_min:
            if b3_final:
                return []  # step 3 cannot be shorter than 56 bytes
            reasons.append(f"burst3_open={b3}")
        else:
            layout = step3_layout(b3, p)
            reasons += [f"burst3={b3}", f"step3={layout}"]
            value = p.mse_partial3_value
            b4 = -bursts[3] if nb >= 4 else None
            b4_final = nb >= 5 or ev.complete
            if b4 is not None and b4 < p.mse_step4_min and b4_final:
                return []  # step 4 is at least VC + crypto_select + len(PadD)
            if b4 is not None and b4 >= p.mse_step4_min:
                reasons.append(f"burst4={b4}")
            elif b4 is not None:
                reasons.append(f"burst4_open={b4}")
            # the BT handshake length after steps 1-2 makes the exchange BitTorrent's; a
            # connection B drops after step 3 (a duplicate peer) shows it in burst 3 alone
            bt_len = bt_length_through_rc4(sizes, bursts, p)
            if bt_len is None:
                reasons.append("bt_len=absent")  # the shape alone: a partial match
            elif b4 is None or b4 >= p.mse_step4_min:
                feature = "mse_handshake"
                known = layout in ("transmission_like", "libtorrent_like")
                value = p.mse_full_fingerprint_value if known and b4 is not None else p.mse_full_value
                reasons.append(bt_len)
    if not ev.handshake:
        # Seen from the first captured packet, the whole exchange with the BT length in it
        # is as strong as with the TCP handshake: a mid-stream slice of TLS starts each
        # burst with a record header, SSH keeps every size on a multiple of 4, and a proxy
        # has no BT handshake length (docs/architecture.md, "Start not seen")
        window = list(_until_burst(sizes, 4))
        if feature == "mse_handshake" and ev.first_packet_payload and not _ssh_lattice(window, p):
            reasons += ["start_seen=0", "first_packet_payload=1"]
        else:
            value *= p.midstream_factor
            reasons.append("start_seen=0")
    return [Observation(feature, FAMILY_SHAPE, value, "bt_mse", tuple(reasons))]


def _until_burst(sizes, k: int):
    """The sizes of the first k bursts."""
    runs = 0
    for i, s in enumerate(sizes):
        if i == 0 or (s > 0) != (sizes[i - 1] > 0):
            runs += 1
            if runs > k:
                return
        yield s
