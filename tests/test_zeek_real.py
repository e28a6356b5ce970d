"""The Zeek package on a real Zeek (zeek on PATH, or /opt/zeek/bin/zeek): the btest suite with
the script recorder and with the native recorder (plugin/, built into build/ by `make plugin`),
the two recorders' evidence on the whole corpus, end-to-end parity with the pcap path on a few
captures, the Zeek benchmark's smoke run, and `zkg install` building the plugin and running the
package's test_command.

Without a Zeek the whole module is skipped; `make test` leaves it out and says so in one line.
Without a built plugin (no compiler) the native-recorder tests are skipped with that reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def find_zeek() -> str | None:
    return shutil.which("zeek") or ("/opt/zeek/bin/zeek" if os.access("/opt/zeek/bin/zeek", os.X_OK) else None)


ZEEK = find_zeek()
if ZEEK is None:
    pytest.skip("no Zeek installed (no zeek on PATH or at /opt/zeek/bin/zeek)", allow_module_level=True)


PLUGIN = REPO / "build"


def plugin_built() -> bool:
    return (PLUGIN / "__zeek_plugin__").exists() and any((PLUGIN / "lib").glob("*.so"))


def zeek_env(recorder: str = "script") -> dict[str, str]:
    """Zeek's bin directory and the venv's (btest, msewatch, zkg) first on PATH; the native
    recorder on the plugin path for recorder="native", no plugin path otherwise."""
    env = dict(os.environ, PATH=f"{Path(ZEEK).parent}:{VENV_BIN}:{os.environ.get('PATH', '')}")
    env["ZEEK_PLUGIN_PATH"] = str(PLUGIN) if recorder == "native" else ""
    return env


def need(recorder: str) -> None:
    if recorder == "native" and not plugin_built():
        pytest.skip("native recorder not built (make plugin; needs cmake, a C++ compiler and the libpcap and OpenSSL headers)")


def loads_plugin(env: dict[str, str]) -> bool:
    out = subprocess.run([ZEEK, "-N"], capture_output=True, text=True, env=env).stdout
    return "MSEWatch::Evidence" in out


@pytest.mark.parametrize("recorder", ["script", "native"])
def test_btest_suite_passes(capsys, recorder):
    """The whole btest suite (tests/zeek), with each recorder; its per-test lines go to the
    terminal, so the CI log shows which Zeek ran which test."""
    need(recorder)
    env = zeek_env(recorder)
    assert loads_plugin(env) == (recorder == "native")
    proc = subprocess.run([str(REPO / "tests" / "zeek" / "run")], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=1800, env=env)
    with capsys.disabled():
        print(f"\n[{recorder} recorder] " + proc.stdout.rstrip())
    assert proc.returncode == 0, proc.stdout[-8000:]
    assert "tests successful" in proc.stdout


def dump_evidence(pcap: Path, recorder: str, workdir: Path) -> dict:
    """Zeek's flow_evidence for `pcap` (dump-evidence.zeek), by proto, endpoints and start.
    Zeek writes its logs into `workdir`."""
    proc = subprocess.run([ZEEK, "-C", "-r", str(pcap), str(REPO / "zeek-scripts"),
                           str(REPO / "tests" / "zeek" / "Scripts" / "dump-evidence.zeek"), "MSEWatch::listen=F"],
                          capture_output=True, text=True, timeout=600, env=zeek_env(recorder), cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = {}
    for line in proc.stdout.splitlines():
        ev = json.loads(line)
        ev.pop("uid")
        key = (ev["proto"], ev["orig_h"], ev["orig_p"], ev["resp_h"], ev["resp_p"], ev["ts"])
        assert key not in out, f"evidence published twice for {key}"
        out[key] = ev
    return out


COUNTERS = ("orig_pkts", "resp_pkts", "orig_bytes", "resp_bytes", "duration")


def test_native_and_script_recorders_agree_on_the_corpus(tmp_path):
    """Every corpus flow gets the same evidence from the native recorder as from the script
    recorder: sizes, times, bursts, heads, flags, all of it. Only the counters, a snapshot at
    publication, may differ, and only on HTTP-port flows (the script recorder publishes from
    tcp_packet before ConnSize has counted the packet there; docs/zeek.md)."""
    need("native")
    pcaps = sorted((REPO / "tests" / "data" / "corpus").glob("*.pcap"))
    assert pcaps
    flows = counter_diffs = 0
    for pcap in pcaps:
        script, native = dump_evidence(pcap, "script", tmp_path), dump_evidence(pcap, "native", tmp_path)
        assert script.keys() == native.keys(), pcap.name
        for key, s in script.items():
            n = native[key]
            flows += 1
            diff = sorted(f for f in s if s[f] != n.get(f))
            assert not [f for f in diff if f not in COUNTERS], (pcap.name, key, {f: (s[f], n[f]) for f in diff})
            if diff:
                counter_diffs += 1
                assert key[4] == 80, (pcap.name, key, {f: (s[f], n[f]) for f in diff})
    assert flows >= 400
    assert counter_diffs <= flows // 20


# One capture of each kind; tools/zeek_parity.py without arguments runs the whole corpus.
PARITY_CAPTURES = [
    "mse_plain_libtorrent_aria2.pcap",
    "plain_libtorrent_transmission.pcap",
    "utp_plain_libtorrent_transmission.pcap",
    "tracker_udp.pcap",
    "lsd_local.pcap",
    "shadowsocks_small.pcap",
    "swarm.pcap",
]


def test_end_to_end_parity_with_the_pcap_path(capsys):
    """zeek -r with the package (the native recorder when it is built, as zkg installs it) and
    `msewatch run` as the bridge give every connection the evidence of `msewatch evidence` and
    the flow label of `msewatch analyze`; msewatch.log holds each verdict once and every TCP/UDP
    connection has its label in conn.log."""
    pcaps = [str(REPO / "tests" / "data" / "corpus" / name) for name in PARITY_CAPTURES]
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "zeek_parity.py"), *pcaps],
                          capture_output=True, text=True, timeout=1800,
                          env=zeek_env("native" if plugin_built() else "script"))
    with capsys.disabled():
        print("\n" + proc.stdout.rstrip())
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-4000:]
    assert f"total ({len(pcaps)} captures)" in proc.stdout


def test_zeek_benchmark_smoke_run():
    """benchmarks/bench_zeek.py runs (one run of each way on a small capture; no timing)."""
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_zeek.py"), "--smoke"],
                          capture_output=True, text=True, timeout=900, env=zeek_env())
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "script+bridge run:" in proc.stdout and "flow verdicts for" in proc.stdout
    if plugin_built():
        assert "native+bridge run:" in proc.stdout


def test_zeek_websocket_floor_smoke_run():
    """benchmarks/zeek_ws_floor.py runs each kind of shape on the real Zeek (30 flows, without
    valgrind: the instruction counts are the benchmark's, not CI's); each run checks that the
    client got every payload byte and that Zeek wrote one log line per answered flow."""
    shapes = ["baseline", "ev1", "vec10", "labels", "verdicts", "verdicts-packed", "logonly"]
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "zeek_ws_floor.py"), "--no-valgrind",
                           "--flows", "30", "--shapes", *shapes], capture_output=True, text=True, timeout=600,
                          env=zeek_env())
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for shape in shapes:
        assert f"{shape}: done" in proc.stdout + proc.stderr, shape


def test_plugin_build_falls_back_without_a_compiler(tmp_path):
    """plugin/build.sh (zkg's build_command) without a usable compiler, or without the headers
    Zeek's include: one line saying the package records in script-land, exit 0 and no build/
    left (zkg then installs the scripts only); the same with MSEWATCH_PLUGIN=strict (make
    plugin); with MSEWATCH_PLUGIN=required it is an error."""
    src = tmp_path / "pkg"
    shutil.copytree(REPO / "plugin", src / "plugin")
    env = dict(zeek_env(), CXX="/nonexistent/c++")
    for mode in ("auto", "strict"):
        proc = subprocess.run(["sh", "plugin/build.sh"], cwd=src, capture_output=True, text=True,
                              env=dict(env, MSEWATCH_PLUGIN=mode))
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert "native recorder not built (no C++ compiler" in proc.stderr
        assert not (src / "build").exists()
    proc = subprocess.run(["sh", "plugin/build.sh"], cwd=src, capture_output=True, text=True,
                          env=dict(env, MSEWATCH_PLUGIN="required"))
    assert proc.returncode != 0
    assert "native recorder not built" in proc.stderr
    # a "compiler" that finds no header: the headers Zeek's include are missing
    proc = subprocess.run(["sh", "plugin/build.sh"], cwd=src, capture_output=True, text=True,
                          env=dict(env, CXX="false", MSEWATCH_PLUGIN="strict"))
    assert proc.returncode == 0, proc.stderr
    assert "native recorder not built (no <pcap.h> <openssl/ssl.h>" in proc.stderr
    assert not (src / "build").exists()


def test_plugin_build_failure_is_an_error_in_strict_mode(tmp_path):
    """With every tool there, a failed compile: MSEWATCH_PLUGIN=strict (make plugin, CI) exits
    non-zero with the compiler's output; the default (zkg) falls back to script-land."""
    if not (shutil.which("cmake") and shutil.which(os.environ.get("CXX", "c++"))):
        pytest.skip("no cmake or C++ compiler")
    src = tmp_path / "pkg"
    shutil.copytree(REPO / "plugin", src / "plugin")
    with open(src / "plugin" / "src" / "Recorder.cc", "a") as f:
        f.write("\nthis is not C++;\n")
    proc = subprocess.run(["sh", "plugin/build.sh"], cwd=src, capture_output=True, text=True,
                          env=dict(zeek_env(), MSEWATCH_PLUGIN="strict"), timeout=600)
    assert proc.returncode != 0
    assert "this is not C++" in proc.stderr and "native recorder not built (compile failed)" in proc.stderr
    assert not (src / "build").exists()
    proc = subprocess.run(["sh", "plugin/build.sh"], cwd=src, capture_output=True, text=True,
                          env=zeek_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "native recorder not built (compile failed)" in proc.stderr


def test_zkg_install_runs_the_package_tests(tmp_path):
    """`zkg install` of the package as it is in this tree (a git snapshot: zkg installs from
    git), with a throwaway zkg state and no package source, builds the native recorder (when
    there is a compiler) and runs test_command green."""
    zkg = VENV_BIN / "zkg"
    if not zkg.exists():
        pytest.fail("zkg not found: it is in the [test] extra (make setup)")
    pkg = tmp_path / "msewatch"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, check=True).stdout.split(b"\0")
    for f in filter(None, files):
        src = REPO / f.decode()
        if src.is_file():
            (pkg / f.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, pkg / f.decode())
    git = ["git", "-c", "user.name=msewatch-test", "-c", "user.email=test@localhost"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run(git + cmd, cwd=pkg, check=True)
    state = tmp_path / "zkg"
    cfg = tmp_path / "zkg.cfg"
    cfg.write_text(
        "[sources]\n\n[paths]\n"
        f"state_dir = {state}\nscript_dir = {state}/script_dir\nplugin_dir = {state}/plugin_dir\n"
        f"bin_dir = {state}/bin_dir\nzeek_dist =\n\n[templates]\ndefault =\n")
    proc = subprocess.run([str(zkg), "--configfile", str(cfg), "install", "--force", str(pkg)],
                          capture_output=True, text=True, timeout=1800, env=zeek_env())
    out = proc.stdout + proc.stderr
    # zkg keeps test_command's output beside the test clone; btest reports on stderr
    btest_out = "".join(p.read_text() for p in state.glob("testing/*/clones/*/zkg.test_command.std*"))
    assert proc.returncode == 0, out[-4000:] + btest_out[-4000:]
    assert f'Installed "{pkg}"' in out, out
    assert "tests successful" in btest_out, f"test_command did not run the btest suite:\n{btest_out[-2000:]}"
    assert (state / "script_dir" / "packages" / "msewatch" / "__load__.zeek").exists()
    # build_command built the native recorder, which zkg installed beside the scripts (when
    # make plugin could build it here: with cmake, a compiler and the headers)
    if plugin_built():
        installed = state / "plugin_dir" / "packages" / "msewatch"
        assert (installed / "__zeek_plugin__").exists(), out[-4000:]
        env = dict(zeek_env(), ZEEK_PLUGIN_PATH=str(installed))
        assert loads_plugin(env)
