"""Cost of the bridge's metrics per evidence message, against prometheus_client's own
pre-bound children doing the same counting, measured in the same run.

    python benchmarks/bench_metrics.py [--n 200000] [--repeat 5]

Per message the bridge does what EvidenceReader.run and Bridge._on_evidence do:
`evidence_received_total += 1`, two perf_counter() calls and a latency histogram observation,
one labelled verdict count, and a queue-depth update. Three ways, same messages:
  none        nothing (the loop and the verdict objects alone)
  msewatch    msewatch.metrics.Metrics (plain attributes, exported by a Collector at scrape time)
  prometheus  prometheus_client Counter/Histogram/Gauge with pre-bound labelled children
Then the whole hot path (decode + engine + encode) with and without msewatch's metrics, for the
share of the per-message budget (20 us at 50k messages/s) the metrics take.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402,F401  (puts the bridge on sys.path)

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram  # noqa: E402

from msewatch.metrics import LATENCY_BUCKETS, Metrics  # noqa: E402


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n = args.n
    labels = [("p2p_likely", "bt_mse"), ("normal_likely", "tls"), ("unknown", "unknown")] * (n // 3 + 1)
    labels = labels[:n]
    clock = time.perf_counter

    def none():
        for label, proto in labels:
            t0 = clock()
            _ = (label, proto)
            _ = clock() - t0

    m = Metrics(shard="0/4")

    def msewatch_metrics():
        observe, count = m.observe_latency, m.count_verdict
        for i, (label, proto) in enumerate(labels):
            t0 = clock()
            m.evidence_received_total += 1
            count("flow", label, proto)
            m.queue_depth = i & 1023
            observe(clock() - t0)

    reg = CollectorRegistry()
    ev_c = Counter("e", "e", ["shard"], registry=reg).labels("0/4")
    verdicts = Counter("v", "v", ["shard", "kind", "label", "protocol"], registry=reg)
    children = {(lab, pr): verdicts.labels("0/4", "flow", lab, pr) for lab, pr in set(labels)}
    depth = Gauge("q", "q", ["shard"], registry=reg).labels("0/4")
    hist = Histogram("l", "l", ["shard"], buckets=LATENCY_BUCKETS, registry=reg).labels("0/4")

    def prometheus_children():
        for i, key in enumerate(labels):
            t0 = clock()
            ev_c.inc()
            children[key].inc()
            depth.set(i & 1023)
            hist.observe(clock() - t0)

    t_none = best(none, args.repeat)
    t_ours = best(msewatch_metrics, args.repeat)
    t_prom = best(prometheus_children, args.repeat)
    ours_ns = (t_ours - t_none) / n * 1e9
    prom_ns = (t_prom - t_none) / n * 1e9
    print(common.machine_line())
    print(f"{n} messages, best of {args.repeat}")
    print(f"{'metrics per message':34s} {'added ns/msg':>13s}")
    print(f"{'msewatch (plain attrs + Collector)':34s} {ours_ns:13.0f}")
    print(f"{'prometheus_client children (peer)':34s} {prom_ns:13.0f}")
    print(f"ratio: prometheus_client children cost {prom_ns / ours_ns:.1f}x msewatch's metrics")

    # share of the real hot path
    try:
        from bench_bridge import TOPIC, VTOPIC, corpus_evidence
        from msewatch.engine import Engine
        from msewatch.wire import events, v1
    except ImportError:
        return 0
    evs = corpus_evidence()
    base = [v1.encode_event_message(TOPIC, events.evidence_to_event(e)) for e in evs]
    messages = list(itertools.islice(itertools.cycle(base), 20_000))
    codec = v1.DEFAULT

    def hot(with_metrics: bool):
        def run():
            eng = Engine()
            mm = Metrics()
            for raw in messages:
                t0 = clock()
                ev = events.decode_evidence_message(raw, codec)
                if with_metrics:
                    mm.evidence_received_total += 1
                for v in eng.process_evidence(ev):
                    if with_metrics:
                        if hasattr(v, "uid"):
                            mm.count_verdict("flow", v.label, v.protocol)
                        else:
                            mm.count_verdict("host", v.label, None)
                    events.encode_verdict(v, VTOPIC, codec)
                if with_metrics:
                    mm.queue_depth = 0
                    mm.observe_latency(clock() - t0)
        return run

    # interleaved, best of each: the machine's load drifts between runs
    plain_runs, metric_runs = [], []
    for _ in range(args.repeat):
        plain_runs.append(best(hot(False), 1))
        metric_runs.append(best(hot(True), 1))
    t_plain = min(plain_runs) / len(messages)
    t_metrics = min(metric_runs) / len(messages)
    print(f"hot path (decode+engine+encode): {t_plain * 1e6:.1f} us/msg without metrics, "
          f"{t_metrics * 1e6:.1f} us/msg with ({(t_metrics / t_plain - 1) * 100:+.1f} %, noisy)")
    print(f"msewatch metrics = {ours_ns / 20_000 * 100:.1f} % of the 20 us per-message budget at 50k msg/s; "
          f"prometheus_client children would be {prom_ns / 20_000 * 100:.1f} %")
    common.summary("metrics cost per message", f"{ours_ns:.0f} ns (prometheus_client children: {prom_ns:.0f} ns, "
                   f"{prom_ns / ours_ns:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
