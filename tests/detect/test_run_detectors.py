import dataclasses
import struct

import pytest
from detect_builders import RFC8448_CLIENT_HELLO, evidence, mse_packets, rand, udp

from msewatch.detect import DETECTORS, FEATURES, DetectParams, run_detectors
from msewatch.evidence import FAMILY_NEGATIVE, OTHER_PROTOCOLS, PROTOCOLS

P = DetectParams()

# one specimen per protocol, built from the specs (see the per-detector tests for detail)
PING_Q = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"
PING_R = b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re"
CONNECT = struct.pack(">QII", 0x41727101980, 0, 7)
ANNOUNCE_GET = b"GET /announce?info_hash=%aa%bb&peer_id=-lt0D80-abcdefghijkl&port=6881 HTTP/1.1\r\n\r\n"
SYN = struct.pack(">BBHIIIHH", 0x41, 0, 0x1234, 99, 0, 0, 1, 0)
STATE = struct.pack(">BBHIIIHH", 0x21, 0, 0x1234, 199, 50, 65536, 500, 1)
DATA = struct.pack(">BBHIIIHH", 0x01, 0, 0x1235, 299, 60, 65536, 2, 500)

FLOWS = {
    "mse": evidence(mse_packets()),
    "tls": evidence([("o", RFC8448_CLIENT_HELLO), ("r", b"\x16\x03\x03\x00\x5a" + rand(90))]),
    "ssh": evidence([("r", b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"), ("o", b"SSH-2.0-OpenSSH_9.6\r\n")]),
    "http": evidence([("o", b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")]),
    "http_tracker": evidence([("o", ANNOUNCE_GET)]),
    "shadowsocks": evidence([("o", rand(300)), ("r", rand(1400, seed=2)), ("r", rand(1400, seed=3))]),
    "bt_plain": evidence([("o", b"\x13BitTorrent protocol" + bytes(8) + rand(20) + b"-TR3000-" + b"1" * 12)]),
    "dht": udp([("o", PING_Q), ("r", PING_R)]),
    "udp_tracker": udp([("o", CONNECT)]),
    "utp": udp([("o", SYN), ("r", STATE), ("o", DATA + rand(300))]),
}

EXPECTED = {
    "mse": {"fully_encrypted", "mse_handshake"},
    "tls": {"tls_like"},
    "ssh": {"ssh_like"},
    "http": {"http_like"},
    "http_tracker": {"http_tracker"},
    # look-like-nothing proxies trip the randomness family only, never the MSE shape
    "shadowsocks": {"fully_encrypted"},
    "bt_plain": {"bt_handshake"},
    "dht": {"dht_krpc"},
    "udp_tracker": {"udp_tracker"},
    "utp": {"utp_header", "utp_coherent"},
}


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_each_flow_gets_exactly_its_expected_features(name):
    got = {o.feature for o in run_detectors(FLOWS[name], P)}
    assert got == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_observations_are_well_formed(name):
    for o in run_detectors(FLOWS[name], P):
        assert 0.0 <= o.value <= 1.0
        assert o.feature in FEATURES
        if o.family == FAMILY_NEGATIVE:
            assert o.protocol in OTHER_PROTOCOLS  # the protocol recognised instead
        else:
            assert o.protocol is None or o.protocol in PROTOCOLS
        assert all(isinstance(r, str) and "=" in r for r in o.reasons)


def test_detectors_are_pure_and_deterministic():
    ev = FLOWS["mse"]
    before = dataclasses.replace(ev)
    assert run_detectors(ev, P) == run_detectors(ev, P)
    assert ev == before


def test_udp_flows_never_run_tcp_detectors_and_vice_versa():
    tcp_only = {f for d in DETECTORS if "udp" not in d.protos for f in d.features}
    udp_only = {f for d in DETECTORS if "tcp" not in d.protos for f in d.features}
    for name in ("dht", "udp_tracker", "utp"):
        assert not {o.feature for o in run_detectors(FLOWS[name], P)} & tcp_only
    for name in ("mse", "tls", "bt_plain"):
        assert not {o.feature for o in run_detectors(FLOWS[name], P)} & udp_only


def test_empty_evidence_yields_nothing():
    assert run_detectors(evidence([]), P) == []
    assert run_detectors(udp([]), P) == []


def test_detector_names_are_unique_and_features_listed_once():
    names = [d.name for d in DETECTORS]
    assert len(names) == len(set(names))
    assert len(FEATURES) == len(set(FEATURES))


def test_params_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        P.popcount_low = 1.0  # type: ignore[misc]
