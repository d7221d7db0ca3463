"""``python -m localcluster status`` reports what docs/local-cluster.md says: pids, ports, readiness, logs."""

from __future__ import annotations

import json
from pathlib import Path

from localcluster.cluster import LocalCluster


def test_status_names_the_ports_of_the_last_start(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "state", tmp_path / "bin")
    ports = {"etcd_client": 41001, "etcd_peer": 41002, "apiserver": 1, "controller_manager": 41004, "scheduler": 41005}
    cluster.meta_path.parent.mkdir(parents=True, exist_ok=True)
    cluster.meta_path.write_text(json.dumps({"ports": ports}))
    status = cluster.status()
    assert status["ports"] == ports and status["server"] == "https://127.0.0.1:1"
    assert status["ready"] is False and all(not c["alive"] for c in status["components"].values())
