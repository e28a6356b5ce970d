"""The wheel and the sdist carry everything an operator needs, and the installed package
finds it from anywhere: `pip wheel .` and `python -m build` as a user runs them (isolated
builds), then the wheel installed outside the repository and used from another folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
TOP_LEVEL = ("pyproject.toml", "setup.py", "MANIFEST.in", "LICENSE", "README.md", "zkg.meta")
TREES = ("bridge", "suricata-rules", "zeek-scripts", "contrib")


def _expected_in_wheel() -> set[str]:
    """Every file the wheel must carry besides Python modules, from the repository itself."""
    want = {"msewatch/data/default.yaml"}
    want |= {f"msewatch/report/templates/{p.name}" for p in (REPO / "bridge/msewatch/report/templates").iterdir()}
    for p in (REPO / "suricata-rules").rglob("*"):
        if p.is_file():
            want.add(f"msewatch/share/suricata-rules/{p.relative_to(REPO / 'suricata-rules')}")
    for p in (REPO / "zeek-scripts").rglob("*.zeek"):
        want.add(f"msewatch/share/zeek/msewatch/{p.relative_to(REPO / 'zeek-scripts')}")
    return want


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory) -> Path:
    """The files a release is built from, copied (a build in place would leave build/ behind
    and could pick up stale files from an earlier one)."""
    dst = tmp_path_factory.mktemp("src") / "msewatch"
    dst.mkdir()
    for name in TOP_LEVEL:
        shutil.copy2(REPO / name, dst / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".*")
    for tree in TREES:
        shutil.copytree(REPO / tree, dst / tree, ignore=ignore)
    return dst


def _run(args: list[str], cwd: Path, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MSEWATCH_RULES_DIR")}
    env.update(kw.pop("env", {}))
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, **kw)


@pytest.fixture(scope="module")
def built(source_copy, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    res = _run([PY, "-m", "build", "--outdir", str(out / "build"), "."], source_copy)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    res = _run([PY, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out / "pip"), "."], source_copy)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (wheel,) = (out / "build").glob("msewatch-*.whl")
    (sdist,) = (out / "build").glob("msewatch-*.tar.gz")
    (pip_wheel,) = (out / "pip").glob("msewatch-*.whl")
    return {"wheel": wheel, "sdist": sdist, "pip_wheel": pip_wheel}


@pytest.mark.slow
@pytest.mark.parametrize("which", ["wheel", "pip_wheel"])
def test_wheel_carries_rules_zeek_scripts_config_templates_and_license(built, which):
    with zipfile.ZipFile(built[which]) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    missing = _expected_in_wheel() - names
    assert not missing, sorted(missing)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: BSD-3-Clause" in meta
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]


@pytest.mark.slow
def test_sdist_carries_the_sources_of_everything_the_wheel_ships(built):
    with tarfile.open(built["sdist"]) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    want = {"LICENSE", "setup.py", "zkg.meta", "bridge/msewatch/data/default.yaml",
            "contrib/systemd/msewatch@.service", "contrib/logrotate/msewatch", "contrib/Containerfile"}
    want |= {str(p.relative_to(REPO)) for tree in ("suricata-rules", "zeek-scripts") for p in (REPO / tree).rglob("*") if p.is_file()}
    want |= {f"bridge/msewatch/report/templates/{p.name}" for p in (REPO / "bridge/msewatch/report/templates").iterdir()}
    missing = want - names
    assert not missing, sorted(missing)


@pytest.fixture(scope="module")
def installed(built, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The wheel installed into a folder of its own (dependencies from this venv), used from
    a working directory outside the repository."""
    site = tmp_path_factory.mktemp("site")
    res = _run([PY, "-m", "pip", "install", "--no-deps", "--no-compile", "--target", str(site), str(built["wheel"])], site)
    assert res.returncode == 0, res.stderr[-3000:]
    return site, {"PYTHONPATH": str(site)}


def _msewatch(installed, *args: str) -> subprocess.CompletedProcess:
    site, env = installed
    return _run([PY, "-m", "msewatch", *args], site.parent, timeout=120, env=env)


@pytest.mark.slow
def test_installed_package_is_the_one_under_test(installed):
    site, env = installed
    res = _run([PY, "-c", "import msewatch; print(msewatch.__file__)"], site.parent, env=env)
    assert Path(res.stdout.strip()).is_relative_to(site), res.stdout + res.stderr


@pytest.mark.slow
def test_installed_rules_check_and_build_use_the_bundled_pack(installed, tmp_path):
    res = _msewatch(installed, "rules", "check")
    assert res.returncode == 0 and res.stdout.strip().endswith("rules ok"), res.stderr
    res = _msewatch(installed, "rules", "build", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / f"suricata-rules-msewatch-{(REPO / 'suricata-rules/VERSION').read_text().strip()}.tar.gz").exists()


@pytest.mark.slow
def test_installed_zeek_path_points_at_the_bundled_scripts(installed):
    site, _ = installed
    res = _msewatch(installed, "zeek-path")
    path = Path(res.stdout.strip())
    assert res.returncode == 0 and path.is_relative_to(site), res.stdout + res.stderr
    assert (path / "__load__.zeek").read_text() == (REPO / "zeek-scripts" / "__load__.zeek").read_text()
    res = _msewatch(installed, "zeek-path", "--zeekpath")
    assert Path(res.stdout.strip()) == path.parent and path.name == "msewatch"


@pytest.mark.slow
def test_installed_default_config_is_the_bundled_one(installed):
    res = _msewatch(installed, "default-config")
    assert res.returncode == 0 and res.stdout == (REPO / "bridge/msewatch/data/default.yaml").read_text()


@pytest.mark.parametrize("rules_dir", ["/nonexistent/msewatch-rules", "EMPTY"])
@pytest.mark.parametrize("cmd", [["check"], ["build", "--out", "OUT"], ["release"]])
def test_rules_commands_fail_in_one_line_on_a_missing_or_empty_folder(tmp_path, rules_dir, cmd):
    from msewatch.suricata.rules import main_rules

    if rules_dir == "EMPTY":
        rules_dir = str(tmp_path / "empty")
        os.mkdir(rules_dir)
    cmd = [str(tmp_path / "out") if c == "OUT" else c for c in cmd]
    res = _run([PY, "-m", "msewatch", "rules", "--rules-dir", rules_dir, *cmd], tmp_path)
    assert res.returncode == 1
    assert res.stdout == "" and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert rules_dir in res.stderr
    assert main_rules(["--rules-dir", rules_dir, *cmd]) == 1


ZEEK = shutil.which("zeek") or ("/opt/zeek/bin/zeek" if os.access("/opt/zeek/bin/zeek", os.X_OK) else None)


@pytest.mark.slow
@pytest.mark.skipif(ZEEK is None, reason="zeek not installed")
def test_installed_zeek_scripts_load_in_zeek_by_path_and_by_zeekpath(installed, tmp_path):
    path = Path(_msewatch(installed, "zeek-path").stdout.strip())
    res = _run([ZEEK, "-a", str(path)], tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    zeekpath = subprocess.run([str(Path(ZEEK).with_name("zeek-config")), "--zeekpath"], capture_output=True, text=True).stdout.strip()
    res = _run([ZEEK, "-a", "msewatch", "msewatch/wait-for-bridge"], tmp_path, timeout=120,
               env={"ZEEKPATH": f"{zeekpath}:{path.parent}"})
    assert res.returncode == 0, res.stderr
