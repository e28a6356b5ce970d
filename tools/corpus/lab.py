"""Virtual LAN of network namespaces for the corpus generator (stdlib only, needs root).

One namespace per host, each with one veth (``eth0``) whose peer sits in a Linux bridge that
lives in its own namespace. Nothing is routed anywhere else: the namespaces have no default
route, so no client can reach a public host even if it tried. Offloads are switched off on
every veth end so the capture on the bridge sees wire-sized packets with real checksums.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field

PREFIX = "mwc-"          # every namespace we create starts with this; stale ones are ours
BRIDGE_NS = PREFIX + "br"
SUBNET = "10.77.0"
NETEM_WARNED = False


def sh(*args: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess:
    res = subprocess.run(list(args), capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"command failed ({res.returncode}): {' '.join(args)}\n{res.stderr.strip()}")
    return res


def existing_namespaces() -> list[str]:
    out = sh("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def kill_namespace_processes(ns: str) -> None:
    """Kill what still runs inside one of *our* namespaces (all of it was started by us)."""
    for _ in range(20):
        pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
        if not pids:
            return
        sig = signal.SIGTERM if _ < 10 else signal.SIGKILL
        for pid in pids:
            try:
                os.kill(int(pid), sig)
            except (ProcessLookupError, ValueError):
                pass
        time.sleep(0.2)


def delete_stale() -> None:
    for ns in existing_namespaces():
        if ns.startswith(PREFIX):
            kill_namespace_processes(ns)
            sh("ip", "netns", "del", ns, check=False)


@dataclass
class Lab:
    hosts: dict[str, str]                 # host name -> IPv4 address
    delay: str = "2ms"
    jitter: str = "1ms"
    netem: bool = True
    procs: list[subprocess.Popen] = field(default_factory=list)

    @staticmethod
    def ns(host: str) -> str:
        return PREFIX + host

    def up(self) -> None:
        delete_stale()
        sh("ip", "netns", "add", BRIDGE_NS)
        b = ["ip", "-n", BRIDGE_NS]
        sh(*b, "link", "set", "lo", "up")
        sh(*b, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
        # No IPv6 anywhere: keeps ND/MLD noise out of the captures.
        self._no_ipv6(BRIDGE_NS)
        sh(*b, "link", "set", "br0", "mtu", "1500", "up")
        sh("ip", "netns", "exec", BRIDGE_NS, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=0", check=False)
        for i, (host, addr) in enumerate(sorted(self.hosts.items())):
            ns = self.ns(host)
            sh("ip", "netns", "add", ns)
            self._no_ipv6(ns)
            hv, pv = f"mwh{os.getpid() % 10000}x{i}", f"p{i}"
            sh("ip", "link", "add", hv, "mtu", "1500", "type", "veth", "peer", "name", pv + "tmp")
            sh("ip", "link", "set", hv, "netns", ns)
            sh("ip", "link", "set", pv + "tmp", "netns", BRIDGE_NS)
            n = ["ip", "-n", ns]
            sh(*n, "link", "set", hv, "name", "eth0")
            sh(*b, "link", "set", pv + "tmp", "name", pv)
            sh(*n, "link", "set", "lo", "up")
            sh(*n, "addr", "add", f"{addr}/24", "dev", "eth0")
            sh(*n, "link", "set", "eth0", "up")
            sh(*b, "link", "set", pv, "master", "br0", "up")
            # Multicast route for LSD (239.192.152.143) stays on the LAN.
            sh(*n, "route", "add", "224.0.0.0/4", "dev", "eth0", check=False)
            for nsx, dev in ((ns, "eth0"), (BRIDGE_NS, pv)):
                sh("ip", "netns", "exec", nsx, "ethtool", "-K", dev, "tso", "off", "gso", "off",
                   "gro", "off", "lro", "off", "tx", "off", "rx", "off", check=False)
            if self.netem:
                r = sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root", "netem",
                       "delay", self.delay, self.jitter, check=False)
                if r.returncode != 0:
                    # The kernel may lack sch_netem; the LAN then has ~0 latency. Say so once.
                    global NETEM_WARNED
                    if not NETEM_WARNED:
                        print(f"lab: netem unavailable ({r.stderr.strip()}); running without delay", flush=True)
                        NETEM_WARNED = True
                    self.netem = False
        time.sleep(0.3)

    @staticmethod
    def _no_ipv6(ns: str) -> None:
        for key in ("all", "default"):
            sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"net.ipv6.conf.{key}.disable_ipv6=1", check=False)
        sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.lo.disable_ipv6=1", check=False)

    def popen(self, host: str, argv: list[str], log: str, cwd: str | None = None,
              stdin=subprocess.DEVNULL, env: dict | None = None) -> subprocess.Popen:
        ns = BRIDGE_NS if host == "@bridge" else self.ns(host)
        fh = open(log, "ab")
        p = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=fh, stderr=subprocess.STDOUT,
                             stdin=stdin, cwd=cwd, start_new_session=True, env=env)
        fh.close()
        self.procs.append(p)
        return p

    def run(self, host: str, argv: list[str], log: str, timeout: float = 60, cwd: str | None = None,
            input: bytes | None = None) -> int:
        with open(log, "ab") as fh:
            p = subprocess.Popen(["ip", "netns", "exec", self.ns(host), *argv], stdout=fh,
                                 stderr=subprocess.STDOUT, stdin=subprocess.PIPE if input is not None
                                 else subprocess.DEVNULL, cwd=cwd, start_new_session=True)
            self.procs.append(p)
            try:
                p.communicate(input=input, timeout=timeout)
            except subprocess.TimeoutExpired:
                self.stop(p)
                raise RuntimeError(f"timeout after {timeout}s: {' '.join(argv)} (log {log})")
            return p.returncode

    @staticmethod
    def stop(p: subprocess.Popen, sig: int = signal.SIGTERM, wait: float = 5.0) -> None:
        if p.poll() is not None:
            return
        try:
            os.killpg(p.pid, sig)          # the process group we created with start_new_session
        except ProcessLookupError:
            return
        try:
            p.wait(wait)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(5)

    def down(self) -> None:
        for p in reversed(self.procs):
            self.stop(p, wait=3.0)
        self.procs.clear()
        for host in self.hosts:
            ns = self.ns(host)
            kill_namespace_processes(ns)
            sh("ip", "netns", "del", ns, check=False)
        kill_namespace_processes(BRIDGE_NS)
        sh("ip", "netns", "del", BRIDGE_NS, check=False)
