"""Container init: runs as root inside a fresh mount + UTS namespace (``unshare --mount --uts
--propagation private``), sets up the container's view of the filesystem, then runs the
container's process as its user and waits for it, like a tiny conmon.

Standard library only, and light on imports (it starts once per container); started as
``python -I -S containerinit.py SPEC`` (SPEC: a ``marshal`` file, deleted once read: it holds the
container's environment). Steps:

1. open every bind source (volumes, the termination-message file) and every runtime path (the
   command's venv, interpreter and editable sources: see ``runtime.command_paths``) with
   ``O_PATH`` *before* mounting anything: a tmpfs over /root or a volume on /tmp would otherwise
   hide sources that live below them (a checkout or cluster state under $HOME or /tmp);
2. for a non-root user, make the runtime paths reachable through folders it may not traverse
   (see :func:`expose`);
3. bind-mount volumes and the termination-message file at their paths (parents first;
   missing mount points are created on the host filesystem, as empty folders or files);
4. runtime paths that a volume now hides (an emptyDir at /tmp over a checkout in /tmp) are bound
   back, read-only, at their own paths inside it (see :func:`reexpose`); then the ``readOnly``
   volumes are remounted read-only;
5. ``readOnlyRootFilesystem``: remount ``/`` read-only in this namespace only;
6. fork: the child drops to runAsUser/runAsGroup (+ supplemental groups), sets no_new_privs when
   ``allowPrivilegeEscalation: false``, changes to the working dir and execs the command;
   the parent ignores SIGTERM, waits, writes ``exit.json`` through a directory fd opened by the
   agent in the host namespace (so a read-only root or a mount on /tmp cannot hide it), then
   kills what is left of the process group (a container ends when its main process ends).
"""

from __future__ import annotations

import _signal  # not ``signal``: it imports enum, and start-up time is per container
import ctypes
import marshal
import os
import sys
import time
from typing import Any

MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
PR_SET_NO_NEW_PRIVS = 38
START_ERROR_EXIT = 128

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, flags: int) -> None:
    src = source.encode() if source is not None else None
    _check(_libc.mount(src, target.encode(), None, ctypes.c_ulong(flags), None), f"mount {target}")


def _ensure_target(target: str, is_dir: bool) -> None:
    if os.path.lexists(target):
        if os.path.isdir(target) != is_dir:
            kind = "a folder" if is_dir else "a file"
            raise OSError(f"cannot mount {kind} at {target}: it exists and is not {kind}")
        return
    if is_dir:
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target) or "/", exist_ok=True)
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o644))


def _to_json(data: dict[str, Any]) -> str:
    """JSON of a flat dict; ``json`` itself is imported only when a string needs escaping."""
    parts = []
    for key, value in data.items():
        if value is None:
            text = "null"
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | float):
            text = repr(value)
        else:
            import json

            text = json.dumps(str(value))
        parts.append(f'"{key}": {text}')
    return "{" + ", ".join(parts) + "}"


def _write_json(dir_fd: int, name: str, data: dict[str, Any]) -> None:
    tmp = f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=dir_fd)
    with os.fdopen(fd, "w") as f:
        f.write(_to_json(data))
    os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def _traversable(path: str, uid: int, gids: set[int]) -> bool:
    st = os.stat(path)
    if st.st_uid == uid:
        return bool(st.st_mode & 0o100)
    if st.st_gid in gids:
        return bool(st.st_mode & 0o010)
    return bool(st.st_mode & 0o001)


def expose(paths: list[str], uid: int, gids: set[int]) -> None:
    """Make host ``paths`` (the runtime) reachable for ``uid``: a folder on the way that it may not
    traverse (say /root, mode 0700, or /home/alice, 0750) is covered, in this namespace only, by an
    empty tmpfs holding just the needed entries, bind-mounted from the host. One level per round,
    so a private folder below another one (~/work 0700 in /root) is handled too. Whatever else the
    tmpfs hides must have been opened before (see :func:`setup`)."""
    for _ in range(64):
        needed: dict[str, set[str]] = {}
        for path in paths:
            parts = os.path.abspath(path).strip("/").split("/")
            for i in range(len(parts)):
                ancestor = "/" + "/".join(parts[:i])
                if not os.path.isdir(ancestor) or _traversable(ancestor, uid, gids):
                    continue
                needed.setdefault(ancestor, set()).add(parts[i])
                break
        if not needed:
            return
        for blocked, children in needed.items():
            fds = {}
            try:
                for c in sorted(children):
                    try:
                        fds[c] = os.open(os.path.join(blocked, c), os.O_PATH | os.O_CLOEXEC)
                    except FileNotFoundError:
                        continue
                _check(
                    _libc.mount(b"tmpfs", blocked.encode(), b"tmpfs", ctypes.c_ulong(0), b"mode=755"),
                    f"mount tmpfs {blocked}",
                )
                for child, fd in fds.items():
                    target = os.path.join(blocked, child)
                    _ensure_target(target, os.path.isdir(f"/proc/self/fd/{fd}"))
                    _mount(f"/proc/self/fd/{fd}", target, MS_BIND | MS_REC)
            finally:
                for fd in fds.values():
                    os.close(fd)
    raise OSError(f"cannot expose {paths}: too many levels of private folders")


def _same_file(path: str, fd: int) -> bool:
    try:
        a, b = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def reexpose(opened: dict[str, int]) -> None:
    """Runtime paths that a volume mount hides now (the pod's emptyDir at /tmp over a venv in
    /tmp/checkout) are bound back at their own paths, read-only (they are "the image"); the mount
    point is created inside the covering volume. Parents first: binding a venv makes its subfolders
    visible again too."""
    for path in sorted(opened, key=lambda p: (p.rstrip("/").count("/"), p)):
        fd = opened[path]
        if _same_file(path, fd):
            continue
        _ensure_target(path, os.path.isdir(f"/proc/self/fd/{fd}"))
        _mount(f"/proc/self/fd/{fd}", path, MS_BIND | MS_REC)
        _mount(None, path, MS_BIND | MS_REMOUNT | MS_RDONLY)


def setup(spec: dict[str, Any]) -> None:
    hostname = str(spec.get("hostname") or "")[:63]
    if hostname:
        _check(_libc.sethostname(hostname.encode(), len(hostname.encode())), "sethostname")
    uid = spec.get("uid")
    mounts = spec.get("mounts") or []
    # 1. everything from the host's view, before any mount can hide it
    fds = [os.open(m["source"], os.O_PATH | os.O_CLOEXEC) for m in mounts]
    runtime: dict[str, int] = {}
    try:
        for path in spec.get("expose") or []:
            try:
                runtime[os.path.abspath(path)] = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # not on this host: nothing to keep visible
        # 2. reachable for a non-root user
        if runtime and uid:
            gids = {int(g) for g in [spec.get("gid"), *(spec.get("groups") or [])] if g is not None}
            expose(list(runtime), int(uid), gids)
        # 3. volumes
        for m, fd in zip(mounts, fds, strict=True):
            _ensure_target(m["target"], os.path.isdir(f"/proc/self/fd/{fd}"))
            _mount(f"/proc/self/fd/{fd}", m["target"], MS_BIND | MS_REC)
        # 4. what the volumes hid of the runtime, then read-only volumes
        reexpose(runtime)
        for m in mounts:
            if m.get("readOnly"):
                _mount(None, m["target"], MS_BIND | MS_REMOUNT | MS_RDONLY)
    finally:
        for fd in [*fds, *runtime.values()]:
            os.close(fd)
    if spec.get("readOnlyRoot"):
        _mount(None, "/", MS_BIND | MS_REMOUNT | MS_RDONLY)


def run_child(spec: dict[str, Any], error_w: int) -> None:
    """In the forked child: become the container's user and exec. Never returns."""
    try:
        uid, gid = spec.get("uid"), spec.get("gid")
        if gid is not None:
            os.setgroups([int(g) for g in spec.get("groups") or []])
            os.setresgid(gid, gid, gid)
        elif uid is not None:
            os.setgroups([int(g) for g in spec.get("groups") or []])
        if uid is not None:
            os.setresuid(uid, uid, uid)
        if spec.get("noNewPrivs"):
            _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
        workdir = spec.get("workingDir") or "/"
        try:
            os.chdir(workdir)
        except OSError as exc:
            raise OSError(f'chdir to cwd ("{workdir}") set in config.json failed: {exc.strerror}') from exc
        argv = [str(a) for a in spec["argv"]]
        env = {str(k): str(v) for k, v in (spec.get("env") or {}).items()}
        try:
            os.execvpe(argv[0], argv, env)
        except OSError as exc:
            raise OSError(
                f'exec: "{argv[0]}": {exc.strerror or exc}'
                + (": executable file not found in $PATH" if "/" not in argv[0] else "")
            ) from exc
    except BaseException as exc:  # report anything to the parent, then die like a failed runtime start
        try:
            os.write(error_w, str(exc).encode()[:4000])
        finally:
            os._exit(START_ERROR_EXIT)


def main() -> None:
    spec_path = sys.argv[1]
    with open(spec_path, "rb") as f:
        spec = marshal.load(f)
    os.unlink(spec_path)
    status_fd = int(spec["statusFd"])
    started = time.time()
    try:
        setup(spec)
    except OSError as exc:
        print(f"node agent: container setup failed: {exc}", file=sys.stderr, flush=True)
        _write_json(
            status_fd,
            "exit.json",
            {
                "exitCode": START_ERROR_EXIT,
                "signal": None,
                "startedAt": started,
                "finishedAt": time.time(),
                "startError": f"container setup failed: {exc}",
            },
        )
        sys.exit(START_ERROR_EXIT)
    error_r, error_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(error_r)
        run_child(spec, error_w)
    os.close(error_w)
    for ignored in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1, _signal.SIGUSR2):
        _signal.signal(ignored, _signal.SIG_IGN)  # only the child (and its children) get the group's signals
    chunks = []
    while chunk := os.read(error_r, 4096):
        chunks.append(chunk)
    os.close(error_r)
    start_error = b"".join(chunks).decode("utf-8", "replace")
    _, status = os.waitpid(pid, 0)
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    code = 128 + sig if sig else os.WEXITSTATUS(status)
    _write_json(
        status_fd,
        "exit.json",
        {
            "exitCode": code,
            "signal": sig,
            "startedAt": started,
            "finishedAt": time.time(),
            "startError": start_error or None,
        },
    )
    # The main process ended: so does the container (what is left of its process group).
    sys.stdout.flush()
    os.killpg(os.getpgid(0), _signal.SIGKILL)


if __name__ == "__main__":
    main()
