#!/usr/bin/env python3
"""A stand-in for `msewatch run` in the Zeek tests (needs `websockets`).

Connects to Zeek's WebSocket API (v1 JSON), subscribes to the evidence topic,
checks that every MSEWatch::flow_evidence carries the types of
docs/evidence.md (evidence version 2, packed), and answers each one with an MSEWatch::verdict:
label p2p_likely / protocol bt_mse for TCP flows to port 6881, normal_likely
otherwise.  Exits when Zeek closes the connection; exit status 1 if any event
was malformed.

usage: fake_bridge.py PORT [EVIDENCE_TOPIC] [VERDICT_TOPIC]
"""

from __future__ import annotations

import json
import re
import sys
import time

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

# v1 @data-type of each flow_evidence argument (evidence version 2), in contract order.
EVIDENCE_TYPES = [
    "count", "string", "string", "address", "port", "address", "port", "timestamp",
    "string", "string", "string", "string", "string",
    "count", "count", "count", "count", "timespan", "boolean", "boolean", "boolean",
]  # fmt: skip
# The packed strings of version 2 (docs/evidence.md): what Zeek writes, lower-case hex included.
INT = r"(?:0|-?[1-9][0-9]{0,18})"
UINT = r"(?:0|[1-9][0-9]{0,18})"
PACKED = {
    8: re.compile(f"(?:{INT}(?:,{INT})*)?"),
    9: re.compile(f"(?:{UINT}(?:,{UINT})*)?"),
    10: re.compile(f"(?:{INT}(?:,{INT})*)?"),
    11: re.compile(r"(?:(?:[0-9a-f]{2})*,)*"),
    12: re.compile(r"(?:(?:[0-9a-f]{2})*,)*"),
}


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
        elif i in PACKED and not PACKED[i].fullmatch(arg.get("data")):
            problems.append(f"argument {i + 1} is not packed as version 2 packs it: {arg.get('data')[:60]!r}")
    if args[0].get("data") != 2:
        problems.append(f"version is {args[0].get('data')}, not 2")
    if not problems and args[8]["data"].count(",") != args[9]["data"].count(","):
        problems.append("sizes and times differ in length")
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
