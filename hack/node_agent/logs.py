"""Container logs, read from the node agent's files (there is no kubelet API for ``kubectl logs``).

Layout: ``<state>/pods/<namespace>_<pod>_<uid>/containers/<container>/<attempt>.log`` (stdout and
stderr interleaved, as written). Files go away when the pod is deleted, as with a kubelet.
"""

from __future__ import annotations

from pathlib import Path


class LogNotFound(FileNotFoundError):
    pass


def log_files(state_dir: Path, namespace: str, pod: str, container: str | None = None) -> list[Path]:
    """All attempts' log files of the pod's container (oldest first)."""
    pod_dirs = sorted((Path(state_dir) / "pods").glob(f"{namespace}_{pod}_*"), key=lambda p: p.stat().st_mtime)
    if not pod_dirs:
        raise LogNotFound(
            f"no local state for pod {namespace}/{pod} under {state_dir}/pods (deleted, or not on this node)"
        )
    containers_dir = pod_dirs[-1] / "containers"
    names = sorted(p.name for p in containers_dir.glob("*") if p.is_dir())
    if container is None:
        if len(names) != 1:
            raise LogNotFound(f"pod {namespace}/{pod} has containers {names}: name one")
        container = names[0]
    files = sorted((containers_dir / container).glob("*.log"), key=lambda p: int(p.stem))
    if not files:
        raise LogNotFound(f"no log for container {container} of pod {namespace}/{pod} (not started yet?)")
    return files


def read_log(state_dir: Path, namespace: str, pod: str, container: str | None = None, previous: bool = False) -> str:
    """The log of the container's current (or, with ``previous``, the one before) attempt."""
    files = log_files(state_dir, namespace, pod, container)
    if previous:
        if len(files) < 2:
            raise LogNotFound(f"pod {namespace}/{pod}: no previous attempt")
        return files[-2].read_text(errors="replace")
    return files[-1].read_text(errors="replace")
