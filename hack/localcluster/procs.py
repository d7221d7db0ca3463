"""Detached background processes with pid files, and stopping them (SIGTERM, then SIGKILL).

A pid file records the pid and the process start time, so a pid reused by an unrelated
process after a reboot or a crash is never signalled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class PidRecord:
    pid: int
    create_time: float
    argv: list[str]

    @classmethod
    def load(cls, path: Path) -> PidRecord | None:
        try:
            data = json.loads(path.read_text())
            return cls(int(data["pid"]), float(data["create_time"]), [str(a) for a in data.get("argv", [])])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": self.pid, "create_time": self.create_time, "argv": self.argv}))
        os.replace(tmp, path)

    def process(self) -> psutil.Process | None:
        """The live process, or None when it exited (zombies count as exited)."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > 0.5:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None

    def alive(self) -> bool:
        return self.process() is not None


def spawn(
    argv: Sequence[str],
    log_path: Path,
    pid_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session (so it outlives the caller), output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    try:
        create_time = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        create_time = 0.0
    PidRecord(proc.pid, create_time, list(argv)).save(pid_path)
    return proc


def _signal_group(record: PidRecord, sig: int) -> None:
    proc = record.process()
    if proc is None:
        return
    try:
        # Each component leads its own process group (start_new_session).
        if os.getpgid(record.pid) == record.pid:
            os.killpg(record.pid, sig)
        else:
            proc.send_signal(sig)
    except (ProcessLookupError, PermissionError, psutil.Error):
        pass


def stop_all(pid_paths: Sequence[Path], timeout: float = 10.0) -> list[str]:
    """SIGTERM every recorded process at once, SIGKILL what is left after ``timeout``.

    Returns the names (pid file stems) that needed SIGKILL. Pid files are removed.
    """
    records = {p: PidRecord.load(p) for p in pid_paths}
    live = {p: r for p, r in records.items() if r is not None and r.alive()}
    for r in live.values():
        _signal_group(r, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(r.alive() for r in live.values()):
        _reap(live.values())
        time.sleep(0.05)
    killed = []
    for p, r in live.items():
        if r.alive():
            killed.append(p.stem)
            _signal_group(r, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(r.alive() for r in live.values()):
        _reap(live.values())
        time.sleep(0.05)
    for p in pid_paths:
        p.unlink(missing_ok=True)
    return killed


def _reap(records: Iterable[PidRecord]) -> None:
    """Collect those of ``records`` that are exited children of this process (no zombies left behind).

    Only these pids: reaping any child would steal exit codes from other ``Popen`` objects.
    """
    for r in records:
        try:
            os.waitpid(r.pid, os.WNOHANG)
        except ChildProcessError:
            pass
