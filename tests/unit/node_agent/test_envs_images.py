"""Env resolution, $(VAR) expansion, quantities and the image mapping (pure parts of the node agent)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from node_agent.envs import ConfigError, container_argv, container_env, expand, field_ref, parse_quantity
from node_agent.images import SHELL_IMAGE, TRAINER_IMAGE, ImageMap, parse_mapping, repository

POD: dict[str, Any] = {
    "metadata": {"name": "p1", "namespace": "ns1", "uid": "u-1", "labels": {"app": "x"}},
    "spec": {"nodeName": "local-node", "serviceAccountName": "sa"},
}
DATA = {
    ("secret", "ns1", "db"): {"dsn": b"postgres://u:p@h/db", "user": b"u"},
    ("configmap", "ns1", "cfg"): {"mode": b"fast"},
}


def lookup(kind: str, namespace: str, name: str) -> dict[str, bytes] | None:
    return DATA.get((kind, namespace, name))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("$(A)-$(B)", "1-2"),
        ("$$(A)", "$(A)"),
        ("$(MISSING)", "$(MISSING)"),
        ("$(A", "$(A"),
        ("a$b", "a$b"),
        ("end$", "end$"),
        ("$$$(A)", "$1"),
        ("", ""),
    ],
)
def test_expand(value: str, expected: str) -> None:
    assert expand(value, {"A": "1", "B": "2"}) == expected


@pytest.mark.parametrize(
    ("q", "value"),
    [("128Mi", 128 * 2**20), ("1G", 10**9), ("500m", Decimal("0.5")), ("1e3", 1000), ("2", 2), ("1.5Gi", 3 * 2**29)],
)
def test_parse_quantity(q: str, value: Any) -> None:
    assert parse_quantity(q) == Decimal(value)


def test_parse_quantity_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_quantity("12 apples")


def test_container_env_sources_and_order() -> None:
    container = {
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        "env": [
            {"name": "DSN", "valueFrom": {"secretKeyRef": {"name": "db", "key": "dsn"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "MSG", "value": "$(POD) in $(CFG_mode) mode"},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}}},
        ],
        "resources": {"limits": {"memory": "256Mi"}},
    }
    env = container_env(
        POD,
        container,
        lookup,
        host_ip="127.0.0.1",
        pod_ip="127.0.0.1",
        service_env={"KUBERNETES_SERVICE_HOST": "127.0.0.1"},
    )
    assert env == {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "CFG_mode": "fast",
        "DSN": "postgres://u:p@h/db",
        "POD": "p1",
        "APP": "x",
        "MEM": "256",
        "MSG": "p1 in fast mode",
    }
    assert container_argv(["echo", "$(MSG)", "$$(MSG)"], env) == ["echo", "p1 in fast mode", "$(MSG)"]


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ({"secretKeyRef": {"name": "missing", "key": "k"}}, 'secret "missing" not found'),
        ({"secretKeyRef": {"name": "db", "key": "nokey"}}, "couldn't find key nokey in Secret ns1/db"),
        ({"configMapKeyRef": {"name": "gone", "key": "k"}}, 'configmap "gone" not found'),
    ],
)
def test_missing_references_are_config_errors(ref: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        container_env(POD, {"env": [{"name": "X", "valueFrom": ref}]}, lookup, host_ip="h", pod_ip="p")


def test_field_refs() -> None:
    assert field_ref(POD, "spec.nodeName", "h", "p") == "local-node"
    assert field_ref(POD, "metadata.uid", "h", "p") == "u-1"
    assert field_ref(POD, "status.podIP", "h", "10.1.1.1") == "10.1.1.1"
    with pytest.raises(ConfigError):
        field_ref(POD, "spec.bogus", "h", "p")


@pytest.mark.parametrize(
    ("image", "repo"),
    [
        ("ghcr.io/trainingjob-operator/forecast-trainer:0.1.0", "ghcr.io/trainingjob-operator/forecast-trainer"),
        ("ghcr.io/x/y@sha256:abc", "ghcr.io/x/y"),
        ("ghcr.io/x/y:1@sha256:abc", "ghcr.io/x/y"),
        ("localhost:5000/img:tag", "localhost:5000/img"),
        ("localhost:5000/img", "localhost:5000/img"),
        ("docker.io/library/busybox:1.36", "busybox"),
        ("busybox", "busybox"),
    ],
)
def test_repository(image: str, repo: str) -> None:
    assert repository(image) == repo


def test_default_images() -> None:
    images = ImageMap.load(environ={})
    trainer = images.resolve(f"{TRAINER_IMAGE}:0.1.0")
    assert trainer is not None and trainer.entrypoint[0].endswith("/forecast-trainer")
    assert trainer.argv(None, ["train"]) == [trainer.entrypoint[0], "train"]
    shell = images.resolve(f"{SHELL_IMAGE}:latest")
    assert shell is not None and shell.argv(None, ["echo hi"]) == ["/bin/sh", "-c", "echo hi"]
    assert shell.argv(["python3", "-c"], ["print(1)"]) == ["python3", "-c", "print(1)"]
    assert images.resolve("busybox") is None
    assert "busybox" in images.pull_error("busybox") and "NODE_AGENT_IMAGES" in images.pull_error("busybox")


def test_mapping_from_env_json_and_file(tmp_path: Path) -> None:
    path = tmp_path / "images.yaml"
    path.write_text(
        "images:\n"
        "  example.com/tool:v1:\n"
        "    entrypoint: ['{bin}/tool']\n"
        "    cmd: ['--help']\n"
        "    env: {HOME: /tmp}\n"
        "    user: 1000\n"
        f"  {SHELL_IMAGE}: null\n"
    )
    images = ImageMap.load([str(path)], environ={"NODE_AGENT_IMAGES": json.dumps({"busybox": ["/bin/busybox"]})})
    tool = images.resolve("example.com/tool:v2")
    assert tool is not None and tool.cmd == ("--help",) and tool.user == 1000 and tool.env == {"HOME": "/tmp"}
    assert not tool.entrypoint[0].startswith("{bin}")
    assert tool.argv(None, None) == [tool.entrypoint[0], "--help"]
    assert images.resolve("docker.io/library/busybox:latest") is not None
    assert images.resolve(SHELL_IMAGE) is None  # removed by null


def test_bad_mapping_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown keys"):
        parse_mapping("x/y: {entry: [a]}", "f.yaml")
    with pytest.raises(ValueError, match="expected a mapping"):
        parse_mapping("- a", "f.yaml")
