from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "hack" / "images" / "requirements.py"


def run(*extras: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(ROOT / "pyproject.toml"), *extras], capture_output=True, text=True
    )


@pytest.mark.parametrize("extra", ["operator", "trainer"])
def test_lists_the_project_dependencies_then_the_extra(extra: str) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    result = run(extra)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == project["dependencies"] + project["optional-dependencies"][extra]


def test_an_unknown_extra_fails() -> None:
    result = run("no-such-extra")
    assert result.returncode != 0
    assert "no-such-extra" in result.stderr
