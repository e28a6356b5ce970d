"""Bridge hot path: evidence events decoded, scored and answered per second, one process.

    python benchmarks/bench_bridge.py [--n 20000] [--repeat 5]

Measured in the same run, on the same messages:
  floor       json.loads + json.dumps of each evidence message (stdlib; no typing at all)
  orjson      orjson.loads + orjson.dumps (the JSON library the codec uses)
  codec       v1 decode -> FlowEvidence -> a fixed verdict -> v1 encode (no scoring)
  bridge      v1 decode -> FlowEvidence -> Engine.process_evidence -> v1 encode of every verdict
The messages are the evidence of tests/data/corpus/*.pcap (via msewatch.engine.extract_evidence),
cycled to --n; synthetic evidence when there are no pcaps.
"""

from __future__ import annotations

import argparse
import glob
import itertools
import json
import os
import statistics
import sys
import time

import orjson

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "bridge"))

from msewatch.evidence import FlowEvidence, FlowKey  # noqa: E402
from msewatch.verdict import FlowVerdict  # noqa: E402
from msewatch.wire import events, v1  # noqa: E402

TOPIC = "zeek/msewatch/evidence"
VTOPIC = "zeek/msewatch/verdict"


def corpus_evidence() -> list[FlowEvidence]:
    pcaps = sorted(glob.glob(os.path.join(HERE, "..", "tests", "data", "corpus", "*.pcap")))
    if pcaps:
        try:
            from msewatch.engine import extract_evidence

            evs = list(extract_evidence(pcaps))
            if evs:
                return evs
        except ImportError:
            pass
    return [
        FlowEvidence(
            key=FlowKey("tcp", "10.0.0.1", 40000 + i, "198.51.100.7", 6881),
            uid=f"C{i:017d}",
            community_id="1:x",
            ts=1763778416.0 + i,
            sizes=tuple((-1) ** j * (100 + j) for j in range(32)),
            times=tuple(j / 1000 for j in range(32)),
            bursts=tuple((-1) ** j * (100 + j) for j in range(8)),
            orig_heads=(os.urandom(256),),
            resp_heads=(os.urandom(256),),
            orig_pkts=40,
            resp_pkts=38,
            orig_bytes=9000,
            resp_bytes=8000,
            duration=2.5,
            handshake=True,
            complete=True,
        )
        for i in range(200)
    ]


def fixed_verdict(ev: FlowEvidence) -> FlowVerdict:
    return FlowVerdict(
        key=ev.key, uid=ev.uid, community_id=ev.community_id, ts=ev.ts, label="p2p_likely", protocol="bt_mse",
        probability=0.97, flow_probability=0.95, host_score=0.5, decided_at_packet=3, decided_at=ev.ts + 0.01,
        reasons=("mse_handshake=0.93", "fully_encrypted=1.00", "host_score=0.50"), families=("handshake_shape",),
    )


def timed(fn, messages, repeat: int) -> float:
    """Best-of-`repeat` events per second."""
    rates = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(messages)
        rates.append(len(messages) / (time.perf_counter() - t0))
    return max(rates)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    evs = corpus_evidence()
    base = [v1.encode_event_message(TOPIC, events.evidence_to_event(e)) for e in evs]
    messages = list(itertools.islice(itertools.cycle(base), args.n))
    avg_len = statistics.mean(len(m) for m in base)
    verdict_text = events.encode_verdict(fixed_verdict(evs[0]), VTOPIC)

    def floor(msgs):
        for m in msgs:
            json.dumps(json.loads(m), separators=(",", ":"))
        # the reply of the same size class, for fairness
        for _ in msgs:
            json.dumps(json.loads(verdict_text), separators=(",", ":"))

    def orjson_peer(msgs):
        for m in msgs:
            orjson.dumps(orjson.loads(m))
        for _ in msgs:
            orjson.dumps(orjson.loads(verdict_text))

    codec = v1.DEFAULT

    def codec_only(msgs):
        for m in msgs:
            ev = events.decode_evidence_message(m, codec)
            events.encode_verdict(fixed_verdict(ev), VTOPIC, codec)

    def generic_codec(msgs):
        for m in msgs:
            msg = codec.decode_message(m)
            ev = events.evidence_from_event(v1.event_from_value(msg.value))
            codec.encode_event_message(VTOPIC, events.verdict_event(fixed_verdict(ev)))

    rates = {
        "floor (json.loads+dumps)": timed(floor, messages, args.repeat),
        "orjson.loads+dumps": timed(orjson_peer, messages, args.repeat),
        "codec, generic table walk": timed(generic_codec, messages, args.repeat),
        "codec: decode+encode (hot path)": timed(codec_only, messages, args.repeat),
    }
    try:
        from msewatch.engine import Engine

        def bridge_path(msgs):
            eng = Engine()
            for m in msgs:
                ev = events.decode_evidence_message(m, codec)
                for v in eng.process_evidence(ev):
                    events.encode_verdict(v, VTOPIC, codec)

        rates["bridge: decode+engine+encode"] = timed(bridge_path, messages, args.repeat)
    except ImportError:
        pass

    floor_rate = rates["floor (json.loads+dumps)"]
    print(f"{len(base)} distinct evidence messages (avg {avg_len:.0f} bytes), {len(messages)} events, best of {args.repeat}")
    print(f"{'path':34s} {'events/s':>12s} {'vs floor':>9s}")
    for name, rate in rates.items():
        print(f"{name:34s} {rate:12,.0f} {rate / floor_rate:8.2f}x")
    print("target: 50,000 events/s for decode+encode")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
