"""The node agent rides out API server outages of any length: no loop thread (node lease, node
status, pod watch, pod workers) ends on the errors urllib3 raises while the server is gone."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from node_agent import agent as agent_module
from node_agent.agent import Agent, Settings, transient
from node_agent.kube import KubeError


class FlakyKube:
    """An API server that can be taken down: while ``down``, every call fails as urllib3 reports a
    refused connection (``MaxRetryError``), a timeout or a reset, in turn."""

    server = "https://127.0.0.1:6443"

    def __init__(self) -> None:
        self.down = False
        self.calls: list[tuple[float, str, str]] = []
        self.failures = 0
        self.node_ready = "True"
        self.pods: list[dict[str, Any]] = []
        self.watch_release = threading.Event()
        self._errors = [
            lambda p: urllib3.exceptions.MaxRetryError(None, p, "Connection refused"),  # type: ignore[arg-type]
            lambda p: urllib3.exceptions.ReadTimeoutError(None, p, "Read timed out"),  # type: ignore[arg-type]
            lambda p: urllib3.exceptions.ProtocolError("Connection aborted", ConnectionResetError()),
            lambda p: KubeError("GET", p, 503, '{"reason":"ServiceUnavailable","message":"etcd down"}'),
        ]

    def _call(self, method: str, path: str) -> None:
        if self.down:
            self.failures += 1
            raise self._errors[self.failures % len(self._errors)](path)
        self.calls.append((time.monotonic(), method, path))

    def get(self, path: str, query: Any = None) -> dict[str, Any]:
        self._call("GET", path)
        if path.startswith("/api/v1/nodes/"):
            return {
                "metadata": {"uid": "node-uid"},
                "status": {"conditions": [{"type": "Ready", "status": self.node_ready}]},
            }
        if path == "/api/v1/pods":
            return {"metadata": {"resourceVersion": "7"}, "items": self.pods}
        return {}

    def patch(self, path: str, body: Any, patch_type: str = "strategic") -> dict[str, Any]:
        self._call("PATCH", path)
        if path.endswith("/status") and "/nodes/" in path:
            self.node_ready = "True"
        return {}

    def post(self, path: str, body: Any) -> dict[str, Any]:
        self._call("POST", path)
        return {}

    def watch(self, path: str, query: Any, timeout_seconds: int = 300) -> Iterator[dict[str, Any]]:
        self._call("WATCH", path)
        # a server that holds the watch open until it goes away
        while not self.down and not self.watch_release.wait(0.01):
            pass
        if self.down:
            raise urllib3.exceptions.ProtocolError("Connection broken", ConnectionResetError())
        return iter(())

    def count(self, method: str, fragment: str, since: float = 0.0) -> int:
        return sum(1 for t, m, p in self.calls if m == method and fragment in p and t >= since)


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_module, "ERROR_BACKOFF", (0.01, 0.05))
    monkeypatch.setattr(agent_module, "POD_BACKOFF", (0.01, 0.05))


def make_agent(tmp_path: Path, kube: FlakyKube) -> Agent:
    settings = Settings(
        node_name="n", state_dir=tmp_path, lease_renew=0.05, status_check=0.05, status_report=60.0, workers=1
    )
    a = Agent(settings, kube=kube)  # type: ignore[arg-type]
    a._node_status = lambda existing: {"status": {}}  # type: ignore[method-assign]
    return a


def wait(what: str, probe: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_transient_covers_urllib3_errors_and_server_side_failures() -> None:
    assert transient(urllib3.exceptions.MaxRetryError(None, "/x", "refused"))  # type: ignore[arg-type]
    assert transient(urllib3.exceptions.ReadTimeoutError(None, "/x", "timed out"))  # type: ignore[arg-type]
    assert transient(urllib3.exceptions.ProtocolError("aborted"))
    assert transient(ConnectionRefusedError()) and transient(TimeoutError())
    assert transient(KubeError("GET", "/x", 503, "")) and transient(KubeError("GET", "/x", 429, ""))
    assert not transient(KubeError("GET", "/x", 403, "")) and not transient(ValueError())


def test_heartbeat_and_node_status_survive_an_outage_and_recover_at_once(tmp_path: Path, fast: None) -> None:
    kube = FlakyKube()
    a = make_agent(tmp_path, kube)
    a._thread("heartbeat", a._heartbeat_loop)
    a._thread("node-status", a._node_status_loop)
    try:
        wait("a lease renewal", lambda: kube.count("PATCH", "/leases/") >= 2)
        kube.down = True  # far longer than the backoff cap: many failed attempts of each loop
        time.sleep(0.5)
        assert kube.failures >= 10
        # meanwhile the node lifecycle controller marked the node Unknown
        kube.node_ready = "Unknown"
        kube.down = False
        back = time.monotonic()
        wait("the lease renewed after the outage", lambda: kube.count("PATCH", "/leases/", since=back) >= 1, 1)
        wait("node status reported (Ready again)", lambda: kube.count("PATCH", "/nodes/n/status", since=back) >= 1, 1)
        assert all(t.is_alive() for t in a.threads)
    finally:
        a.stop()
        for t in a.threads:
            t.join(2)


def test_unexpected_errors_do_not_end_a_loop_either(tmp_path: Path, fast: None) -> None:
    kube = FlakyKube()
    a = make_agent(tmp_path, kube)
    calls = []

    def step() -> None:
        calls.append(time.monotonic())
        if len(calls) < 4:
            raise RuntimeError("bug or surprise")

    t = threading.Thread(target=a._loop, args=("test", 0.01, step), daemon=True)
    t.start()
    try:
        wait("the loop goes on", lambda: len(calls) >= 6)
        assert t.is_alive()
    finally:
        a.stop()
        t.join(2)


def test_pod_watch_relists_after_the_outage(tmp_path: Path, fast: None) -> None:
    kube = FlakyKube()
    kube.pods = [{"metadata": {"uid": "u1", "resourceVersion": "5"}}]
    a = make_agent(tmp_path, kube)
    a._thread("pod-watch", a._watch_loop)
    try:
        wait("listed", lambda: a.synced.is_set() and "u1" in a.pods)
        kube.down = True  # the watch connection breaks; relists fail for a while
        time.sleep(2.5)
        kube.pods.append({"metadata": {"uid": "u2", "resourceVersion": "8"}})  # created meanwhile
        kube.down = False
        wait("relisted after the outage", lambda: "u2" in a.pods, 3)
        assert all(t.is_alive() for t in a.threads)
    finally:
        a.stop()
        kube.watch_release.set()
        for t in a.threads:
            t.join(3)


def test_pod_workers_retry_status_posts_until_the_api_is_back(
    tmp_path: Path, fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube = FlakyKube()
    a = make_agent(tmp_path, kube)
    done: list[str] = []

    def reconcile(uid: str) -> None:
        kube.patch(f"/api/v1/namespaces/ns/pods/{uid}/status", {})
        done.append(uid)

    monkeypatch.setattr(a, "reconcile", reconcile)
    kube.down = True
    a._thread("worker-0", a._worker_loop)
    try:
        a.queue.add("u1")
        time.sleep(0.5)
        assert not done and kube.failures >= 3
        kube.down = False
        wait("the status posted", lambda: done == ["u1"], 1)
        assert a._pod_failures == {}
    finally:
        a.stop()
        a.queue.shutdown()
        for t in a.threads:
            t.join(2)
