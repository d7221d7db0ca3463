"""hack/pg_harness.py's PostgresServer (the benches' and e2e tests' throw-away PostgreSQL): each one
is a server of its own, whatever the caller's environment says about hack/postgres.sh's state dir
(``TJO_PG_DIR``, which hack/demo.sh exports) or owner (``TJO_PG_OWNER``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pg_harness import PostgresServer

PGBIN = Path(os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin"))

pytestmark = pytest.mark.skipif(not (PGBIN / "initdb").exists(), reason="PostgreSQL 15 server binaries not installed")


def test_two_servers_side_by_side_despite_tjo_pg_dir_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TJO_PG_DIR", "/tmp/tjo-pg-test-harness-shared")
    monkeypatch.setenv("TJO_PG_OWNER", "someone-else")
    first, second = PostgresServer(), PostgresServer()
    try:
        first.start()
        second.start()
        # each answers on its own port, with its own data
        first.query("CREATE TABLE only_in_first (x int)")
        assert second.query("SELECT to_regclass('only_in_first') IS NULL") == [["t"]]
        assert first.cpu_seconds() >= 0 and second.cpu_seconds() >= 0  # its own postmaster.pid
    finally:
        first.stop()
        second.stop()
    assert not Path(f"/tmp/tjo-pg-{first.port}").exists() and not Path(f"/tmp/tjo-pg-{second.port}").exists()
    assert not Path("/tmp/tjo-pg-test-harness-shared").exists()
