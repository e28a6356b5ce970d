from detect_builders import evidence, reason, udp

from msewatch.detect.lsd import lsd
from msewatch.detect.params import DetectParams
from msewatch.evidence import FAMILY_PLAINTEXT

P = DetectParams()
IH = "d2474e86c95b19b8bcfdb92bc12c9d44667cfa36"


def bt_search(host: str) -> bytes:
    """BEP 14 announce."""
    return (f"BT-SEARCH * HTTP/1.1\r\nHost: {host}\r\nPort: 51413\r\nInfohash: {IH}\r\n"
            f"cookie: abc123\r\n\r\n\r\n").encode()


def test_bt_search_to_ipv4_group_is_lsd():
    ev = udp([("o", bt_search("239.192.152.143:6771"))], resp=("239.192.152.143", 6771))
    (o,) = lsd(ev, P)
    assert o.feature == "lsd" and o.protocol == "lsd" and o.family == FAMILY_PLAINTEXT
    assert o.value == 1.0 and reason(o, "dst") == "lsd_group" and reason(o, "infohash") == IH


def test_bt_search_to_ipv6_group_is_lsd():
    ev = udp([("o", bt_search("[ff15::efc0:988f]:6771"))],
             orig=("fe80::1", 6771), resp=("FF15:0:0:0:0:0:EFC0:988F", 6771))
    (o,) = lsd(ev, P)
    assert reason(o, "dst") == "lsd_group"


def test_bt_search_elsewhere_is_weaker():
    ev = udp([("o", bt_search("192.0.2.1:6771"))], resp=("192.0.2.1", 6771))
    (o,) = lsd(ev, P)
    assert o.value == P.lsd_unicast_value < 1.0 and reason(o, "dst") == "other"


def test_ssdp_m_search_to_multicast_is_not_lsd():
    ssdp = b"M-SEARCH * HTTP/1.1\r\nHost: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n\r\n"
    assert lsd(udp([("o", ssdp)], resp=("239.255.255.250", 1900)), P) == []


def test_bt_search_without_infohash_is_not_lsd():
    msg = b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 1\r\n\r\n"
    assert lsd(udp([("o", msg)], resp=("239.192.152.143", 6771)), P) == []


def test_bt_search_over_tcp_is_ignored():
    assert lsd(evidence([("o", bt_search("239.192.152.143:6771"))]), P) == []
