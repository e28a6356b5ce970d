"""All captures through one engine (msewatch/timeline.py): rebased, 5-tuples kept apart,
shared hosts rewritten, verdicts mapped back to the capture and 5-tuple they came from."""

from __future__ import annotations

import ipaddress
import shutil
from pathlib import Path

import pytest

from msewatch import evaluate as ev
from msewatch.sources.pcap import ReadStats, iter_packets
from msewatch.timeline import STAGGER, plan_timeline, run_timeline, shared_host_maps

CORPUS = Path(__file__).parent / "data" / "corpus"
MSE = CORPUS / "mse_rc4_libtorrent_transmission.pcap"

pytestmark = pytest.mark.skipif(not MSE.is_file(), reason="no corpus")


def test_captures_start_together_and_clashing_flows_move_to_free_ports():
    pkts = list(iter_packets(str(MSE), ReadStats()))
    plans = plan_timeline([pkts, pkts], ["a.pcap", "b.pcap"])
    assert plans[0].offset == 0.0 and plans[1].offset == pytest.approx(STAGGER)
    assert plans[0].ports == {} and plans[1].ports  # the copy clashes everywhere
    keys = []
    for plan in plans:
        seen = set()
        for p in pkts:
            a, b = plan.endpoint(p[2], p[3]), plan.endpoint(p[4], p[5])
            seen.add((p[1],) + ((a, b) if a <= b else (b, a)))
        keys.append(seen)
    assert not keys[0] & keys[1]
    # moves are per endpoint, so a capture stays consistent: a listening endpoint keeps
    # one timeline port for all its flows
    assert all(port >= 20000 for port in plans[1].ports.values())


def test_a_capture_twice_in_one_timeline_gets_the_verdicts_of_each_copy_mapped_back(tmp_path):
    copy = tmp_path / "copy.pcap"
    shutil.copy(MSE, copy)
    labels = ev.load_labels(CORPUS / "labels.csv")
    mine = [r for r in labels if r.pcap == MSE.name]
    labels = mine + [ev.LabelRow(copy.name, *[getattr(r, f) for f in ev.LABEL_COLUMNS[1:]]) for r in mine]
    res = run_timeline([MSE, copy], labels, [])
    by_pcap = {MSE.name: set(), copy.name: set()}
    for f in res.flows:
        by_pcap[f.pcap].add((f.key, f.label))
    assert by_pcap[MSE.name] and {k for k, _ in by_pcap[MSE.name]} == {k for k, _ in by_pcap[copy.name]}
    rep = ev.evaluate(res.flows, labels)
    assert not rep.unlabeled and not rep.unseen_labels  # every verdict found its row
    assert rep.classes["bt_mse"].recall == 1.0


def test_shared_host_maps_put_the_p2p_hosts_on_the_normal_captures():
    labels = ev.load_labels(CORPUS / "labels.csv")
    roles = ev.load_hosts(CORPUS / "hosts.csv")
    peers = {r.orig_h for r in labels if r.protocol == "bt_mse"} | {r.resp_h for r in labels if r.protocol == "bt_mse"}
    normal = {r.pcap for r in labels} - {r.pcap for r in labels if r.label == "p2p"}
    client = shared_host_maps(labels, roles, "client")
    both = shared_host_maps(labels, roles, "both")
    assert set(client) == set(both) == normal
    for pcap in normal:
        rows = [r for r in labels if r.pcap == pcap]
        clients = {r.orig_h for r in rows} - {r.resp_h for r in rows}
        assert set(client[pcap]) == clients
        assert set(client[pcap].values()) <= peers
        assert len(set(both[pcap].values())) == len(both[pcap])  # one host per address
        assert set(both[pcap]) == {r.orig_h for r in rows} | {r.resp_h for r in rows}
    # in "both", the server a client reaches is one of that client's MSE peers
    ss = both["shadowsocks.pcap"]
    a, b = ss["10.77.0.11"], ss["10.77.0.12"]
    assert any({r.orig_h, r.resp_h} == {a, b} for r in labels if r.protocol == "bt_mse")


def test_shared_host_roles_merge_into_the_timeline():
    labels = ev.load_labels(CORPUS / "labels.csv")
    roles = ev.load_hosts(CORPUS / "hosts.csv")
    pcaps = [CORPUS / "tls12_bulk.pcap", MSE]
    res = run_timeline(pcaps, labels, roles, shared="client")
    merged = {h.host: h.role for h in res.roles}
    subset = [r for r in labels if r.pcap in {p.name for p in pcaps}]
    client = shared_host_maps(subset, roles, "client")["tls12_bulk.pcap"]["10.77.0.11"]
    assert merged[client] == "p2p_host"
    assert all(ipaddress.ip_address(h) for h in merged)
