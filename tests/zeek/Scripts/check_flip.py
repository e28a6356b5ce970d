#!/usr/bin/env python3
"""Check the evidence of make_pcap.py --flip's capture (evidence-flip btest)."""

from __future__ import annotations

import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
if len(rows) != 1:
    sys.exit(f"expected the evidence of one flow, got {len(rows)}")
ev = rows[0]
want = {
    "orig_h": "10.0.1.1",
    "orig_p": 50000,
    "resp_h": "10.0.1.2",
    "resp_p": 7000,
    "sizes": [100, -200, 50],
    "bursts": [100, -200, 50],
    "orig_heads": [(b"C" * 100).hex()],
    "resp_heads": [(b"S" * 200).hex()],
    "handshake": False,
    "closed": True,
}
bad = {k: (ev.get(k), v) for k, v in want.items() if ev.get(k) != v}
if bad:
    sys.exit("differs (got, expected): " + json.dumps(bad)[:2000])
print("flip ok")
