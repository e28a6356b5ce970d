#!/usr/bin/python3
"""Minimal authoritative DNS responder for the corpus LAN (UDP and TCP, stdlib only).

usage: dns_server.py IP PORT
Answers A queries for names under .lan with a stable 10.77.1.x address, TXT with a short string,
everything else with NXDOMAIN. Never forwards anything anywhere.
"""
import hashlib
import socket
import socketserver
import struct
import sys
import threading


def parse_qname(msg: bytes, off: int):
    labels = []
    while True:
        n = msg[off]
        off += 1
        if n == 0:
            break
        labels.append(msg[off:off + n].decode("ascii", "replace"))
        off += n
    return ".".join(labels), off


def answer(query: bytes) -> bytes | None:
    if len(query) < 12:
        return None
    tid, flags, qd = struct.unpack(">HHH", query[:6])
    if flags & 0x8000 or qd != 1:
        return None
    name, off = parse_qname(query, 12)
    qtype, qclass = struct.unpack(">HH", query[off:off + 4])
    question = query[12:off + 4]
    rr = b""
    rcode = 0
    if name.lower().endswith(".lan") and qtype == 1:
        h = hashlib.sha1(name.lower().encode()).digest()
        rr = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 300, 4) + bytes([10, 77, 1, 1 + h[0] % 250])
    elif name.lower().endswith(".lan") and qtype == 16:
        txt = ("v=corpus " + name).encode()[:200]
        rr = b"\xc0\x0c" + struct.pack(">HHIH", 16, 1, 300, len(txt) + 1) + bytes([len(txt)]) + txt
    elif not name.lower().endswith(".lan"):
        rcode = 3
    rflags = 0x8400 | (flags & 0x0100) | rcode          # QR, AA, copy RD
    return struct.pack(">HHHHHH", tid, rflags, 1, 1 if rr else 0, 0, 0) + question + rr


class TCPHandler(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            hdr = self.request.recv(2)
            if len(hdr) < 2:
                return
            n = struct.unpack(">H", hdr)[0]
            q = b""
            while len(q) < n:
                chunk = self.request.recv(n - len(q))
                if not chunk:
                    return
                q += chunk
            a = answer(q)
            if a:
                self.request.sendall(struct.pack(">H", len(a)) + a)


def main():
    ip, port = sys.argv[1], int(sys.argv[2])
    tcp = socketserver.ThreadingTCPServer((ip, port), TCPHandler)
    tcp.daemon_threads = True
    threading.Thread(target=tcp.serve_forever, daemon=True).start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((ip, port))
    print(f"dns on {ip}:{port}", flush=True)
    while True:
        q, addr = sock.recvfrom(4096)
        try:
            a = answer(q)
        except (IndexError, struct.error):
            a = None
        if a:
            sock.sendto(a, addr)


if __name__ == "__main__":
    main()
