"""Running the operator as a local process against a local cluster (used by the e2e tests and
bench/operator_bench.py): the way the README runs it, and optionally as its ServiceAccount."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RBAC_KINDS = ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kubectl(kubeconfig: Path, *args: str, input: str | None = None, timeout: float = 300) -> str:
    """``kubectl --kubeconfig=...`` with ``args``; its stdout, or RuntimeError with its stderr."""
    result = subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", *args], input=input, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr}")
    return result.stdout


def operator_kubeconfig(admin_kubeconfig: Path, out: Path) -> Path:
    """Apply the operator's RBAC from manifests/base and write a kubeconfig (to ``out``) that holds
    only a token of its ServiceAccount, so everything done with it is checked as the operator."""
    rendered = kubectl(admin_kubeconfig, "kustomize", str(ROOT / "manifests" / "base"))
    docs = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] in RBAC_KINDS]
    kubectl(admin_kubeconfig, "apply", "-f", "-", input="\n---\n".join(yaml.safe_dump(d) for d in docs))
    token = kubectl(
        admin_kubeconfig, "create", "token", "-n", "trainingjob-system", "trainingjob-operator", "--duration=2h"
    ).strip()
    cfg = yaml.safe_load(admin_kubeconfig.read_text())
    cfg["users"] = [{"name": "operator", "user": {"token": token}}]
    for ctx in cfg["contexts"]:
        ctx["context"]["user"] = "operator"
    out.write_text(yaml.safe_dump(cfg))
    return out


class OperatorProcess:
    """``kopf run -m trainingjob_operator.main --all-namespaces`` with PYTHONPATH=operator, in its own
    process group; ``start()`` returns once its liveness endpoint answers."""

    def __init__(
        self,
        kubeconfig: str,
        log_dir: Path,
        extra_env: dict[str, str] | None = None,
        verbose: bool = True,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.extra_env = extra_env or {}
        self.verbose = verbose
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"operator-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        env = {
            **os.environ,
            "KUBECONFIG": self.kubeconfig,
            "PYTHONPATH": str(ROOT / "operator"),
            "TJO_METRICS_PORT": str(self.metrics_port),
            **self.extra_env,
        }
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kopf",
                "run",
                "-m",
                "trainingjob_operator.main",
                "--all-namespaces",
                f"--liveness=http://127.0.0.1:{self.health_port}/healthz",
                *(["--verbose"] if self.verbose else []),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(ROOT),
            start_new_session=True,
        )
        self._wait_healthy()

    def _wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}: {self.tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"operator not healthy after {timeout}s: {self.tail()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as when a node dies."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""
