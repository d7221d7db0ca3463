"""Fixtures of the image tests: the project's images, built (or reused) by hack/build-images.sh.

``images`` (session) -> :class:`Images`: ``dir`` (the archives and images.json), ``refs`` (name ->
reference), ``run(*podman_args)`` (podman with the project's storage, hack/podman.sh). The tests
are skipped only when podman or mmdebstrap is missing and hack/node-packages.sh cannot install
them (not root); a failing build FAILS the session. ``$TJO_IMAGES_DIR`` (hack/test.sh exports it
after building) is reused as is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT = 3600


@dataclass(frozen=True)
class Images:
    dir: Path
    refs: dict[str, str]
    ids: dict[str, str]

    def podman(self, *args: str, timeout: float = 600, check: bool = False) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["bash", str(ROOT / "hack" / "podman.sh"), *args], capture_output=True, text=True, timeout=timeout
        )
        if check:
            assert result.returncode == 0, f"podman {' '.join(args)}: exit {result.returncode}\n{result.stderr}"
        return result


def _tools_present() -> bool:
    return shutil.which("podman") is not None and shutil.which("mmdebstrap") is not None


@pytest.fixture(scope="session")
def images() -> Images:
    if not _tools_present():
        installed = subprocess.run(["bash", str(ROOT / "hack" / "node-packages.sh")], capture_output=True, text=True)
        if installed.returncode != 0 or not _tools_present():
            pytest.skip(f"podman/mmdebstrap absent and not installable here: {installed.stderr.strip()[-300:]}")
    directory = os.environ.get("TJO_IMAGES_DIR")
    if not directory:
        built = subprocess.run(
            ["bash", str(ROOT / "hack" / "build-images.sh")], capture_output=True, text=True, timeout=BUILD_TIMEOUT
        )
        assert built.returncode == 0, f"hack/build-images.sh failed:\n{built.stderr[-4000:]}"
        directory = built.stdout.splitlines()[-1]
    manifest = json.loads((Path(directory) / "images.json").read_text())
    return Images(
        dir=Path(directory),
        refs={name: entry["ref"] for name, entry in manifest.items()},
        ids={name: entry["id"] for name, entry in manifest.items()},
    )
