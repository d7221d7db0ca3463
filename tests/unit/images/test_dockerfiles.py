"""The images' build files and the manifests that run them agree, read without building anything.

Each test here stands for a bug a real container runtime found: the operator Deployment gave the
kopf command as ``args`` (appended to the image's identical ENTRYPOINT: ``kopf run ... kopf run
...``), and the operator Dockerfile created a group ``operator``, which every Debian base already
has (gid 37). tests/images/ builds and runs the images themselves.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.unit.operator.factories import make_tj

from trainingjob_operator.api import DEFAULT_TRAINER_IMAGE
from trainingjob_operator.builders import build_job

ROOT = Path(__file__).resolve().parents[3]
OPERATOR_DOCKERFILE = ROOT / "Dockerfile"
TRAINER_DOCKERFILE = ROOT / "trainer_image" / "Dockerfile"
POSTGRES_DOCKERFILE = ROOT / "hack" / "images" / "postgres" / "Dockerfile"
DOCKERFILES = [OPERATOR_DOCKERFILE, TRAINER_DOCKERFILE, POSTGRES_DOCKERFILE]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

# Debian's static users and groups (base-passwd's passwd.master and group.master): a Dockerfile that
# creates one of these names fails on every Debian-based image ("group 'operator' already exists").
DEBIAN_STATIC_NAMES = frozenset(
    {
        "root",
        "daemon",
        "bin",
        "sys",
        "adm",
        "tty",
        "disk",
        "lp",
        "mail",
        "news",
        "uucp",
        "man",
        "proxy",
        "kmem",
        "dialout",
        "fax",
        "voice",
        "cdrom",
        "floppy",
        "tape",
        "sudo",
        "audio",
        "dip",
        "www-data",
        "backup",
        "operator",
        "list",
        "irc",
        "src",
        "gnats",
        "shadow",
        "utmp",
        "video",
        "sasl",
        "plugdev",
        "staff",
        "games",
        "users",
        "nogroup",
        "sync",
    }
)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def last(self, keyword: str) -> str | None:
        values = [value for kw, value in self.instructions if kw == keyword]
        return values[-1] if values else None


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(ARGs before the first FROM -> default, stages): continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, value = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = value.split()
            stages.append(Stage(base=words[0], name=words[2] if len(words) > 2 else None))
        elif not stages:
            if keyword == "ARG":
                name, _, default = value.partition("=")
                global_args[name.strip()] = default.strip()
        else:
            stages[-1].instructions.append((keyword, value.strip()))
    return global_args, stages


def exec_form(value: str | None) -> list[str]:
    """ENTRYPOINT/CMD: JSON (exec) form as is; shell form as the runtime runs it."""
    if value is None:
        return []
    if value.startswith("["):
        parsed = json.loads(value)
        assert isinstance(parsed, list)
        return [str(x) for x in parsed]
    return ["/bin/sh", "-c", value]


def container_argv(entrypoint: list[str], cmd: list[str], container: dict[str, Any]) -> list[str]:
    """What a container runtime executes, by Kubernetes' rules: ``command`` replaces ENTRYPOINT (and
    drops CMD); ``args`` replaces CMD and is appended to whichever entrypoint is in effect."""
    command = container.get("command")
    args = container.get("args")
    if command is not None:
        return [*command, *(args or [])]
    return [*entrypoint, *(args if args is not None else cmd)]


def final_stage(path: Path) -> Stage:
    return parse_dockerfile(path.read_text())[1][-1]


def manifests(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def containers_of(kind: str, path: Path) -> list[dict[str, Any]]:
    return [c for doc in manifests(path) if doc["kind"] == kind for c in doc["spec"]["template"]["spec"]["containers"]]


# ------------------------------------------------------------------------------------------ commands


def test_operator_deployment_runs_kopf_once() -> None:
    stage = final_stage(OPERATOR_DOCKERFILE)
    entrypoint, cmd = exec_form(stage.last("ENTRYPOINT")), exec_form(stage.last("CMD"))
    (container,) = containers_of("Deployment", ROOT / "manifests" / "base" / "deployment.yaml")
    argv = container_argv(entrypoint, cmd, container)
    assert argv[:2] == ["kopf", "run"], argv
    assert argv.count("kopf") == 1 and argv.count("run") == 1, f"the image's ENTRYPOINT is repeated: {argv}"
    assert "trainingjob_operator.main" in argv


def test_operator_image_entrypoint_is_the_deployment_command() -> None:
    # The same command whether a user runs the image by hand or the Deployment starts it.
    stage = final_stage(OPERATOR_DOCKERFILE)
    (container,) = containers_of("Deployment", ROOT / "manifests" / "base" / "deployment.yaml")
    assert container_argv([], [], container) == exec_form(stage.last("ENTRYPOINT"))


@pytest.mark.parametrize(
    ("what", "container"),
    [
        ("product Job", build_job(make_tj(["p1"]), "p1")["spec"]["template"]["spec"]["containers"][0]),
        *[
            (f"samples/database/load-sample-data.yaml {c['name']}", c)
            for c in containers_of("Job", ROOT / "manifests" / "samples" / "database" / "load-sample-data.yaml")
        ],
    ],
)
def test_trainer_containers_run_one_forecast_trainer_command(what: str, container: dict[str, Any]) -> None:
    stage = final_stage(TRAINER_DOCKERFILE)
    argv = container_argv(exec_form(stage.last("ENTRYPOINT")), exec_form(stage.last("CMD")), container)
    words = [w for arg in argv for w in (shlex.split(arg) if " " in arg else [arg])]
    assert words.count("forecast-trainer") >= 1, (what, argv)
    # Never "forecast-trainer forecast-trainer ...": args given as a whole command line.
    assert not any(a == b == "forecast-trainer" for a, b in itertools.pairwise(words)), (what, argv)


# ------------------------------------------------------------------------------------------ bases, users


@pytest.mark.parametrize("path", [OPERATOR_DOCKERFILE, TRAINER_DOCKERFILE], ids=lambda p: str(p.relative_to(ROOT)))
def test_base_image_is_an_argument_defaulting_to_python_slim(path: Path) -> None:
    # and the last stage runs on RUNTIME_IMAGE (make images: the base without its package manager).
    global_args, stages = parse_dockerfile(path.read_text())
    assert global_args.get("BASE_IMAGE") == "python:3.11-slim"
    assert global_args.get("RUNTIME_IMAGE") == "python:3.11-slim"
    names = {s.name for s in stages if s.name}
    for stage in stages[:-1]:
        assert stage.base in ("${BASE_IMAGE}", "$BASE_IMAGE") or stage.base in names, stage.base
    assert stages[-1].base in ("${RUNTIME_IMAGE}", "$RUNTIME_IMAGE"), stages[-1].base


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_users_and_groups_a_dockerfile_creates_are_new_on_debian(path: Path) -> None:
    text = path.read_text()
    tool = r"\b(?:groupadd|useradd|adduser|addgroup)\b"
    created = set(re.findall(tool + r"[^&;\n]*?\s([a-z_][a-z0-9_-]*)\s*(?:&&|;|\\|$)", text))
    created |= set(re.findall(r"echo\s+'([a-z_][a-z0-9_-]*):x:\d+:", text))
    assert created, f"{path}: no user or group found (the parser no longer matches the Dockerfile)"
    assert not created & DEBIAN_STATIC_NAMES, f"{path} creates {sorted(created & DEBIAN_STATIC_NAMES)}"


@pytest.mark.parametrize("path", [OPERATOR_DOCKERFILE, TRAINER_DOCKERFILE], ids=lambda p: str(p.relative_to(ROOT)))
def test_images_run_as_the_pods_uid(path: Path) -> None:
    # The Deployment and the product Jobs run as 65532: the image's USER says the same.
    assert final_stage(path).last("USER") == "65532:65532"


@pytest.mark.parametrize("path", [OPERATOR_DOCKERFILE, TRAINER_DOCKERFILE], ids=lambda p: str(p.relative_to(ROOT)))
def test_dependencies_are_installed_before_the_sources_are_copied(path: Path) -> None:
    # A code-only change must reuse the dependency layer: the `dependencies` stage runs
    # `pip install -r` with nothing of the project copied in (the requirements come from a stage
    # that copies pyproject.toml but none of the sources), and the image copies its venv before
    # the project's wheel.
    _, stages = parse_dockerfile(path.read_text())
    dependencies = next(s for s in stages if s.name == "dependencies")
    steps = [f"{kw} {v}" for kw, v in dependencies.instructions]
    install = next(
        i for i, step in enumerate(steps) if step.startswith("RUN") and "pip install" in step and " -r " in step
    )
    sources = ("forecast_trainer", "trainingjob_operator", " operator ", " . ")
    assert not any(s in step for step in steps for s in sources), steps
    assert not any(step.startswith("COPY") and "/wheels" in step for step in steps[:install]), steps
    requirements = next(s for s in stages if s.name == "requirements")
    copied = " ".join(v for kw, v in requirements.instructions if kw == "COPY")
    assert "pyproject.toml" in copied and not any(s in copied for s in sources), copied
    image = [f"{kw} {v}" for kw, v in stages[-1].instructions]
    venv = next(i for i, step in enumerate(image) if step.startswith("COPY --from=dependencies /opt/venv"))
    project = next(i for i, step in enumerate(image) if step.startswith("COPY") and "/wheels" in step)
    assert venv < project, image


# ------------------------------------------------------------------------------------------ references


def build_script_refs() -> dict[str, str]:
    text = (ROOT / "hack" / "build-images.sh").read_text()
    return {name: ref.replace("$version", VERSION) for name, ref in re.findall(r"\[(\w+)\]=(\S+)", text)}


def test_image_references_agree_everywhere() -> None:
    refs = build_script_refs()
    assert refs["trainer"] == f"ghcr.io/trainingjob-operator/forecast-trainer:{VERSION}" == DEFAULT_TRAINER_IMAGE
    assert refs["operator"] == f"ghcr.io/trainingjob-operator/operator:{VERSION}"
    kustomization = yaml.safe_load((ROOT / "manifests" / "base" / "kustomization.yaml").read_text())
    (operator_image,) = kustomization["images"]
    (container,) = containers_of("Deployment", ROOT / "manifests" / "base" / "deployment.yaml")
    assert f"{container['image']}:{operator_image['newTag']}" == refs["operator"]
    for c in containers_of("Job", ROOT / "manifests" / "samples" / "database" / "load-sample-data.yaml"):
        assert c["image"] == refs["trainer"]
    for c in containers_of("StatefulSet", ROOT / "manifests" / "samples" / "database" / "postgres.yaml"):
        # "postgres:15" as the samples say it is docker.io/library/postgres:15, the reference the
        # Debian-built image gets (and kind pulls the official image under).
        assert f"docker.io/library/{c['image']}" == refs["postgres"]
