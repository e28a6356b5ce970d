"""The Zeek package on a real Zeek (zeek on PATH, or /opt/zeek/bin/zeek): the btest suite,
end-to-end parity with the pcap path on a few captures, the Zeek benchmark's smoke run, and
`zkg install` running the package's test_command.

Without a Zeek the whole module is skipped; `make test` leaves it out and says so in one line.
"""

from __future__ import annotations

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


def zeek_env() -> dict[str, str]:
    """Zeek's bin directory and the venv's (btest, msewatch, zkg) first on PATH."""
    return dict(os.environ, PATH=f"{Path(ZEEK).parent}:{VENV_BIN}:{os.environ.get('PATH', '')}")


def test_btest_suite_passes(capsys):
    """The whole btest suite (tests/zeek); its per-test lines go to the terminal, so the CI log
    shows which Zeek ran which test."""
    proc = subprocess.run([str(REPO / "tests" / "zeek" / "run")], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=1800, env=zeek_env())
    with capsys.disabled():
        print("\n" + proc.stdout.rstrip())
    assert proc.returncode == 0, proc.stdout[-8000:]
    assert "tests successful" in proc.stdout


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
    """zeek -r with the package and `msewatch run` as the bridge give every connection the
    evidence of `msewatch evidence` and the flow label of `msewatch analyze`; msewatch.log holds
    each verdict once and every TCP/UDP connection has its label in conn.log."""
    pcaps = [str(REPO / "tests" / "data" / "corpus" / name) for name in PARITY_CAPTURES]
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "zeek_parity.py"), *pcaps],
                          capture_output=True, text=True, timeout=1800, env=zeek_env())
    with capsys.disabled():
        print("\n" + proc.stdout.rstrip())
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-4000:]
    assert f"total ({len(pcaps)} captures)" in proc.stdout


def test_zeek_benchmark_smoke_run():
    """benchmarks/bench_zeek.py runs (one run of each way on a small capture; no timing)."""
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_zeek.py"), "--smoke"],
                          capture_output=True, text=True, timeout=900, env=zeek_env())
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "flow verdicts for" in proc.stdout and "bridge" in proc.stdout


def test_zkg_install_runs_the_package_tests(tmp_path):
    """`zkg install` of the package as it is in this tree (a git snapshot: zkg installs from
    git), with a throwaway zkg state and no package source, runs test_command green."""
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
