"""Images for the real node, without a registry: the pause image, and the project's images.

- The pause image (``localhost/pause:3.10``, the sandbox containerd starts for every pod) is
  Debian's static ``catatonit -P`` committed by buildah from scratch into a docker-archive, cached in
  ``${TJO_CACHE:-~/.cache/trainingjob-operator}/pause-3.10-<hash of catatonit>/pause.tar``.
- The project's images: every ``*.tar`` docker-archive in a directory (``$TJO_IMAGES_DIR``, else the
  last stdout line of ``hack/build-images.sh`` when that script exists), with ``images.json``
  mapping name -> {"ref", "id"}; an archive whose id containerd already holds is not imported again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from localcluster.binaries import BinariesError, run_build_script
from localcluster.containerd import IMAGE_ID_LABEL, PAUSE_IMAGE, ContainerdPaths, image_labels, import_archive

HACK = Path(__file__).resolve().parents[1]
BUILD_IMAGES = HACK / "build-images.sh"
CATATONIT = Path("/usr/bin/catatonit")


class ImagesError(RuntimeError):
    """An image could not be built or imported; the message says which and why."""


def cache_root() -> Path:
    return Path(os.environ.get("TJO_CACHE") or Path.home() / ".cache" / "trainingjob-operator")


def pause_archive() -> Path:
    """The pause image's docker-archive, built with buildah on first use."""
    if not CATATONIT.exists():
        raise ImagesError(f"{CATATONIT} is missing: bash hack/node-packages.sh installs catatonit")
    key = hashlib.sha256(CATATONIT.read_bytes() + PAUSE_IMAGE.encode()).hexdigest()[:12]
    out = cache_root() / f"pause-{PAUSE_IMAGE.rsplit(':', 1)[1]}-{key}" / "pause.tar"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_suffix(".part")
    part.unlink(missing_ok=True)
    container = _buildah("from", "scratch").strip()
    try:
        _buildah("copy", "--chmod", "0755", container, str(CATATONIT), "/pause")
        _buildah("config", "--entrypoint", '["/pause","-P"]', "--user", "65535:65535", container)
        _buildah("commit", "--quiet", container, f"docker-archive:{part}:{PAUSE_IMAGE}")
    finally:
        _buildah("rm", container)
    part.rename(out)
    return out


def _buildah(*args: str) -> str:
    r = subprocess.run(["buildah", *args], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise ImagesError(f"buildah {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()[-1000:]}")
    return r.stdout


def project_images_dir() -> Path | None:
    """``$TJO_IMAGES_DIR``, else what hack/build-images.sh prints (it builds or reuses), else None."""
    env = os.environ.get("TJO_IMAGES_DIR")
    if env:
        return Path(env).expanduser().resolve()
    if not BUILD_IMAGES.exists():
        return None
    try:
        return run_build_script(BUILD_IMAGES)
    except BinariesError as exc:
        raise ImagesError(str(exc)) from exc


@dataclass(frozen=True)
class Archive:
    path: Path
    image_id: str | None
    ref: str | None


def archives_in(directory: Path) -> list[Archive]:
    """The ``*.tar`` archives of ``directory`` with their id and ref from ``images.json`` (if any)."""
    try:
        index = dict(json.loads((directory / "images.json").read_text()))
    except (OSError, ValueError):
        index = {}
    out = []
    for tar in sorted(directory.glob("*.tar")):
        entry = index.get(tar.stem) or {}
        out.append(Archive(tar, entry.get("id"), entry.get("ref")))
    return out


@dataclass(frozen=True)
class LoadResult:
    imported: list[str]
    skipped: list[str]
    seconds: float


def load_images(paths: ContainerdPaths, archives: list[Archive]) -> LoadResult:
    """Import each archive into the node's containerd unless its id is already there under its ref."""
    t0 = time.monotonic()
    have = image_labels(paths)
    imported, skipped = [], []
    for a in archives:
        if a.image_id and a.ref and have.get(_normalize(a.ref), {}).get(IMAGE_ID_LABEL) == a.image_id:
            skipped.append(a.ref)
            continue
        imported += import_archive(paths, a.path, a.image_id)
    return LoadResult(imported, skipped, time.monotonic() - t0)


def load_pause(paths: ContainerdPaths) -> LoadResult:
    archive = pause_archive()
    image_id = hashlib.sha256(archive.read_bytes()).hexdigest()
    return load_images(paths, [Archive(archive, image_id, PAUSE_IMAGE)])


def _normalize(ref: str) -> str:
    """containerd's name of an image ref: a single path component gets docker.io/library/, a tag-less
    ref gets :latest."""
    name = ref
    first = name.split("/", 1)[0]
    if "/" not in name or ("." not in first and ":" not in first and first != "localhost"):
        name = f"docker.io/{name if '/' in name else 'library/' + name}"
    if ":" not in name.rsplit("/", 1)[-1] and "@" not in name:
        name += ":latest"
    return name


def have_tool(name: str) -> bool:
    return shutil.which(name) is not None
