"""Shared helpers for the benchmarks: the machine, the real-traffic benchmark capture, child-process
timing and the one-line summaries that benchmarks/run_all.py collects.

Every benchmark prints its own table and, last, lines starting with ``SUMMARY`` (one per headline
number) so that run_all.py can gather them without knowing each script's layout.
"""

from __future__ import annotations

import glob
import hashlib
import heapq
import ipaddress
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"  # git-ignored
CORPUS = REPO / "tests" / "data" / "corpus"
VENV_BIN = REPO / ".venv" / "bin"

# MSEWATCH_BENCH_BRIDGE=/path/to/a/patched/bridge measures a patched copy of the package (A/B)
BRIDGE = Path(os.environ.get("MSEWATCH_BENCH_BRIDGE", REPO / "bridge"))
if str(BRIDGE) not in sys.path:
    sys.path.insert(0, str(BRIDGE))


# --- the machine -----------------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_line() -> str:
    return (f"machine: {os.cpu_count()} CPUs ({cpu_model()}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


# --- summaries -------------------------------------------------------------------------------------

def summary(name: str, value: str) -> None:
    """One headline number for run_all.py's combined summary."""
    print(f"SUMMARY {name}: {value}", flush=True)


# --- child processes -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChildRun:
    wall: float  # seconds
    user: float  # seconds of user CPU of the child (and its children)
    sys: float  # seconds of system CPU
    maxrss_kib: int  # the child's peak RSS
    returncode: int


def run_child(cmd: Sequence[str], env: dict[str, str] | None = None) -> ChildRun:
    """Run `cmd` with stdout/stderr discarded; wall time plus the CPU the child used.

    CPU comes from getrusage(RUSAGE_CHILDREN) deltas around the run (the child's whole process
    tree); peak RSS from wait4's per-child rusage (RUSAGE_CHILDREN's maxrss is a running maximum
    over all children ever reaped, so it cannot be differenced). `env`: variables added to ours."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env={**os.environ, **env} if env else None)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    if p.stderr:
        p.stderr.close()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {err.strip()[-2000:]}")
    return ChildRun(wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime,
                    ru.ru_maxrss, p.returncode)


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def byte_compile_package() -> str:
    """Byte-compile msewatch's modules as `pip install` does for an installed package, so the
    child processes start like a user's installation. An editable checkout run with
    PYTHONDONTWRITEBYTECODE set (as some shells and CI images set it) never writes .pyc files
    and compiles every module of the package at each start: 25-30 ms of start-up that an
    installed msewatch does not pay. Returns one line for the benchmark's output."""
    import compileall

    import msewatch

    pkg = Path(msewatch.__file__).resolve().parent
    ok = compileall.compile_dir(str(pkg), quiet=2)
    return f"byte-compiled {pkg} ({'ok' if ok else 'some modules failed'}), as an installation is"


def msewatch_cmd(pcap: Path | str) -> list[str]:
    exe = VENV_BIN / "msewatch"
    if exe.exists():
        return [str(exe), "analyze", str(pcap), "-q", "-o", "/dev/null", "--no-progress"]
    return [sys.executable, "-m", "msewatch", "analyze", str(pcap), "-q", "-o", "/dev/null", "--no-progress"]


def find_ndpi_reader() -> str | None:
    return shutil.which("ndpiReader") or ("/usr/bin/ndpiReader" if os.path.exists("/usr/bin/ndpiReader") else None)


def ndpi_version(exe: str) -> str:
    try:
        out = subprocess.run([exe, "-h"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    for line in (out.stdout + out.stderr).splitlines():
        if "nDPI" in line and any(c.isdigit() for c in line):
            return line.strip().replace("Welcome to ", "")
    return "unknown"


# --- capture statistics ----------------------------------------------------------------------------

def capture_stats(path: Path | str) -> tuple[int, int, float]:
    """(records, bytes on the wire (caplen sum), duration s) of a pcap or pcapng file (dpkt's
    readers: pcapng with its first interface's resolution, which is enough for a duration)."""
    import dpkt

    n = nbytes = 0
    first = last = 0.0
    with open(path, "rb") as f:
        pcapng = f.read(4) == b"\x0a\x0d\x0d\x0a"
        f.seek(0)
        reader = dpkt.pcapng.Reader(f) if pcapng else dpkt.pcap.Reader(f)
        for ts, buf in reader:
            if not n:
                first = ts
            last = ts
            n += 1
            nbytes += len(buf)
    return n, nbytes, float(last - first)


# --- the benchmark capture: real corpus traffic, repeated with shifted addresses and times -----------

_ETH_IPV4, _ETH_IPV6, _VLAN = 0x0800, 0x86DD, (0x8100, 0x88A8)


@dataclass(slots=True)
class _BasePacket:
    ts: float  # relative to the start of the merged corpus
    frame: bytes
    l3: int  # offset of the IP header, -1 when not IP
    v6: bool
    src_shift: bool  # rewrite the source address per copy (private unicast addresses only)
    dst_shift: bool
    ip_sum: int  # offset of the IPv4 header checksum, -1 if none
    l4_sum: int  # offset of the TCP/UDP(/ICMPv6) checksum covering the pseudo-header, -1 if none


def _shiftable(addr: bytes) -> bool:
    a = ipaddress.ip_address(addr)
    return (a.is_private or a.is_link_local) and not (a.is_multicast or a.is_unspecified or a.is_loopback)


def _parse_base(frame: bytes, ts: float) -> _BasePacket:
    bp = _BasePacket(ts, frame, -1, False, False, False, -1, -1)
    if len(frame) < 14:
        return bp
    off, etype = 14, (frame[12] << 8) | frame[13]
    while etype in _VLAN and len(frame) >= off + 4:
        etype = (frame[off + 2] << 8) | frame[off + 3]
        off += 4
    if etype == _ETH_IPV4 and len(frame) >= off + 20:
        ihl = (frame[off] & 0x0F) * 4
        proto = frame[off + 9]
        frag = struct.unpack_from("!H", frame, off + 6)[0] & 0x3FFF
        bp.l3, bp.ip_sum = off, off + 10
        l4 = off + ihl
        if not frag and proto == 6 and len(frame) >= l4 + 18:
            bp.l4_sum = l4 + 16
        elif not frag and proto == 17 and len(frame) >= l4 + 8 and frame[l4 + 6:l4 + 8] != b"\0\0":
            bp.l4_sum = l4 + 6  # a zero UDP checksum means "none" and stays zero
        bp.src_shift = _shiftable(frame[off + 12:off + 16])
        bp.dst_shift = _shiftable(frame[off + 16:off + 20])
    elif etype == _ETH_IPV6 and len(frame) >= off + 40:
        bp.l3, bp.v6 = off, True
        nh, l4 = frame[off + 6], off + 40
        want = {6: 16, 17: 6, 58: 2}
        if nh in want and len(frame) >= l4 + want[nh] + 2:
            bp.l4_sum = l4 + want[nh]
        bp.src_shift = _shiftable(frame[off + 8:off + 24])
        bp.dst_shift = _shiftable(frame[off + 24:off + 40])
    return bp


def _csum_update(old_sum: int, old_words: Sequence[int], new_words: Sequence[int]) -> int:
    """RFC 1624 incremental checksum update: HC' = ~(~HC + sum(~m) + sum(m'))."""
    s = (~old_sum) & 0xFFFF
    for m in old_words:
        s += (~m) & 0xFFFF
    for m in new_words:
        s += m
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def _copy_frames(base: list[_BasePacket], copy: int, dt: float, t0: float) -> Iterator[tuple[float, bytes]]:
    """Copy number `copy` of the merged corpus: private addresses get `copy` added to the 16-bit
    word that holds their 2nd/3rd (IPv4) or 11th/12th (IPv6) byte, checksums patched, times shifted."""
    shift_ts = t0 + copy * dt
    for bp in base:
        if copy == 0 or bp.l3 < 0 or not (bp.src_shift or bp.dst_shift):
            yield bp.ts + shift_ts, bp.frame
            continue
        fr = bytearray(bp.frame)
        if bp.v6:
            addr_offs = [(bp.l3 + 8 + 10, bp.src_shift), (bp.l3 + 24 + 10, bp.dst_shift)]
        else:
            addr_offs = [(bp.l3 + 12 + 1, bp.src_shift), (bp.l3 + 16 + 1, bp.dst_shift)]
        old_w: list[int] = []
        new_w: list[int] = []
        for o, do in addr_offs:
            if not do:
                continue
            # the words as the checksum sees them (aligned on the IP header), before and after
            a = o - ((o - bp.l3) & 1)
            before = (fr[a] << 8 | fr[a + 1], fr[a + 2] << 8 | fr[a + 3])
            v = ((fr[o] << 8 | fr[o + 1]) + copy) & 0xFFFF
            fr[o], fr[o + 1] = v >> 8, v & 0xFF
            after = (fr[a] << 8 | fr[a + 1], fr[a + 2] << 8 | fr[a + 3])
            old_w.extend(before)
            new_w.extend(after)
        if bp.ip_sum >= 0:
            s = _csum_update(fr[bp.ip_sum] << 8 | fr[bp.ip_sum + 1], old_w, new_w)
            fr[bp.ip_sum], fr[bp.ip_sum + 1] = s >> 8, s & 0xFF
        if bp.l4_sum >= 0 and bp.l4_sum + 2 <= len(fr):
            s = _csum_update(fr[bp.l4_sum] << 8 | fr[bp.l4_sum + 1], old_w, new_w)
            fr[bp.l4_sum], fr[bp.l4_sum + 1] = s >> 8, s & 0xFF
        yield bp.ts + shift_ts, bytes(fr)


def corpus_files() -> list[Path]:
    return sorted(Path(p) for p in glob.glob(str(CORPUS / "*.pcap")))


def load_corpus(files: Sequence[Path], stagger: float = 0.05) -> list[_BasePacket]:
    """Merge the corpus captures into one time-ordered packet list, each file rebased to start at
    i*stagger seconds. Only Ethernet captures are taken (the benchmark capture has one link type)."""
    import dpkt

    merged: list[_BasePacket] = []
    for i, p in enumerate(files):
        with open(p, "rb") as f:
            try:
                r = dpkt.pcap.Reader(f)
            except (ValueError, dpkt.Error) as e:
                print(f"  skipping {p.name}: {e}", file=sys.stderr)
                continue
            if r.datalink() != 1:
                print(f"  skipping {p.name}: link type {r.datalink()} is not Ethernet", file=sys.stderr)
                continue
            first = None
            for ts, buf in r:
                ts = float(ts)
                if first is None:
                    first = ts
                merged.append(_parse_base(bytes(buf), ts - first + i * stagger))
    merged.sort(key=lambda bp: bp.ts)  # stable: file order kept on ties
    return merged


def build_bench_capture(target_packets: int = 400_000, dt: float = 0.25,
                        t0: float = 1_700_000_000.0, out: Path = OUT) -> Path:
    """benchmarks/out/corpus_x<copies>_<hash>.pcap: the merged corpus repeated until it holds at
    least `target_packets` records, copy k shifted by k*dt seconds and with its private addresses
    shifted by k, so every copy's flows are distinct 5-tuples and copies overlap in time.
    Cached: rebuilt only when the corpus or the parameters change. `out`: another directory
    (tests build small ones in their own temporary directory)."""
    import dpkt

    files = corpus_files()
    if not files:
        raise SystemExit(f"no corpus captures in {CORPUS}: generate them (tools/corpus) or pass a pcap")
    h = hashlib.sha256(f"v1 {target_packets} {dt} {t0}".encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.name} {st.st_size} {st.st_mtime_ns}".encode())
    tag = h.hexdigest()[:12]
    out.mkdir(parents=True, exist_ok=True)
    existing = list(out.glob(f"corpus_x*_{tag}.pcap"))
    if existing:
        return existing[0]
    for old in out.glob("corpus_x*_*.pcap"):
        old.unlink()
    t_start = time.perf_counter()
    base = load_corpus(files)
    if not base:
        raise SystemExit(f"no readable Ethernet packets in {CORPUS}")
    copies = -(-target_packets // len(base))
    if copies > 65535:
        raise SystemExit("corpus too small to repeat into a benchmark capture")
    final = out / f"corpus_x{copies}_{tag}.pcap"
    tmp = final.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        w = dpkt.pcap.Writer(f, snaplen=262144, linktype=1)
        for ts, frame in heapq.merge(*(_copy_frames(base, k, dt, t0) for k in range(copies)),
                                     key=lambda x: x[0]):
            w.writepkt(frame, ts=ts)
    os.replace(tmp, final)
    print(f"built {final}: {len(files)} corpus files, {len(base)} packets x {copies} copies"
          f" in {time.perf_counter() - t_start:.1f}s", flush=True)
    return final


__all__ = ["REPO", "OUT", "ChildRun", "run_child", "median", "summary", "machine_line", "cpu_model",
           "build_bench_capture", "capture_stats", "msewatch_cmd", "find_ndpi_reader", "ndpi_version",
           "corpus_files"]
