"""An in-process stand-in for Zeek's WebSocket API server (/v1/messages/json).

It behaves as PROTOCOL-FACTS §8 records Zeek 8.0.10 behaving:
- the first client message is a JSON array of topic prefixes; the reply is the ack
  {"type":"ack","endpoint":"3637e5ee-5051-56db-ab55-97b6b21221f2-websocket-0","version":"8.0.10"}
- non-JSON or an unknown `type`:
  {"type":"error","code":"deserialization_failed","context":"failed to decode JSON object"}
- wrong argument types/count or an unknown event:
  {"type":"error","code":"deserialization_failed","context":"failed to create Zeek event"}
- errors keep the connection open; on termination clients get close code 1001 "Terminating"
- the X-Application-Name request header names the client

Events it knows (and checks argument types of) are the ones Zeek's msewatch scripts
handle: MSEWatch::verdict, MSEWatch::host_verdict and MSEWatch::flow_labels
(docs/evidence.md).
"""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from msewatch.wire import v1
from msewatch.wire.events import FLOW_LABELS, HOST_VERDICT, VERDICT

ACK_ENDPOINT = "3637e5ee-5051-56db-ab55-97b6b21221f2-websocket-0"  # PROTOCOL-FACTS §8
ACK_VERSION = "8.0.10"
ERR_JSON = "failed to decode JSON object"
ERR_EVENT = "failed to create Zeek event"

# the Zeek-side signatures (docs/evidence.md), as v1 types
SIGNATURES = {
    VERDICT: ["string", "address", "port", "address", "port", "string", "string", "real", "vector", "timestamp", "count"],
    HOST_VERDICT: ["address", "string", "real", "real", "vector", "timestamp"],
    FLOW_LABELS: ["string", "string"],
}


def _arg_types_ok(msg: dict) -> bool:
    try:
        name = msg["data"][2]["data"][0]["data"]
        args = msg["data"][2]["data"][1]["data"]
        return [a["@data-type"] for a in args] == SIGNATURES[name]
    except (KeyError, IndexError, TypeError):
        return False


class FakeZeek:
    def __init__(self, port: int = 0, *, read: bool = True) -> None:
        self.port = port
        self.server: Any = None
        self.connections: list[ServerConnection] = []
        self.subscriptions: list[list[str]] = []
        self.app_names: list[str | None] = []
        self.received: list[tuple[str, v1.Event]] = []  # events the client published
        self.errors_sent: list[str] = []
        self.reading = asyncio.Event()  # clear = do not read client messages (backpressure)
        if read:
            self.reading.set()
        self.got_message = asyncio.Condition()
        self.closing = False

    async def start(self) -> "FakeZeek":
        # close_timeout short: a stalled or dying Zeek does not answer the closing handshake
        self.server = await serve(
            self._handler, "127.0.0.1", self.port, compression=None, max_queue=1, close_timeout=0.3, ping_interval=None
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/messages/json"

    async def _handler(self, ws: ServerConnection) -> None:
        self.app_names.append(ws.request.headers.get("X-Application-Name"))
        try:
            topics = v1.decode_subscription(await ws.recv())
        except v1.WireError:
            await ws.send(v1.encode_error("deserialization_failed", ERR_JSON))
            return
        self.subscriptions.append(topics)
        self.connections.append(ws)
        ws.topics = topics  # type: ignore[attr-defined]
        await ws.send(v1.encode_ack(ACK_ENDPOINT, ACK_VERSION))
        if not self.reading.is_set():
            # a stalled Zeek: stop reading the socket, so that not even pings are seen
            # (a pong from the WebSocket layer is what the bridge takes as delivery)
            ws.transport.pause_reading()
            await self.reading.wait()
            if self.closing:
                return
            ws.transport.resume_reading()
        while True:
            await self.reading.wait()
            if self.closing:  # a terminated Zeek processes nothing more
                return
            try:
                raw = await ws.recv()
            except Exception:
                return
            await self._on_client_message(ws, raw)

    async def _on_client_message(self, ws: ServerConnection, raw: Any) -> None:
        try:
            msg = v1.decode_message(raw)
        except v1.WireError as e:
            if "malformed JSON" in str(e) or "message type" in str(e) or "JSON object" in str(e):
                return await self._error(ws, ERR_JSON)
            return await self._error(ws, ERR_EVENT)
        if not isinstance(msg, v1.DataMessage):
            return await self._error(ws, ERR_JSON)
        try:
            event = v1.event_from_value(msg.value)
        except v1.WireError:
            return await self._error(ws, ERR_EVENT)
        if event.name not in SIGNATURES or not _arg_types_ok(v1.loads(raw)):
            return await self._error(ws, ERR_EVENT)
        async with self.got_message:
            self.received.append((msg.topic, event))
            self.got_message.notify_all()

    async def _error(self, ws: ServerConnection, context: str) -> None:
        self.errors_sent.append(context)
        await ws.send(v1.encode_error("deserialization_failed", context))

    async def publish(self, topic: str, text: str) -> int:
        """Send a message to every client subscribed to a prefix of `topic`."""
        n = 0
        for ws in list(self.connections):
            if any(topic.startswith(t) for t in getattr(ws, "topics", [])):
                try:
                    await ws.send(text)
                    n += 1
                except Exception:
                    pass
        return n

    async def send_raw(self, text: str) -> None:
        for ws in list(self.connections):
            await ws.send(text)

    async def wait_for(self, predicate, timeout: float = 10.0) -> None:
        async def _wait():
            async with self.got_message:
                await self.got_message.wait_for(predicate)

        await asyncio.wait_for(_wait(), timeout)

    async def wait_connected(self, n: int = 1, timeout: float = 10.0) -> None:
        async def _wait():
            while len(self.connections) < n:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(_wait(), timeout)

    async def terminate(self) -> None:
        """What a client sees when Zeek exits: close code 1001 "Terminating"."""
        self.closing = True
        for ws in list(self.connections):
            try:
                await ws.close(1001, "Terminating")
            except Exception:
                pass
        self.connections.clear()
        self.reading.set()  # let paused handlers see `closing` and end
        self.server.close()
        await self.server.wait_closed()
