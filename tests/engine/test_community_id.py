"""Our Community ID must equal the reference implementation (the `communityid` package)."""

import random
import socket

import communityid
import pytest

from msewatch.community_id import community_id_v1


@pytest.mark.parametrize("proto", [6, 17])
@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_community_id_matches_reference_on_random_tuples(proto, family):
    rng = random.Random(proto * 100 + family)
    ref = communityid.CommunityID()
    n = 4 if family == socket.AF_INET else 16
    for _ in range(200):
        a, b = rng.randbytes(n), rng.randbytes(n)
        pa, pb = rng.randrange(65536), rng.randrange(65536)
        sa, sb = socket.inet_ntop(family, a), socket.inet_ntop(family, b)
        make = communityid.FlowTuple.make_tcp if proto == 6 else communityid.FlowTuple.make_udp
        assert community_id_v1(proto, a, pa, b, pb) == ref.calc(make(sa, sb, pa, pb))
        # both directions of a flow hash alike
        assert community_id_v1(proto, b, pb, a, pa) == community_id_v1(proto, a, pa, b, pb)


def test_community_id_spec_example():
    # Example from the Community ID spec README (corelight/community-id-spec):
    # 128.232.110.120:34855 -> 66.35.250.204:80 TCP -> 1:LQU9qZlK+B5F3KDmev6m5PMibrg=
    got = community_id_v1(6, socket.inet_aton("128.232.110.120"), 34855, socket.inet_aton("66.35.250.204"), 80)
    assert got == "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
