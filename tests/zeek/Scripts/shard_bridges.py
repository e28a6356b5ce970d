#!/usr/bin/env python3
"""Two bridges on two shards, one after the other (needs `websockets`), for the delivery tests.

Bridge 0 subscribes to zeek/msewatch/evidence/0/ and answers everything it gets until
nothing came for 3 s; only then bridge 1 subscribes to .../1/: Zeek must have held the
shard-1 evidence meanwhile and send it now. Every message must carry its bridge's topic.
Prints "shard 0: N flows" and "shard 1: M flows"; exit status 1 on a wrong topic.

usage: shard_bridges.py PORT
"""

from __future__ import annotations

import json
import sys
import time

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

TOPIC = "zeek/msewatch/evidence/{}/"


def typed(t: str, v):
    return {"@data-type": t, "data": v}


def answer(args: list) -> str:
    vargs = [
        args[1], args[3], args[4], args[5], args[6],
        typed("string", "unknown"), typed("string", "unknown"), typed("real", 0.5),
        typed("vector", []), args[7], typed("count", 0),
    ]  # fmt: skip
    body = typed("vector", [typed("string", "MSEWatch::verdict"), typed("vector", vargs)])
    return json.dumps({"type": "data-message", "topic": "zeek/msewatch/verdict", "@data-type": "vector",
                       "data": [typed("count", 1), typed("count", 1), body]})  # fmt: skip


def bridge(port: str, shard: int, quiet: float | None) -> tuple[int, list[str]]:
    deadline = time.monotonic() + 30
    while True:
        try:
            ws = connect(f"ws://127.0.0.1:{port}/v1/messages/json", additional_headers={"X-Application-Name": f"shard{shard}"})
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    ws.send(json.dumps([TOPIC.format(shard)]))
    assert json.loads(ws.recv()).get("type") == "ack"
    n, problems = 0, []
    try:
        while True:
            msg = json.loads(ws.recv(timeout=quiet))
            if msg.get("type") != "data-message":
                continue
            if msg["data"][2]["data"][0]["data"] != "MSEWatch::flow_evidence":
                continue  # the package's MSEWatch::hello
            if msg["topic"] != TOPIC.format(shard):
                problems.append(f"shard {shard} got a message on {msg['topic']}")
            ws.send(answer(msg["data"][2]["data"][1]["data"]))
            n += 1
    except (TimeoutError, ConnectionClosed):
        pass
    return n, problems


def main() -> int:
    port = sys.argv[1].split("/")[0]
    n0, p0 = bridge(port, 0, 3.0)
    print(f"shard 0: {n0} flows")
    n1, p1 = bridge(port, 1, None)
    print(f"shard 1: {n1} flows")
    for p in p0 + p1:
        print(p)
    return 1 if p0 + p1 else 0


if __name__ == "__main__":
    sys.exit(main())
