"""The fuzz harness's bounded smoke in CI (seconds each). The long run is one command:
`python -m tests.fuzz --minutes 10` (or `make fuzz`); see docs/failure-modes.md."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from .strategies import configs, eve_lines, evidence_messages, pcaps, verdicts
from .targets import check_annotate, check_config, check_evidence, check_pcap, pcap_seeds

SMOKE = settings(max_examples=60, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_seeds_are_clean_captures():
    for seed in pcap_seeds():
        check_pcap(seed)


@SMOKE
@given(pcaps())
def test_fuzz_pcap(data):
    check_pcap(data)


@settings(SMOKE, max_examples=300)
@given(evidence_messages())
def test_fuzz_evidence(data):
    check_evidence(data)


@settings(SMOKE, max_examples=300)
@given(eve_lines().map(lambda x: [x]) | __import__("hypothesis").strategies.lists(eve_lines(), max_size=8), verdicts())
def test_fuzz_annotate(lines, vs):
    check_annotate(lines, vs)


@settings(SMOKE, max_examples=100)
@given(configs())
def test_fuzz_config(data):
    check_config(data)


def teardown_module() -> None:
    # the bridge kept across examples holds datasketches objects: drop them before exit
    # (nanobind warns about instances still alive at interpreter shutdown)
    from . import targets

    targets._bridge.cache_clear()
    import gc

    gc.collect()
