"""Containers as local processes: launch (namespaces, mounts, user), watch, kill, adopt.

Each container attempt is ``unshare --mount --uts --propagation private -- python -I -S
containerinit.py SPEC`` in its own session/process group; containerinit sets up mounts and
the user, forks the container's command and waits for it, writing ``exit.json`` when it ends.
So the exit code survives a restart of the agent, which re-finds live processes through
``state.json`` (pid + start time) and adopts them.

Per container, under ``<pods>/<namespace>_<pod>_<uid>/containers/<name>/``::

    state.json        pid, process start time, attempt number (restartCount), start time
    <attempt>.log     stdout + stderr of that attempt
    termination-log   bind-mounted at the container's terminationMessagePath
    exit.json         written by containerinit when the main process ends
    killed.json       why the agent killed it (OOMKilled, DeadlineExceeded, Deleted)
"""

from __future__ import annotations

import ast
import json
import marshal
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from node_agent.volumes import Mount

INIT_SCRIPT = Path(__file__).with_name("containerinit.py")
UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"


class RuntimeError_(Exception):
    """The container could not be launched at all."""


@dataclass(frozen=True)
class LaunchSpec:
    argv: list[str]
    env: dict[str, str]
    mounts: list[Mount]
    working_dir: str
    uid: int | None
    gid: int | None
    groups: list[int]
    no_new_privs: bool
    read_only_root: bool
    hostname: str
    # host paths the container's user must reach even below folders it may not traverse
    expose: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExitInfo:
    exit_code: int
    started_at: float | None
    finished_at: float
    start_error: str | None = None
    kill_reason: str | None = None


def python_runtime_paths() -> tuple[str, ...]:
    """Where the agent's Python lives (venv, base installation, and the sources of editable
    installs such as this checkout's trainer): mapped images such as the trainer run
    ``<venv>/bin/...`` scripts, so pods need these paths whatever their user and volumes."""
    paths = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    paths |= python_env_paths(Path(sys.prefix))
    return tuple(sorted(p for p in paths if p))


def python_env_paths(prefix: Path) -> set[str]:
    """Host folders a Python environment (a venv, when ``prefix`` holds ``pyvenv.cfg``) imports from:
    the environment itself, its base interpreter's folder, folders named in ``.pth`` files and the
    package folders of editable installs (setuptools' ``__editable___*_finder.py`` ``MAPPING``)."""
    if not (prefix / "pyvenv.cfg").is_file():
        return set()
    paths = {str(prefix)}
    try:
        for line in (prefix / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                paths.add(value.strip())
    except OSError:
        pass
    for site in prefix.glob("lib/python3*/site-packages"):
        for pth in site.glob("*.pth"):
            try:
                lines = pth.read_text(errors="replace").splitlines()
            except OSError:
                continue
            for line in lines:
                line = line.strip()
                if not line or line.startswith(("#", "import ", "import\t")):
                    continue
                folder = Path(line) if os.path.isabs(line) else site / line
                if folder.is_dir():
                    paths.add(os.path.normpath(folder))
        for finder in site.glob("__editable___*_finder.py"):
            paths |= _editable_mapping(finder)
    return paths


def _editable_mapping(finder: Path) -> set[str]:
    """The package folders of one setuptools editable finder (its literal ``MAPPING`` dict)."""
    try:
        tree = ast.parse(finder.read_text(errors="replace"))
    except (OSError, SyntaxError, ValueError):
        return set()
    for node in tree.body:
        target: ast.expr
        value: ast.expr | None
        if isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id == "MAPPING" and value is not None:
            try:
                mapping = ast.literal_eval(value)
            except ValueError:
                return set()
            if isinstance(mapping, dict):
                return {str(v) for v in mapping.values() if isinstance(v, str) and os.path.isabs(v)}
    return set()


def command_paths(argv0: str, path: str) -> tuple[str, ...]:
    """Host folders the container's command needs, found before any mount can hide them: the
    executable's folder and, for a script, its interpreter's (``#!``); for either inside a venv, the
    venv's import paths (:func:`python_env_paths`). ``path`` is the container's ``PATH``."""
    exe = argv0 if "/" in argv0 else shutil.which(argv0, path=path)
    if not exe or not os.path.isabs(exe) or not os.path.isfile(exe):
        return ()
    paths = {os.path.dirname(exe)}
    candidates = [exe]
    try:
        with open(exe, "rb") as f:
            head = f.read(256)
    except OSError:
        head = b""
    if head.startswith(b"#!"):
        words = head[2:].split(b"\n", 1)[0].decode(errors="replace").split()
        if words and os.path.basename(words[0]) == "env":
            words = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
            interpreter = shutil.which(words[0], path=path) if words else None
        else:
            interpreter = words[0] if words else None
        if interpreter and os.path.isabs(interpreter):
            paths.add(os.path.dirname(interpreter))
            candidates.append(interpreter)
    for candidate in candidates:
        bin_dir = Path(candidate).parent  # not resolved: a venv's python is a symlink out of it
        for prefix in (bin_dir.parent, bin_dir):
            paths |= python_env_paths(prefix)
    return tuple(sorted(paths))


def pod_dir_name(namespace: str, name: str, uid: str) -> str:
    return f"{namespace}_{name}_{uid}"


def parse_pod_dir_name(dirname: str) -> tuple[str, str, str] | None:
    parts = dirname.split("_")
    if len(parts) != 3:
        return None
    return parts[0], parts[1], parts[2]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


class ContainerProcess:
    """One running (or finished) container attempt."""

    def __init__(
        self,
        directory: Path,
        pid: int,
        create_time: float,
        attempt: int,
        started_at: float,
        popen: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self.dir = directory
        self.pid = pid
        self.create_time = create_time
        self.attempt = attempt
        self.started_at = started_at
        self.popen = popen
        self._exited = False

    @property
    def log_path(self) -> Path:
        return self.dir / f"{self.attempt}.log"

    @property
    def termination_log(self) -> Path:
        return self.dir / "termination-log"

    def exited(self) -> bool:
        if self._exited:
            return True
        done = self.popen.poll() is not None if self.popen is not None else not _alive(self.pid, self.create_time)
        self._exited = done
        return done

    def signal(self, sig: int) -> None:
        if self.exited():
            return
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def mark_killed(self, reason: str) -> None:
        if not (self.dir / "killed.json").exists():
            _write_json(self.dir / "killed.json", {"reason": reason, "at": time.time()})

    def kill_reason(self) -> str | None:
        data = _read_json(self.dir / "killed.json")
        return str(data["reason"]) if data and data.get("reason") else None

    def exit_info(self) -> ExitInfo:
        """After :meth:`exited`: the exit code containerinit recorded, or what we know otherwise."""
        data = _read_json(self.dir / "exit.json")
        reason = self.kill_reason()
        if data is not None:
            code = int(data.get("exitCode", 0))
            if reason == "OOMKilled":
                code = 137
            return ExitInfo(
                code, self.started_at, float(data.get("finishedAt") or time.time()), data.get("startError"), reason
            )
        if reason is not None:  # SIGKILLed as a group: containerinit died with it
            return ExitInfo(137, self.started_at, time.time(), None, reason)
        return ExitInfo(137, self.started_at, time.time(), None, "Unknown")

    def rss_bytes(self, tree: dict[int, list[int]], rss: dict[int, int]) -> int:
        """Resident memory of the container's processes (not containerinit's own)."""
        total, stack = 0, list(tree.get(self.pid, []))
        while stack:
            pid = stack.pop()
            total += rss.get(pid, 0)
            stack.extend(tree.get(pid, []))
        return total


def _alive(pid: int, create_time: float) -> bool:
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - create_time) < 0.5 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def process_table() -> tuple[dict[int, list[int]], dict[int, int]]:
    """(parent -> children, pid -> RSS bytes) of every process, in one pass over /proc."""
    tree: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for proc in psutil.process_iter(["ppid", "memory_info"]):
        info = proc.info
        mem = info.get("memory_info")
        if mem is not None:
            rss[proc.pid] = int(mem.rss)
        ppid = info.get("ppid")
        if ppid is not None:
            tree.setdefault(int(ppid), []).append(proc.pid)
    return tree, rss


def prepare_container_dir(directory: Path, attempt: int, uid: int | None, gid: int | None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("exit.json", "killed.json"):
        (directory / name).unlink(missing_ok=True)
    term = directory / "termination-log"
    term.write_bytes(b"")
    if uid is not None or gid is not None:
        os.chown(term, uid if uid is not None else -1, gid if gid is not None else -1)
    os.chmod(term, 0o666)


def launch(directory: Path, attempt: int, spec: LaunchSpec, termination_path: str) -> ContainerProcess:
    """Start one container attempt (see the module docstring)."""
    prepare_container_dir(directory, attempt, spec.uid, spec.gid)
    mounts = [*spec.mounts, Mount(directory / "termination-log", termination_path, False)]
    mounts.sort(key=lambda m: m.target.rstrip("/").count("/"))
    status_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    spec_path = directory / ".spec.marshal"
    fd = os.open(spec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        marshal.dump(
            {
                "statusFd": status_fd,
                "hostname": spec.hostname,
                "mounts": [{"source": str(m.source), "target": m.target, "readOnly": m.read_only} for m in mounts],
                "readOnlyRoot": spec.read_only_root,
                "uid": spec.uid,
                "gid": spec.gid,
                "groups": spec.groups,
                "noNewPrivs": spec.no_new_privs,
                "expose": list(spec.expose),
                "workingDir": spec.working_dir,
                "argv": spec.argv,
                "env": spec.env,
            },
            f,
        )
    argv = [
        UNSHARE,
        "--mount",
        "--uts",
        "--propagation",
        "private",
        "--",
        sys.executable,
        "-I",
        "-S",
        str(INIT_SCRIPT),
        str(spec_path),
    ]
    started = time.time()
    try:
        with open(directory / f"{attempt}.log", "ab") as log:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(status_fd,),
                start_new_session=True,
                cwd="/",
                env={"LANG": "C.UTF-8"},
            )
    except OSError as exc:
        raise RuntimeError_(f"cannot start {argv[0]}: {exc}") from exc
    finally:
        os.close(status_fd)
    try:
        create_time = psutil.Process(popen.pid).create_time()
    except psutil.Error:
        create_time = started
    _write_json(
        directory / "state.json",
        {"pid": popen.pid, "createTime": create_time, "attempt": attempt, "startedAt": started},
    )
    return ContainerProcess(directory, popen.pid, create_time, attempt, started, popen)


def load_container(directory: Path) -> ContainerProcess | None:
    """A container attempt recorded by an earlier agent (for adoption after a restart)."""
    data = _read_json(directory / "state.json")
    if data is None:
        return None
    try:
        return ContainerProcess(
            directory, int(data["pid"]), float(data["createTime"]), int(data["attempt"]), float(data["startedAt"])
        )
    except (KeyError, TypeError, ValueError):
        return None


def pod_dirs(pods_root: Path) -> Iterable[Path]:
    if not pods_root.is_dir():
        return []
    return [p for p in pods_root.iterdir() if p.is_dir() and parse_pod_dir_name(p.name)]


def terminate(processes: Iterable[ContainerProcess], grace: float) -> None:
    """SIGTERM, wait up to ``grace`` seconds, SIGKILL (blocking; for shutdown paths)."""
    procs = [p for p in processes if not p.exited()]
    for p in procs:
        p.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(not p.exited() for p in procs):
        time.sleep(0.05)
    for p in procs:
        p.signal(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(not p.exited() for p in procs):
        time.sleep(0.05)


def kill_all_containers(state_dir: Path, grace: float = 5.0) -> int:
    """Stop every container process recorded under ``state_dir`` (``make cluster-down``). Returns how many."""
    procs = []
    for pod in pod_dirs(state_dir / "pods"):
        for cdir in (pod / "containers").glob("*"):
            proc = load_container(cdir)
            if proc is not None and not proc.exited():
                proc.mark_killed("NodeShutdown")
                procs.append(proc)
    terminate(procs, grace)
    return len(procs)


def remove_pod_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def log_tail(path: Path, max_bytes: int = 65536) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""
