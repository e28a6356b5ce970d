#!/usr/bin/python3
"""A tiny BitTorrent tracker for the corpus LAN: HTTP /announce (compact) and UDP BEP 15.

usage: tracker.py IP PORT   (HTTP on TCP PORT, UDP tracker on UDP PORT)
Stdlib only. Peers are kept in memory per info_hash; a requester never gets itself back.
"""
import random
import socket
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INTERVAL = 5
PROTOCOL_ID = 0x41727101980
swarms: dict[bytes, dict[tuple[str, int], tuple[float, bool]]] = {}
lock = threading.Lock()


def bencode(x) -> bytes:
    if isinstance(x, int):
        return b"i%de" % x
    if isinstance(x, str):
        x = x.encode()
    if isinstance(x, bytes):
        return b"%d:%s" % (len(x), x)
    if isinstance(x, list):
        return b"l" + b"".join(bencode(i) for i in x) + b"e"
    if isinstance(x, dict):
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in sorted(x.items())) + b"e"
    raise TypeError(type(x))


def announce(info_hash: bytes, ip: str, port: int, left: int, stopped: bool, want: int = 50):
    now = time.time()
    with lock:
        sw = swarms.setdefault(info_hash, {})
        if stopped:
            sw.pop((ip, port), None)
        else:
            sw[(ip, port)] = (now, left == 0)
        others = [(k, v) for k, v in sw.items() if k != (ip, port) and now - v[0] < 120]
    seeders = sum(1 for _, v in others if v[1])
    peers = b"".join(socket.inet_aton(h) + struct.pack(">H", p) for (h, p), _ in others[:want])
    print(f"{now:.3f} announce {info_hash.hex()} from {ip}:{port} left={left} -> {len(others)} peers", flush=True)
    return peers, seeders, len(others) - seeders


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/announce":
            self.send_error(404)
            return
        q = {}
        for part in url.query.split("&"):
            if "=" in part:
                k, v = part.split("=", 1)
                q[k] = urllib.parse.unquote_to_bytes(v)
        try:
            ih = q["info_hash"]
            port = int(q["port"])
            left = int(q.get("left", b"0"))
        except (KeyError, ValueError):
            body = bencode({"failure reason": "bad announce"})
        else:
            peers, s, l = announce(ih, self.client_address[0], port, left, q.get("event") == b"stopped")
            body = bencode({"interval": INTERVAL, "min interval": INTERVAL, "complete": s,
                            "incomplete": l, "peers": peers})
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print("http " + fmt % args, flush=True)


def udp_loop(ip: str, port: int):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((ip, port))
    conns: dict[int, float] = {}
    while True:
        data, addr = sock.recvfrom(2048)
        if len(data) >= 16 and struct.unpack(">QII", data[:16])[0] == PROTOCOL_ID \
                and struct.unpack(">I", data[8:12])[0] == 0:
            tid = data[12:16]
            cid = random.getrandbits(64)
            conns[cid] = time.time()
            sock.sendto(struct.pack(">I", 0) + tid + struct.pack(">Q", cid), addr)
        elif len(data) >= 98 and struct.unpack(">I", data[8:12])[0] == 1:
            cid, _, tid = struct.unpack(">QI4s", data[:16])
            if cid not in conns:
                sock.sendto(struct.pack(">I", 3) + tid + b"unknown connection id", addr)
                continue
            ih = data[16:36]
            left = struct.unpack(">Q", data[64:72])[0]
            event = struct.unpack(">I", data[80:84])[0]
            want = struct.unpack(">i", data[92:96])[0]
            pport = struct.unpack(">H", data[96:98])[0]
            peers, s, l = announce(ih, addr[0], pport, left, event == 3, want if want > 0 else 50)
            sock.sendto(struct.pack(">I4sIII", 1, tid, INTERVAL, l, s) + peers, addr)


def main():
    ip, port = sys.argv[1], int(sys.argv[2])
    threading.Thread(target=udp_loop, args=(ip, port), daemon=True).start()
    srv = ThreadingHTTPServer((ip, port), Handler)
    print(f"tracker on {ip}:{port} (http+udp)", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
