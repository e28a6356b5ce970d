#!/usr/bin/env python3
"""Live Zeek + bridge under restarts, on replayed real captures: lost and duplicated verdicts.

    sudo .venv/bin/python tools/zeek_live.py restarts [--scenario NAME ...] [--speed 8] [--rounds 1]
    sudo .venv/bin/python tools/zeek_live.py cluster [--speed 8]

Everything runs inside a network namespace this script creates (`mwlive-<pid>-<n>`) and
deletes again, also on failure: a veth pair, `zeek -i` on one end, the corpus captures
replayed onto the other (tools/zeek_replay.py), `msewatch run` as the bridge on the
namespace's loopback. Needs root, `ip`, and Zeek 8 (PATH or /opt/zeek/bin/zeek).

restarts: one run per scenario (fresh namespace, Zeek and bridge each time):

    steady        no restart (the baseline)
    bridge-kill   kill -9 the bridge three times during the replay (the second time after it
                  hung for 1 s under SIGSTOP, so that evidence it had not answered dies with
                  it), restart it after 1 s
    bridge-term   SIGTERM the bridge three times during the replay, restart it after 1 s
    bridge-late   the bridge starts only when 40% of the replay is over
    zeek-term     SIGTERM Zeek in the middle of the replay, start it again after 1 s
    zeek-kill     kill -9 Zeek in the middle of the replay, start it again after 1 s
    mixed         bridge late (15%), hung + kill -9 (40%), SIGTERM (65%): the CI smoke

cluster: manager, logger, proxy and two workers (a cluster-layout.zeek, CLUSTER_NODE per
process), each worker sniffing its own veth pair; the corpus split between the two;
two bridges on shards 0/2 and 1/2 connected to the manager.

For every flow whose evidence a Zeek raised (a test script logs each uid), it counts the
flow verdicts in msewatch.log and the notices in notice.log (notice suppression is off
in these runs, so every p2p_likely flow has its own notice):

    lost        raised, and no flow verdict in any msewatch.log
    duplicated  uids with more than one flow verdict line (or notice line)
    zeek_lost   raised by a Zeek that was then stopped and never logged: Zeek's own loss
                (its in-memory tables die with it), counted apart from the bridge's

Prints a table, and writes the numbers as JSON with --json FILE. Exit status 0 whatever
the counts (the tests assert on the JSON); 2 when the setup fails.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dpkt

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "zeek-scripts"
CORPUS = REPO / "tests" / "data" / "corpus"
REPLAY = REPO / "tools" / "zeek_replay.py"
NS_PREFIX = "mwlive-"
WS_PORT = 27759
STATE_INTERVAL: float | None = None  # --state-interval
FULL_VERDICTS = "all"  # --full-verdicts: the bridges' zeek.full_verdicts
SCENARIOS = ("steady", "bridge-kill", "bridge-term", "bridge-late", "zeek-term", "zeek-kill", "mixed")

# Loaded by every Zeek of these runs: log each raised evidence uid, write every log line
# at once (a Zeek killed with -9 loses no line it wrote), one notice per flow.
TEST_SCRIPT = r"""
@load base/frameworks/notice
@load base/frameworks/telemetry

redef MSEWatch::notice_suppression = 0 secs;

module MSEWatchLive;

export {
	redef enum Log::ID += { RAISED };
	type Raised: record {
		ts:  time   &log;
		uid: string &log;
		node: string &log;
	};
}

event zeek_init()
	{
	Log::create_stream(RAISED, Log::Stream($columns=Raised, $path="msewatch_raised"));
	Log::set_buf(RAISED, F);
	Log::set_buf(MSEWatch::LOG, F);
	Log::set_buf(Notice::LOG, F);
	Log::set_buf(Conn::LOG, F);
	}

event MSEWatch::flow_evidence(version: count, uid: string, community_id: string,
    orig_h: addr, orig_p: port, resp_h: addr, resp_p: port, ts: time,
    sizes: string, times: string, bursts: string,
    orig_heads: string, resp_heads: string,
    orig_pkts: count, resp_pkts: count, orig_bytes: count, resp_bytes: count,
    duration: interval, handshake: bool, closed: bool, complete: bool)
	{
	if ( ! is_remote_event() )
		Log::write(RAISED, Raised($ts=network_time(), $uid=uid,
		                          $node=Cluster::is_enabled() ? Cluster::node : "standalone"));
	}

event zeek_done()
	{
	local f = open(fmt("metrics-%s.txt", Cluster::is_enabled() ? Cluster::node : "standalone"));
	for ( i, m in Telemetry::collect_metrics("msewatch") )
		print f, fmt("%s %.0f", m$opts$name, m$value);
	close(f);
	}
"""


class SetupError(Exception):
    pass


def zeek_binary() -> str:
    found = shutil.which("zeek")
    if found:
        return found
    if os.access("/opt/zeek/bin/zeek", os.X_OK):
        return "/opt/zeek/bin/zeek"
    raise SetupError("zeek not found (PATH or /opt/zeek/bin/zeek)")


def can_run() -> str | None:
    """None if this machine can run the live tests, else the reason it cannot."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    try:
        zeek_binary()
    except SetupError as e:
        return str(e)
    return None


def sh(*argv: str) -> None:
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise SetupError(f"{' '.join(argv)}: {r.stderr.strip() or r.returncode}")


class Namespace:
    """A network namespace with veth pairs (senderN <-> sniffN) and loopback up."""

    _count = 0

    def __init__(self, pairs: int = 1) -> None:
        Namespace._count += 1
        self.name = f"{NS_PREFIX}{os.getpid()}-{Namespace._count}"
        self.pairs = pairs
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> "Namespace":
        sh("ip", "netns", "add", self.name)
        try:
            sh("ip", "-n", self.name, "link", "set", "lo", "up")
            for i in range(self.pairs):
                sh("ip", "-n", self.name, "link", "add", f"send{i}", "type", "veth", "peer", "name", f"sniff{i}")
                for dev in (f"send{i}", f"sniff{i}"):
                    sh("ip", "netns", "exec", self.name, "sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1")
                    sh("ip", "-n", self.name, "link", "set", dev, "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def popen(self, argv: list[str], **kw) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", self.name, *argv], **kw)
        self.procs.append(p)
        return p

    def close(self) -> None:
        """Kill every process still in the namespace (only ours live there), delete it."""
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        r = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
        for pid in r.stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        for p in self.procs:
            with contextlib.suppress(Exception):
                p.wait(10)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def wait_for(predicate, timeout: float, what: str, step: float = 0.1) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise SetupError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(step)


def file_has(path: Path, text: str) -> bool:
    try:
        return text in path.read_text(errors="replace")
    except FileNotFoundError:
        return False


def replay_seconds(pcaps: list[str], speed: float, max_gap: float, gap: float) -> float:
    """How long zeek_replay.py takes for these captures (its own timing rule)."""
    total = 0.0
    for path in pcaps:
        last = None
        with open(path, "rb") as fh:
            for ts, _ in dpkt.pcap.Reader(fh):
                if last is not None:
                    total += min(ts - last, max_gap)
                last = ts
        total += gap * speed
    return total / speed


# ----------------------------------------------------------------------------- processes


@dataclass
class Run:
    """One namespace with Zeek(s), bridge(s) and a replay, and the files they leave."""

    ns: Namespace
    workdir: Path
    zeek_runs: list[Path] = field(default_factory=list)  # one folder per Zeek incarnation
    bridge_logs: list[Path] = field(default_factory=list)
    zeek: subprocess.Popen | None = None
    bridges: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start_zeek(self, iface: str = "sniff0", extra: tuple[str, ...] = ()) -> None:
        d = self.workdir / f"zeek-{len(self.zeek_runs)}"
        d.mkdir()
        (d / "live-test.zeek").write_text(TEST_SCRIPT)
        self.zeek_runs.append(d)
        out = open(d / "zeek.out", "w")
        # one working folder per incarnation (their logs apart), one unanswered_file for
        # all: as a Zeek restarted in the same folder would find it
        saved = f"MSEWatch::unanswered_file={self.workdir / 'msewatch_unanswered.json'}"
        self.zeek = self.ns.popen(
            [zeek_binary(), "-C", "-i", iface, str(PACKAGE), "live-test.zeek", saved, *extra],
            cwd=d,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: file_has(d / "zeek.out", "listening on"), 60, "zeek to open the interface")
        wait_for(lambda: self.port_open(WS_PORT), 60, "zeek's WebSocket listener")

    def port_open(self, port: int) -> bool:
        r = subprocess.run(
            ["ip", "netns", "exec", self.ns.name, "ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True
        )
        return bool(r.stdout.strip())

    def stop_zeek(self, sig: int) -> None:
        assert self.zeek is not None
        self.zeek.send_signal(sig)
        try:
            self.zeek.wait(120)
        except subprocess.TimeoutExpired:
            self.zeek.kill()
            self.zeek.wait(10)
        self.zeek = None

    def start_bridge(self, name: str = "bridge", shard: str | None = None, wait: bool = True) -> None:
        cfg = self.workdir / f"{name}.yaml"
        state = ""
        if STATE_INTERVAL is not None:  # --state-interval: the host state kept across the bridge's restarts
            state = f"state:\n  path: {self.workdir / (name + '-state.json')}\n  interval: {STATE_INTERVAL}\n"
        cfg.write_text(
            "metrics:\n  enabled: false\n"
            # every verdict in full by default: the counts below are msewatch.log's flow lines
            "zeek:\n  reconnect: {initial: 0.2, max: 1.0, jitter: 0.2}\n  shutdown_timeout: 5.0\n"
            f"  full_verdicts: {FULL_VERDICTS}\n" + state
        )
        log = self.workdir / f"{name}-{len(self.bridge_logs)}.log"
        self.bridge_logs.append(log)
        argv = [sys.executable, "-m", "msewatch", "run", "-c", str(cfg)]
        if shard:
            argv += ["--shard", shard]
        env = dict(os.environ, PYTHONPATH=str(REPO / "bridge"))
        self.bridges[name] = self.ns.popen(argv, cwd=self.workdir, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)
        if wait:
            wait_for(lambda: file_has(log, "connected to"), 60, f"{name} to connect")

    def stop_bridge(self, sig: int, name: str = "bridge") -> None:
        p = self.bridges.pop(name)
        p.send_signal(sig)
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)

    def replay(self, iface: str, pcaps: list[str], speed: float, offset: int = 0, name: str = "replay") -> subprocess.Popen:
        out = open(self.workdir / f"{name}.out", "w")
        return self.ns.popen(
            [sys.executable, str(REPLAY), "--iface", iface, "--speed", str(speed), "--max-gap", "1.0",
             "--gap", "0.2", "--net-offset", str(offset), *pcaps],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


# ----------------------------------------------------------------------------- counting


def read_zeek_log(path: Path) -> list[dict[str, str]]:
    """Rows of a Zeek ASCII log (several files if it was rotated: pass each)."""
    rows: list[dict[str, str]] = []
    if not path.exists():
        return rows
    names: list[str] = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("#fields"):
            names = line.split("\t")[1:]
        elif line and not line.startswith("#"):
            rows.append(dict(zip(names, line.split("\t"))))
    return rows


def logs(dirs: list[Path], name: str) -> list[list[dict[str, str]]]:
    """Per folder, the rows of name.log and of its rotated name.<time>.log files."""
    out = []
    for d in dirs:
        rows: list[dict[str, str]] = []
        for f in sorted(d.glob(f"{name}.*log")):
            if f.name == f"{name}.log" or f.name[len(name) + 1 : len(name) + 2].isdigit():
                rows += read_zeek_log(f)
        out.append(rows)
    return out


@dataclass
class Counts:
    scenario: str
    raised: int = 0  # flows whose evidence a Zeek raised
    verdicts: int = 0  # flows with at least one flow verdict line
    lost: int = 0  # raised by the last Zeek (or answered nowhere), no flow verdict anywhere
    duplicated: int = 0  # uids with more than one flow verdict line
    zeek_lost: int = 0  # raised by a Zeek that was stopped, no verdict logged anywhere
    p2p_flows: int = 0  # flows with label p2p_likely
    notices_lost: int = 0
    notices_duplicated: int = 0
    host_verdict_lines: int = 0
    host_verdicts_duplicated: int = 0  # identical host verdict lines
    conn_labels: int = 0  # conn.log entries with an msewatch label
    conn_label_mismatches: int = 0  # conn.log labels that differ from the flow's msewatch.log verdict
    tuples: int = 0  # replayed TCP/UDP flows (endpoint pairs, ground truth from the pcaps)
    tuples_without_verdict: int = 0  # of those, with no flow verdict for their endpoints
    unlabelled_raised: int = 0  # raised uids whose conn.log line has no label
    zeek_metrics: dict = field(default_factory=dict)
    bridge_metrics: dict = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def endpoints_key(h1: str, p1: str, h2: str, p2: str) -> tuple:
    return tuple(sorted([(h1, int(p1)), (h2, int(p2))]))


def replayed_tuples(pcaps: list[str], offsets: list[int]) -> set[tuple]:
    """The endpoint pairs of the TCP/UDP flows replayed (zeek_replay.rewrite applied)."""
    import ipaddress

    out = set()
    for path in pcaps:
        with open(path, "rb") as fh:
            for _, buf in dpkt.pcap.Reader(fh):
                ip = dpkt.ethernet.Ethernet(buf).data
                if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, (dpkt.tcp.TCP, dpkt.udp.UDP)):
                    continue
                for off in offsets:
                    src, dst = (bytes((10, (a[1] + off) % 256)) + a[2:] if a[0] == 10 else a for a in (ip.src, ip.dst))
                    out.add(
                        endpoints_key(
                            str(ipaddress.ip_address(src)), ip.data.sport, str(ipaddress.ip_address(dst)), ip.data.dport
                        )
                    )
    return out


def count(
    scenario: str, dirs: list[Path], stopped: set[int], tuples: set[tuple] | None = None, log_dirs: list[Path] | None = None
) -> Counts:
    """Counts over Zeek incarnations `dirs` (index in `stopped` = stopped mid-replay)."""
    c = Counts(scenario)
    log_dirs = log_dirs or dirs
    raised_by: dict[str, int] = {}
    for i, rows in enumerate(logs(dirs, "msewatch_raised")):
        for r in rows:
            raised_by.setdefault(r["uid"], i)
    flow_lines = collections.Counter()
    p2p = set()
    host_lines = collections.Counter()
    label_of: dict[str, str] = {}
    answered_tuples = set()
    for rows in logs(log_dirs, "msewatch"):
        for r in rows:
            if r["kind"] == "flow":
                flow_lines[r["uid"]] += 1
                proto = r["protocol"] if r["protocol"] not in ("-", "") else ""
                label_of[r["uid"]] = f"{r['label']}:{proto}" if proto else r["label"]
                answered_tuples.add(endpoints_key(r["id.orig_h"], r["id.orig_p"], r["id.resp_h"], r["id.resp_p"]))
                if r["label"] == "p2p_likely":
                    p2p.add(r["uid"])
            else:
                host_lines[(r["host"], r["ts"], r["label"], r["score"])] += 1
    notices = collections.Counter()
    for rows in logs(log_dirs, "notice"):
        for r in rows:
            if r.get("note") in ("MSEWatch::Encrypted_BitTorrent", "MSEWatch::P2P_Flow"):
                notices[r["uid"]] += 1
    labelled = {}
    for rows in logs(log_dirs, "conn"):
        for r in rows:
            label = r.get("msewatch", "-")
            labelled[r["uid"]] = label not in ("-", "", None)
            if labelled[r["uid"]] and label_of.get(r["uid"]) != label:
                c.conn_label_mismatches += 1
    if tuples is not None:
        c.tuples = len(tuples)
        c.tuples_without_verdict = len(tuples - answered_tuples)
    c.raised = len(raised_by)
    c.verdicts = sum(1 for u in raised_by if flow_lines[u])
    for uid, i in raised_by.items():
        if flow_lines[uid] == 0:
            if i in stopped:
                c.zeek_lost += 1
            else:
                c.lost += 1
    c.duplicated = sum(1 for n in flow_lines.values() if n > 1)
    c.p2p_flows = len(p2p)
    c.notices_lost = sum(1 for u in p2p if notices[u] == 0)
    c.notices_duplicated = sum(1 for n in notices.values() if n > 1)
    c.host_verdict_lines = sum(host_lines.values())
    c.host_verdicts_duplicated = sum(n - 1 for n in host_lines.values() if n > 1)
    c.conn_labels = sum(labelled.values())
    c.unlabelled_raised = sum(1 for u in raised_by if u in labelled and not labelled[u])
    for d in dirs:
        for f in sorted(d.glob("metrics-*.txt")):
            for line in f.read_text().splitlines():
                k, _, v = line.partition(" ")
                c.zeek_metrics[k] = c.zeek_metrics.get(k, 0) + int(float(v))
    return c


def bridge_numbers(logs_: list[Path]) -> dict:
    """What the bridges said about repeated evidence (their log lines)."""
    out = {"bridge_starts": len(logs_)}
    return out


def raised_count(dirs: list[Path]) -> int:
    return sum(len(rows) for rows in logs(dirs, "msewatch_raised"))


def wait_published(dirs: list[Path], timeout: float, quiet: float = 13.0) -> None:
    """Until no flow was raised for `quiet` seconds: every flow is published at the latest
    MSEWatch::max_age (10 s) after its start, and the replay is over."""
    end = time.monotonic() + timeout
    last, since = raised_count(dirs), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() < end:
        time.sleep(1.0)
        n = raised_count(dirs)
        if n != last:
            last, since = n, time.monotonic()


def all_answered(dirs: list[Path], log_dirs: list[Path], skip: set[int]) -> bool:
    raised = set()
    for i, rows in enumerate(logs(dirs, "msewatch_raised")):
        if i not in skip:
            raised.update(r["uid"] for r in rows)
    answered = set()
    for rows in logs(log_dirs, "msewatch"):
        answered.update(r["uid"] for r in rows if r["kind"] == "flow")
    return bool(raised) and raised <= answered


# ----------------------------------------------------------------------------- scenarios


def corpus_pcaps() -> list[str]:
    return sorted(glob.glob(str(CORPUS / "*.pcap")))


def run_restart_scenario(scenario: str, workdir: Path, speed: float, rounds: int, settle: float) -> Counts:
    t0 = time.monotonic()
    pcaps = corpus_pcaps()
    duration = replay_seconds(pcaps, speed, 1.0, 0.2)
    with Namespace(1) as ns:
        run = Run(ns, workdir)
        run.start_zeek()
        stopped: set[int] = set()
        if scenario != "bridge-late" and scenario != "mixed":
            run.start_bridge()
        # (fraction of the replay, action)
        plan = {
            "steady": [],
            "bridge-kill": [(0.25, "bridge-kill"), (0.5, "bridge-hang-kill"), (0.75, "bridge-kill")],
            "bridge-term": [(0.25, "bridge-term"), (0.5, "bridge-term"), (0.75, "bridge-term")],
            "bridge-late": [(0.4, "bridge-start")],
            "zeek-term": [(0.5, "zeek-term")],
            "zeek-kill": [(0.5, "zeek-kill")],
            "mixed": [(0.15, "bridge-start"), (0.4, "bridge-hang-kill"), (0.65, "bridge-term")],
        }[scenario]
        for r in range(rounds):
            start = time.monotonic()
            rep = run.replay("send0", pcaps, speed, offset=r, name=f"replay-{r}")
            for frac, action in plan:
                delay = start + frac * duration - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if action == "bridge-start":
                    if "bridge" not in run.bridges:
                        run.start_bridge()
                elif action in ("bridge-kill", "bridge-hang-kill", "bridge-term"):
                    if action == "bridge-hang-kill":  # hung first: what it has not answered dies with it
                        run.bridges["bridge"].send_signal(signal.SIGSTOP)
                        time.sleep(1.0)
                    run.stop_bridge(signal.SIGTERM if action == "bridge-term" else signal.SIGKILL)
                    time.sleep(1.0)
                    run.start_bridge()
                elif action in ("zeek-term", "zeek-kill"):
                    stopped.add(len(run.zeek_runs) - 1)
                    run.stop_zeek(signal.SIGTERM if action == "zeek-term" else signal.SIGKILL)
                    time.sleep(1.0)
                    run.start_zeek()
            if rep.wait(duration * 3 + 120) != 0:
                raise SetupError(f"replay failed: {(workdir / f'replay-{r}.out').read_text()}")
        # every flow is published within max_age (10 s) of its start; then the verdicts
        if "bridge" not in run.bridges:
            run.start_bridge()
        dirs = run.zeek_runs
        wait_published(dirs, settle)
        with contextlib.suppress(SetupError):
            wait_for(lambda: all_answered(dirs, dirs, stopped), settle, "every verdict", step=1.0)
        time.sleep(2.0)  # duplicates, if any, arrive now
        run.stop_zeek(signal.SIGTERM)
        for name in list(run.bridges):
            run.stop_bridge(signal.SIGTERM, name)
    c = count(scenario, dirs, stopped, replayed_tuples(pcaps, list(range(rounds))))
    c.bridge_metrics = bridge_numbers(run.bridge_logs)
    c.seconds = round(time.monotonic() - t0, 1)
    return c


# ----------------------------------------------------------------------------- cluster

CLUSTER_LAYOUT = """
redef Cluster::manager_is_logger = F;
redef Cluster::nodes = {
	["logger-1"] = Cluster::Node($node_type=Cluster::LOGGER,  $ip=127.0.0.1, $p={logger}/tcp),
	["manager"]  = Cluster::Node($node_type=Cluster::MANAGER, $ip=127.0.0.1, $p={manager}/tcp),
	["proxy-1"]  = Cluster::Node($node_type=Cluster::PROXY,   $ip=127.0.0.1, $p={proxy}/tcp, $manager="manager"),
	["worker-1"] = Cluster::Node($node_type=Cluster::WORKER,  $ip=127.0.0.1, $p={w1}/tcp, $manager="manager"),
	["worker-2"] = Cluster::Node($node_type=Cluster::WORKER,  $ip=127.0.0.1, $p={w2}/tcp, $manager="manager"),
};
"""

CLUSTER_SITE = """
redef MSEWatch::shard_count = 2;
redef Site::local_nets += { 10.0.0.0/8 };
"""


def run_cluster(workdir: Path, speed: float, settle: float, kill_bridge: bool = True) -> Counts:
    t0 = time.monotonic()
    pcaps = corpus_pcaps()
    halves = [pcaps[0::2], pcaps[1::2]]
    duration = max(replay_seconds(h, speed, 1.0, 0.2) for h in halves)
    with Namespace(2) as ns:
        (workdir / "cluster-layout.zeek").write_text(
            CLUSTER_LAYOUT.replace("{logger}", "27761")
            .replace("{manager}", "27762")
            .replace("{proxy}", "27763")
            .replace("{w1}", "27764")
            .replace("{w2}", "27765")
        )
        (workdir / "site.zeek").write_text(CLUSTER_SITE)
        (workdir / "live-test.zeek").write_text(TEST_SCRIPT)
        zeekpath = subprocess.run([str(Path(zeek_binary()).with_name("zeek-config")), "--zeekpath"], capture_output=True, text=True).stdout.strip()
        env = dict(os.environ, ZEEKPATH=f"{workdir}:{zeekpath}")
        procs = {}
        for node in ("logger-1", "manager", "proxy-1", "worker-1", "worker-2"):
            d = workdir / node
            d.mkdir()
            argv = [zeek_binary(), "-C"]
            if node.startswith("worker"):
                argv += ["-i", "sniff0" if node == "worker-1" else "sniff1"]
            argv += [str(PACKAGE), str(workdir / "site.zeek"), str(workdir / "live-test.zeek")]
            procs[node] = ns.popen(
                argv, cwd=d, env=dict(env, CLUSTER_NODE=node), stdout=open(d / "zeek.out", "w"), stderr=subprocess.STDOUT
            )
        run = Run(ns, workdir)

        def nodes_alive() -> bool:
            for node, p in procs.items():
                if p.poll() is not None:
                    out = (workdir / node / "zeek.out").read_text(errors="replace")[-2000:]
                    raise SetupError(f"cluster node {node} exited ({p.returncode}): {out}")
            return True

        # the logger writes every node's logs; wait until the whole cluster is up
        wait_for(lambda: nodes_alive() and run.port_open(WS_PORT), 90, "the manager's WebSocket listener")
        wait_for(
            lambda: file_has(workdir / "worker-1" / "zeek.out", "listening on")
            and file_has(workdir / "worker-2" / "zeek.out", "listening on"),
            90,
            "the workers to open their interfaces",
        )
        wait_for(lambda: nodes_alive() and cluster_nodes_up(workdir / "logger-1"), 90, "every node in cluster.log")
        run.start_bridge("bridge-0", shard="0/2")
        run.start_bridge("bridge-1", shard="1/2")
        reps = [run.replay(f"send{i}", halves[i], speed, name=f"replay-{i}") for i in (0, 1)]
        if kill_bridge:
            time.sleep(duration * 0.5)
            run.stop_bridge(signal.SIGKILL, "bridge-0")
            time.sleep(1.0)
            run.start_bridge("bridge-0", shard="0/2")
        for i, rep in enumerate(reps):
            if rep.wait(duration * 3 + 120) != 0:
                raise SetupError(f"replay failed: {(workdir / f'replay-{i}.out').read_text()}")
        raised_dirs = [workdir / "logger-1"]
        wait_published(raised_dirs, settle)
        with contextlib.suppress(SetupError):
            wait_for(lambda: all_answered(raised_dirs, raised_dirs, set()), settle, "every verdict", step=1.0)
        time.sleep(2.0)
        for node in ("worker-1", "worker-2", "proxy-1", "manager", "logger-1"):
            procs[node].send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                procs[node].wait(60)
        for name in list(run.bridges):
            run.stop_bridge(signal.SIGTERM, name)
    c = count("cluster", [workdir / "logger-1"], set(), replayed_tuples(pcaps, [0]))
    for node in ("manager", "worker-1", "worker-2"):
        for f in sorted((workdir / node).glob("metrics-*.txt")):
            for line in f.read_text().splitlines():
                k, _, v = line.partition(" ")
                c.zeek_metrics[f"{node}:{k}"] = int(float(v))
    c.bridge_metrics = {"bridge_starts": len(run.bridge_logs)}
    workers = collections.Counter(r["node"] for r in logs([workdir / "logger-1"], "msewatch_raised")[0])
    c.notes.append(f"raised per worker: {dict(workers)}")
    c.seconds = round(time.monotonic() - t0, 1)
    return c


def cluster_nodes_up(logger_dir: Path) -> bool:
    rows = read_zeek_log(logger_dir / "cluster.log")
    text = " ".join(r.get("message", "") for r in rows)
    return all(n in text for n in ("worker-1", "worker-2", "proxy-1"))


# ----------------------------------------------------------------------------- main

COLUMNS = [
    ("scenario", "scenario"),
    ("tuples", "replayed"),
    ("tuples_without_verdict", "unanswered_tuples"),
    ("raised", "flows"),
    ("verdicts", "answered"),
    ("lost", "lost"),
    ("duplicated", "dup"),
    ("zeek_lost", "zeek_lost"),
    ("p2p_flows", "p2p"),
    ("notices_lost", "notice_lost"),
    ("notices_duplicated", "notice_dup"),
    ("host_verdict_lines", "host_lines"),
    ("host_verdicts_duplicated", "host_dup"),
    ("conn_labels", "conn_labels"),
    ("conn_label_mismatches", "label_mismatch"),
    ("unlabelled_raised", "unlabelled"),
    ("seconds", "s"),
]


def print_table(results: list[Counts]) -> None:
    widths = [max(len(h), *(len(str(getattr(r, k))) for r in results)) for k, h in COLUMNS]
    print("  ".join(h.rjust(w) for (_, h), w in zip(COLUMNS, widths)))
    for r in results:
        print("  ".join(str(getattr(r, k)).rjust(w) for (k, _), w in zip(COLUMNS, widths)))
    for r in results:
        resent = {k: v for k, v in r.zeek_metrics.items() if v}
        print(f"{r.scenario}: zeek counters {resent}" + (f"; {'; '.join(r.notes)}" if r.notes else ""))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("restarts", "cluster"))
    p.add_argument("--scenario", action="append", choices=SCENARIOS, help="restarts: run only these (repeatable)")
    p.add_argument("--speed", type=float, default=8.0, help="replay speed-up (default 8)")
    p.add_argument("--rounds", type=int, default=1, help="restarts: replay the corpus this many times (new addresses each)")
    p.add_argument("--settle", type=float, default=90.0, help="seconds to wait for the last verdicts (default 90)")
    p.add_argument("--workdir", help="keep the logs here (default: a temporary folder, removed)")
    p.add_argument("--json", help="write the counts here")
    p.add_argument("--full-verdicts", choices=("all", "p2p_likely"), default="all",
                   help="the bridges' zeek.full_verdicts (default all: lost/dup count msewatch.log lines; with "
                        "p2p_likely the other flows are only conn.log labels: see unlabelled_raised)")
    p.add_argument("--state-interval", type=float, metavar="SECONDS",
                   help="the bridge keeps its host state in a state file (state.path), saved this often")
    a = p.parse_args(argv)
    global STATE_INTERVAL, FULL_VERDICTS
    STATE_INTERVAL = a.state_interval
    FULL_VERDICTS = "[p2p_likely]" if a.full_verdicts == "p2p_likely" else a.full_verdicts
    why = can_run()
    if why:
        print(f"zeek_live: cannot run: {why}", file=sys.stderr)
        return 2
    base = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="mwlive-"))
    base.mkdir(parents=True, exist_ok=True)
    results: list[Counts] = []
    try:
        if a.mode == "restarts":
            for s in a.scenario or [x for x in SCENARIOS if x != "mixed"]:
                d = base / s
                shutil.rmtree(d, ignore_errors=True)
                d.mkdir()
                results.append(run_restart_scenario(s, d, a.speed, a.rounds, a.settle))
        else:
            d = base / "cluster"
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir()
            results.append(run_cluster(d, a.speed, a.settle))
    except SetupError as e:
        print(f"zeek_live: {e} (logs in {base})", file=sys.stderr)
        return 2
    print_table(results)
    if a.json:
        Path(a.json).write_text(json.dumps([asdict(r) for r in results], indent=1))
    if not a.workdir:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
