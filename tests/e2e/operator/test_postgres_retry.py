"""A product whose data source is down at first: the pod exits 4 (retriable), the Job retries it,
the database comes back, and the product trains. Real PostgreSQL, real Job controller."""

from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from tests.e2e.conftest import Database
from tests.e2e.operator.conftest import OperatorProcess
from tests.e2e.operator.helpers import apply, pods_of, sample_sales_table, tj_body, wait_for, wait_phase

pytestmark = pytest.mark.e2e


class Gate:
    """A TCP forwarder to PostgreSQL on ``host`` (where pods reach the host) that refuses connections
    until opened (the database is 'down')."""

    def __init__(self, host: str, target: tuple[str, int]) -> None:
        self.host = host
        self.target = target
        with socket.socket() as s:
            s.bind((host, 0))
            self.port = int(s.getsockname()[1])
        self.server: socket.socket | None = None

    def open(self) -> None:
        self.server = socket.create_server((self.host, self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        assert self.server is not None
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def test_data_source_down_at_first_is_retried_and_succeeds(
    cluster: Any, namespace: str, operator: OperatorProcess, database: Database, tmp_path: Path
) -> None:
    table, schema = sample_sales_table(database.dsn, 2, 150)
    parts = urlsplit(database.dsn)
    gate = Gate(cluster.host_address, (parts.hostname or "127.0.0.1", parts.port or 5432))
    gated = urlunsplit(parts._replace(netloc=f"{parts.username}:{parts.password}@{cluster.host_address}:{gate.port}"))
    cluster.kubectl("create", "secret", "generic", "db", "-n", namespace, f"--from-literal=dsn={gated}")
    body = tj_body(
        "flaky",
        ["bakery-croissant-001"],
        backoffLimit=3,
        template={
            "env": [{"name": "TRAINER_DB_RETRIES", "value": "1"}, {"name": "TRAINER_DB_CONNECT_TIMEOUT", "value": "2"}]
        },
    )
    body["spec"]["data"] = {"postgres": {"secretRef": {"name": "db", "key": "dsn"}, "table": table}}
    body["spec"]["output"] = {"postgres": {"schema": schema}}
    try:
        apply(cluster, namespace, body)

        def first_attempt_failed() -> list[dict[str, Any]] | None:
            failed = [p for p in pods_of(cluster, namespace, "flaky") if p["status"].get("phase") == "Failed"]
            return failed or None

        (failed_pod,) = wait_for("the first attempt to fail", first_attempt_failed, timeout=120)
        term = failed_pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert term["exitCode"] == 4, term  # infrastructure unavailable: retriable
        gate.open()  # the database is back
        st = wait_phase(cluster, namespace, "flaky", ("Succeeded", "Failed"), timeout=180)
        assert st["phase"] == "Succeeded" and st["failures"] == [], st
        pods = pods_of(cluster, namespace, "flaky")
        assert sum(p["status"].get("phase") == "Succeeded" for p in pods) == 1 and len(pods) >= 2
        rows = subprocess.run(
            [
                "psql",
                database.dsn,
                "-AtX",
                "-c",
                f"SELECT count(*) FROM {schema}.forecast_models WHERE product_id = 'bakery-croissant-001'",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        assert rows == "1", "exactly one model written"
    finally:
        gate.close()
