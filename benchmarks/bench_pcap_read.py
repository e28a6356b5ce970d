"""Reading speed of the pcap source against dpkt, measured in the same run.

    .venv/bin/python benchmarks/bench_pcap_read.py [capture.pcap] [--packets N] [--repeat R]

Without a capture it writes a synthetic Ethernet one (~200k packets: IPv4/IPv6, TCP/UDP, some
VLAN tags, payloads 0-1400 bytes) and a pcapng copy to a temp dir. It prints packets/s, best of R
runs, for:

  framing   dpkt.pcap.Reader records        vs msewatch's record framing (decode stubbed out)
  decode    dpkt.pcap.Reader + dpkt.ethernet.Ethernet objects producing the same tuples
            vs msewatch.sources.pcap.iter_packets (framing + hand-written header fast path)
  pcapng    dpkt.pcapng.Reader blocks       vs msewatch's pcapng framing (decode stubbed out)

and the ratio ours/dpkt for each. The decode comparison first checks that both produce the same
packets on the capture, so the two are doing the same job.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dpkt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bridge"))
from msewatch.sources import pcap as ours  # noqa: E402


def synth_frames(n: int, seed: int = 7) -> Iterator[tuple[float, bytes]]:
    """Realistic-ish mix: 70% IPv4 TCP, 15% IPv4 UDP, 10% IPv6 TCP, 5% VLAN-tagged IPv4 TCP."""
    rnd = random.Random(seed)
    macs = bytes.fromhex("020000000002020000000001")
    ts = 1700000000.0
    for i in range(n):
        ts += rnd.random() * 0.001
        size = rnd.choice((0, 0, 0, 20, 68, 96, 200, 608, 1400, 1400))
        payload = rnd.randbytes(size)
        sport, dport = rnd.randrange(1024, 65535), rnd.choice((6881, 443, 51413, 80))
        kind = rnd.random()
        if kind < 0.85 or kind >= 0.95:
            if kind < 0.70 or kind >= 0.95:
                l4 = struct.pack("!HHIIBBHHH", sport, dport, i, 0, 5 << 4, 0x18, 65535, 0, 0)
                proto = 6
            else:
                l4 = struct.pack("!HHHH", sport, dport, 8 + size, 0)
                proto = 17
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4) + size, i & 0xFFFF, 0x4000,
                             64, proto, 0, bytes([10, 0, i >> 8 & 0xFF, i & 0xFF]),
                             bytes([192, 0, 2, 7])) + l4 + payload
            if kind >= 0.95:
                frame = macs + struct.pack("!HHH", 0x8100, 10, 0x0800) + ip
            else:
                frame = macs + b"\x08\x00" + ip
        else:
            l4 = struct.pack("!HHIIBBHHH", sport, dport, i, 0, 5 << 4, 0x10, 65535, 0, 0)
            ip6 = struct.pack("!IHBB16s16s", 0x60000000, len(l4) + size, 6, 64,
                              b"\x20\x01\x0d\xb8" + b"\x00" * 11 + bytes([i & 0xFF]),
                              b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x07") + l4 + payload
            frame = macs + b"\x86\xdd" + ip6
        if len(frame) < 60:
            frame += b"\x00" * (60 - len(frame))  # Ethernet minimum frame padding
        yield ts, frame


def write_captures(directory: Path, n: int) -> tuple[Path, Path]:
    pcap_path, ng_path = directory / "bench.pcap", directory / "bench.pcapng"
    with open(pcap_path, "wb") as fp, open(ng_path, "wb") as fng:
        wp = dpkt.pcap.Writer(fp, snaplen=65535, linktype=1)
        wng = dpkt.pcapng.Writer(fng, snaplen=65535, linktype=1)
        for ts, frame in synth_frames(n):
            wp.writepkt(frame, ts=ts)
            wng.writepkt(frame, ts=ts)
    return pcap_path, ng_path


# --- the dpkt-object way ---------------------------------------------------------------------------

def dpkt_packets(path: Path) -> Iterator[tuple]:
    """The same tuples as iter_packets, from dpkt's object model (Ethernet captures only)."""
    with open(path, "rb") as f:
        for ts, buf in dpkt.pcap.Reader(f):
            try:
                eth = dpkt.ethernet.Ethernet(buf)
            except (dpkt.UnpackError, struct.error):
                continue
            ip = eth.data
            if isinstance(ip, dpkt.ip.IP):
                if ip.mf or ip.offset:
                    continue
            elif not isinstance(ip, dpkt.ip6.IP6):
                continue
            l4 = ip.data
            if isinstance(l4, dpkt.tcp.TCP):
                data = bytes(l4.data)  # whole frames here: the header length is the data length
                yield (float(ts), 6, ip.src, l4.sport, ip.dst, l4.dport, l4.flags, data, len(data))
            elif isinstance(l4, dpkt.udp.UDP):
                data = bytes(l4.data)
                yield (float(ts), 17, ip.src, l4.sport, ip.dst, l4.dport, 0, data, len(data))


def dpkt_pcap_records(path: Path) -> Iterator[tuple]:
    with open(path, "rb") as f:
        yield from dpkt.pcap.Reader(f)


def dpkt_pcapng_records(path: Path) -> Iterator[tuple]:
    with open(path, "rb") as f:
        yield from dpkt.pcapng.Reader(f)


# --- ours ------------------------------------------------------------------------------------------

def our_packets(path: Path) -> Iterator[tuple]:
    return ours.iter_packets(str(path), ours.ReadStats())


def our_framing_only(path: Path) -> int:
    """Record framing alone: the decoder replaced by a stub that keeps nothing."""
    real = ours._decode
    ours._decode = lambda buf, start, stop, ts, kind, stats: None
    try:
        stats = ours.ReadStats()
        for _ in ours.iter_packets(str(path), stats):
            pass
        return stats.packets
    finally:
        ours._decode = real


# --- timing ----------------------------------------------------------------------------------------

def best_rate(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    best, count = float("inf"), 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        count = fn()
        best = min(best, time.perf_counter() - t0)
    return count / best, count


def count(it) -> int:
    n = 0
    for _ in it:
        n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture", nargs="?", help="Ethernet pcap to read (default: synthesise one)")
    ap.add_argument("--packets", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        if args.capture:
            pcap_path, ng_path = Path(args.capture), None
        else:
            t0 = time.perf_counter()
            pcap_path, ng_path = write_captures(Path(tmp), args.packets)
            print(f"synthesised {args.packets} packets in {time.perf_counter() - t0:.1f}s "
                  f"({os.path.getsize(pcap_path) / 1e6:.1f} MB pcap)")

        mine = list(our_packets(pcap_path))
        theirs = list(dpkt_packets(pcap_path))
        if len(mine) != len(theirs) or any(
                a[1:] != b[1:] or abs(a[0] - b[0]) > 1e-6 for a, b in zip(mine, theirs)):
            print(f"MISMATCH: ours {len(mine)} packets, dpkt {len(theirs)}", file=sys.stderr)
            return 1
        del mine, theirs

        rows = [
            ("framing pcap", lambda: count(dpkt_pcap_records(pcap_path)),
             lambda: our_framing_only(pcap_path)),
            ("decode to tuples", lambda: count(dpkt_packets(pcap_path)),
             lambda: count(our_packets(pcap_path))),
        ]
        if ng_path is not None:
            rows.append(("framing pcapng", lambda: count(dpkt_pcapng_records(ng_path)),
                         lambda: our_framing_only(ng_path)))

        print(f"{'':18} {'dpkt pkts/s':>14} {'msewatch pkts/s':>16} {'ratio':>7}")
        for label, theirs_fn, mine_fn in rows:
            theirs_rate, n1 = best_rate(theirs_fn, args.repeat)
            mine_rate, n2 = best_rate(mine_fn, args.repeat)
            print(f"{label:18} {theirs_rate:14,.0f} {mine_rate:16,.0f} {mine_rate / theirs_rate:6.1f}x"
                  f"   ({n1} / {n2} records)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
