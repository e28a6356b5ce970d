"""Every tunable of the detectors, with the default and the reason for it.

The lead's config layer maps YAML onto this dataclass; detectors take it as an argument
and never read configuration themselves.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DetectParams:
    # --- randomness: the GFW fully-encrypted rule (Wu et al., USENIX Sec 2023) ---------------
    #: Ex1: a payload is "random" only if its mean popcount per byte lies strictly inside
    #: (low, high). Uniform bytes average 4.0 with sigma = sqrt(2/n): +-4 sigma at n = 96.
    popcount_low: float = 3.4
    popcount_high: float = 4.6
    #: Ex2: exempt if the first this-many bytes are all printable (0x20..0x7e).
    printable_prefix_len: int = 6
    #: Ex3: exempt if more than this share of bytes is printable.
    printable_share: float = 0.5
    #: Ex4: exempt if more than this many contiguous bytes are printable.
    printable_run: int = 20
    #: Below this many bytes the popcount mean is too noisy to call anything random
    #: (sigma = 0.35 at 16 bytes); our own floor, not part of the GFW rule.
    min_random_len: int = 16
    #: Heads at least this long give fully_encrypted its full value; shorter ones get half.
    random_full_len: int = 64
    #: Value factor for TCP stream-start features when the TCP handshake was not seen:
    #: the "first" payload we hold may be from the middle of a stream (nDPI requires the start).
    #: The full MSE exchange seen from the first captured packet is exempt (docs/architecture.md).
    midstream_factor: float = 0.5
    #: A head the capture cut short (snaplen) is judged at its captured length with the band
    #: popcount_low..popcount_high widened to this many standard deviations of uniform bytes
    #: (sigma = sqrt(2/n)): the fixed band is +-4.16 sigma at 96 bytes, so a 30-byte random
    #: head is rejected as rarely as a whole 96-byte one. Reasons say head_captured=n.
    popcount_sigmas: float = 4.16
    #: The evidence budget's head length (budget.head_bytes; the engine sets it): a head
    #: shorter than min(its packet's size, head_bytes) was cut by the capture.
    head_bytes: int = 256

    # --- MSE/PE handshake shape (Vuze MSE spec; PROTOCOL-FACTS §1.3, §1.4) --------------------
    #: Steps 1 and 2: Y (96 bytes) + Pad (0..512) -> 96..608 bytes per burst.
    mse_step12_min: int = 96
    mse_step12_max: int = 608
    #: Step 3: 20 + 20 + VC 8 + crypto_provide 4 + len(PadC) 2 + len(IA) 2 = 56 + PadC + IA.
    mse_step3_min: int = 56
    #: Transmission and rTorrent: PadC = 0, IA = the 68-byte BT handshake -> exactly 124.
    mse_step3_exact: int = 124
    #: libtorrent-rasterbar: random PadC (0..512) + IA 68 -> 124..636.
    mse_step3_ia_max: int = 636
    #: Step 4: VC 8 + crypto_select 4 + len(PadD) 2 = 14 + PadD (+ payload, may coalesce).
    mse_step4_min: int = 14
    #: The BT handshake (BEP 3: 1 + 19 + 8 + 20 + 20 bytes) whose length RC4 preserves.
    bt_handshake_len: int = 68
    #: How many payload packets to search for a 68-byte segment after steps 1-2.
    bt_len_window: int = 10
    #: ... and within how many direction runs: A's step 3, B's step 4, and the run after
    #: (where every BitTorrent handshake of both corpora sits: packets 3-5).
    bt_len_runs: int = 5
    #: Ya/Yb < P and P starts with 8 bytes 0xFF, so a DH public key cannot start with them.
    mse_ff_prefix: int = 8
    #: Observation values: two bursts only, three bursts, the full four-step shape.
    mse_partial_value: float = 0.5
    mse_partial3_value: float = 0.65
    mse_full_value: float = 0.85
    #: Full shape whose step 3 matches a known client layout (124 exact, or 124..636).
    mse_full_fingerprint_value: float = 1.0
    #: Only the originator's packets captured (one tapped fibre): step 1 (96..608, random),
    #: step 3 (>= 56) and the BT handshake length (step 3 = 124, or a 68-byte segment).
    mse_one_sided_value: float = 0.9
    #: The TCP start seen but one of steps 1-3 missing from the capture (loss at the sensor),
    #: the BT handshake length showing: the three steps left and that length.
    mse_step_lost_value: float = 0.9

    # --- plain BitTorrent peer wire (BEP 3, BEP 10, BEP 6) ------------------------------------
    #: Put the info_hash (hex) into the reasons of bt_handshake. Off for privacy-minded sites.
    report_info_hash: bool = True
    #: Largest plausible peer-wire message length (piece = 9 + 16 KiB block; allow 128 KiB
    #: blocks and large bitfields / extension messages).
    peerwire_max_len: int = 1 << 17
    #: Messages to walk in one head, at most.
    peerwire_max_msgs: int = 6
    #: Without a handshake in front, this many complete messages in a row are needed.
    peerwire_min_msgs_alone: int = 2
    peerwire_alone_value: float = 0.6

    # --- DHT KRPC (BEP 5, BEP 42) -----------------------------------------------------------
    dht_one_way_value: float = 0.7
    dht_both_ways_value: float = 1.0

    # --- uTP (BEP 29) -----------------------------------------------------------------------
    #: nDPI skips UDP flows with either port below 1024 (DNS on 53 shapes like a uTP SYN).
    utp_min_port: int = 1024
    #: Teredo (3544; FP nDPI#74), CAPWAP (5246/5247), mDNS/LLMNR (5353/5355, DNS-shaped).
    utp_excluded_ports: tuple[int, ...] = (3544, 5246, 5247, 5353, 5355)
    #: Extensions walked at most (nDPI walks 4).
    utp_max_extensions: int = 4
    #: Largest believable wnd_size. nDPI rejects above 65565, but libtorrent advertises its
    #: free receive-buffer capacity (utp_stream.cpp), which can exceed 64 KiB; we only demand
    #: a value below 16 MiB (top byte zero), which still rejects most random headers.
    utp_max_wnd: int = (1 << 24) - 1
    #: One parsed header per direction is weak; a coherent exchange is strong.
    utp_header_value: float = 0.3
    utp_coherent_value: float = 1.0
    #: Only the initiator's side captured: a SYN, then packets sending with its
    #: connection id + 1 and consecutive sequence numbers.
    utp_one_way_value: float = 0.75

    # --- other protocols (negative evidence: the flow is not P2P) -----------------------------
    #: Ports on which a DNS message is expected (DNS, mDNS, LLMNR); elsewhere a message must
    #: parse as a complete query or answer to count.
    dns_ports: tuple[int, ...] = (53, 5353, 5355)

    # --- trackers (BEP 15 UDP, BEP 3 HTTP) and LSD (BEP 14) -----------------------------------
    udp_tracker_value: float = 0.9
    udp_tracker_reply_value: float = 1.0
    http_tracker_value: float = 1.0
    lsd_value: float = 1.0
    #: BT-SEARCH sent somewhere other than the LSD multicast groups (unusual, but the text is
    #: unmistakable).
    lsd_unicast_value: float = 0.8
