"""Feed peers msewatch found into Suricata datasets over its unix command socket.

Protocol (Suricata's unix-manager, as spoken by ``suricatasc``): connect to the socket, send
``{"version": "0.2"}``, read ``{"return": "OK", ...}``; then one JSON object per command,
``{"command": NAME, "arguments": {...}}`` terminated by a newline, each answered by one JSON
object ending in a newline. ``dataset-add`` / ``dataset-remove`` take ``setname``, ``settype``
and ``datavalue``: the address as text for ``ip``/``ipv4`` sets, base64 for ``string`` sets
(PROTOCOL-FACTS §5; argument names from python/suricata/sc/specs.py).

``PeerFeedback`` adds each peer's address to the ``ip`` set (``msewatch-peers``, matched by the
rules' ``ip.src``/``ip.dst; dataset:isset``) and, when asked, ``ip:port`` to a ``string`` set.
Every entry carries an expiry: adding it again extends it, and ``expire()`` removes stale ones
with ``dataset-remove`` so the set tracks what msewatch currently believes.
"""
from __future__ import annotations

import base64
import ipaddress
import json
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

PROTOCOL_VERSION = "0.2"
PEER_SET = "msewatch-peers"
ENDPOINT_SET = "msewatch-peer-endpoints"


class FeedbackError(Exception):
    """Suricata refused a command or the socket failed; the message says which and why."""


class SuricataSocket:
    """A minimal client for Suricata's unix command socket."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.path)
        except OSError as e:
            s.close()
            raise FeedbackError(f"cannot connect to Suricata's unix socket {self.path}: {e} "
                                f"(is unix-command enabled and Suricata running?)") from e
        self._sock, self._buf = s, b""
        s.sendall(json.dumps({"version": PROTOCOL_VERSION}).encode())
        reply = self._recv()
        if reply.get("return") != "OK":
            self.close()
            raise FeedbackError(f"Suricata refused protocol version {PROTOCOL_VERSION}: {reply.get('message')}")

    def _recv(self) -> dict:
        assert self._sock is not None
        while True:
            # a reply is one JSON object terminated by a newline
            nl = self._buf.find(b"\n")
            if nl >= 0:
                msg, self._buf = self._buf[:nl], self._buf[nl + 1:]
                if msg.strip():
                    return json.loads(msg)
                continue
            try:
                chunk = self._sock.recv(65536)
            except OSError as e:
                raise FeedbackError(f"reading from {self.path}: {e}") from e
            if not chunk:
                # some versions close without a trailing newline: try what we have
                if self._buf.strip():
                    msg, self._buf = self._buf, b""
                    return json.loads(msg)
                raise FeedbackError(f"Suricata closed the socket {self.path}")
            self._buf += chunk

    def command(self, name: str, arguments: dict | None = None, *, check: bool = True) -> dict:
        """Send one command; return the reply ({"return": "OK"|"NOK", "message": ...})."""
        msg = {"command": name}
        if arguments:
            msg["arguments"] = arguments
        data = (json.dumps(msg) + "\n").encode()
        for attempt in (0, 1):
            if self._sock is None:
                self.connect()
            try:
                self._sock.sendall(data)
                reply = self._recv()
                break
            except (FeedbackError, OSError):
                self.close()
                if attempt:
                    raise
        if check and reply.get("return") != "OK":
            raise FeedbackError(f"Suricata answered {name} {arguments or ''} with {reply.get('message')!r}")
        return reply

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def __enter__(self) -> SuricataSocket:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # convenience wrappers
    def dataset_add(self, setname: str, settype: str, value: str) -> dict:
        return self.command("dataset-add", {"setname": setname, "settype": settype, "datavalue": value})

    def dataset_remove(self, setname: str, settype: str, value: str) -> dict:
        return self.command("dataset-remove", {"setname": setname, "settype": settype, "datavalue": value})


def encode_value(settype: str, value: str) -> str:
    """The datavalue form Suricata expects: text for ip/ipv4, base64 for string sets."""
    if settype == "string":
        return base64.b64encode(value.encode()).decode()
    if settype in ("ip", "ipv4"):
        return str(ipaddress.ip_address(value))
    return value  # md5/sha256: hex, as given


def endpoint(ip: str, port: int) -> str:
    """ip:port, IPv6 in brackets ([2001:db8::1]:6881)."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@dataclass
class PeerFeedback:
    """Adds peers to Suricata datasets with a TTL; call expire() periodically (or on each add)."""

    sock: SuricataSocket
    ttl: float = 3600.0
    ip_set: str = PEER_SET
    endpoint_set: str | None = None  # e.g. ENDPOINT_SET (type string) to also add ip:port
    max_entries: int = 100_000
    min_probability: float = 0.0
    local_nets: tuple = ()  # ip_network objects: the side in these is never fed back
    clock: Callable[[], float] = time.time
    entries: dict[tuple[str, str, str], float] = field(default_factory=dict)  # (set, type, value) -> expiry
    added: int = 0
    removed: int = 0
    errors: int = 0

    def _put(self, setname: str, settype: str, value: str, now: float) -> None:
        key = (setname, settype, value)
        if key not in self.entries:
            if len(self.entries) >= self.max_entries:
                oldest = min(self.entries, key=self.entries.get)
                self._remove(oldest)
            self.sock.dataset_add(setname, settype, encode_value(settype, value))
            self.added += 1
        self.entries[key] = now + self.ttl

    def _remove(self, key: tuple[str, str, str]) -> None:
        setname, settype, value = key
        self.entries.pop(key, None)
        reply = self.sock.command("dataset-remove", {"setname": setname, "settype": settype,
                                                     "datavalue": encode_value(settype, value)}, check=False)
        if reply.get("return") == "OK":
            self.removed += 1
        else:
            self.errors += 1

    def add_peer(self, ip: str, port: int | None = None, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self._put(self.ip_set, "ip", ip, now)
        if self.endpoint_set and port is not None:
            self._put(self.endpoint_set, "string", endpoint(ip, port), now)

    def expire(self, now: float | None = None) -> int:
        """dataset-remove every entry past its TTL; returns how many."""
        now = self.clock() if now is None else now
        stale = [k for k, exp in self.entries.items() if exp <= now]
        for k in stale:
            self._remove(k)
        return len(stale)

    def _is_local(self, ip: str) -> bool:
        if not self.local_nets:
            return False
        try:
            a = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(a in n for n in self.local_nets)

    def peers_of(self, v: dict) -> list[tuple[str, int]]:
        """The remote side(s) of a flow verdict: the responder, and the originator if not local."""
        out = []
        if not self._is_local(v["resp_h"]) or not self.local_nets:
            out.append((v["resp_h"], int(v["resp_p"])))
        if self.local_nets and not self._is_local(v["orig_h"]):
            out.append((v["orig_h"], int(v["orig_p"])))
        return out

    def on_verdict(self, v: dict, now: float | None = None) -> list[tuple[str, int]]:
        """Feed a flow verdict (FlowVerdict.to_dict()); returns the peers added or refreshed."""
        if v.get("type", "flow") != "flow" or v.get("label") != "p2p_likely":
            return []
        if float(v.get("probability") or 0.0) < self.min_probability:
            return []
        peers = self.peers_of(v)
        for ip, port in peers:
            self.add_peer(ip, port, now)
        self.expire(now)
        return peers

    def feed(self, verdicts: Iterable[dict]) -> int:
        n = 0
        for v in verdicts:
            n += len(self.on_verdict(v))
        return n

    def clear(self) -> None:
        """Remove everything this feedback added (on shutdown)."""
        for k in list(self.entries):
            self._remove(k)
