"""The agent starts alongside the API server: connection refused while it boots must be retried."""

from __future__ import annotations

from typing import Any

import urllib3

from node_agent.agent import Agent


class BootingKube:
    """Refuses connections (as urllib3 reports them) twice, then answers."""

    def __init__(self) -> None:
        self.refusals = 2

    def get(self, path: str) -> dict[str, Any]:
        if self.refusals:
            self.refusals -= 1
            raise urllib3.exceptions.MaxRetryError(None, path, "Connection refused")  # type: ignore[arg-type]
        return {"gitVersion": "v1.33.13"}


def test_register_node_retries_while_the_api_server_boots(monkeypatch: Any) -> None:
    agent = Agent.__new__(Agent)
    agent.kube = BootingKube()  # type: ignore[assignment]
    agent.kube_version = "v0.0.0"
    calls: list[str] = []

    class Settings:
        node_name = "n"
        labels: dict[str, str] = {}

    agent.s = Settings()  # type: ignore[assignment]
    monkeypatch.setattr("node_agent.agent.time.sleep", lambda _: None)
    monkeypatch.setattr("node_agent.agent.status.node_object", lambda *a: calls.append("node") or {})
    monkeypatch.setattr(Agent, "_node_status", lambda self, _: {})

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {"uid": "u"}}

    agent.kube.post = post  # type: ignore[attr-defined]
    monkeypatch.setattr(Agent, "report_node_status", lambda self: None)
    monkeypatch.setattr(Agent, "renew_lease", lambda self: None)
    agent.register_node()
    assert agent.kube_version == "v1.33.13" and agent.node_uid == "u" and calls == ["node"]
