"""Zeek WebSocket API wire formats (Broker's v1 JSON data model).

`v1` is the generic, table-driven codec for every v1 `@data-type` and for the message
envelopes (subscription, ack, error, data-message, Zeek events). `events` maps the
msewatch evidence/verdict events (docs/evidence.md) onto it.
"""

from .v1 import WireError  # noqa: F401
