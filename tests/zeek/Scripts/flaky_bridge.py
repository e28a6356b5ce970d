#!/usr/bin/env python3
"""A bridge that goes away before answering (needs `websockets`), for the delivery tests.

1. Connects to Zeek's WebSocket API, subscribes to the evidence topic, reads EXPECTED
   flow_evidence events, answers only the first, and disconnects.
2. Connects again: Zeek must re-send the unanswered evidence (and only that). Answers
   it, sends the first flow's verdict a second time (Zeek must log it once), and stays
   until Zeek closes the connection.

Prints one line per step; exit status 1 if Zeek did not re-send what it should.

usage: flaky_bridge.py PORT EXPECTED
"""

from __future__ import annotations

import json
import sys
import time

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

EVIDENCE_TOPIC = "zeek/msewatch/evidence"
VERDICT_TOPIC = "zeek/msewatch/verdict"


def typed(t: str, v):
    return {"@data-type": t, "data": v}


def verdict_message(args: list) -> str:
    """MSEWatch::verdict for a flow_evidence's arguments: p2p_likely, protocol unknown."""
    uid, orig_h, orig_p, resp_h, resp_p, ts = args[1], args[3], args[4], args[5], args[6], args[7]
    vargs = [
        uid, orig_h, orig_p, resp_h, resp_p,
        typed("string", "p2p_likely"), typed("string", "unknown"), typed("real", 0.97),
        typed("vector", [typed("string", "test=1")]), ts, typed("count", 1),
    ]  # fmt: skip
    body = typed("vector", [typed("string", "MSEWatch::verdict"), typed("vector", vargs)])
    return json.dumps(
        {"type": "data-message", "topic": VERDICT_TOPIC, "@data-type": "vector", "data": [typed("count", 1), typed("count", 1), body]}
    )


def session(port: str):
    deadline = time.monotonic() + 30
    while True:
        try:
            ws = connect(f"ws://127.0.0.1:{port}/v1/messages/json", additional_headers={"X-Application-Name": "flaky"})
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    ws.send(json.dumps([EVIDENCE_TOPIC]))
    ack = json.loads(ws.recv())
    assert ack.get("type") == "ack", ack
    return ws


def evidence(ws, timeout: float):
    """The next flow_evidence's arguments, or None after `timeout` seconds of nothing."""
    while True:
        try:
            msg = json.loads(ws.recv(timeout=timeout))
        except TimeoutError:
            return None
        if msg.get("type") == "data-message" and msg["data"][2]["data"][0]["data"] == "MSEWatch::flow_evidence":
            return msg["data"][2]["data"][1]["data"]


def main() -> int:
    port, expected = sys.argv[1].split("/")[0], int(sys.argv[2])
    ws = session(port)
    first = []
    while len(first) < expected:
        args = evidence(ws, 30)
        if args is None:
            print(f"only {len(first)} of {expected} flows arrived")
            return 1
        first.append(args)
    ws.send(verdict_message(first[0]))
    time.sleep(1.0)  # Zeek reads it before the connection goes
    ws.close()
    uids = [a[1]["data"] for a in first]
    print(f"first connection: {len(first)} flows, answered 1")

    ws = session(port)
    again = []
    while True:
        args = evidence(ws, 3)
        if args is None:
            break
        again.append(args)
    resent = sorted(a[1]["data"] for a in again)
    print(f"second connection: {len(again)} flows re-sent")
    if resent != sorted(uids[1:]):
        print(f"re-sent {resent}, expected the unanswered {sorted(uids[1:])}")
        return 1
    ws.send(verdict_message(first[0]))  # the first verdict again: logged once
    for args in again:
        ws.send(verdict_message(args))
    try:
        while True:
            ws.recv()
    except ConnectionClosed:
        pass
    print(f"answered {len(again)} more")
    return 0


if __name__ == "__main__":
    sys.exit(main())
