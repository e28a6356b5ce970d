#!/usr/bin/env python3
"""Replay pcap files onto a network interface with their own timing (a small tcpreplay).

    zeek_replay.py --iface veth0 [--speed 4] [--gap 0.5] [--net-offset 0] a.pcap b.pcap ...

Frames are written with an AF_PACKET raw socket (root, Linux), one pcap after the other,
each with its inter-packet gaps divided by --speed (gaps longer than --max-gap are cut to
it). Meant for a veth pair inside a network namespace that the caller created: the
frames go nowhere else.

--net-offset N adds N to the second octet of every 10.x.y.z address (IPv4 header
checksum and TCP/UDP checksums recomputed), so that the same captures can be replayed
again as new connections (round r of a test uses offset r).

Prints one line at the end: frames sent, seconds taken.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time

import dpkt


def rewrite(frame: bytes, offset: int) -> bytes:
    """The frame with 10.a.b.c -> 10.(a+offset).b.c in its IPv4 header (checksums redone)."""
    if offset == 0:
        return frame
    eth = dpkt.ethernet.Ethernet(frame)
    ip = eth.data
    if not isinstance(ip, dpkt.ip.IP):
        return frame
    changed = False
    for attr in ("src", "dst"):
        a = getattr(ip, attr)
        if a[0] == 10:
            setattr(ip, attr, bytes((10, (a[1] + offset) % 256)) + a[2:])
            changed = True
    if not changed:
        return frame
    ip.sum = 0
    if isinstance(ip.data, (dpkt.tcp.TCP, dpkt.udp.UDP)):
        ip.data.sum = 0  # dpkt recomputes the pseudo-header checksum when packing
    return bytes(eth)


def frames(path: str):
    with open(path, "rb") as fh:
        try:
            reader = dpkt.pcap.Reader(fh)
        except ValueError:
            fh.seek(0)
            reader = dpkt.pcapng.Reader(fh)
        if reader.datalink() != dpkt.pcap.DLT_EN10MB:
            raise SystemExit(f"{path}: link type {reader.datalink()} is not Ethernet")
        yield from reader


def replay(iface: str, paths: list[str], speed: float, gap: float, max_gap: float, offset: int) -> int:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((iface, 0))
    sent = 0
    try:
        for path in paths:
            first_ts = None
            start = time.monotonic()
            shift = 0.0  # time cut from long gaps so far
            last_ts = None
            for ts, buf in frames(path):
                if first_ts is None:
                    first_ts = last_ts = ts
                if ts - last_ts > max_gap:
                    shift += ts - last_ts - max_gap
                last_ts = ts
                due = start + (ts - first_ts - shift) / speed
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                sock.send(rewrite(buf, offset))
                sent += 1
            time.sleep(gap)
    finally:
        sock.close()
    return sent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iface", required=True)
    p.add_argument("--speed", type=float, default=1.0, help="divide inter-packet gaps by this (default 1)")
    p.add_argument("--gap", type=float, default=0.2, help="seconds between two pcaps (default 0.2)")
    p.add_argument("--max-gap", type=float, default=2.0, help="cut longer inter-packet gaps to this (default 2 s)")
    p.add_argument("--net-offset", type=int, default=0, help="add this to the second octet of 10.x addresses")
    p.add_argument("pcap", nargs="+")
    a = p.parse_args(argv)
    if a.speed <= 0:
        p.error("--speed must be > 0")
    t0 = time.monotonic()
    try:
        n = replay(a.iface, a.pcap, a.speed, a.gap, a.max_gap, a.net_offset)
    except OSError as e:
        print(f"zeek_replay: {e}", file=sys.stderr)
        return 1
    print(f"zeek_replay: {n} frames in {time.monotonic() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
