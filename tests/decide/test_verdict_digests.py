"""Verdicts identical to the recorded ones on the whole corpus (issue 12: speed must not move a
label): every corpus capture, the corpus in one engine, every capture-artifact variant of it,
the benchmark capture and the corpus's evidence through the Zeek wire codec, once with the
compiled packet path and deciding, once with the pure-Python ones.

tests/data/verdict_digests.json holds the SHA-256 of each run's verdict lines
(tools/verdict_digests.py --write records them; --dump DIR writes the lines for a diff)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
import verdict_digests  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads(verdict_digests.DIGESTS.read_text())["runs"]


@pytest.mark.parametrize("pure", [False, True], ids=["compiled", "pure-python"])
def test_corpus_verdicts_are_the_recorded_ones(pure, recorded, monkeypatch, tmp_path):
    if pure:
        monkeypatch.setenv("MSEWATCH_PURE_PYTHON", "1")
    else:
        from msewatch import fastpath

        monkeypatch.delenv("MSEWATCH_PURE_PYTHON", raising=False)
        assert fastpath.available(), fastpath.status()  # CI builds it: missing is a defect
    differ = []
    seen = set()
    for name, lines in verdict_digests.runs(workdir=tmp_path):
        seen.add(name)
        got = {"verdicts": len(lines), "sha256": verdict_digests.digest(lines)}
        if recorded.get(name) != got:
            differ.append(f"{name}: {got['verdicts']} verdicts, {got['sha256'][:12]} (recorded "
                          f"{recorded.get(name, {}).get('verdicts')}, {recorded.get(name, {}).get('sha256', '')[:12]})")
    assert seen == set(recorded), f"runs missing: {sorted(set(recorded) - seen)}, new: {sorted(seen - set(recorded))}"
    assert not differ, (f"{len(differ)} of {len(seen)} runs give other verdicts than recorded "
                        f"(tools/verdict_digests.py --dump DIR shows them):\n" + "\n".join(differ[:20]))
