"""Report inputs: verdicts and evidence, either computed from pcaps or read from JSON lines.

Verdicts are the dicts of `FlowVerdict.to_dict` / `HostVerdict.to_dict` (what `msewatch
analyze` writes); evidence records are the dicts of `msewatch evidence`. Flows may carry an
extra `pcap` key (the capture they came from) when the report ran the engine itself.

Evidence is joined to verdicts by `uid`. For large inputs the evidence file is streamed and
only the records of the flows the report shows are parsed (`EvidenceFile.fetch`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Protocol

import orjson


class ReportError(Exception):
    """A problem with the report's input; the message names the file and line."""


Key = tuple[str, str, int, str, int]


def flow_key(d: dict) -> Key:
    return (d["proto"], d["orig_h"], int(d["orig_p"]), d["resp_h"], int(d["resp_p"]))


class EvidenceSource(Protocol):
    def fetch(self, full: set[str], heads_of: set[str]) -> tuple[dict[str, dict], dict[str, bytes]]:
        """Evidence records of the uids in `full`, and the first orig head of those in `heads_of`."""
        ...


@dataclass
class EvidenceMemory:
    """Evidence already in memory (the report ran the engine itself)."""

    by_uid: dict[str, dict] = field(default_factory=dict)

    def fetch(self, full: set[str], heads_of: set[str]) -> tuple[dict[str, dict], dict[str, bytes]]:
        got = {u: self.by_uid[u] for u in full if u in self.by_uid}
        heads = {}
        for u in heads_of:
            ev = self.by_uid.get(u)
            if ev and ev.get("orig_heads"):
                heads[u] = bytes.fromhex(ev["orig_heads"][0])
        return got, heads


_UID_PREFIX = b'{"uid":"'
_HEAD_MARK = b'"orig_heads":["'


@dataclass
class EvidenceFile:
    """A `msewatch evidence` JSON-lines file, streamed; lines of unwanted flows are not parsed."""

    path: str
    key_to_uid: dict[tuple, str] = field(default_factory=dict)  # fallback join for foreign uids

    def fetch(self, full: set[str], heads_of: set[str]) -> tuple[dict[str, dict], dict[str, bytes]]:
        got: dict[str, dict] = {}
        heads: dict[str, bytes] = {}
        unjoined: list[dict] = []
        try:
            f = open(self.path, "rb")
        except OSError as e:
            raise ReportError(f"{self.path}: cannot read evidence: {e.strerror}") from None
        with f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                uid = None
                if line.startswith(_UID_PREFIX):  # orjson writes uid first: no parse needed
                    end = line.find(b'"', len(_UID_PREFIX))
                    uid = line[len(_UID_PREFIX) : end].decode()
                if uid is not None and uid not in full and uid not in heads_of and not self.key_to_uid:
                    continue
                if uid is not None and uid in heads_of and uid not in full:
                    i = line.find(_HEAD_MARK)
                    if i >= 0:
                        j = line.find(b'"', i + len(_HEAD_MARK))
                        try:
                            heads[uid] = bytes.fromhex(line[i + len(_HEAD_MARK) : j].decode())
                        except ValueError:
                            pass
                    continue
                try:
                    ev = orjson.loads(line)
                except orjson.JSONDecodeError as e:
                    raise ReportError(f"{self.path}:{lineno}: not JSON: {e}") from None
                uid = ev.get("uid")
                if uid in full:
                    got[uid] = ev
                elif self.key_to_uid:
                    unjoined.append(ev)
        # evidence written by another run has other uids: join those by 5-tuple and start time
        if self.key_to_uid and len(got) < len(full):
            for ev in unjoined:
                try:
                    k = (*flow_key(ev), round(float(ev["ts"]), 3))
                except (KeyError, TypeError, ValueError):
                    continue
                u = self.key_to_uid.get(k)
                if u is None:
                    continue
                if u in full and u not in got:
                    got[u] = ev
                if u in heads_of and ev.get("orig_heads"):
                    heads.setdefault(u, bytes.fromhex(ev["orig_heads"][0]))
        return got, heads


@dataclass
class ReportInput:
    flows: list[dict]
    hosts: list[dict]  # every host verdict, in emission order
    evidence: EvidenceSource
    sources: list[str]
    thresholds: tuple[float, float]  # scoring t_low, t_high
    popcount_band: tuple[float, float]
    mse_bands: dict = field(default_factory=dict)  # DetectParams mse_* values


def _params(cfg):
    from ..config import Config

    cfg = cfg or Config()
    p = cfg.detect_params()
    return (
        (cfg.scoring.t_low, cfg.scoring.t_high),
        (p.popcount_low, p.popcount_high),
        {
            "step12_min": p.mse_step12_min,
            "step12_max": p.mse_step12_max,
            "step3_min": p.mse_step3_min,
            "step4_min": p.mse_step4_min,
        },
    )


def from_pcaps(paths: Iterable[str], cfg=None, joint: bool = False) -> ReportInput:
    """Run the engine over pcaps, recording evidence through `Engine.on_evidence`.

    By default every pcap gets a fresh engine (as `msewatch eval` does: no host or peer-cache
    state leaks between captures) and each flow and host is tagged with its pcap's name.
    `joint=True` runs one engine over all of them, like `msewatch analyze`.
    """
    from ..cli import evidence_to_dict
    from ..engine import Engine, run_pcaps
    from ..sources.pcap import PcapError

    paths = [str(p) for p in paths]
    for p in paths:
        if not os.path.exists(p):
            raise ReportError(f"{p}: no such file")
    evidence: dict[str, dict] = {}

    class _Recording(Engine):
        def on_evidence(self, ev) -> None:
            evidence[ev.uid] = evidence_to_dict(ev)

    flows: list[dict] = []
    hosts: list[dict] = []
    groups = [paths] if joint else [[p] for p in paths]
    for i, group in enumerate(groups):
        # engines draw uids from a seeded RNG: one seed per pcap keeps uids unique across pcaps
        # (the first pcap's uids equal those of `msewatch analyze` on it alone)
        eng = _Recording(cfg, seed=i)
        tag = Path(group[0]).name if len(group) == 1 else None
        try:
            for v in run_pcaps(group, eng):
                _collect(v.to_dict(), tag, flows, hosts)
        except PcapError as e:
            for v in eng.flush():
                _collect(v.to_dict(), tag, flows, hosts)
            raise ReportError(str(e)) from None
    t, pc, mse = _params(cfg)
    return ReportInput(flows, hosts, EvidenceMemory(evidence), paths, t, pc, mse)


def _collect(d: dict, tag: str | None, flows: list[dict], hosts: list[dict]) -> None:
    if tag is not None:
        d["pcap"] = tag
    (flows if d["type"] == "flow" else hosts).append(d)


def from_jsonl(verdicts: str, evidence: str | None, cfg=None) -> ReportInput:
    flows: list[dict] = []
    hosts: list[dict] = []
    seen: dict[str, int] = {}
    try:
        with open(verdicts, "rb") as f:
            numbered = [(i, ln) for i, ln in enumerate(f.read().splitlines(), 1) if ln.strip()]
    except OSError as e:
        raise ReportError(f"{verdicts}: cannot read verdicts: {e.strerror}") from None
    records = []
    for no, ln in numbered:
        try:
            records.append(orjson.loads(ln))
        except orjson.JSONDecodeError as e:
            raise ReportError(f"{verdicts}:{no}: not JSON: {e}") from None
    need = ("uid", "proto", "orig_h", "orig_p", "resp_h", "resp_p", "label", "probability", "ts")
    for (i, _), d in zip(numbered, records):
        kind = d.get("type") if isinstance(d, dict) else None
        if kind == "flow":
            missing = [k for k in need if k not in d]
            if missing:
                raise ReportError(f"{verdicts}:{i}: flow verdict without {missing}")
            n = seen.get(d["uid"], 0)
            seen[d["uid"]] = n + 1
            if n:  # concatenated runs can repeat uids: keep flows apart, join evidence by 5-tuple
                d["uid"] = f"{d['uid']}~{n + 1}"
            flows.append(d)
        elif kind == "host":
            hosts.append(d)
        else:
            raise ReportError(f"{verdicts}:{i}: type must be flow or host, got {kind!r}")
    if evidence is None:
        src: EvidenceSource = EvidenceMemory()
    else:
        if not os.path.exists(evidence):
            raise ReportError(f"{evidence}: no such file")
        src = EvidenceFile(evidence)
    t, pc, mse = _params(cfg)
    return ReportInput(flows, hosts, src, [verdicts] + ([evidence] if evidence else []), t, pc, mse)


def enable_key_join(inp: ReportInput) -> None:
    """Let an evidence file from another run join by 5-tuple and start time (ms)."""
    if isinstance(inp.evidence, EvidenceFile):
        inp.evidence.key_to_uid = {(*flow_key(f), round(float(f["ts"]), 3)): f["uid"] for f in inp.flows}
