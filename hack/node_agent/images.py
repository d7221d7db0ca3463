"""Which "images" the node agent can run, and as what local command.

There is no container engine: an image name maps to a local entrypoint, the way an image's
``ENTRYPOINT``/``CMD``/``ENV``/``WORKDIR``/``USER`` would. Matching is on the repository only
(tag and digest are ignored; ``docker.io/library/`` and ``docker.io/`` prefixes are optional).

Mappings come from, in order (later wins): the built-in defaults, the file named by the env var
``NODE_AGENT_IMAGES`` (or inline JSON when the value starts with ``{``), and ``--images FILE``.
A file is JSON or YAML::

    images:
      ghcr.io/example/tool:            # repository, no tag
        entrypoint: ["{bin}/tool"]     # {bin}: folder of the python running the agent
        cmd: ["--help"]                # default args when the pod gives neither command nor args
        env: {HOME: /tmp}              # image ENV; the pod's env wins
        workingDir: /                  # image WORKDIR; the container's workingDir wins
        user: 65532                    # image USER (numeric); runAsUser wins

A bare list is shorthand for ``{entrypoint: [...]}``; ``null`` removes a default.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TRAINER_IMAGE = "ghcr.io/trainingjob-operator/forecast-trainer"
SHELL_IMAGE = "localhost/tjo-shell"
STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class ImageSpec:
    """What the agent runs for one image repository."""

    repository: str
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    user: int | None = None

    def argv(self, command: list[str] | None, args: list[str] | None) -> list[str]:
        """Container runtime rules: ``command`` replaces the entrypoint (and drops ``cmd``),
        ``args`` replaces ``cmd``."""
        if command:
            return [*command, *(args or [])]
        return [*self.entrypoint, *(args if args else self.cmd)]


def repository(image: str) -> str:
    """``registry/path/name:tag@sha256:...`` -> ``registry/path/name`` (normalised)."""
    name = image.strip().split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/", "index.docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _bin_dir() -> str:
    return str(Path(sys.executable).parent)


def defaults() -> dict[str, ImageSpec]:
    bin_dir = _bin_dir()
    return {
        TRAINER_IMAGE: ImageSpec(
            TRAINER_IMAGE,
            entrypoint=(f"{bin_dir}/forecast-trainer",),
            env={"PATH": f"{bin_dir}:{STANDARD_PATH}", "HOME": "/tmp", "PYTHONUNBUFFERED": "1"},
        ),
        # For harness tests: `args: ["echo hello; exit 3"]` runs that shell snippet.
        SHELL_IMAGE: ImageSpec(SHELL_IMAGE, entrypoint=("/bin/sh", "-c"), env={"PATH": STANDARD_PATH}),
    }


def _expand(value: str) -> str:
    return value.replace("{bin}", _bin_dir())


def _parse_entry(repo: str, raw: Any) -> ImageSpec:
    if isinstance(raw, list):
        raw = {"entrypoint": raw}
    if not isinstance(raw, dict):
        raise ValueError(f"image {repo!r}: expected a list or a mapping, got {type(raw).__name__}")
    unknown = set(raw) - {"entrypoint", "cmd", "env", "workingDir", "user"}
    if unknown:
        raise ValueError(f"image {repo!r}: unknown keys {sorted(unknown)}")
    env = raw.get("env") or {}
    if not isinstance(env, dict):
        raise ValueError(f"image {repo!r}: env must be a mapping")
    user = raw.get("user")
    return ImageSpec(
        repository(repo),
        entrypoint=tuple(_expand(str(a)) for a in raw.get("entrypoint") or ()),
        cmd=tuple(_expand(str(a)) for a in raw.get("cmd") or ()),
        env={str(k): _expand(str(v)) for k, v in env.items()},
        working_dir=raw.get("workingDir"),
        user=int(user) if user is not None else None,
    )


def parse_mapping(text: str, source: str) -> dict[str, ImageSpec | None]:
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{source}: not JSON/YAML: {exc}") from exc
    if isinstance(data, dict) and "images" in data:
        data = data["images"]
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a mapping of image repository -> entry")
    out: dict[str, ImageSpec | None] = {}
    for repo, raw in data.items():
        try:
            out[repository(str(repo))] = None if raw is None else _parse_entry(str(repo), raw)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from exc
    return out


class ImageMap:
    """Resolves pod images to :class:`ImageSpec`; unknown images resolve to None."""

    def __init__(self, specs: dict[str, ImageSpec]) -> None:
        self.specs = dict(specs)

    @classmethod
    def load(cls, files: list[str] | None = None, environ: dict[str, str] | None = None) -> ImageMap:
        env = os.environ if environ is None else environ
        specs: dict[str, ImageSpec] = defaults()
        sources: list[tuple[str, str]] = []
        value = env.get("NODE_AGENT_IMAGES", "").strip()
        if value:
            if value.startswith("{"):
                sources.append((value, "$NODE_AGENT_IMAGES"))
            else:
                sources.append((Path(value).read_text(), value))
        for f in files or []:
            sources.append((Path(f).read_text(), f))
        for text, source in sources:
            for repo, spec in parse_mapping(text, source).items():
                if spec is None:
                    specs.pop(repo, None)
                else:
                    specs[repo] = spec
        return cls(specs)

    def resolve(self, image: str) -> ImageSpec | None:
        return self.specs.get(repository(image))

    def known(self) -> list[str]:
        return sorted(self.specs)

    def pull_error(self, image: str) -> str:
        """The message for an image the agent cannot run (reported with reason ErrImagePull)."""
        return (
            f'image "{image}" is not available on this node: the local node agent runs only mapped images '
            f"({', '.join(self.known())}); add a mapping with NODE_AGENT_IMAGES or --images "
            "(see docs/local-cluster.md)"
        )

    def to_json(self) -> str:
        return json.dumps({r: s.entrypoint for r, s in self.specs.items()})
