"""A throw-away MLflow tracking server (the full ``mlflow`` package, a dev-only dependency) for tests
and benchmarks: SQLite backend store, local artifact root, one port of its own.

``MlflowServer(host=...)``: the listen address is a parameter. Loopback (the default) serves the
trainer run as a process here; pods on a node in a network namespace cannot reach the host's
127.0.0.1, so give them the host's address on the node's bridge instead.

``stop()`` ends the server (an outage: its store stays on disk), ``start()`` starts it again on the
same port and store; ``close()`` stops it and removes the state directory. Processes are ended by
their process group id (the server forks workers), never by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from operator_harness import free_port


class MlflowServer:
    def __init__(self, host: str = "127.0.0.1", port: int | None = None, state_dir: str | None = None) -> None:
        self.host = host
        self.port = port or free_port()
        self.state = Path(state_dir or tempfile.mkdtemp(prefix="tjo-mlflow-"))
        self.state.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.state / "server.log"

    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        mlflow = Path(sys.executable).with_name("mlflow")
        return [
            str(mlflow),
            "server",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{self.state / 'mlflow.db'}",
            "--artifacts-destination",
            str(self.state / "artifacts"),
            "--serve-artifacts",
        ]

    def start(self, timeout: float = 120.0) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        env = {
            **os.environ,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            # No security middleware surprises on a loopback test server (host header checks).
            "MLFLOW_SERVER_ALLOWED_HOSTS": "*",
        }
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited ({self.process.returncode}): {self.tail()}")
            if self.healthy():
                return
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"mlflow server not healthy at {self.uri} after {timeout:.0f} s: {self.tail()}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self, timeout: float = 20.0) -> None:
        """End the server's process group (an outage; the store stays)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout)
        self._wait_port_closed()

    def _wait_port_closed(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as s:
                s.settimeout(0.2)
                if s.connect_ex((self.host, self.port)) != 0:
                    return
            time.sleep(0.1)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.state, ignore_errors=True)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> MlflowServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
