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


# -- issue 11: type-confused lines, truncation while stopped, full disk, bad checkpoints ------
TYPE_CONFUSED = [
    b'{"community_id":["x"],"event_type":"flow"}\n',
    b'{"community_id":{"a":1},"event_type":"flow"}\n',
    b'{"event_type":"flow","src_ip":{"a":1},"src_port":40000,"dest_ip":"10.0.0.2","dest_port":6881,"proto":"TCP"}\n',
    b'{"event_type":"flow","src_ip":"10.0.0.1","src_port":40000,"dest_ip":"10.0.0.2","dest_port":6881,"proto":["TCP"]}\n',
    b'{"event_type":"flow","src_ip":"10.0.0.1","src_port":1e400,"dest_ip":"10.0.0.2","dest_port":6881,"proto":"TCP"}\n',  # not JSON to orjson
    b'{"event_type":"flow","community_id":"1:abc=","timestamp":["x"],"flow":{"start":5}}\n',
    b'{"event_type":"flow","community_id":"1:abc=","timestamp":"0001-01-01"}\n',
]


def test_type_confused_lines_pass_through_and_only_skip_the_join():
    good = ev(community_id="1:abc=")
    lines = [good] + TYPE_CONFUSED + [good]
    out, st = run(lines)
    assert st.lines_in == st.lines_out == len(lines)
    assert out[1:-1] == TYPE_CONFUSED[:5] + out[6:-1]  # unusable join fields: passed through untouched
    assert all(b'"msewatch"' in x for x in (out[0], out[-1]))
    # the two lines whose community_id is fine still join on it; the wrong-typed fields are counted
    assert [b'"msewatch"' in x for x in out[6:8]] == [True, True]
    assert st.join_skipped == 4 and st.not_json == 1


def test_type_confused_field_falls_back_to_the_usable_five_tuple():
    # community_id is a list, but the 5-tuple is fine: the line is still annotated
    raw = ev(community_id=["x"])
    out, st = run([raw], verdicts=[{**V, "community_id": "1:other="}])
    assert b'"msewatch"' in out[0] and st.join_skipped == 1


def test_type_confused_verdicts_are_skipped_and_counted():
    bad = [{**V, "ts": "abc"}, {**V, "ts": [1]}, {**V, "ts": float("nan")}, {**V, "community_id": ["x"], "orig_h": {}},
           {**V, "orig_p": "x", "community_id": 5}, "not an object", {**V, "reasons": 7, "community_id": "1:r="}]
    lookup = VerdictLookup(bad)
    assert lookup.skipped == 6 and len(lookup) == 1
    out = io.BytesIO()
    st = annotate([ev(community_id="1:r=")], lookup, out)
    assert orjson.loads(out.getvalue())["msewatch"]["reasons"] == [] and st.verdicts_skipped == 6


def test_main_annotate_survives_type_confused_eve_and_verdict_lines(tmp_path, capsys):
    eve, vf, out = tmp_path / "eve.json", tmp_path / "v.jsonl", tmp_path / "out.json"
    lines = [ev(community_id="1:abc=")] + TYPE_CONFUSED + [b"\xff\xfe not utf-8\n", ev(community_id="1:abc=")]
    eve.write_bytes(b"".join(lines))
    vf.write_bytes(b'{"type":"flow","ts":"abc","community_id":"1:zzz="}\n[1]\nnot json\n' + orjson.dumps(V) + b"\n")
    assert main_annotate([str(eve), "--verdicts", str(vf), "--out", str(out), "--stats"]) == 0
    got = out.read_bytes().splitlines(keepends=True)
    assert len(got) == len(lines) and got[1:-1] == [*lines[1:6], *got[6:8], lines[8]]
    st = orjson.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert st["verdicts_skipped"] == 3 and st["annotated"] >= 2 and st["lines_out"] == len(lines)


def test_follow_survives_type_confused_lines_across_restarts(tmp_path):
    eve, out, ck = tmp_path / "eve.json", tmp_path / "out.json", tmp_path / "ck.json"
    first = _lines(20) + TYPE_CONFUSED + _lines(20, 20)
    eve.write_bytes(b"".join(first))
    _follow_until(eve, out, len(first), ck)
    assert out.read_bytes().count(b"\n") == len(first)
    with open(eve, "ab") as f:  # the same lines again after a restart, then more
        f.write(b"".join(TYPE_CONFUSED + _lines(10, 40)))
    _follow_until(eve, out, len(first) + len(TYPE_CONFUSED) + 10, ck)
    got = out.read_bytes().splitlines(keepends=True)
    assert len(got) == len(first) + len(TYPE_CONFUSED) + 10
    assert got[20:20 + len(TYPE_CONFUSED)][:5] == TYPE_CONFUSED[:5] and got[-10:][-1].endswith(b"}\n")


def _eve_line(i: int, pad: int = 0) -> bytes:
    return ev(community_id=f"1:n{i}=", flow_id=i, pad="x" * pad)


def _follow_all(eve: Path, out: Path, ck: Path, n: int, timeout: float = 30.0):
    """Follow until out holds n lines (or the timeout: then the assertions show the loss)."""
    deadline = time.monotonic() + timeout
    return follow(eve, out, VerdictLookup(), checkpoint=ck, max_wait=0.0, poll_interval=0.02,
                  checkpoint_every=50, stop=lambda: time.monotonic() > deadline or out.read_bytes().count(b"\n") >= n)


def _copytruncate(eve: Path, copy: Path) -> None:
    shutil.copyfile(eve, copy)
    with open(eve, "r+b") as f:
        f.truncate(0)


def test_copytruncate_while_stopped_is_detected_by_the_tail_and_loses_nothing(tmp_path):
    """Issue 11 item 3's reproducer: 400 lines followed, stopped, copytruncate, 400 longer
    lines written; the restart used to resume at the old offset in the middle of a new line
    (401 of 800 lines out, one of them a fragment)."""
    eve, out, ck = tmp_path / "eve.json", tmp_path / "out.json", tmp_path / "ck.json"
    eve.write_bytes(b"".join(_eve_line(i) for i in range(300)))
    _follow_all(eve, out, ck, 300)
    with open(eve, "ab") as f:  # 100 more while annotate is stopped: only in the copy after the rotation
        f.write(b"".join(_eve_line(i) for i in range(300, 400)))
    _copytruncate(eve, tmp_path / "eve.json.1")
    with open(eve, "ab") as f:  # longer lines: the old offset falls inside one
        f.write(b"".join(_eve_line(i, pad=7) for i in range(400, 800)))
    assert eve.stat().st_size > Checkpoint_offset(ck)
    st = _follow_all(eve, out, ck, 800)
    assert _ids(out) == list(range(800))
    assert st.follow["restarts_tail_mismatch"] == 1 and st.follow["recovered_from_copy"] == 1
    assert st.follow["restarts_lost"] == 0


def Checkpoint_offset(ck: Path) -> int:
    return orjson.loads(ck.read_bytes())["offset"]


def test_copytruncate_while_stopped_without_the_copy_says_so_and_never_resumes_mid_line(tmp_path, caplog):
    eve, out, ck = tmp_path / "eve.json", tmp_path / "out.json", tmp_path / "ck.json"
    eve.write_bytes(b"".join(_eve_line(i) for i in range(300)))
    _follow_all(eve, out, ck, 300)
    with open(eve, "ab") as f:
        f.write(b"".join(_eve_line(i) for i in range(300, 310)))  # these 10 go with the copy
    _copytruncate(eve, tmp_path / "eve.json.1")
    (tmp_path / "eve.json.1").unlink()  # compressed or removed before we came back
    with open(eve, "ab") as f:
        f.write(b"".join(_eve_line(i, pad=7) for i in range(400, 800)))
    with caplog.at_level("WARNING", logger="msewatch.annotate"):
        st = _follow_all(eve, out, ck, 700)
    assert _ids(out) == list(range(300)) + list(range(400, 800))  # every line whole, nothing twice
    assert st.follow["restarts_lost"] == 1
    assert any("truncated while stopped" in r.getMessage() and "not recoverable" in r.getMessage()
               for r in caplog.records)


def test_rotated_file_whose_tail_does_not_match_is_not_read_mid_line(tmp_path):
    eve, out, ck = tmp_path / "eve.json", tmp_path / "out.json", tmp_path / "ck.json"
    eve.write_bytes(b"".join(_eve_line(i) for i in range(100)))
    _follow_all(eve, out, ck, 100)
    rotated = tmp_path / "eve.json.1"
    os.rename(eve, rotated)
    with open(rotated, "r+b") as f:  # rewritten in place (same inode): the offset no longer ends a line
        f.seek(0)
        f.write(b"".join(_eve_line(i, pad=3) for i in range(1000, 1100)))
    eve.write_bytes(b"".join(_eve_line(i) for i in range(100, 150)))
    st = _follow_all(eve, out, ck, 150)
    assert _ids(out) == list(range(150))
    assert st.follow["restarts_tail_mismatch"] == 1


@pytest.mark.parametrize("content, problem", [
    (b'{"path": "x", "inode": 1, "offset": -5, "lines": 0}', "offset: expected a non-negative integer"),
    (b'{"path": "x", "inode": "1", "offset": 0, "lines": 0}', "inode: expected a non-negative integer"),
    (b'{"path": "x", "inode": 1, "offset": 0, "lines": true}', "lines: expected a non-negative integer"),
    (b'{"path": 5, "inode": 1, "offset": 0, "lines": 0}', "path: expected a string"),
    (b'{"path": "x", "inode": 1, "offset": 0}', "missing key"),
    (b'{"path": "x", "inode": 1, "offset": 0, "lines": 0, "bogus": 1}', "unknown key"),
    (b'{"path": "x", "inode": 1, "offset": 0, "lines": 0, "tail": "zz"}', "tail: not hex"),
    (b'[1, 2]', "expected a JSON object"),
    (b'\xff\xfe{', "not JSON"),
    (b'{"path": "x", "inode": 1, "offs', "not JSON"),
])
def test_corrupt_checkpoint_is_one_line_error_exit_2(tmp_path, capsys, content, problem):
    eve, out, ck = tmp_path / "eve.json", tmp_path / "out.json", tmp_path / "ck.json"
    eve.write_bytes(b"".join(_lines(3)))
    ck.write_bytes(content)
    assert main_annotate([str(eve), "--verdicts", str(tmp_path / "v.jsonl"), "--follow", "--out", str(out),
                          "--checkpoint", str(ck)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"msewatch annotate: error: checkpoint {ck}") and problem in err[0]
    assert "delete it" in err[0]


def test_checkpoint_temporary_file_never_follows_a_planted_symlink(tmp_path):
    from msewatch.sources.eve import Checkpoint

    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    ck = tmp_path / "ck.json"
    (tmp_path / "ck.json.tmp").symlink_to(victim)
    Checkpoint("eve.json", 1, 10, 1, 10, "0a").save(ck)
    assert victim.read_bytes() == b"precious\n"
    assert Checkpoint.load(ck) == Checkpoint("eve.json", 1, 10, 1, 10, "0a")
    assert not (tmp_path / "ck.json.tmp").exists() and not (tmp_path / "ck.json.tmp").is_symlink()
    # a stale regular temporary file from a crash is replaced too
    (tmp_path / "ck.json.tmp").write_bytes(b"stale")
    Checkpoint("eve.json", 1, 20, 2, 20, "0a").save(ck)
    assert Checkpoint.load(ck).offset == 20


def _failing_raw_output(monkeypatch, budget: list[int]):
    """Make the annotate output behave like a disk with budget[0] bytes left (ENOSPC after)."""
    import errno

    from msewatch.sources import eve as eve_mod

    real = eve_mod._RawOutput.write

    def write(self, b):
        if budget[0] <= 0:
            try:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError as e:
                raise eve_mod.OutputError(f"cannot write {self.name}: {e.strerror}") from None
        n = min(len(b), budget[0])
        budget[0] -= n
        return real(self, bytes(b[:n]))
    monkeypatch.setattr(eve_mod._RawOutput, "write", write)


def test_full_disk_in_follow_is_one_line_error_and_a_restart_loses_nothing(tmp_path, monkeypatch, capsys):
    eve, out, ck = tmp_path / "eve.json", tmp_path / "out.json", tmp_path / "ck.json"
    eve.write_bytes(b"".join(_lines(5000)))
    line = len(_lines(1)[0])
    budget = [2500 * line]  # 2,500 lines fit (two checkpoints of 1,000), then the disk is full
    _failing_raw_output(monkeypatch, budget)
    args = [str(eve), "--verdicts", str(tmp_path / "none.jsonl"), "--follow", "--out", str(out), "--checkpoint", str(ck),
            "--max-wait", "0"]
    assert main_annotate(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"msewatch annotate: error: cannot write {out}: No space left on device; the input is untouched; "
                   "a restart resumes at the last checkpoint"]
    assert orjson.loads(ck.read_bytes())["lines"] == 2000
    monkeypatch.undo()  # space again: the restart truncates to the checkpoint and goes on
    _follow_until(eve, out, 5000, ck)
    assert _ids(out) == list(range(5000))


def test_full_disk_without_follow_is_one_line_error(tmp_path, monkeypatch, capsys):
    eve, out, vf = tmp_path / "eve.json", tmp_path / "out.json", tmp_path / "v.jsonl"
    eve.write_bytes(b"".join(_lines(2000)))
    vf.write_bytes(orjson.dumps(V) + b"\n")
    _failing_raw_output(monkeypatch, [50_000])
    assert main_annotate([str(eve), "--verdicts", str(vf), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"msewatch annotate: error: cannot write {out}: No space left on device; the input is untouched"]
    assert eve.read_bytes() == b"".join(_lines(2000))


def test_full_disk_on_a_real_tmpfs(tmp_path, capsys):
    """The same on a real 512 KiB tmpfs (root only: mount)."""
    import subprocess

    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        eve, out, ck = tmp_path / "eve.json", mnt / "out.json", mnt / "ck.json"
        eve.write_bytes(b"".join(_lines(3000)))
        args = [str(eve), "--verdicts", str(tmp_path / "none.jsonl"), "--follow", "--out", str(out),
                "--checkpoint", str(ck), "--max-wait", "0"]
        assert main_annotate(args) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "No space left on device" in err[0]
        done = orjson.loads(ck.read_bytes())["lines"]
        assert done >= 1000
        whole = out.read_bytes().splitlines()[:done]  # everything up to the checkpoint is whole
        assert [orjson.loads(x)["flow_id"] for x in whole] == list(range(done))
        # make room elsewhere: move the output to the big disk and go on from the checkpoint
        big_out, big_ck = tmp_path / "out.json", tmp_path / "ck.json"
        shutil.copyfile(out, big_out)
        shutil.copyfile(ck, big_ck)
        _follow_until(eve, big_out, 3000, big_ck)
        assert _ids(big_out) == list(range(3000))
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def _wait_for(cond, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_kill_9_of_follow_loses_and_duplicates_nothing(tmp_path):
    """Three kill -9 of a real `msewatch annotate --follow` process in the middle of a burst of
    EVE lines; the output holds every input line exactly once afterwards (docs/failure-modes.md)."""
    import signal
    import subprocess
    import sys

    eve, out, ck, vf = tmp_path / "eve.json", tmp_path / "out.json", tmp_path / "ck.json", tmp_path / "v.jsonl"
    vf.write_bytes(orjson.dumps(V) + b"\n")
    cmd = [sys.executable, "-m", "msewatch", "annotate", str(eve), "--verdicts", str(vf), "--follow",
           "--out", str(out), "--checkpoint", str(ck), "--max-wait", "0"]
    eve.touch()
    n_out = lambda: out.read_bytes().count(b"\n") if out.exists() else 0  # noqa: E731
    written, uncommitted = 0, []
    for _ in range(3):
        start = n_out()
        with open(eve, "ab") as f:
            f.write(b"".join(_lines(10_000, written)))
        written += 10_000
        proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        try:
            _wait_for(lambda: n_out() >= start + 2_000)  # well into the burst
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        uncommitted.append(out.stat().st_size - orjson.loads(ck.read_bytes())["out_size"])
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: n_out() >= written)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert _ids(out) == list(range(written))
    assert any(u > 0 for u in uncommitted), uncommitted  # output past the checkpoint was cut back
