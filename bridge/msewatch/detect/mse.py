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

from ..evidence import FAMILY_SHAPE, TCP, FlowEvidence, Observation
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


def bt_length_through_rc4(ev: FlowEvidence, p: DetectParams) -> str | None:
    """Where the 68-byte BitTorrent handshake shows through the stream cipher, if it does.

    RC4 keeps lengths, so the encrypted BT handshake that follows (or is the IA of) the MSE
    exchange is visible as a size: a 68-byte segment right after steps 1-2, a step 3 of
    exactly 56 + 68 = 124 (PadC = 0, IA = handshake: Transmission, rTorrent), or a step 4
    of exactly 14 + 68 = 82 (PadD = 0, handshake appended). A fully-encrypted proxy has no
    such length: AEAD chunks carry 34 bytes of overhead each (shadowsocks), so the full
    four-step shape without it is ambiguous and counts only as a partial match.
    """
    b = ev.bursts
    if len(b) >= 3 and b[2] == p.mse_step3_exact:
        return "step3=124"
    if len(b) >= 4 and -b[3] == p.mse_step4_min + p.bt_handshake_len:
        return "step4=82"
    for i, size in enumerate(ev.sizes[2 : p.bt_len_window], start=3):
        if abs(size) == p.bt_handshake_len:
            return f"bt_len=68@{i}"
    return None


def mse_handshake(ev: FlowEvidence, p: DetectParams) -> list[Observation]:
    """mse_partial for the first two bursts, mse_handshake for all four steps."""
    if ev.key.proto != TCP or len(ev.bursts) < 2 or ev.bursts[0] <= 0:
        return []  # needs A speaking first, then B
    lo, hi = p.mse_step12_min, p.mse_step12_max
    b1, b2 = ev.bursts[0], -ev.bursts[1]
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
    ov, rv = random_verdict(orig, p), random_verdict(resp, p)
    if not (ov.random and rv.random):
        return []

    reasons = [
        f"burst1={b1}",
        f"burst2={b2}",
        f"popcount_orig={ov.popcount:.2f}",
        f"popcount_resp={rv.popcount:.2f}",
    ]
    feature, value = "mse_partial", p.mse_partial_value
    nb = len(ev.bursts)
    if nb >= 3:
        b3 = ev.bursts[2]
        b3_final = nb >= 4 or ev.complete
        if b3 < p.mse_step3_min:
            if b3_final:
                return []  # step 3 cannot be shorter than 56 bytes
            reasons.append(f"burst3_open={b3}")
        else:
            layout = step3_layout(b3, p)
            reasons += [f"burst3={b3}", f"step3={layout}"]
            value = p.mse_partial3_value
            if nb >= 4:
                b4 = -ev.bursts[3]
                b4_final = nb >= 5 or ev.complete
                if b4 >= p.mse_step4_min:
                    reasons.append(f"burst4={b4}")
                    bt_len = bt_length_through_rc4(ev, p)
                    if bt_len is None:
                        reasons.append("bt_len=absent")  # the shape alone: a partial match
                    else:
                        feature = "mse_handshake"
                        known = layout in ("transmission_like", "libtorrent_like")
                        value = p.mse_full_fingerprint_value if known else p.mse_full_value
                        reasons.append(bt_len)
                elif b4_final:
                    return []  # step 4 is at least VC + crypto_select + len(PadD)
                else:
                    reasons.append(f"burst4_open={b4}")
    if not ev.handshake:
        value *= p.midstream_factor
        reasons.append("start_seen=0")
    return [Observation(feature, FAMILY_SHAPE, value, "bt_mse", tuple(reasons))]
