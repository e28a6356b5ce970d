from detect_builders import RFC8448_CLIENT_HELLO, evidence, features, rand, reason

from msewatch.detect.params import DetectParams
from msewatch.detect.randomness import (
    fully_encrypted_first_packet,
    non_p2p_start,
    popcount_per_byte,
    random_verdict,
)
from msewatch.evidence import FAMILY_NEGATIVE, FAMILY_RANDOM

P = DetectParams()


def test_popcount_is_bits_per_byte():
    assert popcount_per_byte(b"\x00" * 10) == 0.0
    assert popcount_per_byte(b"\xff" * 10) == 8.0
    assert popcount_per_byte(b"\x0f\xf0") == 4.0


def test_uniform_random_bytes_pass_every_exemption():
    v = random_verdict(rand(300), P)
    assert v.random and v.exemption is None
    assert 3.4 < v.popcount < 4.6


def test_ex1_low_popcount_exempts_zero_heavy_payload():
    data = bytes([0x80, 0x01] * 50)  # popcount 1.0
    assert random_verdict(data, P).exemption == "ex1_popcount"


def test_ex2_six_printable_bytes_at_start_exempt():
    assert random_verdict(b"ABCDEF" + rand(200), P).exemption == "ex2_printable_prefix"
    # five are not enough
    assert random_verdict(b"\x01BCDE" + rand(200), P).random


def test_ex3_mostly_printable_payload_is_exempt():
    # 5 printable then 1 high byte: no 6-byte prefix, no 21-byte run, but 83% printable
    data = b"".join(b"\xe7" + b"oAak0" for _ in range(30))
    v = random_verdict(data, P)
    assert v.exemption == "ex3_printable_share", v


def test_ex4_long_printable_run_is_exempt():
    data = b"\x9f" + b"q" * 21 + rand(200)
    assert random_verdict(data, P).exemption == "ex4_printable_run"
    # a run of exactly 20 is still allowed ("more than 20")
    assert random_verdict(b"\x9f" + b"q" * 20 + rand(200), P).random


def test_ex5_tls_record_is_exempt_even_though_mostly_random():
    assert random_verdict(RFC8448_CLIENT_HELLO, P).exemption == "ex5_fingerprint"


def test_short_heads_are_never_called_random():
    assert random_verdict(rand(10), P).exemption == "too_short"


def test_fully_encrypted_fires_on_random_first_client_payload():
    ev = evidence([("o", rand(300)), ("r", rand(200, seed=2))])
    (o,) = fully_encrypted_first_packet(ev, P)
    assert o.feature == "fully_encrypted" and o.family == FAMILY_RANDOM
    assert o.protocol is None  # Shadowsocks/obfs4 trip it too: not a BT claim
    assert o.value == 1.0
    assert reason(o, "resp_random") == "1"
    assert float(reason(o, "popcount")) > 3.4


def test_fully_encrypted_is_halved_when_the_tcp_start_was_not_seen():
    ev = evidence([("o", rand(300))], handshake=False)
    (o,) = fully_encrypted_first_packet(ev, P)
    assert o.value == 0.5 and reason(o, "start_seen") == "0"


def test_fully_encrypted_ignores_udp():
    ev = evidence([("o", rand(300))], proto="udp")
    assert fully_encrypted_first_packet(ev, P) == []


def test_fully_encrypted_skips_printable_prefix_random_payload():
    ev = evidence([("o", b"GETX / " + rand(300))])
    assert fully_encrypted_first_packet(ev, P) == []


def test_tls_client_hello_is_tls_like_negative_evidence():
    ev = evidence([("o", RFC8448_CLIENT_HELLO), ("r", b"\x16\x03\x03\x00\x5a" + rand(90))])
    f = features(non_p2p_start(ev, P))
    assert set(f) == {"tls_like"}
    assert f["tls_like"].family == FAMILY_NEGATIVE and f["tls_like"].protocol == "tls"
    assert reason(f["tls_like"], "first_bytes") == "160301"
    assert fully_encrypted_first_packet(ev, P) == []


def test_ssh_banner_is_ssh_like_from_either_side():
    banner = b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"
    ev = evidence([("r", banner), ("o", b"SSH-2.0-PuTTY_Release_0.78\r\n")])
    f = features(non_p2p_start(ev, P))
    assert set(f) == {"ssh_like"}
    server_only = evidence([("r", banner)])
    assert reason(features(non_p2p_start(server_only, P))["ssh_like"], "dir") == "resp"


def test_http_get_and_response_are_http_like():
    ev = evidence([
        ("o", b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n"),
        ("r", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ])
    (o,) = non_p2p_start(ev, P)
    assert o.feature == "http_like" and reason(o, "start") == "http_request"


def test_http_tracker_announce_is_not_counted_as_http_like():
    ev = evidence([("o", b"GET /announce?info_hash=%12%34&peer_id=-TR3000-abc HTTP/1.1\r\n\r\n")])
    assert non_p2p_start(ev, P) == []


def test_random_payload_gives_no_negative_evidence():
    assert non_p2p_start(evidence([("o", rand(300))]), P) == []
