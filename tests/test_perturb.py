"""The capture-artifact rewriter (msewatch/perturb.py) does to real captures what it says."""

from __future__ import annotations

import ipaddress
import struct
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from msewatch.perturb import PerturbError, Rewrite, parse_spec, perturb_pcap, read_frames, v6_of
from msewatch.sources.pcap import ReadStats, iter_packets

CORPUS = Path(__file__).parent / "data" / "corpus"
MSE = CORPUS / "mse_rc4_libtorrent_transmission.pcap"
LSD = CORPUS / "lsd_local.pcap"

pytestmark = pytest.mark.skipif(not MSE.is_file(), reason="no corpus")


def packets(path) -> list[tuple]:
    return list(iter_packets(str(path), ReadStats()))


def rewrite(tmp_path, spec: str, src: Path = MSE) -> list[tuple]:
    dst = tmp_path / f"{abs(hash(spec))}.pcap"
    perturb_pcap(src, dst, spec)
    return packets(dst)


def flow_bytes(pkts) -> Counter:
    """Payload bytes per direction of every flow, as the headers say."""
    c: Counter = Counter()
    for ts, proto, src, sp, dst, dp, flags, payload, length in pkts:
        c[(proto, src[-4:], sp, dst[-4:], dp)] += length
    return c


def test_the_empty_spec_rewrites_to_the_same_packets(tmp_path):
    a, b = packets(MSE), rewrite(tmp_path, "")
    assert [p[1:] for p in a] == [p[1:] for p in b]
    assert all(abs(x[0] - y[0]) < 1e-6 for x, y in zip(a, b))


def test_snaplen_keeps_headers_and_the_first_bytes_and_the_lengths(tmp_path):
    frames = read_frames(MSE)
    dst = tmp_path / "s.pcap"
    perturb_pcap(MSE, dst, "snaplen=96")
    raw = dst.read_bytes()
    off, caps = 24, []
    while off < len(raw):
        _, _, cap, orig = struct.unpack_from("<IIII", raw, off)
        caps.append((cap, orig))
        off += 16 + cap
    assert len(caps) == len(frames) and all(c <= 96 and o >= c for c, o in caps)
    a, b = packets(MSE), packets(dst)
    assert [p[8] for p in a] == [p[8] for p in b]  # sizes from the headers
    assert max(len(p[7]) for p in b) <= 96 - 14 - 20 - 20


def test_resegmentation_splits_payloads_to_the_mss_and_keeps_every_byte(tmp_path):
    b = rewrite(tmp_path, "mss=536")
    assert max(p[8] for p in b if p[1] == 6) <= 536
    assert flow_bytes(b) == flow_bytes(packets(MSE))
    assert len(b) > len(packets(MSE))


def test_gro_merges_back_to_back_segments_and_keeps_every_byte(tmp_path):
    b = rewrite(tmp_path, "mss=536+gro")
    assert len(b) < len(rewrite(tmp_path, "mss=536"))
    assert flow_bytes(b) == flow_bytes(packets(MSE))


def _flows(pkts):
    out = defaultdict(list)
    for p in pkts:
        a, b = (p[2], p[3]), (p[4], p[5])
        out[(p[1],) + ((a, b) if a <= b else (b, a))].append(p)
    return out


def test_nostart_drops_the_first_packets_of_every_tcp_connection(tmp_path):
    a, b = _flows(packets(MSE)), _flows(rewrite(tmp_path, "nostart=3"))
    for k, pk in a.items():
        if k[0] == 6:
            assert [p[7] for p in b.get(k, [])] == [p[7] for p in pk[3:]]
        else:
            assert len(b[k]) == len(pk)


def test_oneside_keeps_only_the_originators_packets(tmp_path):
    for k, pk in _flows(rewrite(tmp_path, "oneside")).items():
        assert len({(p[2], p[3]) for p in pk}) == 1, k


def test_vlan_tags_every_frame_and_the_reader_sees_through_them(tmp_path):
    dst = tmp_path / "v.pcap"
    perturb_pcap(MSE, dst, "vlan=42")
    assert all(f[12:14] == b"\x81\x00" and f[14:16] == b"\x00\x2a" for _, f in read_frames(dst))
    assert [p[1:] for p in packets(dst)] == [p[1:] for p in packets(MSE)]


def test_ipv6_maps_every_address_the_way_the_ground_truth_does(tmp_path):
    b = rewrite(tmp_path, "ipv6", LSD)
    rw = Rewrite(parse_spec("ipv6"))
    a = packets(LSD)
    assert len(a) == len(b) and all(len(p[2]) == 16 for p in b)
    for x, y in zip(a, b):
        for i in (2, 4):
            assert str(ipaddress.ip_address(y[i])) == rw.address(str(ipaddress.ip_address(x[i])))
        assert (x[1], x[3], x[5], x[6], x[7], x[8]) == (y[1], y[3], y[5], y[6], y[7], y[8])
    assert rw.address("239.192.152.143") == "ff15::efc0:988f"  # the LSD group stays the LSD group
    assert v6_of(bytes([10, 77, 0, 11])) == ipaddress.IPv6Address("fd00::a4d:b").packed


def test_loss_and_retransmissions_are_seeded_and_roughly_at_their_rates(tmp_path):
    n = len(packets(MSE))
    lost = rewrite(tmp_path, "loss=0.02")
    assert lost == rewrite(tmp_path, "loss=0.02+seed=1")  # deterministic
    assert lost != rewrite(tmp_path, "loss=0.02+seed=2")
    assert 0 < n - len(lost) < 0.06 * n
    data = sum(1 for p in packets(MSE) if p[1] == 6 and p[8])
    extra = len(rewrite(tmp_path, "retrans=0.05")) - n
    assert 0 < extra < 0.15 * data


@pytest.mark.parametrize("bad", ["mss=0", "loss=2", "snaplen=3", "vlan=5000", "frobnicate", "ipv6=1", "gro=x"])
def test_a_bad_spec_names_the_bad_term(bad):
    with pytest.raises(PerturbError) as e:
        parse_spec(bad)
    assert repr(bad.split("+")[0])[1:-1] in str(e.value)


def test_msewatch_eval_rejects_a_bad_spec_in_one_line(tmp_path, capsys):
    from msewatch.evaluate import main_eval

    assert main_eval([str(MSE), "--perturb", "frobnicate"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("msewatch eval: error: perturbation 'frobnicate'") and err.count("\n") == 1
