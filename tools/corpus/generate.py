#!/usr/bin/python3
"""Real-client traffic corpus generator for msewatch.

Every scenario builds a fresh virtual LAN (lab.py), captures the bridge with tcpdump into
OUT/<scenario>.pcap, runs real programs (libtorrent, Transmission, aria2, rTorrent, nginx, curl,
OpenSSH, shadowsocks-libev, obfs4proxy, dig) between the namespaces, and tears everything down again.
Labels come only from the scenario's role table (who listens on which address and port, which
program runs on which host); the pcap is read back and every TCP/UDP 5-tuple observed gets the
label of the role it matches, or `unlabeled`.

usage: sudo tools/corpus/generate --out DIR --seed N [--scenarios a,b,...] [--list] [--keep-work]
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import lab as labmod  # noqa: E402
from pcapflows import hosts_in_flows, read_flows, refine_protocol  # noqa: E402

GENERATOR_VERSION = "1.0"
LABEL_COLUMNS = ["pcap", "proto", "orig_h", "orig_p", "resp_h", "resp_p", "label", "protocol", "client", "server"]
P2P_PROTOCOLS = {"bt_mse", "bt_plain", "utp", "dht", "tracker", "lsd"}
NORMAL_PROTOCOLS = {"tls", "ssh", "http", "dns", "shadowsocks", "obfs4", "other"}
LSD_GROUP = "239.192.152.143"
SYS_PY = "/usr/bin/python3"


# --------------------------------------------------------------------------------------------
# program versions (asked once from the installed binaries)

def _out(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return r.stdout + r.stderr
    except (OSError, subprocess.TimeoutExpired):
        return ""


def detect_versions() -> dict[str, str]:
    v: dict[str, str] = {}
    try:
        import libtorrent as lt
        v["libtorrent"] = "libtorrent " + ".".join(lt.__version__.split(".")[:3])
    except ImportError:
        pass
    pats = {
        "transmission": (["transmission-cli", "--version"], r"transmission-cli (\S+)", "transmission {}"),
        "aria2": (["aria2c", "--version"], r"aria2 version (\S+)", "aria2 {}"),
        "rtorrent": (["rtorrent", "-h"], r"client version (\d[\d.]*\d)", "rtorrent {}"),
        "nginx": (["nginx", "-v"], r"nginx/(\S+)", "nginx {}"),
        "curl": (["curl", "--version"], r"curl (\S+)", "curl {}"),
        "openssh": (["ssh", "-V"], r"OpenSSH_([^\s,]+)", "OpenSSH {}"),
        "shadowsocks": (["ss-server", "-h"], r"shadowsocks-libev (\S+)", "shadowsocks-libev {}"),
        "obfs4proxy": (["obfs4proxy", "-version"], r"obfs4proxy-(\S+)", "obfs4proxy {}"),
        "dig": (["dig", "-v"], r"DiG (\S+)", "dig {}"),
        "openssl": (["openssl", "version"], r"OpenSSL (\S+)", "openssl {}"),
        "tcpdump": (["tcpdump", "--version"], r"tcpdump version (\S+)", "tcpdump {}"),
    }
    for key, (argv, pat, fmt) in pats.items():
        m = re.search(pat, _out(argv))
        if m:
            v[key] = fmt.format(m.group(1))
    v["tracker"] = f"msewatch-tracker {GENERATOR_VERSION}"
    v["dns_server"] = f"msewatch-dns {GENERATOR_VERSION}"
    return v


# --------------------------------------------------------------------------------------------
# roles and labels

@dataclass
class Role:
    proto: str
    resp_h: str | None
    resp_p: int | None
    label: str
    protocol: str
    server: str
    client: str | None = None        # None: the program of the originating host
    orig_h: str | None = None
    tag: str = ""                    # appended to client and server, e.g. " [mse-plaintext]"


@dataclass
class Scenario:
    name: str
    out: str
    work: str
    seed: int
    versions: dict[str, str]
    hosts: dict[str, str] = field(default_factory=dict)        # name -> ip
    host_roles: dict[str, str] = field(default_factory=dict)   # ip -> p2p_host | normal_host
    program: dict[str, str] = field(default_factory=dict)      # ip -> program of that host
    roles: list[Role] = field(default_factory=list)
    lab: labmod.Lab | None = None
    bt_size: int = 512 << 10
    bulk_size: int = 1 << 20
    rng: random.Random = None

    # hosts ---------------------------------------------------------------------------------
    def host(self, name: str, role: str, program: str, last_octet: int | None = None) -> str:
        ip = f"{labmod.SUBNET}.{last_octet or 11 + len(self.hosts)}"
        self.hosts[name] = ip
        self.host_roles[ip] = role
        self.program[ip] = program
        return ip

    def ip(self, name: str) -> str:
        return self.hosts[name]

    def d(self, *parts: str) -> str:
        p = os.path.join(self.work, *parts)
        os.makedirs(p, exist_ok=True)
        return p

    def log(self, name: str) -> str:
        return os.path.join(self.d("logs"), name + ".log")

    def role(self, proto: str, resp: str | None, port: int | None, label: str, protocol: str,
             server: str, client: str | None = None, orig: str | None = None, tag: str = "") -> None:
        assert label in ("p2p", "normal") and protocol in (P2P_PROTOCOLS | NORMAL_PROTOCOLS)
        self.roles.append(Role(proto, self.hosts.get(resp, resp) if resp else None, port, label,
                               protocol, server, client, self.hosts.get(orig, orig) if orig else None, tag))

    def match(self, proto, orig_h, orig_p, resp_h, resp_p) -> Role | None:
        for r in self.roles:
            if r.proto == proto and (r.resp_h is None or r.resp_h == resp_h) \
                    and (r.resp_p is None or r.resp_p == resp_p) and (r.orig_h is None or r.orig_h == orig_h):
                return r
        return None

    # torrents ------------------------------------------------------------------------------
    def make_torrent(self, name: str, size: int, trackers: list[str] = (), piece: int = 16384):
        import libtorrent as lt
        src = self.d("src", name)
        data = random.Random(f"{self.seed}:{self.name}:{name}").randbytes(size)
        path = os.path.join(src, name + ".bin")
        with open(path, "wb") as f:
            f.write(data)
        fs = lt.file_storage()
        lt.add_files(fs, path)
        ct = lt.create_torrent(fs, piece, flags=lt.create_torrent.v1_only)
        for i, t in enumerate(trackers):
            ct.add_tracker(t, i)
        ct.set_creator("msewatch corpus")
        ct.set_priv(False)
        lt.set_piece_hashes(ct, src)
        entry = ct.generate()
        entry.pop(b"creation date", None)
        tpath = os.path.join(self.d("torrents"), name + ".torrent")
        with open(tpath, "wb") as f:
            f.write(lt.bencode(entry))
        return Torrent(name, path, tpath, data)

    def seed_dir(self, host: str, t: "Torrent") -> str:
        d = self.d("hosts", host, "dl")
        shutil.copy(t.data_path, os.path.join(d, os.path.basename(t.data_path)))
        return d

    def leech_dir(self, host: str) -> str:
        return self.d("hosts", host, "dl")

    # clients -------------------------------------------------------------------------------
    def libtorrent(self, host: str, port: int, torrents: list[dict], seed: bool, **kw) -> subprocess.Popen:
        cfg = dict(ip=self.ip(host), port=port, torrents=torrents, seed=seed, verbose=True, **kw)
        return self.lab.popen(host, [SYS_PY, os.path.join(HERE, "lt_node.py"), json.dumps(cfg)], self.log(host + "-lt"))

    def transmission(self, host: str, port: int, t: "Torrent", save: str, encryption: int, utp: bool = False):
        cfgdir = self.d("hosts", host, "transmission")
        settings = {
            "dht-enabled": False, "lpd-enabled": False, "pex-enabled": False, "utp-enabled": utp,
            "port-forwarding-enabled": False, "blocklist-enabled": False, "encryption": encryption,
            "peer-port": port, "peer-port-random-on-start": False, "bind-address-ipv4": self.ip(host),
            "download-dir": save, "incomplete-dir-enabled": False, "rename-partial-files": False,
            "ratio-limit-enabled": False, "idle-seeding-limit-enabled": False, "speed-limit-up-enabled": False,
            "speed-limit-down-enabled": False, "message-level": 2, "scrape-paused-torrents-enabled": False,
            "start-added-torrents": True, "trash-original-torrent-files": False, "cache-size-mb": 4,
        }
        with open(os.path.join(cfgdir, "settings.json"), "w") as f:
            json.dump(settings, f, indent=1)
        flag = {0: "-et", 1: "-ep", 2: "-er"}[encryption]
        return self.lab.popen(host, ["transmission-cli", "-g", cfgdir, "-w", save, "-p", str(port), flag,
                                     "-M", "-D", "-U", "-B", t.torrent_path], self.log(host + "-transmission"))

    def aria2(self, host: str, port: int, t: "Torrent", save: str, seed: bool, crypto: str | None):
        argv = ["aria2c", "--no-conf", "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
                "--enable-peer-exchange=false", "--disable-ipv6=true", f"--listen-port={port}",
                f"--dht-listen-port={port + 1000}", "--bt-detach-seed-only=false", "--check-certificate=false",
                "--console-log-level=notice", "--summary-interval=0", "--file-allocation=none",
                "--auto-save-interval=0", "--bt-save-metadata=false", "--bt-tracker-interval=5",
                "--bt-max-peers=50", "-d", save, f"--log={self.log(host + '-aria2-debug')}", "--log-level=info",
                f"--interface={self.ip(host)}"]
        if crypto == "arc4":
            argv += ["--bt-require-crypto=true", "--bt-min-crypto-level=arc4"]
        elif crypto == "plain":
            argv += ["--bt-require-crypto=true", "--bt-min-crypto-level=plain"]
        else:
            argv += ["--bt-require-crypto=false"]
        if seed:
            argv += ["--seed-time=600", "--bt-seed-unverified=true", "--check-integrity=false"]
        else:
            argv += ["--seed-time=0"]
        argv.append(t.torrent_path)
        return self.lab.popen(host, argv, self.log(host + "-aria2"))

    def rtorrent(self, host: str, port: int, t: "Torrent", save: str, encryption: str):
        home = self.d("hosts", host, "rtorrent")
        session = self.d("hosts", host, "rtorrent", "session")
        rc = os.path.join(home, "rtorrent.rc")
        with open(rc, "w") as f:
            f.write("\n".join([
                f"directory.default.set = {save}",
                f"session.path.set = {session}",
                f"network.port_range.set = {port}-{port}",
                "network.port_random.set = no",
                f"network.bind_address.set = {self.ip(host)}",
                f"network.local_address.set = {self.ip(host)}",
                "dht.mode.set = disable",
                "protocol.pex.set = no",
                "trackers.use_udp.set = yes",
                f"protocol.encryption.set = {encryption}",
                "system.daemon.set = true",
                "pieces.hash.on_completion.set = no",
                f"load.start_verbose = {t.torrent_path}",
                "",
            ]))
        env = dict(os.environ, HOME=home, TERM="dumb")
        return self.lab.popen(host, ["rtorrent", "-n", "-o", f"import={rc}"], self.log(host + "-rtorrent"), env=env)

    def tracker(self, host: str, port: int = 6969):
        return self.lab.popen(host, [SYS_PY, os.path.join(HERE, "tracker.py"), self.ip(host), str(port)],
                              self.log(host + "-tracker"))

    def wait_file(self, path: str, data: bytes, timeout: float, procs=()) -> float:
        """Wait until `path` holds exactly `data`; returns seconds waited."""
        t0 = time.time()
        digest = hashlib.sha256(data).digest()
        while time.time() - t0 < timeout:
            try:
                if os.path.getsize(path) == len(data):
                    with open(path, "rb") as f:
                        if hashlib.sha256(f.read()).digest() == digest:
                            return time.time() - t0
            except OSError:
                pass
            for p in procs:
                if p.poll() is not None and p.returncode not in (0, None):
                    raise RuntimeError(f"{p.args[3:6]} exited {p.returncode}")
            time.sleep(0.2)
        raise RuntimeError(f"transfer did not complete in {timeout}s: {path}")

    def wait_proc(self, p: subprocess.Popen, timeout: float) -> int:
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"timeout waiting for {' '.join(map(str, p.args[3:6]))}")


@dataclass
class Torrent:
    name: str
    data_path: str
    torrent_path: str
    data: bytes


# --------------------------------------------------------------------------------------------
# scenarios

SCENARIOS: dict[str, callable] = {}


def scenario(name: str):
    def deco(fn):
        SCENARIOS[name] = fn
        return fn
    return deco


BT_PORT = {"libtorrent": 6881, "transmission": 51413, "aria2": 6991, "rtorrent": 6901}
TRACKER_PORT = 6969


def bt_pair(s: Scenario, seeder: str, leecher: str, mode: str, utp: bool = False) -> None:
    """One seeder, one leecher, different implementations. mode: rc4 | plainsel | plain."""
    v = s.versions
    sip = s.host("seeder", "p2p_host", v[seeder])
    lip = s.host("leecher", "p2p_host", v[leecher])
    # Transmission and aria2 cannot be told a peer address, so a non-libtorrent leecher finds its
    # seeder through the local tracker; rTorrent as a seeder only accepts peers once it has
    # announced, so it gets the tracker too.
    need_tracker = leecher != "libtorrent" or seeder == "rtorrent"
    trackers = []
    if need_tracker:
        s.host("tracker", "p2p_host", v["tracker"], last_octet=250)
        trackers = [f"http://{s.ip('tracker')}:{TRACKER_PORT}/announce"]
    protocol = "utp" if utp else ("bt_plain" if mode == "plain" else "bt_mse")
    proto = "udp" if utp else "tcp"
    tag = {"rc4": "", "plainsel": " [mse-plaintext]", "plain": ""}[mode]
    if utp and mode == "rc4":
        tag = " [mse-rc4]"
    for name, prog in (("seeder", seeder), ("leecher", leecher)):
        s.role(proto, name, BT_PORT[prog], "p2p", protocol, v[prog], tag=tag)
    if need_tracker:
        s.role("tcp", "tracker", TRACKER_PORT, "p2p", "tracker", v["tracker"])
    yield
    t = s.make_torrent("payload", s.bt_size, trackers)
    procs = []
    if need_tracker:
        procs.append(s.tracker("tracker"))
        time.sleep(0.5)

    def start(host, prog, seed):
        d = s.seed_dir(host, t) if seed else s.leech_dir(host)
        if prog == "libtorrent":
            enc, level = {"rc4": ("forced", "rc4"), "plainsel": ("forced", "plaintext"),
                          "plain": ("disabled", "both")}[mode]
            peers = [f"{sip}:{BT_PORT[seeder]}"] if not seed else []
            return s.libtorrent(host, BT_PORT[prog], [dict(torrent=t.torrent_path, save=d, seed=seed,
                                                           trackers=bool(trackers))],
                                seed=seed, enc=enc, level=level, peers=peers, utp=utp, tcp=not utp, timeout=90)
        if prog == "transmission":
            return s.transmission(host, BT_PORT[prog], t, d, {"rc4": 2, "plain": 0}[mode], utp=utp)
        if prog == "aria2":
            return s.aria2(host, BT_PORT[prog], t, d, seed, {"rc4": "arc4", "plainsel": "plain", "plain": None}[mode])
        if prog == "rtorrent":
            enc = {"rc4": "require,require_RC4,allow_incoming,try_outgoing",
                   "plain": "none"}[mode]
            return s.rtorrent(host, BT_PORT[prog], t, d, enc)
        raise ValueError(prog)

    procs.append(start("seeder", seeder, True))
    time.sleep(2.5 if seeder != "libtorrent" else 1.5)   # let the seeder verify/announce first
    procs.append(start("leecher", leecher, False))
    s.wait_file(os.path.join(s.leech_dir("leecher"), "payload.bin"), t.data, 60)
    time.sleep(1.5)                                      # let the last haves/keepalives pass
    for p in reversed(procs):
        s.lab.stop(p)
    time.sleep(0.5)


def _register_pairs():
    pairs = [
        # (mode, seeder, leecher, utp)
        ("rc4", "transmission", "libtorrent", False),
        ("rc4", "libtorrent", "transmission", False),
        ("rc4", "aria2", "libtorrent", False),
        ("rc4", "libtorrent", "aria2", False),
        ("rc4", "transmission", "aria2", False),
        ("rc4", "aria2", "transmission", False),
        ("rc4", "rtorrent", "libtorrent", False),
        ("rc4", "libtorrent", "rtorrent", False),
        ("plainsel", "aria2", "libtorrent", False),
        ("plainsel", "libtorrent", "aria2", False),
        # aria2 always tries MSE first on connections it originates, even with
        # --bt-require-crypto=false, so in plain_* scenarios aria2 only ever accepts.
        ("plain", "transmission", "libtorrent", False),
        ("plain", "libtorrent", "transmission", False),
        ("plain", "aria2", "libtorrent", False),
    ]
    prefix = {"rc4": "mse_rc4", "plainsel": "mse_plain", "plain": "plain"}
    for mode, a, b, utp in pairs:
        name = f"{prefix[mode]}_{a}_{b}"
        SCENARIOS[name] = (lambda m, x, y, u: lambda s: bt_pair(s, x, y, m, u))(mode, a, b, utp)


_register_pairs()


def utp_pair(s: Scenario, seeder: str, leecher: str, encrypted: bool):
    return bt_pair(s, seeder, leecher, "rc4" if encrypted else "plain", utp=True)


SCENARIOS["utp_rc4_libtorrent_libtorrent"] = lambda s: utp_pair(s, "libtorrent", "libtorrent", True)
SCENARIOS["utp_plain_libtorrent_libtorrent"] = lambda s: utp_pair(s, "libtorrent", "libtorrent", False)
SCENARIOS["utp_plain_libtorrent_transmission"] = lambda s: utp_pair(s, "libtorrent", "transmission", False)


@scenario("dht_local")
def dht_local(s: Scenario):
    v = s.versions
    names = ["boot", "seeder", "node3", "leecher"]
    for n in names:
        s.host(n, "p2p_host", v["libtorrent"])
    port = 6881
    s.role("udp", None, port, "p2p", "dht", v["libtorrent"])
    s.role("tcp", None, port, "p2p", "bt_mse", v["libtorrent"])
    yield
    t = s.make_torrent("payload", s.bt_size, [])
    boot = f"{s.ip('boot')}:{port}"
    common = dict(dht=True, dht_bootstrap=boot, dht_nodes=[boot], enc="forced", level="rc4",
                  tcp=True, utp=False, timeout=90, dht_announce=True)
    procs = [s.libtorrent("boot", port, [], seed=True, dht=True, dht_bootstrap="", tcp=True, utp=False)]
    time.sleep(1)
    procs.append(s.libtorrent("node3", port, [], seed=True, **common))
    procs.append(s.libtorrent("seeder", port, [dict(torrent=t.torrent_path, save=s.seed_dir("seeder", t),
                                                    seed=True)], seed=True, **common))
    time.sleep(4)
    procs.append(s.libtorrent("leecher", port, [dict(torrent=t.torrent_path, save=s.leech_dir("leecher"))],
                              seed=False, **common))
    s.wait_file(os.path.join(s.leech_dir("leecher"), "payload.bin"), t.data, 75)
    time.sleep(1)
    for p in reversed(procs):
        s.lab.stop(p)


def tracker_scenario(s: Scenario, kind: str):
    v = s.versions
    s.host("tracker", "p2p_host", v["tracker"], last_octet=250)
    progs = [("seeder", "libtorrent"), ("leecher1", "transmission"), ("leecher2", "aria2"), ("leecher3", "libtorrent")]
    for n, prog in progs:
        s.host(n, "p2p_host", v[prog])
        s.role("tcp", n, BT_PORT[prog], "p2p", "bt_mse", v[prog])
    s.role(kind, "tracker", TRACKER_PORT, "p2p", "tracker", v["tracker"])
    yield
    url = f"http://{s.ip('tracker')}:{TRACKER_PORT}/announce" if kind == "tcp" else \
        f"udp://{s.ip('tracker')}:{TRACKER_PORT}/announce"
    t = s.make_torrent("payload", s.bt_size, [url])
    procs = [s.tracker("tracker")]
    time.sleep(0.5)
    procs.append(s.libtorrent("seeder", BT_PORT["libtorrent"], [dict(torrent=t.torrent_path,
                                                                     save=s.seed_dir("seeder", t), seed=True)],
                              seed=True, enc="forced", level="rc4"))
    time.sleep(1.5)
    procs.append(s.transmission("leecher1", BT_PORT["transmission"], t, s.leech_dir("leecher1"), 2))
    if kind == "tcp":
        procs.append(s.aria2("leecher2", BT_PORT["aria2"], t, s.leech_dir("leecher2"), False, "arc4"))
    procs.append(s.libtorrent("leecher3", BT_PORT["libtorrent"], [dict(torrent=t.torrent_path,
                                                                       save=s.leech_dir("leecher3"))],
                              seed=False, enc="forced", level="rc4", linger=3))
    for n in ("leecher1", "leecher3") + (("leecher2",) if kind == "tcp" else ()):
        s.wait_file(os.path.join(s.leech_dir(n), "payload.bin"), t.data, 60)
    time.sleep(1)
    for p in reversed(procs):
        s.lab.stop(p)


SCENARIOS["tracker_http"] = lambda s: tracker_scenario(s, "tcp")
SCENARIOS["tracker_udp"] = lambda s: tracker_scenario(s, "udp")


@scenario("lsd_local")
def lsd_local(s: Scenario):
    v = s.versions
    for n in ("seeder", "leecher"):
        s.host(n, "p2p_host", v["libtorrent"])
    s.role("udp", LSD_GROUP, 6771, "p2p", "lsd", v["libtorrent"])
    s.role("tcp", None, 6881, "p2p", "bt_mse", v["libtorrent"])
    yield
    t = s.make_torrent("payload", s.bt_size, [])
    procs = [s.libtorrent("seeder", 6881, [dict(torrent=t.torrent_path, save=s.seed_dir("seeder", t), seed=True)],
                          seed=True, lsd=True, enc="forced", level="rc4")]
    time.sleep(1)
    procs.append(s.libtorrent("leecher", 6881, [dict(torrent=t.torrent_path, save=s.leech_dir("leecher"))],
                              seed=False, lsd=True, timeout=60, enc="forced", level="rc4"))
    s.wait_file(os.path.join(s.leech_dir("leecher"), "payload.bin"), t.data, 60)
    time.sleep(1)
    for p in reversed(procs):
        s.lab.stop(p)


@scenario("swarm")
def swarm(s: Scenario):
    """One libtorrent leecher ('hub') meets 11 peers found through the tracker: mixed clients."""
    v = s.versions
    s.host("tracker", "p2p_host", v["tracker"], last_octet=250)
    s.host("hub", "p2p_host", v["libtorrent"], last_octet=10)
    peers = [("lt%d" % i, "libtorrent") for i in range(1, 8)] + [("tr1", "transmission"), ("tr2", "transmission"),
                                                                  ("ar1", "aria2"), ("ar2", "aria2")]
    for n, prog in peers:
        s.host(n, "p2p_host", v[prog])
    for n, prog in peers + [("hub", "libtorrent")]:
        s.role("tcp", n, BT_PORT[prog], "p2p", "bt_mse", v[prog])
    s.role("tcp", "tracker", TRACKER_PORT, "p2p", "tracker", v["tracker"])
    yield
    url = f"http://{s.ip('tracker')}:{TRACKER_PORT}/announce"
    t = s.make_torrent("payload", 2 * s.bt_size, [url])
    procs = [s.tracker("tracker")]
    time.sleep(0.5)
    for n, prog in peers:
        d = s.seed_dir(n, t)
        if prog == "libtorrent":
            procs.append(s.libtorrent(n, BT_PORT[prog], [dict(torrent=t.torrent_path, save=d, seed=True)],
                                      seed=True, enc="forced", level="rc4"))
        elif prog == "transmission":
            procs.append(s.transmission(n, BT_PORT[prog], t, d, 2))
        else:
            procs.append(s.aria2(n, BT_PORT[prog], t, d, True, "arc4"))
    time.sleep(4)
    procs.append(s.libtorrent("hub", BT_PORT["libtorrent"], [dict(torrent=t.torrent_path, save=s.leech_dir("hub"))],
                              seed=False, enc="forced", level="rc4", linger=2))
    s.wait_file(os.path.join(s.leech_dir("hub"), "payload.bin"), t.data, 60)
    time.sleep(2)
    for p in reversed(procs):
        s.lab.stop(p)


# --- negatives ---------------------------------------------------------------------------------

def make_cert(s: Scenario, cn: str) -> tuple[str, str]:
    d = s.d("pki")
    key, crt = os.path.join(d, cn + ".key"), os.path.join(d, cn + ".crt")
    if not os.path.exists(crt):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
                        "-days", "30", "-subj", f"/CN={cn}", "-addext", f"subjectAltName=DNS:{cn}"],
                       check=True, capture_output=True)
    return key, crt


def nginx(s: Scenario, host: str, files: dict[str, int], tls: bool = True, cn: str = "server.lan"):
    root = s.d("hosts", host, "www")
    rng = random.Random(f"{s.seed}:{s.name}:{host}")
    for fname, size in files.items():
        with open(os.path.join(root, fname), "wb") as f:
            if fname.endswith(".html"):
                words = [b"lorem", b"ipsum", b"dolor", b"sit", b"amet", b"msewatch", b"corpus", b"page"]
                body = b" ".join(rng.choice(words) for _ in range(size // 6))
                f.write(b"<!doctype html><html><head><title>" + fname.encode() + b"</title></head><body><p>"
                        + body[:size] + b"</p></body></html>\n")
            else:
                f.write(rng.randbytes(size))
    tmp = s.d("hosts", host, "nginx")
    key, crt = make_cert(s, cn)
    ip = s.ip(host)
    conf = os.path.join(tmp, "nginx.conf")
    ssl = f"listen {ip}:443 ssl; ssl_certificate {crt}; ssl_certificate_key {key}; " \
          f"ssl_protocols TLSv1.2 TLSv1.3;" if tls else ""
    with open(conf, "w") as f:
        f.write(f"""user root; worker_processes 1; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log {tmp}/access.log; sendfile off; keepalive_timeout 5;
  client_body_temp_path {tmp}/cb; proxy_temp_path {tmp}/px; fastcgi_temp_path {tmp}/fc;
  uwsgi_temp_path {tmp}/uw; scgi_temp_path {tmp}/sc;
  types {{ text/html html; application/octet-stream bin; }} default_type application/octet-stream;
  server {{ listen {ip}:80; {ssl} server_name _; root {root}; }}
}}
""")
    return s.lab.popen(host, ["nginx", "-e", os.path.join(tmp, "error.log"), "-c", conf], s.log(host + "-nginx"))


def tls_bulk(s: Scenario, version: str):
    v = s.versions
    s.host("client", "normal_host", v["curl"])
    s.host("server", "normal_host", v["nginx"])
    s.role("tcp", "server", 443, "normal", "tls", v["nginx"])
    yield
    p = nginx(s, "server", {"bulk.bin": s.bulk_size})
    time.sleep(1)
    flag = ["--tlsv1.3"] if version == "1.3" else ["--tlsv1.2", "--tls-max", "1.2"]
    rc = s.lab.run("client", ["curl", "-sS", "-k", *flag, "--resolve", f"server.lan:443:{s.ip('server')}",
                              "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{ssl_verify_result}\n",
                              "https://server.lan/bulk.bin"], s.log("client-curl"), timeout=60)
    if rc:
        raise RuntimeError(f"curl exited {rc}")
    time.sleep(0.5)
    s.lab.stop(p)


SCENARIOS["tls13_bulk"] = lambda s: tls_bulk(s, "1.3")
SCENARIOS["tls12_bulk"] = lambda s: tls_bulk(s, "1.2")


@scenario("http_plain")
def http_plain(s: Scenario):
    v = s.versions
    s.host("client", "normal_host", v["curl"])
    s.host("server", "normal_host", v["nginx"])
    s.role("tcp", "server", 80, "normal", "http", v["nginx"])
    yield
    p = nginx(s, "server", {"bulk.bin": s.bulk_size, "index.html": 4000}, tls=False)
    time.sleep(1)
    for path in ("index.html", "bulk.bin"):
        rc = s.lab.run("client", ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}\n",
                                  f"http://{s.ip('server')}/{path}"], s.log("client-curl"), timeout=60)
        if rc:
            raise RuntimeError(f"curl exited {rc}")
    time.sleep(0.5)
    s.lab.stop(p)


@scenario("https_fanout")
def https_fanout(s: Scenario):
    """Browsing-like: one client fetches small pages from 8 servers, several connections each."""
    v = s.versions
    s.host("client", "normal_host", v["curl"])
    servers = [f"web{i}" for i in range(1, 9)]
    for n in servers:
        s.host(n, "normal_host", v["nginx"])
        s.role("tcp", n, 443, "normal", "tls", v["nginx"])
    yield
    rng = random.Random(f"{s.seed}:fanout")
    procs = [nginx(s, n, {f"p{j}.html": rng.randint(2000, 40000) for j in range(4)} | {"a.bin": rng.randint(5000, 60000)},
                   cn=f"{n}.lan") for n in servers]
    time.sleep(1.5)
    order = [(n, f) for n in servers for f in ("p0.html", "p1.html", "a.bin", "p2.html")]
    rng.shuffle(order)
    for i in range(0, len(order), 4):
        batch = order[i:i + 4]
        argv = ["curl", "-sS", "-k", "--parallel", "--parallel-max", "4"]
        for n, f in batch:
            argv += ["--resolve", f"{n}.lan:443:{s.ip(n)}", "-o", "/dev/null", f"https://{n}.lan/{f}"]
        s.lab.run("client", argv, s.log("client-curl"), timeout=30)
        time.sleep(rng.uniform(0.05, 0.4))
    time.sleep(0.5)
    for p in procs:
        s.lab.stop(p)


def sshd(s: Scenario, host: str):
    d = s.d("hosts", host, "sshd")
    hk = os.path.join(d, "host_ed25519")
    ck = os.path.join(s.d("pki"), "client_ed25519")
    for k in (hk, ck):
        if not os.path.exists(k):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k], check=True)
    shutil.copy(ck + ".pub", os.path.join(d, "authorized_keys"))
    conf = os.path.join(d, "sshd_config")
    with open(conf, "w") as f:
        f.write(f"""Port 22
ListenAddress {s.ip(host)}
HostKey {hk}
PidFile {d}/sshd.pid
AuthorizedKeysFile {d}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
PrintLastLog no
UseDNS no
Subsystem sftp internal-sftp
""")
    os.makedirs("/run/sshd", exist_ok=True)
    return s.lab.popen(host, ["/usr/sbin/sshd", "-D", "-e", "-f", conf], s.log(host + "-sshd")), ck


SSH_OPTS = ["-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]


@scenario("ssh_interactive")
def ssh_interactive(s: Scenario):
    v = s.versions
    s.host("client", "normal_host", v["openssh"])
    s.host("server", "normal_host", v["openssh"])
    s.role("tcp", "server", 22, "normal", "ssh", v["openssh"])
    yield
    p, key = sshd(s, "server")
    time.sleep(1)
    rng = random.Random(f"{s.seed}:ssh")
    with open(s.log("client-ssh"), "ab") as fh:
        c = subprocess.Popen(["ip", "netns", "exec", s.lab.ns("client"), "ssh", *SSH_OPTS, "-i", key, "-tt",
                              f"root@{s.ip('server')}"], stdin=subprocess.PIPE, stdout=fh, stderr=subprocess.STDOUT,
                             start_new_session=True)
    s.lab.procs.append(c)
    time.sleep(1.5)
    for cmd in ("uname -a", "id", "ls -la /etc | head -20", "cat /etc/os-release", "df -h | head", "uptime", "exit"):
        for ch in cmd + "\n":                 # typed, one keystroke per packet
            c.stdin.write(ch.encode())
            c.stdin.flush()
            time.sleep(rng.uniform(0.04, 0.15))
        time.sleep(rng.uniform(0.3, 0.8))
    c.stdin.close()
    s.wait_proc(c, 15)
    s.lab.stop(p)


@scenario("ssh_scp")
def ssh_scp(s: Scenario):
    v = s.versions
    s.host("client", "normal_host", v["openssh"])
    s.host("server", "normal_host", v["openssh"])
    s.role("tcp", "server", 22, "normal", "ssh", v["openssh"])
    yield
    p, key = sshd(s, "server")
    src = os.path.join(s.d("src"), "file.bin")
    with open(src, "wb") as f:
        f.write(random.Random(f"{s.seed}:scp").randbytes(s.bulk_size))
    dst = s.d("hosts", "server", "incoming")
    time.sleep(1)
    rc = s.lab.run("client", ["scp", *SSH_OPTS, "-i", key, src, f"root@{s.ip('server')}:{dst}/"],
                   s.log("client-scp"), timeout=60)
    if rc:
        raise RuntimeError(f"scp exited {rc}")
    time.sleep(0.5)
    s.lab.stop(p)


@scenario("dns")
def dns(s: Scenario):
    v = s.versions
    s.host("client", "normal_host", v["dig"])
    s.host("resolver", "normal_host", v["dns_server"])
    s.role("udp", "resolver", 53, "normal", "dns", v["dns_server"])
    s.role("tcp", "resolver", 53, "normal", "dns", v["dns_server"])
    yield
    p = s.lab.popen("resolver", [SYS_PY, os.path.join(HERE, "dns_server.py"), s.ip("resolver"), "53"],
                    s.log("resolver-dns"))
    time.sleep(0.7)
    rng = random.Random(f"{s.seed}:dns")
    words = ["www", "mail", "api", "cdn", "static", "login", "shop", "news", "img", "files", "chat", "vpn"]
    for i in range(24):
        name = f"{rng.choice(words)}.{rng.choice(['example', 'corp', 'home', 'office'])}.lan"
        qtype = rng.choice(["A", "A", "A", "TXT"]) if i % 7 else "A"
        extra = ["+tcp"] if i % 11 == 5 else []
        if i % 9 == 4:
            name = name.replace(".lan", ".invalid")
        s.lab.run("client", ["dig", "+tries=1", "+time=2", *extra, f"@{s.ip('resolver')}", name, qtype],
                  s.log("client-dig"), timeout=10)
        time.sleep(rng.uniform(0.02, 0.2))
    s.lab.stop(p)


@scenario("shadowsocks")
def shadowsocks(s: Scenario):
    v = s.versions
    s.host("client", "normal_host", v["shadowsocks"] + " (ss-local) + " + v["curl"])
    s.host("proxy", "normal_host", v["shadowsocks"])
    s.host("web", "normal_host", v["nginx"])
    s.role("tcp", "proxy", 8388, "normal", "shadowsocks", v["shadowsocks"] + " (ss-server)",
           client=v["shadowsocks"] + " (ss-local)")
    s.role("tcp", "web", 80, "normal", "http", v["nginx"], client=v["shadowsocks"] + " (ss-server)")
    s.role("tcp", "web", 443, "normal", "tls", v["nginx"], client=v["curl"] + " via ss-server")
    yield
    pw = "corpus-" + hashlib.sha256(f"{s.seed}".encode()).hexdigest()[:16]
    procs = [nginx(s, "web", {"bulk.bin": s.bulk_size // 2, "index.html": 6000}),
             s.lab.popen("proxy", ["ss-server", "-s", s.ip("proxy"), "-p", "8388", "-k", pw,
                                   "-m", "chacha20-ietf-poly1305", "-t", "30", "--no-delay"], s.log("proxy-ss-server")),
             s.lab.popen("client", ["ss-local", "-s", s.ip("proxy"), "-p", "8388", "-b", "127.0.0.1", "-l", "1080",
                                    "-k", pw, "-m", "chacha20-ietf-poly1305", "-t", "30"], s.log("client-ss-local"))]
    time.sleep(1.5)
    web = s.ip("web")
    for url in (f"http://{web}/index.html", f"http://{web}/bulk.bin", f"https://{web}/index.html",
                f"https://{web}/bulk.bin"):
        rc = s.lab.run("client", ["curl", "-sS", "-k", "--socks5-hostname", "127.0.0.1:1080", "-o", "/dev/null",
                                  "-w", "%{http_code} %{size_download}\n", url], s.log("client-curl"), timeout=60)
        if rc:
            raise RuntimeError(f"curl via shadowsocks exited {rc} for {url}")
        time.sleep(0.3)
    time.sleep(0.5)
    for p in reversed(procs):
        s.lab.stop(p)


def shadowsocks_small(s: Scenario, method: str):
    """Small request/response pairs through shadowsocks (a false-positive probe for the MSE shape).

    ss-local (socks5 on 127.0.0.1:1080) and ss-tunnel (127.0.0.1:2222 -> web:22) on `client`, two
    ss-server processes on `proxy` (8388 for ss-local, 8389 for ss-tunnel, so the role table can tell
    them apart), nginx with 40 tiny files (50-400 bytes) and sshd on `web`. curl fetches tiny URLs
    (a) several per invocation over one keep-alive connection and (b) one connection per URL, then
    a small HTTPS keep-alive fetch, then a short interactive SSH session through ss-tunnel.
    """
    v = s.versions
    s.host("client", "normal_host", v["shadowsocks"] + " (ss-local, ss-tunnel) + " + v["curl"] + " + " + v["openssh"])
    s.host("proxy", "normal_host", v["shadowsocks"])
    s.host("web", "normal_host", v["nginx"] + " + " + v["openssh"])
    s.role("tcp", "proxy", 8388, "normal", "shadowsocks", v["shadowsocks"] + " (ss-server)",
           client=v["shadowsocks"] + " (ss-local)")
    s.role("tcp", "proxy", 8389, "normal", "shadowsocks", v["shadowsocks"] + " (ss-server)",
           client=v["shadowsocks"] + " (ss-tunnel)")
    s.role("tcp", "web", 80, "normal", "http", v["nginx"], client=v["shadowsocks"] + " (ss-server)")
    s.role("tcp", "web", 443, "normal", "tls", v["nginx"], client=v["curl"] + " via ss-server")
    s.role("tcp", "web", 22, "normal", "ssh", v["openssh"], client=v["openssh"] + " via ss-server")
    yield
    rng = random.Random(f"{s.seed}:{s.name}:plan")
    files = {f"t{i:02d}.{'html' if i % 3 == 0 else 'bin'}": rng.randint(50, 400) for i in range(40)}
    pw = "corpus-" + hashlib.sha256(f"{s.seed}".encode()).hexdigest()[:16]
    web = s.ip("web")
    sshd_p, key = sshd(s, "web")
    procs = [nginx(s, "web", files), sshd_p]
    for port in (8388, 8389):
        procs.append(s.lab.popen("proxy", ["ss-server", "-s", s.ip("proxy"), "-p", str(port), "-k", pw,
                                           "-m", method, "-t", "30", "--no-delay"], s.log(f"proxy-ss-server-{port}")))
    procs.append(s.lab.popen("client", ["ss-local", "-s", s.ip("proxy"), "-p", "8388", "-b", "127.0.0.1",
                                        "-l", "1080", "-k", pw, "-m", method, "-t", "30"], s.log("client-ss-local")))
    procs.append(s.lab.popen("client", ["ss-tunnel", "-s", s.ip("proxy"), "-p", "8389", "-b", "127.0.0.1",
                                        "-l", "2222", "-L", f"{web}:22", "-k", pw, "-m", method, "-t", "30"],
                             s.log("client-ss-tunnel")))
    time.sleep(1.5)
    names = sorted(files)
    rng.shuffle(names)
    # (a) keep-alive: 4 invocations of 5-7 URLs each = one proxied connection, several small pairs.
    # (b) one connection per URL for the rest.
    batches, i = [], 0
    for _ in range(4):
        n = rng.randint(5, 7)
        batches.append(names[i:i + n])
        i += n
    batches += [[u] for u in names[i:]]
    rng.shuffle(batches)
    curl = ["curl", "-sS", "-k", "--socks5-hostname", "127.0.0.1:1080", "-w", "%{http_code} %{size_download}\n"]
    for b in batches:
        argv = list(curl)
        for u in b:
            argv += ["-o", "/dev/null", f"http://{web}/{u}"]
        rc = s.lab.run("client", argv, s.log("client-curl"), timeout=30)
        if rc:
            raise RuntimeError(f"curl via shadowsocks exited {rc} for {b}")
        time.sleep(rng.uniform(0.1, 0.5))
    # (c) a small HTTPS fetch (TLS 1.3, 3 tiny objects over one connection).
    argv = list(curl) + ["--tlsv1.3"]
    for u in names[:3]:
        argv += ["-o", "/dev/null", f"https://{web}/{u}"]
    rc = s.lab.run("client", argv, s.log("client-curl"), timeout=30)
    if rc:
        raise RuntimeError(f"curl https via shadowsocks exited {rc}")
    time.sleep(0.3)
    # (d) interactive SSH through ss-tunnel, one keystroke per packet.
    with open(s.log("client-ssh"), "ab") as fh:
        c = subprocess.Popen(["ip", "netns", "exec", s.lab.ns("client"), "ssh", *SSH_OPTS, "-i", key, "-tt",
                              "-p", "2222", "root@127.0.0.1"], stdin=subprocess.PIPE, stdout=fh,
                             stderr=subprocess.STDOUT, start_new_session=True)
    s.lab.procs.append(c)
    time.sleep(1.5)
    for cmd in ("id", "uname -a", "ls /etc | head -5", "exit"):
        for ch in cmd + "\n":
            c.stdin.write(ch.encode())
            c.stdin.flush()
            time.sleep(rng.uniform(0.04, 0.15))
        time.sleep(rng.uniform(0.3, 0.8))
    c.stdin.close()
    if s.wait_proc(c, 15):
        raise RuntimeError("ssh via ss-tunnel failed")
    time.sleep(0.5)
    for p in reversed(procs):
        s.lab.stop(p)


SCENARIOS["shadowsocks_small"] = lambda s: shadowsocks_small(s, "aes-256-gcm")
SCENARIOS["shadowsocks_aead_chacha"] = lambda s: shadowsocks_small(s, "chacha20-ietf-poly1305")


OBFS4_PORT = 9443


def _wait_log(path: str, pat: str, timeout: float, proc: subprocess.Popen | None = None) -> re.Match:
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            with open(path, errors="replace") as f:
                m = re.search(pat, f.read())
            if m:
                return m
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[3:5]} exited {proc.returncode} (log {path})")
        time.sleep(0.1)
    raise RuntimeError(f"no /{pat}/ in {path} after {timeout}s")


def obfs4_small(s: Scenario, iat: int):
    """Small request/response pairs through obfs4 (a false-positive probe for the MSE shape).

    obfs4proxy runs standalone as a managed pluggable transport (TOR_PT_* environment, no tor, no
    bridge or directory anywhere): the server on `bridge` (obfs4 on :9443, ORPort = nginx on web:80,
    so it relays plain HTTP), the client on `client` (SOCKS5 on a random 127.0.0.1 port, the bridge
    args cert=...;iat-mode=N in the SOCKS5 username/password). curl fetches 30 tiny files (50-400
    bytes) with the bridge as URL host: (a) 3 invocations of 5-7 URLs each (one obfs4 connection,
    several small pairs), (b) one connection per URL for the rest, then (c) one 200 KiB download.
    """
    v = s.versions
    ob = v.get("obfs4proxy", "obfs4proxy")
    s.host("client", "normal_host", ob + " (client) + " + v["curl"])
    s.host("bridge", "normal_host", ob + " (server)")
    s.host("web", "normal_host", v["nginx"])
    s.role("tcp", "bridge", OBFS4_PORT, "normal", "obfs4", ob + f" (server, iat-mode={iat})",
           client=ob + f" (client, iat-mode={iat}) + " + v["curl"])
    s.role("tcp", "web", 80, "normal", "http", v["nginx"], client=ob + " (server)")
    yield
    rng = random.Random(f"{s.seed}:{s.name}:plan")
    files = {f"t{i:02d}.{'html' if i % 3 == 0 else 'bin'}": rng.randint(50, 400) for i in range(30)}
    files["bulk.bin"] = 200 << 10
    web, bridge = s.ip("web"), s.ip("bridge")
    procs = [nginx(s, "web", files, tls=False)]
    base = {k: v for k, v in os.environ.items() if not k.startswith("TOR_PT_")}
    sstate = s.d("hosts", "bridge", "obfs4")
    senv = dict(base, TOR_PT_MANAGED_TRANSPORT_VER="1", TOR_PT_SERVER_TRANSPORTS="obfs4",
                TOR_PT_SERVER_BINDADDR=f"obfs4-{bridge}:{OBFS4_PORT}", TOR_PT_ORPORT=f"{web}:80",
                TOR_PT_STATE_LOCATION=sstate, TOR_PT_SERVER_TRANSPORT_OPTIONS=f"obfs4:iat-mode={iat}")
    slog = s.log("bridge-obfs4proxy")
    procs.append(s.lab.popen("bridge", ["obfs4proxy", "-enableLogging", "-logLevel", "INFO"], slog, env=senv))
    _wait_log(slog, r"SMETHOD obfs4 ", 10, procs[-1])
    with open(os.path.join(sstate, "obfs4_bridgeline.txt")) as f:
        cert = re.search(r"cert=(\S+)", f.read()).group(1)
    cenv = dict(base, TOR_PT_MANAGED_TRANSPORT_VER="1", TOR_PT_CLIENT_TRANSPORTS="obfs4",
                TOR_PT_STATE_LOCATION=s.d("hosts", "client", "obfs4"))
    clog = s.log("client-obfs4proxy")
    procs.append(s.lab.popen("client", ["obfs4proxy", "-enableLogging", "-logLevel", "INFO"], clog, env=cenv))
    socks = _wait_log(clog, r"CMETHOD obfs4 socks5 (127\.0\.0\.1:\d+)", 10, procs[-1]).group(1)
    # pt-spec: the args string goes in the SOCKS5 username, continued in the password (never empty).
    user, pw = f"cert={cert};", f"iat-mode={iat}"
    time.sleep(0.5)
    names = sorted(n for n in files if n != "bulk.bin")
    rng.shuffle(names)
    batches, i = [], 0
    for _ in range(3):
        n = rng.randint(5, 7)
        batches.append(names[i:i + n])
        i += n
    batches += [[u] for u in names[i:]]
    rng.shuffle(batches)
    batches.append(["bulk.bin"])
    curl = ["curl", "-sS", "--socks5", socks, "--proxy-user", f"{user}:{pw}",
            "-w", "%{http_code} %{size_download}\n"]
    for b in batches:
        argv = list(curl)
        for u in b:
            argv += ["-o", "/dev/null", f"http://{bridge}:{OBFS4_PORT}/{u}"]
        before = len(open(s.log("client-curl"), "rb").read().splitlines()) if os.path.exists(s.log("client-curl")) else 0
        rc = s.lab.run("client", argv, s.log("client-curl"), timeout=60)
        if rc:
            raise RuntimeError(f"curl via obfs4 exited {rc} for {b}")
        with open(s.log("client-curl"), "rb") as f:
            got = f.read().splitlines()[before:]
        want = [f"200 {files[u]}".encode() if u.endswith(".bin") else b"200" for u in b]
        if [g if g.startswith(b"200 ") and w != b"200" else g[:3] for g, w in zip(got, want)] != want \
                or len(got) != len(want):
            raise RuntimeError(f"curl via obfs4: {got} != {want}")
        time.sleep(rng.uniform(0.1, 0.5))
    time.sleep(0.5)
    for p in reversed(procs):
        s.lab.stop(p)


SCENARIOS["obfs4_small"] = lambda s: obfs4_small(s, 0)
SCENARIOS["obfs4_iat"] = lambda s: obfs4_small(s, 1)


# --------------------------------------------------------------------------------------------
# driver

def run_scenario(name: str, out: str, seed: int, versions: dict, keep_work: bool, bt_size: int = 512 << 10,
                 bulk_size: int = 1 << 20) -> tuple[list, list]:
    work = tempfile.mkdtemp(prefix=f"mwc-{name}-")
    os.chmod(work, 0o755)
    s = Scenario(name, out, work, seed, versions, rng=random.Random(f"{seed}:{name}"), bt_size=bt_size,
                 bulk_size=bulk_size)
    gen = SCENARIOS[name](s)
    next(gen)                                   # declares hosts and roles, stops at `yield`
    s.lab = labmod.Lab(dict(s.hosts))
    pcap = os.path.join(out, name + ".pcap")
    if os.path.exists(pcap):
        os.unlink(pcap)
    try:
        s.lab.up()
        tcpd = s.lab.popen("@bridge", ["tcpdump", "-Z", "root", "-i", "br0", "-s", "0", "-U", "-nn", "-w", pcap],
                           s.log("tcpdump"))
        for _ in range(50):
            with open(s.log("tcpdump"), "rb") as f:
                if b"listening on" in f.read():
                    break
            time.sleep(0.1)
        time.sleep(0.3)
        try:
            next(gen)
        except StopIteration:
            pass
        else:
            raise RuntimeError("scenario yielded twice")
        time.sleep(0.5)
        s.lab.stop(tcpd, sig=signal.SIGINT)
    except BaseException:
        print(f"--- logs of {name} in {work}", file=sys.stderr)
        keep_work = True
        raise
    finally:
        s.lab.down()
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)
    labels, hosts = label_pcap(s, pcap)
    return labels, hosts


def label_pcap(s: Scenario, pcap: str) -> tuple[list, list]:
    rows = []
    pname = os.path.basename(pcap)
    for fl in read_flows(pcap):
        r = s.match(fl.proto, fl.orig_h, fl.orig_p, fl.resp_h, fl.resp_p)
        if r is None:
            rows.append([pname, fl.proto, fl.orig_h, fl.orig_p, fl.resp_h, fl.resp_p, "unlabeled", "", "", ""])
            continue
        client = (r.client or s.program.get(fl.orig_h, "")) + r.tag
        rows.append([pname, fl.proto, fl.orig_h, fl.orig_p, fl.resp_h, fl.resp_p, r.label,
                     refine_protocol(r.protocol, fl), client, r.server + r.tag])
    hosts = [[pname, ip, role] for ip, role in sorted(s.host_roles.items(), key=lambda x: tuple(map(int, x[0].split("."))))]
    return rows, hosts_in_flows(hosts, rows)


def merge_csv(path: str, header: list[str], rows: list[list], replace_pcaps: set[str]) -> None:
    """Replace the rows of `replace_pcaps`, keep other scenarios' rows whose pcap still exists.

    Kept rows are copied byte for byte, and the file's line terminator is kept (refine_labels.py
    writes CRLF), so running a subset of scenarios changes no other scenario's rows.
    """
    old, nl = [], "\n"
    if os.path.exists(path):
        with open(path, newline="") as f:
            lines = f.read().splitlines(keepends=True)
        if lines:
            nl = "\r\n" if lines[0].endswith("\r\n") else "\n"
            if next(csv.reader([lines[0]]), None) == header:
                for ln in lines[1:]:
                    r = next(csv.reader([ln]), None)
                    if r and r[0] not in replace_pcaps and os.path.exists(os.path.join(os.path.dirname(path), r[0])):
                        old.append(ln if ln.endswith("\n") else ln + nl)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator=nl)
        w.writerow(header)
        f.writelines(old)
        w.writerows([list(map(str, r)) for r in rows])


def write_manifest(out: str, seed: int, versions: dict) -> None:
    lines = [f"generator tools/corpus/generate {GENERATOR_VERSION}", f"seed {seed}",
             f"command sudo tools/corpus/generate --out {out} --seed {seed} --keep-going",
             "last_run sudo tools/corpus/generate " + " ".join(sys.argv[1:])]
    path = os.path.join(out, "MANIFEST")
    if os.path.exists(path):            # keep the note refine_labels.py leaves (its labels stay valid)
        with open(path) as f:
            lines += [ln.rstrip("\n") for ln in f if ln.startswith("refined ")]
    lines += [f"version {k} {v}" for k, v in sorted(versions.items())]
    for fn in sorted(os.listdir(out)):
        if fn == "MANIFEST" or not os.path.isfile(os.path.join(out, fn)):
            continue
        with open(os.path.join(out, fn), "rb") as f:
            lines.append(f"sha256 {hashlib.sha256(f.read()).hexdigest()}  {fn}")
    with open(os.path.join(out, "MANIFEST"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="output directory (pcaps, labels.csv, hosts.csv, MANIFEST)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scenarios", help="comma-separated scenario names (default: all)")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument("--keep-work", action="store_true", help="keep per-scenario work dirs (logs)")
    ap.add_argument("--keep-going", action="store_true", help="continue after a failing scenario")
    ap.add_argument("--bt-kib", type=int, default=512, help="BitTorrent payload per torrent, KiB (default 512)")
    ap.add_argument("--bulk-kib", type=int, default=1024, help="TLS/HTTP/scp bulk download, KiB (default 1024)")
    a = ap.parse_args()
    if a.list:
        print("\n".join(SCENARIOS))
        return 0
    if not a.out:
        ap.error("--out is required")
    if os.geteuid() != 0:
        print("generate: needs root (network namespaces, tcpdump)", file=sys.stderr)
        return 2
    names = a.scenarios.split(",") if a.scenarios else list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenarios: {', '.join(unknown)} (see --list)")
    os.makedirs(a.out, exist_ok=True)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    versions = detect_versions()
    failed = []
    try:
        for n in names:
            t0 = time.time()
            print(f"== {n}", flush=True)
            try:
                labels, hosts = run_scenario(n, a.out, a.seed, versions, a.keep_work, a.bt_kib << 10, a.bulk_kib << 10)
            except Exception as e:
                traceback.print_exc()
                failed.append(n)
                pcap = os.path.join(a.out, n + ".pcap")
                if os.path.exists(pcap):
                    os.unlink(pcap)
                merge_csv(os.path.join(a.out, "labels.csv"), LABEL_COLUMNS, [], {n + ".pcap"})
                merge_csv(os.path.join(a.out, "hosts.csv"), ["pcap", "host", "role"], [], {n + ".pcap"})
                if not a.keep_going:
                    raise
                continue
            merge_csv(os.path.join(a.out, "labels.csv"), LABEL_COLUMNS, labels, {n + ".pcap"})
            merge_csv(os.path.join(a.out, "hosts.csv"), ["pcap", "host", "role"], hosts, {n + ".pcap"})
            un = sum(1 for r in labels if r[6] == "unlabeled")
            size = os.path.getsize(os.path.join(a.out, n + ".pcap"))
            print(f"   {n}: {size} bytes, {len(labels)} flows, {un} unlabeled, {time.time() - t0:.1f}s", flush=True)
    finally:
        labmod.delete_stale()
        write_manifest(a.out, a.seed, versions)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
