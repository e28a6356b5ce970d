"""EVE annotation: every line once, original bytes kept, verdicts joined, rotation, restart."""
from __future__ import annotations

import io
import os
import shutil
import threading
import time
from pathlib import Path

import orjson
import pytest

from conftest import needs_suricata
from msewatch.sinks.eve_annotate import (VerdictLookup, annotate, annotate_line,
                                         follow, main_annotate)
from msewatch.sources.eve import Follower, read_lines
from suri import CORPUS, run_pcap

V = {"type": "flow", "ts": 1700000000.0, "community_id": "1:abc=", "proto": "tcp",
     "orig_h": "10.0.0.1", "orig_p": 40000, "resp_h": "10.0.0.2", "resp_p": 6881,
     "label": "p2p_likely", "protocol": "bt_mse", "probability": 0.97,
     "reasons": ["mse_handshake=1.00"], "host_score": 1.5}


def ev(**kw) -> bytes:
    base = {"timestamp": "2023-11-14T22:13:21.000000+0000", "event_type": "flow", "src_ip": "10.0.0.1",
            "src_port": 40000, "dest_ip": "10.0.0.2", "dest_port": 6881, "proto": "TCP"}
    base.update(kw)
    return orjson.dumps(base) + b"\n"


def run(lines, verdicts=(V,), **kw):
    out = io.BytesIO()
    st = annotate(lines, VerdictLookup(verdicts), out, **kw)
    return out.getvalue().splitlines(keepends=True), st


def test_annotation_is_appended_and_original_bytes_are_a_prefix():
    raw = ev(community_id="1:abc=")
    out, st = run([raw])
    assert out[0].startswith(raw[:-2]) and out[0].endswith(b"}\n")
    obj = orjson.loads(out[0])
    assert list(obj)[-1] == "msewatch"
    assert obj["msewatch"] == {"uid": None, "label": "p2p_likely", "protocol": "bt_mse", "probability": 0.97,
                               "decided_at": None, "families_own": [], "families_context": [],
                               "reasons": ["mse_handshake=1.00"], "host_score": 1.5}
    assert {k: v for k, v in obj.items() if k != "msewatch"} == orjson.loads(raw)
    assert st.annotated == 1


def test_odd_spacing_and_key_order_survive_byte_for_byte():
    raw = b'{"z": 1,  "event_type" : "flow", "src_ip":"10.0.0.1","src_port":40000,"dest_ip":"10.0.0.2",' \
          b'"dest_port":6881,"proto":"TCP","community_id":"1:abc=" }  \r\n'
    out, _ = run([raw])
    assert out[0].startswith(raw[:raw.rindex(b"}")])
    assert out[0].endswith(b"}  \r\n")
    orjson.loads(out[0])


def test_empty_object_gets_no_leading_comma():
    assert annotate_line(b"{}\n", b'{"label":"x"}') == b'{"msewatch":{"label":"x"}}\n'


def test_fallback_join_on_five_tuple_in_both_orientations():
    fwd = ev()
    rev = ev(src_ip="10.0.0.2", src_port=6881, dest_ip="10.0.0.1", dest_port=40000)
    other = ev(src_port=40001)
    out, st = run([fwd, rev, other], verdicts=[{**V, "community_id": "1:other="}])
    assert [b"msewatch" in o for o in out] == [True, True, False]
    assert st.annotated == 2


def test_five_tuple_join_respects_the_time_window():
    late = ev(timestamp="2023-11-16T22:13:21.000000+0000")  # two days after the flow started
    out, _ = run([late], verdicts=[{**V, "community_id": None}])
    assert b"msewatch" not in out[0]


def test_reused_tuple_takes_the_verdict_of_the_flow_that_started_last():
    v1 = {**V, "community_id": None, "ts": 1700000000.0, "label": "normal_likely"}
    v2 = {**V, "community_id": None, "ts": 1700000100.0, "label": "p2p_likely"}
    e1 = ev(timestamp="2023-11-14T22:13:30.000000+0000")
    e2 = ev(timestamp="2023-11-14T22:15:30.000000+0000")
    out, _ = run([e1, e2], verdicts=[v1, v2])
    assert orjson.loads(out[0])["msewatch"]["label"] == "normal_likely"
    assert orjson.loads(out[1])["msewatch"]["label"] == "p2p_likely"


def test_malformed_and_non_object_lines_pass_through_and_are_counted():
    lines = [b"not json at all\n", b"[1,2,3]\n", b'{"truncated": \n', b"\n", ev(community_id="1:abc=")]
    out, st = run(lines)
    assert out[:4] == lines[:4]
    assert st.not_json == 3 and st.not_object == 1 and st.annotated == 1
    assert st.lines_in == st.lines_out == 5


def test_already_annotated_line_is_left_alone():
    once, _ = run([ev(community_id="1:abc=")])
    twice, st = run(once)
    assert twice == once and st.already_annotated == 1


def test_waiting_line_gets_verdict_that_arrives_later_and_order_is_kept():
    clock = [0.0]
    lookup = VerdictLookup()
    out = io.BytesIO()
    from msewatch.sinks.eve_annotate import Annotator
    a = Annotator(lookup, out, max_wait=5.0, clock=lambda: clock[0])
    a.feed(ev(community_id="1:abc="))
    a.feed(b'{"event_type":"stats"}\n')  # no flow: ready, but must not overtake
    assert out.getvalue() == b""
    clock[0] = 1.0
    lookup.add(V)
    a.tick()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and b"msewatch" in lines[0] and lines[1] == b'{"event_type":"stats"}'
    assert a.stats.waited == 1 and a.stats.timed_out == 0


def test_wait_is_bounded_in_time_and_in_lines():
    clock = [0.0]
    from msewatch.sinks.eve_annotate import Annotator
    out = io.BytesIO()
    a = Annotator(VerdictLookup(), out, max_wait=2.0, max_pending=3, clock=lambda: clock[0])
    for i in range(3):
        a.feed(ev(src_port=1000 + i))
    assert out.getvalue() == b""
    a.feed(ev(src_port=2000))  # the 4th pushes the oldest out
    assert len(out.getvalue().splitlines()) == 1
    clock[0] = 2.5
    a.tick()
    assert len(out.getvalue().splitlines()) == 4 and a.stats.timed_out == 4


# -- with real Suricata output ---------------------------------------------------------------
MSE_PCAP = CORPUS / "mse_rc4_transmission_libtorrent.pcap"


@pytest.fixture(scope="module")
def real_eve(tmp_path_factory):
    pytest.importorskip("msewatch.engine")
    if not MSE_PCAP.exists():
        pytest.skip(f"corpus pcap {MSE_PCAP.name} is not there yet")
    from suri import SURICATA
    if SURICATA is None:
        pytest.skip("suricata not installed")
    d = tmp_path_factory.mktemp("eve")
    run_pcap(MSE_PCAP, d, extra={"outputs.1.eve-log.types": "[alert, flow, anomaly]"})
    from msewatch.sinks.eve_annotate import verdicts_from_pcaps
    return d / "eve.json", verdicts_from_pcaps([str(MSE_PCAP)])


@needs_suricata
def test_real_eve_every_line_once_prefix_kept_and_mse_flow_annotated(real_eve, tmp_path):
    eve, verdicts = real_eve
    src = eve.read_bytes().splitlines(keepends=True)
    bad = b"this line is not json {\n"
    src = src[:1] + [bad] + src[1:]
    out = io.BytesIO()
    st = annotate(iter(src), VerdictLookup(verdicts), out)
    got = out.getvalue().splitlines(keepends=True)
    assert len(got) == len(src) and st.lines_out == len(src)
    for a, b in zip(src, got):
        if a == bad:
            assert b == a
        else:
            cut = a.rstrip()[:-1]
            assert b.startswith(cut)
            assert b == a or b[len(cut):len(cut) + 12] == b',"msewatch":'
    assert st.not_json == 1
    annotated = [orjson.loads(x) for x in got if b'"msewatch"' in x]
    assert annotated, "no event of the MSE flow was annotated"
    assert any(e["msewatch"]["protocol"] == "bt_mse" for e in annotated)
    assert all("community_id" in e for e in annotated)


@needs_suricata
def test_main_annotate_cli_with_verdicts_file(real_eve, tmp_path, capsys):
    eve, verdicts = real_eve
    vf = tmp_path / "verdicts.jsonl"
    vf.write_bytes(b"".join(orjson.dumps(v) + b"\n" for v in verdicts))
    out = tmp_path / "out.json"
    assert main_annotate([str(eve), "--verdicts", str(vf), "--out", str(out), "--stats"]) == 0
    assert len(out.read_bytes().splitlines()) == len(eve.read_bytes().splitlines())
    assert b'"msewatch"' in out.read_bytes()


# -- follow mode -----------------------------------------------------------------------------
def _lines(n: int, start: int = 0) -> list[bytes]:
    return [ev(community_id="1:abc=" if i % 3 == 0 else f"1:n{i}=", flow_id=i) for i in range(start, start + n)]


def _writer(path: Path, lines: list[bytes], rotate=None, every=0.001):
    def run():
        f = open(path, "ab")
        for i, line in enumerate(lines):
            f.write(line)
            f.flush()
            if rotate and i in rotate:
                f = rotate[i](f)
            time.sleep(every)
        f.close()
    t = threading.Thread(target=run)
    t.start()
    return t


def _follow_until(eve: Path, out: Path, n_expected: int, ck: Path | None = None, timeout=20.0, **kw):
    deadline = time.monotonic() + timeout

    def stop():
        return time.monotonic() > deadline or (out.exists() and out.read_bytes().count(b"\n") >= n_expected)
    # only the community_id can match: the 5-tuple of these synthetic lines is not the verdict's
    return follow(eve, out, VerdictLookup([{**V, "orig_p": 1, "resp_p": 2}]), checkpoint=ck, max_wait=0.0, poll_interval=0.02,
                  checkpoint_every=7, stop=stop, **kw)


def _ids(out: Path) -> list[int]:
    return [orjson.loads(x)["flow_id"] for x in out.read_bytes().splitlines()]


def test_follow_survives_rename_and_create(tmp_path):
    eve, out = tmp_path / "eve.json", tmp_path / "out.json"
    lines = _lines(300)

    def rename(f):
        f.close()
        os.rename(eve, tmp_path / "eve.json.1")
        return open(eve, "ab")
    eve.touch()
    t = _writer(eve, lines, rotate={99: rename, 199: lambda f: (f.close(), os.rename(eve, tmp_path / "eve.json.2"), open(eve, "ab"))[2]})
    _follow_until(eve, out, 300)
    t.join()
    assert _ids(out) == list(range(300))


def test_follow_survives_copytruncate(tmp_path):
    eve, out = tmp_path / "eve.json", tmp_path / "out.json"
    lines = _lines(300)

    def copytruncate(f):
        shutil.copyfile(eve, tmp_path / "eve.json.1")
        f.truncate(0)
        f.seek(0)
        return f
    eve.touch()
    t = _writer(eve, lines, rotate={149: copytruncate})
    _follow_until(eve, out, 300)
    t.join()
    assert _ids(out) == list(range(300))


def test_restart_from_checkpoint_loses_nothing_and_duplicates_nothing(tmp_path):
    eve, out, ck = tmp_path / "eve.json", tmp_path / "out.json", tmp_path / "ck.json"
    eve.write_bytes(b"".join(_lines(100)))
    _follow_until(eve, out, 100, ck)
    # simulate a crash after output was written past the last checkpoint: junk at the end
    with open(out, "ab") as f:
        f.write(ev(flow_id=99))
    with open(eve, "ab") as f:
        f.write(b"".join(_lines(50, 100)))
    os.rename(eve, tmp_path / "eve.json.1")  # rotated while we were down
    eve.write_bytes(b"".join(_lines(50, 150)))
    _follow_until(eve, out, 200, ck)
    assert _ids(out) == list(range(200))
    assert sum(b'"msewatch"' in x for x in out.read_bytes().splitlines()) == len([i for i in range(200) if i % 3 == 0])


def test_follower_checkpoint_resumes_mid_file(tmp_path):
    eve, ck = tmp_path / "eve.json", tmp_path / "ck.json"
    eve.write_bytes(b"".join(_lines(10)))
    f = Follower(eve, ck, poll_interval=0)
    it = f.lines(stop=lambda: True)
    got = [next(it) for _ in range(4)]
    f.commit(4)
    f.close()
    f2 = Follower(eve, ck, poll_interval=0)
    rest = [x for x in f2.lines(stop=lambda: True) if x is not None]
    assert got + rest == list(read_lines(eve))
