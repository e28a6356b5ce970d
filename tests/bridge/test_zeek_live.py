"""The real Zeek live on a replayed interface, with restarts, and a real cluster.

Drives tools/zeek_live.py (network namespaces, `zeek -i`, `msewatch run`, the corpus
replayed onto a veth pair). Needs root and Zeek; skips in one line otherwise. About a
minute per test on 2 cores; docs/zeek.md has the numbers of the longer runs. Zeek runs
with the package's native recorder when it is built (`make plugin`), as zkg installs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

import zeek_live  # noqa: E402

WHY_NOT = zeek_live.can_run()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.slow,
    pytest.mark.skipif(WHY_NOT is not None, reason=f"live Zeek tests: {WHY_NOT}"),
]


PLUGIN = REPO / "build"


def live(tmp_path: Path, *args: str) -> list[dict]:
    out = tmp_path / "counts.json"
    env = dict(os.environ)
    if (PLUGIN / "__zeek_plugin__").exists():
        env["ZEEK_PLUGIN_PATH"] = str(PLUGIN)
    r = subprocess.run(
        [sys.executable, str(REPO / "tools" / "zeek_live.py"), *args, "--workdir", str(tmp_path / "runs"), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert r.returncode == 0, f"zeek_live.py failed:\n{r.stdout}\n{r.stderr}"
    print(r.stdout)
    return json.loads(out.read_text())


def test_bridge_late_killed_and_stopped_loses_and_duplicates_no_verdict(tmp_path):
    """The bridge starts after the replay began, is killed with -9, later stopped with
    SIGTERM, and restarted each time: every flow has exactly one verdict line and every
    p2p_likely flow exactly one notice."""
    (c,) = live(tmp_path, "restarts", "--scenario", "mixed", "--speed", "10")
    assert c["raised"] >= 400  # the corpus has 480 flows
    assert (c["lost"], c["duplicated"]) == (0, 0)
    assert (c["notices_lost"], c["notices_duplicated"]) == (0, 0)
    assert c["host_verdicts_duplicated"] == 0
    assert c["tuples_without_verdict"] == 0
    m = c["zeek_metrics"]
    assert m["msewatch_evidence_held_total"] > 0  # no bridge at first: held, not published
    assert m["msewatch_evidence_resent_total"] >= m["msewatch_evidence_held_total"]
    assert m["msewatch_evidence_unanswered"] == 0 and m["msewatch_evidence_expired_total"] == 0


def test_zeek_graceful_restart_loses_no_raised_flow(tmp_path):
    """SIGTERM to Zeek mid-replay and a new Zeek: what the old one had not got answered
    (including the flows it published during its shutdown) is saved to unanswered_file,
    restored by the new one and answered once. Only flows that were on the wire while no
    Zeek ran have no verdict."""
    (c,) = live(tmp_path, "restarts", "--scenario", "zeek-term", "--speed", "10")
    assert (c["lost"], c["zeek_lost"], c["duplicated"], c["notices_duplicated"]) == (0, 0, 0, 0)
    assert c["verdicts"] == c["raised"]
    assert c["zeek_metrics"]["msewatch_evidence_restored_total"] > 0
    assert c["tuples_without_verdict"] < c["tuples"] // 4  # only what passed while no Zeek ran


def test_cluster_with_two_sharded_bridges_logs_each_verdict_once(tmp_path):
    """Manager, logger, proxy and two workers sniffing two veth pairs; bridges on shards
    0/2 and 1/2 (one killed with -9 and restarted): every flow is answered once, both
    workers' flows arrive, and conn.log carries the verdict labels."""
    (c,) = live(tmp_path, "cluster", "--speed", "10")
    assert c["raised"] >= 400
    assert (c["lost"], c["duplicated"], c["notices_duplicated"], c["notices_lost"]) == (0, 0, 0, 0)
    assert c["tuples_without_verdict"] == 0
    assert c["conn_labels"] > 0 and c["conn_label_mismatches"] == 0
    assert c["zeek_metrics"]["manager:msewatch_evidence_resent_total"] > 0
    per_worker = c["notes"][0]
    assert "worker-1" in per_worker and "worker-2" in per_worker
