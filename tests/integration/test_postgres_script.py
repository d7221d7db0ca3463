"""hack/postgres.sh as hack/test.sh uses it: a run stops only the PostgreSQL it started itself."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PGBIN = Path(os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin"))

pytestmark = pytest.mark.skipif(not (PGBIN / "initdb").exists(), reason="PostgreSQL 15 server binaries not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _script(command: str, port: int, state: Path, owner: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TJO_PG_PORT": str(port), "TJO_PG_DIR": str(state)}
    env.pop("TJO_PG_OWNER", None)
    if owner is not None:
        env["TJO_PG_OWNER"] = owner
    return subprocess.run(
        ["bash", str(ROOT / "hack" / "postgres.sh"), command], env=env, capture_output=True, text=True, timeout=180
    )


def _up(port: int) -> bool:
    return subprocess.run([str(PGBIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode == 0


def test_a_run_that_found_the_server_running_leaves_it_running() -> None:
    # Not under pytest's tmp_path: the server runs as the user tjo-pg when we are root, and
    # pytest's directories are private to us.
    port = _free_port()
    state = Path(f"/tmp/tjo-pg-script-test-{port}")
    first = _script("start", port, state, owner="suite-a")
    assert first.returncode == 0, first.stderr
    try:
        second = _script("start", port, state, owner="suite-b")
        assert second.returncode == 0 and "already running" in second.stderr
        # suite b ends first: its exit trap must not stop suite a's server
        assert _script("stop", port, state, owner="suite-b").returncode == 0
        assert _up(port), "the server suite-a started was stopped by suite-b"
        assert _script("stop", port, state, owner="suite-a").returncode == 0
        assert not _up(port)
    finally:
        _script("stop", port, state, owner=None)
        Path(f"{state}.lock").unlink(missing_ok=True)
