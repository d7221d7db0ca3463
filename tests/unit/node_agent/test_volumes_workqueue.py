"""Volume materialisation (on a temp dir, with a fake API lookup) and the work queue."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from node_agent.volumes import (
    Ownership,
    UnsupportedVolume,
    VolumePending,
    b64_data,
    container_mounts,
    materialize,
)
from node_agent.workqueue import WorkQueue

DATA = {
    ("configmap", "ns", "sales"): {"sales.csv": b"ds,y\n", "other": b"x"},
    ("secret", "ns", "db"): {"dsn": b"postgres://"},
    ("configmap", "ns", "kube-root-ca.crt"): {"ca.crt": b"CERT"},
}


def lookup(kind: str, namespace: str, name: str) -> dict[str, bytes] | None:
    return DATA.get((kind, namespace, name))


def token(sa: str, audience: str, expiration: int) -> str:
    return f"token-for-{sa}"


def pod(volumes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
        "spec": {"serviceAccountName": "runner", "containers": [{"name": "main"}], "volumes": volumes},
    }


def test_materialize_all_supported_kinds(tmp_path: Path) -> None:
    volumes = [
        {"name": "scratch", "emptyDir": {}},
        {"name": "sales", "configMap": {"name": "sales", "items": [{"key": "sales.csv", "path": "in/sales.csv"}]}},
        {"name": "db", "secret": {"secretName": "db", "defaultMode": 0o400}},
        {"name": "meta", "downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
        {
            "name": "kube-api-access",
            "projected": {
                "sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {
                        "downwardAPI": {
                            "items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]
                        }
                    },
                ]
            },
        },
    ]
    out = materialize(pod(volumes), tmp_path, lookup, token, Ownership(uid=65532, gid=65532, fs_group=65532))
    assert stat.S_IMODE(os.stat(out["scratch"]).st_mode) & 0o777 == 0o777
    assert os.stat(out["scratch"]).st_uid == 65532
    assert (out["sales"] / "in" / "sales.csv").read_bytes() == b"ds,y\n"
    assert not (out["sales"] / "other").exists()
    db = out["db"] / "dsn"
    assert db.read_bytes() == b"postgres://" and os.stat(db).st_gid == 65532
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o440  # defaultMode 0400 + group read for fsGroup
    assert (out["meta"] / "name").read_text() == "p"
    api = out["kube-api-access"]
    assert (api / "token").read_text() == "token-for-runner"
    assert (api / "ca.crt").read_text() == "CERT" and (api / "namespace").read_text() == "ns"


def test_missing_configmap_is_pending_unless_optional(tmp_path: Path) -> None:
    with pytest.raises(VolumePending, match='configmap "nope" not found'):
        materialize(pod([{"name": "v", "configMap": {"name": "nope"}}]), tmp_path, lookup, token, Ownership())
    out = materialize(
        pod([{"name": "v", "configMap": {"name": "nope", "optional": True}}]), tmp_path, lookup, token, Ownership()
    )
    assert out["v"].is_dir() and not list(out["v"].iterdir())


def test_unsupported_volume_and_path_escape(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedVolume, match="persistentVolumeClaim"):
        materialize(
            pod([{"name": "v", "persistentVolumeClaim": {"claimName": "c"}}]), tmp_path, lookup, token, Ownership()
        )
    bad = [{"name": "v", "configMap": {"name": "sales", "items": [{"key": "other", "path": "../escape"}]}}]
    with pytest.raises(UnsupportedVolume, match="invalid volume item path"):
        materialize(pod(bad), tmp_path, lookup, token, Ownership())


def test_container_mounts_sub_path_and_order(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    container = {
        "volumeMounts": [
            {"name": "scratch", "mountPath": "/data/cache", "subPathExpr": "$(POD)"},
            {"name": "scratch", "mountPath": "/data", "readOnly": True},
        ]
    }
    mounts = container_mounts(container, {"scratch": scratch}, {"POD": "p1"})
    assert [m.target for m in mounts] == ["/data", "/data/cache"]
    assert mounts[0].read_only and mounts[1].source == scratch / "p1" and (scratch / "p1").is_dir()
    with pytest.raises(UnsupportedVolume):
        container_mounts({"volumeMounts": [{"name": "ghost", "mountPath": "/x"}]}, {}, {})


def test_b64_data() -> None:
    assert b64_data({"kind": "Secret", "data": {"k": "aGk="}, "stringData": {"s": "plain"}}) == {
        "k": b"hi",
        "s": b"plain",
    }
    assert b64_data({"kind": "ConfigMap", "data": {"a": "1"}, "binaryData": {"b": "AAE="}}) == {
        "a": b"1",
        "b": b"\x00\x01",
    }


def test_workqueue_dedupes_and_serialises_keys() -> None:
    q = WorkQueue()
    q.add("a")
    q.add("a")
    q.add("b")
    assert len(q) == 2
    first = q.get()
    assert first == "a"
    q.add("a")  # while "a" is processed: not handed out twice at once
    assert q.get() == "b"
    q.done("b")
    q.done("a")  # "a" was re-added meanwhile: it comes back
    assert q.get() == "a"
    q.done("a")
    q.add_after("c", 0.05)
    t0 = time.monotonic()
    assert q.get() == "c" and time.monotonic() - t0 >= 0.04
    q.shutdown()
    assert q.get() is None
