"""A throw-away PostgreSQL (hack/postgres.sh) on a port of its own, for benchmarks that must never
share another run's server: start/stop, down/up (an outage keeping the data), psql queries, CPU."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psutil

from operator_harness import free_port

ROOT = Path(__file__).resolve().parents[1]


class PostgresServer:
    def __init__(self, script_timeout: float = 180, port: int | None = None, listen: tuple[str, ...] = ()) -> None:
        """``listen``: addresses to listen on besides 127.0.0.1 (a real node's host address, so pods
        reach the server at :meth:`dsn_for`)."""
        self.port = port or free_port()
        # its own state dir and owner, whatever the caller's environment names (TJO_PG_DIR, TJO_PG_OWNER)
        self.env = {
            **os.environ,
            "TJO_PG_PORT": str(self.port),
            "TJO_PG_DIR": f"/tmp/tjo-pg-{self.port}",
            "TJO_PG_OWNER": f"pg_harness:{os.getpid()}:{self.port}",
            "TJO_PG_LISTEN": ",".join(listen),
        }
        self.dsn = f"postgresql://tjo:tjo@127.0.0.1:{self.port}/tjo"
        self.started = False
        self.script_timeout = script_timeout

    def dsn_for(self, host: str) -> str:
        """The DSN at ``host`` (e.g. the cluster's host address, for pods)."""
        return f"postgresql://tjo:tjo@{host}:{self.port}/tjo"

    def _script(self, command: str) -> None:
        subprocess.run(
            ["bash", str(ROOT / "hack" / "postgres.sh"), command],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
            timeout=self.script_timeout,
        )

    def start(self) -> None:
        self.started = True
        self._script("start")

    def stop(self) -> None:
        if self.started:
            self._script("stop")
            self.started = False

    def down(self) -> None:
        """Stop the server, keeping its data (an outage)."""
        self._script("down")

    def up(self) -> None:
        self._script("up")

    def serve_pods_at(self, address: str) -> str:
        """Listen on ``address`` too (a real node's host address, which exists only once its cluster
        is up): the server restarts with its data kept when the address is new. Returns the DSN there."""
        listen = [a for a in self.env["TJO_PG_LISTEN"].split(",") if a]
        if address not in listen and address != "127.0.0.1":
            self.env["TJO_PG_LISTEN"] = ",".join([*listen, address])
            if self.started:
                self.down()
                self.up()
        return self.dsn_for(address)

    def query(self, sql: str, timeout: float = 60) -> list[list[str]]:
        """Rows of one statement (psql, tab-separated)."""
        out = subprocess.run(
            ["psql", self.dsn, "-AtX", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
        ).stdout
        return [line.split("\t") for line in out.splitlines() if line]

    def cpu_seconds(self) -> float:
        """CPU of the postmaster, its live backends and every backend it has reaped."""
        pid_file = Path(f"/tmp/tjo-pg-{self.port}/data/postmaster.pid")
        master = psutil.Process(int(pid_file.read_text().split()[0]))
        t = master.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in master.children():
            try:
                c = child.cpu_times()
                total += c.user + c.system
            except psutil.NoSuchProcess:
                pass
        return total
