"""Build hook: ship the repository's rule pack and Zeek scripts inside the wheel.

suricata-rules/ and zeek-scripts/ live at the top of the repository because zkg
(zkg.meta: script_dir) and suricata-update use them there. A wheel carries only the
package, so `build_py` copies them into msewatch/share/ of the build tree; the sdist
carries them through MANIFEST.in. One source of truth, nothing committed twice.
Everything else about the build is in pyproject.toml.
"""

from __future__ import annotations

import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
# repository directory -> directory inside the installed package (msewatch/assets.py reads these)
SHIPPED = {
    "suricata-rules": os.path.join("msewatch", "share", "suricata-rules"),
    "zeek-scripts": os.path.join("msewatch", "share", "zeek", "msewatch"),
}


def _shipped_files(src_dir: str):
    for root, dirs, files in os.walk(src_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        for name in sorted(files):
            if not name.startswith("."):
                path = os.path.join(root, name)
                yield path, os.path.relpath(path, src_dir)


class BuildPyWithAssets(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the repository's directories directly
        for src, dst in SHIPPED.items():
            src_dir = os.path.join(HERE, src)
            if not os.path.isdir(src_dir):
                raise SystemExit(f"setup.py: {src}/ is missing; cannot build a package without it")
            for path, rel in _shipped_files(src_dir):
                target = os.path.join(self.build_lib, dst, rel)
                self.mkpath(os.path.dirname(target))
                self.copy_file(path, target, preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        for src, dst in SHIPPED.items():
            for _path, rel in _shipped_files(os.path.join(HERE, src)):
                outputs.append(os.path.join(self.build_lib, dst, rel))
        return outputs


setup(cmdclass={"build_py": BuildPyWithAssets})
