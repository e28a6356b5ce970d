#!/usr/bin/env python3
"""A stand-in for `msewatch run` in the Zeek tests (needs `websockets`).

Connects to Zeek's WebSocket API (v1 JSON), subscribes to the evidence topic,
checks that every MSEWatch::flow_evidence carries the v1 types of
docs/evidence.md, and answers each one with an MSEWatch::verdict:
label p2p_likely / protocol bt_mse for TCP flows to port 6881, normal_likely
otherwise.  Exits when Zeek closes the connection; exit status 1 if any event
was malformed.

usage: fake_bridge.py PORT [EVIDENCE_TOPIC] [VERDICT_TOPIC]
"""

from __future__ import annotations

import json
import sys
import time

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

# v1 @data-type of each flow_evidence argument, in contract order.
EVIDENCE_TYPES = [
    "count", "string", "string", "address", "port", "address", "port", "timestamp",
    "vector", "vector", "vector", "vector", "vector",
    "count", "count", "count", "count", "timespan", "boolean", "boolean", "boolean",
]  # fmt: skip
VECTOR_ELEMENT_TYPES = {8: "integer", 9: "timespan", 10: "integer", 11: "string", 12: "string"}


def typed(t: str, v):
    return {"@data-type": t, "data": v}


def event_message(topic: str, name: str, args: list) -> str:
    return json.dumps(
        {
            "type": "data-message",
            "topic": topic,
            "@data-type": "vector",
            "data": [
                typed("count", 1),
                typed("count", 1),
                typed("vector", [typed("string", name), typed("vector", args)]),
            ],
        }
    )


def check_evidence(args: list) -> list[str]:
    problems = []
    if len(args) != len(EVIDENCE_TYPES):
        return [f"flow_evidence has {len(args)} arguments, the contract {len(EVIDENCE_TYPES)}"]
    for i, (arg, want) in enumerate(zip(args, EVIDENCE_TYPES)):
        if arg.get("@data-type") != want:
            problems.append(f"argument {i + 1} is {arg.get('@data-type')}, not {want}")
        elem = VECTOR_ELEMENT_TYPES.get(i)
        if elem:
            for x in arg.get("data", []):
                if x.get("@data-type") != elem:
                    problems.append(f"argument {i + 1} holds {x.get('@data-type')}, not {elem}")
    if args[0].get("data") != 1:
        problems.append(f"version is {args[0].get('data')}, not 1")
    for i in (11, 12):
        for x in args[i].get("data", []):
            s = x.get("data", "")
            if s != s.lower() or any(c not in "0123456789abcdef" for c in s):
                problems.append(f"argument {i + 1} head is not lower-case hex: {s[:40]}")
    return problems


def connect_with_retry(url: str, deadline: float):
    while True:
        try:
            return connect(url, additional_headers={"X-Application-Name": "msewatch-test"})
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def main() -> int:
    port = sys.argv[1].split("/")[0]
    evidence_topic = sys.argv[2] if len(sys.argv) > 2 else "zeek/msewatch/evidence"
    verdict_topic = sys.argv[3] if len(sys.argv) > 3 else "zeek/msewatch/verdict"
    with connect_with_retry(f"ws://127.0.0.1:{port}/v1/messages/json", time.monotonic() + 30) as ws:
        return serve(ws, evidence_topic, verdict_topic)


def serve(ws, evidence_topic: str, verdict_topic: str) -> int:
    ws.send(json.dumps([evidence_topic]))
    ack = json.loads(ws.recv())
    if ack.get("type") != "ack":
        print(f"no ack: {ack}")
        return 1

    problems: list[str] = []
    answered = 0
    try:
        while True:
            msg = json.loads(ws.recv())
            if msg.get("type") == "error":
                problems.append(f"Zeek rejected a message: {msg}")
                continue
            if msg.get("type") != "data-message":
                continue
            name = msg["data"][2]["data"][0]["data"]
            args = msg["data"][2]["data"][1]["data"]
            if name != "MSEWatch::flow_evidence":
                continue
            problems += check_evidence(args)
            uid, orig_h, orig_p, resp_h, resp_p, ts = args[1], args[3], args[4], args[5], args[6], args[7]
            p2p = resp_p["data"] == "6881/tcp"
            ws.send(
                event_message(
                    verdict_topic,
                    "MSEWatch::verdict",
                    [
                        uid, orig_h, orig_p, resp_h, resp_p,
                        typed("string", "p2p_likely" if p2p else "normal_likely"),
                        typed("string", "bt_mse" if p2p else ""),
                        typed("real", 0.97 if p2p else 0.05),
                        typed("vector", [typed("string", "test=1")]),
                        ts,
                        typed("count", 3),
                    ],  # fmt: skip
                )
            )
            answered += 1
    except ConnectionClosed:
        pass
    for p in problems:
        print(p)
    print(f"answered {answered} flows")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
