"""BridgeConnection's own framing (sources/zeek_ws.py: small whole text frames cut from the
stream without websockets' parser) against the library's parser alone: the same server
byte stream, cut into reads in many ways, gives the same messages in the same order, the
same replies (pongs, the closing handshake) and the same end state - with pings, fragmented
messages, binary frames, frames of every length encoding, frames too large to cut here,
frames beyond max_size, masked frames (a protocol error from a server) and a close."""

from __future__ import annotations

import asyncio
import os
import random
import struct

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from msewatch.sources import zeek_ws
from msewatch.sources.zeek_ws import BridgeConnection


def frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = False) -> bytes:
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, m | n])
    elif n < 1 << 16:
        head = bytes([b0, m | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


def text(i: int, size: int) -> bytes:
    body = f'{{"i":{i},"pad":"'.encode()
    return body + b"x" * max(0, size - len(body) - 2) + b'"}'


def stream(rng: random.Random, large: int) -> tuple[bytes, list[bytes]]:
    """A server byte stream of data frames with control frames and fragments among them,
    ending with a close; and the messages it carries."""
    out, msgs = [], []
    for i in range(60):
        kind = rng.choice(["small", "small", "small", "mid", "long", "ping", "frag", "binary", "empty"])
        if kind == "small":
            m = text(i, rng.randrange(8, 125))
        elif kind == "mid":
            m = text(i, rng.randrange(126, 70000))
        elif kind == "long":
            m = text(i, rng.choice((70000, large)))
        elif kind == "empty":
            m = b""
        elif kind == "ping":
            out.append(frame(0x9, b"p%d" % i))
            continue
        elif kind == "binary":  # random bytes: framing that lost its place would misread them
            m = rng.randbytes(rng.randrange(1, 3000))
            out.append(frame(0x2, m))
            msgs.append(m)
            continue
        else:  # a message in three fragments, a ping between two of them
            m = text(i, 300)
            out += [frame(0x1, m[:100], fin=False), frame(0x0, m[100:200], fin=False), frame(0x9, b"mid"),
                    frame(0x0, m[200:])]
            msgs.append(m)
            continue
        out.append(frame(0x1, m))
        msgs.append(m)
    out.append(frame(0x8, struct.pack("!H", 1001) + b"Terminating"))
    out.append(frame(0x1, b'{"after":"close"}'))  # discarded after the close
    return b"".join(out), msgs


def cuts(data: bytes, rng: random.Random, how: str) -> list[bytes]:
    if how == "whole":
        return [data]
    if how == "bytes":
        return [data[i:i + 1] for i in range(len(data))]
    out, i = [], 0
    while i < len(data):
        k = rng.choice((1, 2, 3, 7, 64, 1000, 65536)) if how == "random" else 1460
        out.append(data[i:i + k])
        i += k
    return out


async def on_a_connection(act, **kw):
    """act(ws) on a BridgeConnection (connect's `kw`) to a local websockets server that reads all
    it gets and sends nothing on its own; act's result."""

    async def handler(ws):
        async for _ in ws:
            pass

    async with serve(handler, "127.0.0.1", 0, ping_interval=None, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        ws = await connect(f"ws://127.0.0.1:{port}/", create_connection=BridgeConnection, ping_interval=None,
                           compression=None, **kw)
        try:
            return act(ws)
        finally:
            await ws.close()


def run_client(chunks: list[bytes], framing: bool, max_size: int = 16 << 20):
    """Feed the chunks to a connected client's data_received; return the messages, the
    client's writes, its state and close codes."""

    def act(ws):
        got: list[bytes] = []
        ws.on_message = lambda data: got.append(bytes(data))
        if framing:
            assert ws.enable_framing()
        writes: list[bytes] = []
        real_write = ws.transport.write
        ws.transport.write = lambda b: (writes.append(bytes(b)), real_write(b))[1]
        for c in chunks:
            ws.data_received(c)
            # between reads the protocol's parser is at a frame boundary (nothing buffered)
            # unless a frame is passing through it
            if framing and ws._framing and not ws._through:
                assert not ws.protocol.reader.buffer
        state = ws.protocol.state.name
        close = (ws.protocol.close_rcvd and ws.protocol.close_rcvd.code,
                 ws.protocol.close_sent and ws.protocol.close_sent.code)
        ws.transport.abort()
        return got, b"".join(writes), state, close

    return on_a_connection(act, max_size=max_size)


def unmasked(writes: bytes) -> list[tuple[int, bytes]]:
    """The client's frames (masked, as a client sends them), unmasked: opcode, payload."""
    out, i = [], 0
    while i < len(writes):
        b0, b1 = writes[i], writes[i + 1]
        n, i = b1 & 0x7F, i + 2
        if n == 126:
            n, i = struct.unpack("!H", writes[i:i + 2])[0], i + 2
        elif n == 127:
            n, i = struct.unpack("!Q", writes[i:i + 8])[0], i + 8
        key, i = writes[i:i + 4], i + 4
        out.append((b0 & 0x0F, bytes(b ^ key[j % 4] for j, b in enumerate(writes[i:i + n]))))
        i += n
    return out


@pytest.mark.parametrize("how", ["whole", "random", "mss"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_framing_gives_what_the_library_gives(how, seed, monkeypatch):
    monkeypatch.setattr(zeek_ws, "_SMALL", 4096)  # frames above 4 KiB take the protocol's path
    rng = random.Random(seed)
    data, msgs = stream(rng, large=200_000)
    chunks = cuts(data, random.Random(seed + 10), how)
    fast = asyncio.run(run_client(chunks, True))
    slow = asyncio.run(run_client(chunks, False))
    assert slow[0] == msgs  # the reference: the library's parser
    assert fast[0] == msgs
    assert unmasked(fast[1]) == unmasked(slow[1])  # pongs, then the close reply
    assert fast[2:] == slow[2:] == ("CLOSING", (1001, 1001))


def test_every_byte_its_own_read():
    rng = random.Random(7)
    data, msgs = stream(rng, large=5000)
    chunks = cuts(data[:30000], rng, "bytes")  # cut mid-frame: no close, the last frame incomplete
    fast = asyncio.run(run_client(chunks, True))
    slow = asyncio.run(run_client(chunks, False))
    assert fast[0] == slow[0] and len(fast[0]) > 5
    assert unmasked(fast[1]) == unmasked(slow[1])
    assert fast[2:] == slow[2:]


@pytest.mark.parametrize("bad", ["too_big", "masked", "reserved_bits", "bad_opcode"])
def test_protocol_errors_are_the_library_s(bad):
    good = frame(0x1, b'{"ok":1}')
    if bad == "too_big":
        evil = frame(0x1, b"y" * 3000)  # beyond max_size below
    elif bad == "masked":
        evil = frame(0x1, b'{"masked":1}', mask=True)
    elif bad == "reserved_bits":
        evil = bytes([0xC1]) + frame(0x1, b'{"rsv":1}')[1:]
    else:
        evil = bytes([0x83]) + frame(0x1, b'{"op":3}')[1:]
    data = good + evil + good
    for how in ("whole", "bytes"):
        chunks = cuts(data, random.Random(1), how)
        fast = asyncio.run(run_client(chunks, True, max_size=2048))
        slow = asyncio.run(run_client(chunks, False, max_size=2048))
        assert fast[0] == slow[0] == [b'{"ok":1}']
        assert unmasked(fast[1]) == unmasked(slow[1])
        assert fast[2:] == slow[2:] and fast[2] == "CLOSING"


def test_send_texts_frames_as_the_protocol_does():
    """BridgeConnection.send_texts (the verdict batches) against the protocol's send_text:
    the same frames once unmasked, every length encoding, str and bytes, a key per frame."""
    messages = [b"", "é" * 3, b"a" * 125, b"b" * 126, "c" * 65535, b"d" * 65536, b'{"v":1}' * 9000]

    def frames(ours: bool):
        def act(ws):
            p = ws.protocol
            if ours:
                ws.send_texts(messages)
            else:
                for m in messages:
                    p.send_text(m.encode() if isinstance(m, str) else m)
            return b"".join(p.data_to_send())

        return asyncio.run(on_a_connection(act))

    ours, theirs = frames(True), frames(False)
    assert unmasked(ours) == unmasked(theirs) == [(1, m.encode() if isinstance(m, str) else m) for m in messages]
    assert ours != theirs  # random keys


def test_after_messages_follows_every_read_that_handed_over_messages(monkeypatch):
    """The read path's write trigger (BridgeConnection.after_messages, VerdictSender.write_now
    in the bridge): called after the last message of every read that handed one over, never
    for a read of control frames or of a frame's first bytes only, and within a long read
    every 4th message once flush_after has passed (0 here: at each 4th)."""
    events: list = []

    def scenario(flush_after: float):
        def act(ws):
            ws.on_message = lambda data: events.append(bytes(data))
            ws.after_messages = lambda: events.append("after")
            ws.flush_after = flush_after
            assert ws.enable_framing()
            m = [frame(0x1, b'{"i":%d}' % i) for i in range(10)]
            ws.data_received(m[0] + m[1])
            ws.data_received(frame(0x9, b"ping"))  # no message: no call
            whole = m[2]
            ws.data_received(whole[:3])  # a frame's first bytes: no call
            ws.data_received(whole[3:])
            ws.data_received(b"".join(m[3:10]))
            ws.transport.abort()

        return on_a_connection(act)

    asyncio.run(scenario(3600.0))
    msgs = [b'{"i":%d}' % i for i in range(10)]
    assert events == [msgs[0], msgs[1], "after", msgs[2], "after", *msgs[3:10], "after"]
    events.clear()
    asyncio.run(scenario(0.0))
    assert events == [msgs[0], msgs[1], "after", msgs[2], "after", *msgs[3:7], "after", *msgs[7:10], "after"]


@pytest.mark.parametrize("compiled_frames", [True, False])
def test_write_texts_writes_the_frames_send_texts_builds(monkeypatch, compiled_frames):
    """BridgeConnection.write_texts (the read path's verdict writes): the frames go to the
    transport in one write, the same once unmasked as the protocol's own, built in C
    (msewatch._wire.client_frames) or, without it or for a str, in Python by send_texts."""
    from msewatch.sources import zeek_ws as source

    if not compiled_frames:
        monkeypatch.setattr(source, "_client_frames", None)
    elif source._client_frames is None:
        pytest.skip("msewatch._wire is not built")
    batches = [[b"", b"a" * 125, b"b" * 126, b"d" * 65536, b'{"v":1}' * 9000], [b"x", "\u00e9" * 3]]

    def act(ws):
        transport, writes = ws.transport, []

        class Recorder:
            def write(self, data):
                writes.append(bytes(data))

            def __getattr__(self, name):
                return getattr(transport, name)

        ws.transport = Recorder()
        try:
            for batch in batches:
                ws.write_texts(batch)
        finally:
            ws.transport = transport
        return writes

    writes = asyncio.run(on_a_connection(act))
    assert len(writes) == len(batches)  # one write per batch
    for data, batch in zip(writes, batches):
        assert unmasked(data) == [(1, m.encode() if isinstance(m, str) else m) for m in batch]
