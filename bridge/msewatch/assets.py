"""Where the rule pack and the Zeek scripts are, in a wheel install and in a checkout.

A wheel (or sdist) install carries them as package data under msewatch/share/ (setup.py
copies the repository's suricata-rules/ and zeek-scripts/ there at build time); they are
found with importlib.resources. An editable install or a plain checkout has no copy:
there the repository's own directories are used.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

# name inside msewatch/share/ -> the repository directory it is built from
_SHARED = {
    "suricata-rules": ("share", "suricata-rules"),
    "zeek": ("share", "zeek", "msewatch"),
}
_REPO_DIRS = {"suricata-rules": "suricata-rules", "zeek": "zeek-scripts"}


class AssetError(Exception):
    """A bundled directory is not where it should be; the message says what to check."""


def _installed(name: str) -> Path | None:
    ref = resources.files("msewatch")
    for part in _SHARED[name]:
        ref = ref.joinpath(part)
    if ref.is_dir():
        # msewatch is a regular package on disk (never zipped), so this is a real path
        return Path(str(ref))
    return None


def _checkout(name: str) -> Path | None:
    # bridge/msewatch/assets.py -> repository root
    path = Path(__file__).resolve().parents[2] / _REPO_DIRS[name]
    return path if path.is_dir() else None


def _find(name: str) -> Path:
    found = _installed(name) or _checkout(name)
    if found is None:
        raise AssetError(
            f"the bundled {_REPO_DIRS[name]}/ is missing from this installation "
            f"(looked in {Path(__file__).parent / os.path.join(*_SHARED[name])}); reinstall msewatch from a wheel or sdist"
        )
    return found


def rules_dir() -> Path:
    """The Suricata rule pack source: msewatch.rules, msewatch-lua.rules, lua/, released.json."""
    return _find("suricata-rules")


def zeek_scripts_dir() -> Path:
    """The Zeek package's scripts (the directory holding __load__.zeek), for `@load`."""
    return _find("zeek")
