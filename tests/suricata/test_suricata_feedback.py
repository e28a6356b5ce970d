"""Dataset feedback over Suricata's unix socket: protocol (fake server) and the real thing."""
from __future__ import annotations

import base64
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import needs_suricata
from msewatch.suricata.feedback import (ENDPOINT_SET, PEER_SET, FeedbackError, PeerFeedback,
                                        SuricataSocket, encode_value)
from suri import CORPUS, HOME_NET, RULES_DIR, SURICATA


class FakeSuricata:
    """Speaks the unix-command protocol like Suricata 7 and records the commands it got."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.commands: list[dict] = []
        self.sets: dict[str, set[str]] = {}
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(4)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(conn,), daemon=True).start()

    def _conn(self, conn) -> None:
        dec = json.JSONDecoder()
        buf = ""
        greeted = False
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buf += data.decode()
            while buf.strip():
                try:
                    msg, end = dec.raw_decode(buf.lstrip())
                except ValueError:
                    break
                buf = buf.lstrip()[end:]
                if not greeted:
                    greeted = msg == {"version": "0.2"}
                    reply = {"return": "OK" if greeted else "NOK", "message": "ok"}
                else:
                    self.commands.append(msg)
                    reply = self._do(msg)
                conn.sendall((json.dumps(reply) + "\n").encode())

    def _do(self, msg: dict) -> dict:
        a = msg.get("arguments", {})
        s = self.sets.setdefault(a.get("setname", ""), set())
        if msg["command"] == "dataset-add":
            s.add(a["datavalue"])
            return {"return": "OK", "message": "data added"}
        if msg["command"] == "dataset-remove":
            if a["datavalue"] in s:
                s.discard(a["datavalue"])
                return {"return": "OK", "message": "data removed"}
            return {"return": "NOK", "message": "failed to remove data"}
        return {"return": "NOK", "message": "unknown command"}

    def close(self) -> None:
        self.srv.close()


@pytest.fixture()
def fake():
    d = tempfile.mkdtemp(prefix="msw")
    f = FakeSuricata(os.path.join(d, "sock"))
    yield f
    f.close()
    shutil.rmtree(d, ignore_errors=True)


VERDICT = {"type": "flow", "proto": "tcp", "orig_h": "10.77.0.12", "orig_p": 44771, "resp_h": "10.77.0.11",
           "resp_p": 51413, "label": "p2p_likely", "probability": 0.97, "community_id": "1:x="}


def test_handshake_and_dataset_add_arguments(fake):
    with SuricataSocket(fake.path) as s:
        s.dataset_add(PEER_SET, "ip", "10.0.0.9")
    assert fake.commands == [{"command": "dataset-add",
                              "arguments": {"setname": PEER_SET, "settype": "ip", "datavalue": "10.0.0.9"}}]


def test_string_sets_are_base64_and_ip_port_keeps_ipv6_brackets():
    assert encode_value("string", "10.0.0.1:6881") == base64.b64encode(b"10.0.0.1:6881").decode()
    assert base64.b64decode(encode_value("string", "[2001:db8::1]:6881")) == b"[2001:db8::1]:6881"
    with pytest.raises(ValueError):
        encode_value("ip", "not-an-ip")


def test_peers_expire_after_ttl_and_refresh_extends(fake):
    fb = PeerFeedback(SuricataSocket(fake.path), ttl=100, endpoint_set=ENDPOINT_SET)
    assert fb.on_verdict(VERDICT, now=0) == [("10.77.0.11", 51413)]
    assert fake.sets[PEER_SET] == {"10.77.0.11"}
    assert fake.sets[ENDPOINT_SET] == {base64.b64encode(b"10.77.0.11:51413").decode()}
    fb.on_verdict(VERDICT, now=60)  # seen again: no second add, expiry moves to 160
    assert sum(c["command"] == "dataset-add" for c in fake.commands) == 2
    assert fb.expire(now=120) == 0
    assert fb.expire(now=161) == 2
    assert fake.sets[PEER_SET] == set() and fake.sets[ENDPOINT_SET] == set()
    assert fb.added == 2 and fb.removed == 2


def test_only_p2p_verdicts_above_threshold_feed_and_local_side_is_skipped(fake):
    import ipaddress
    fb = PeerFeedback(SuricataSocket(fake.path), min_probability=0.9,
                      local_nets=(ipaddress.ip_network("10.77.0.12/32"),))
    assert fb.on_verdict({**VERDICT, "label": "normal_likely"}) == []
    assert fb.on_verdict({**VERDICT, "probability": 0.5}) == []
    assert fb.on_verdict({"type": "host", "label": "p2p_host"}) == []
    assert fb.on_verdict(VERDICT) == [("10.77.0.11", 51413)]


def test_max_entries_evicts_the_oldest(fake):
    fb = PeerFeedback(SuricataSocket(fake.path), max_entries=2)
    for i, now in enumerate((1, 2, 3)):
        fb.add_peer(f"10.0.0.{i}", now=now)
    assert fake.sets[PEER_SET] == {"10.0.0.1", "10.0.0.2"}


def test_refused_command_raises_with_the_reason(fake):
    with SuricataSocket(fake.path) as s, pytest.raises(FeedbackError, match="failed to remove"):
        s.dataset_remove(PEER_SET, "ip", "10.9.9.9")


def test_missing_socket_says_what_to_check(tmp_path):
    with pytest.raises(FeedbackError, match="unix-command"):
        SuricataSocket(str(tmp_path / "nope")).connect()


# -- with the real Suricata in unix-socket run mode ------------------------------------------
CONF = """%YAML 1.1
---
vars:
  address-groups:
    HOME_NET: "{home}"
    EXTERNAL_NET: "any"
default-log-dir: {logdir}
classification-file: /etc/suricata/classification.config
reference-config-file: /etc/suricata/reference.config
default-rule-path: {rules}
rule-files:
  - msewatch.rules
datasets:
  msewatch-peers:
    type: ip
  msewatch-peer-endpoints:
    type: string
outputs:
  - eve-log:
      enabled: yes
      filetype: regular
      filename: eve.json
      community-id: true
      types:
        - alert
        - flow
logging:
  default-log-level: notice
  outputs:
    - console:
        enabled: yes
    - file:
        enabled: yes
        level: info
        filename: suricata.log
unix-command:
  enabled: yes
  filename: {sock}
"""


@pytest.fixture()
def unix_suricata():
    d = Path(tempfile.mkdtemp(prefix="msw"))
    (d / "log").mkdir()
    sock = d / "sock"
    conf = d / "suricata.yaml"
    conf.write_text(CONF.format(home=HOME_NET, logdir=d / "log", rules=RULES_DIR, sock=sock))
    proc = subprocess.Popen([SURICATA, "-c", str(conf), f"--unix-socket={sock}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            out = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"suricata --unix-socket did not come up:\n{out}")
        time.sleep(0.1)
    time.sleep(0.3)
    yield d, str(sock)
    try:
        with SuricataSocket(str(sock)) as s:
            s.command("shutdown", check=False)
        proc.wait(timeout=30)
    except Exception:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    shutil.rmtree(d, ignore_errors=True)


def _process_pcap(s: SuricataSocket, pcap: Path, outdir: Path) -> list[dict]:
    outdir.mkdir()
    s.command("pcap-file", {"filename": str(pcap), "output-dir": str(outdir)})
    deadline = time.monotonic() + 120
    idle = 0
    while time.monotonic() < deadline:
        n = s.command("pcap-file-number")["message"]
        cur = s.command("pcap-current", check=False)["message"]
        idle = idle + 1 if n == 0 and cur in ("None", None) else 0
        if idle >= 3 and (outdir / "eve.json").exists() and (outdir / "eve.json").stat().st_size:
            break
        time.sleep(0.2)
    return [json.loads(x) for x in (outdir / "eve.json").read_text().splitlines()]


def _mse_flow() -> tuple[Path, dict]:
    with open(CORPUS / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["protocol"] == "bt_mse" and (CORPUS / row["pcap"]).exists():
                return CORPUS / row["pcap"], row
    pytest.skip("protocol bt_mse is not in the corpus yet")


def _dataset_alerts(events, peer: str) -> list[dict]:
    return [e for e in events if e.get("event_type") == "alert"
            and e["alert"]["signature_id"] in (9470600, 9470601) and peer in (e["src_ip"], e["dest_ip"])]


@needs_suricata
@pytest.mark.suricata
def test_peer_added_over_socket_makes_dataset_rule_fire_and_expiry_removes_it(unix_suricata):
    if not (CORPUS / "labels.csv").exists():
        pytest.skip("protocol bt_mse is not in the corpus yet")
    d, sock = unix_suricata
    pcap, row = _mse_flow()
    peer = row["resp_h"]
    with SuricataSocket(sock) as s:
        before = _process_pcap(s, pcap, d / "run0")
        assert not _dataset_alerts(before, peer)
        fb = PeerFeedback(s, ttl=60, endpoint_set=ENDPOINT_SET)
        verdict = {"type": "flow", "label": "p2p_likely", "probability": 0.99, "proto": "tcp",
                   "orig_h": row["orig_h"], "orig_p": int(row["orig_p"]),
                   "resp_h": row["resp_h"], "resp_p": int(row["resp_p"])}
        assert fb.on_verdict(verdict, now=0) == [(peer, int(row["resp_p"]))]
        lookup = s.command("dataset-lookup", {"setname": PEER_SET, "settype": "ip", "datavalue": peer}, check=False)
        assert lookup["return"] == "OK"
        during = _process_pcap(s, pcap, d / "run1")
        hits = _dataset_alerts(during, peer)
        assert hits, "dataset:isset rule did not fire on the flow to the fed-back peer"
        flows = {e["flow_id"] for e in hits}
        assert len(hits) == len(flows)  # once per flow
        assert fb.expire(now=61) == 2
        after = _process_pcap(s, pcap, d / "run2")
        assert not _dataset_alerts(after, peer)
