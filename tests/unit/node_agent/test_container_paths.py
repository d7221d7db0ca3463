"""Containers run wherever the command and the pod's files live: below a private folder (a home of
mode 0700, like /root or /home/alice 0750) and below /tmp under the pod's /tmp emptyDir.

These launch real containers (``unshare`` + containerinit: a private mount namespace, no cluster);
they need root, as the node agent does.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from node_agent import runtime
from node_agent.runtime import LaunchSpec, command_paths
from node_agent.volumes import Mount

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare (as the node agent)"
)
USER = 65532


def run(directory: Path, argv: list[str], mounts: list[Mount], uid: int | None = USER) -> tuple[int, str]:
    spec = LaunchSpec(
        argv=argv,
        env={"PATH": "/usr/bin:/bin"},
        mounts=mounts,
        working_dir="/",
        uid=uid,
        gid=uid,
        groups=[],
        no_new_privs=True,
        read_only_root=True,
        hostname="t",
        expose=command_paths(argv[0], "/usr/bin:/bin"),
    )
    proc = runtime.launch(directory, 0, spec, "/dev/termination-log")
    deadline = time.monotonic() + 20
    while not proc.exited():
        assert time.monotonic() < deadline, "container did not end"
        time.sleep(0.02)
    return proc.exit_info().exit_code, proc.log_path.read_text()


def script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def test_command_and_volumes_below_a_private_home(tmp_path: Path) -> None:
    home = tmp_path / "home"  # like /root (0700): the pod's user may not traverse it
    tool = script(home / "checkout" / "bin" / "tool", 'echo "uid=$(id -u)"; cat /data/sales.csv')
    data = home / ".cache" / "state" / "sales"  # volume sources under ~/.cache, as the cluster state
    data.mkdir(parents=True)
    (data / "sales.csv").write_text("ds,y\n")
    os.chmod(data / "sales.csv", 0o644)
    scratch = home / ".cache" / "state" / "scratch"
    scratch.mkdir()
    scratch.chmod(0o777)
    for d in (home / "checkout", home / "checkout" / "bin", home / ".cache", data.parent, data):
        d.chmod(0o755)
    home.chmod(0o700)
    code, log = run(
        tmp_path / "c1",
        [str(tool)],
        [Mount(data, "/data", True), Mount(scratch, "/tmp", False)],
    )
    assert code == 0, log
    assert log.splitlines() == [f"uid={USER}", "ds,y"]


def test_command_below_tmp_under_the_pods_tmp_emptydir(tmp_path: Path) -> None:
    checkout = Path("/tmp") / f"tjo-unit-{os.getpid()}-{time.monotonic_ns()}"  # not under tmp_path
    try:
        tool = script(checkout / "bin" / "tool", 'echo "uid=$(id -u)"; echo hi > /tmp/out; cat /tmp/out; ls /tmp')
        for d in (checkout, checkout / "bin"):
            d.chmod(0o755)
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        scratch.chmod(0o777)
        code, log = run(tmp_path / "c2", [str(tool)], [Mount(scratch, "/tmp", False)])
        assert code == 0, log
        # the pod's /tmp is its emptyDir (it wrote there), with the checkout bound back in, read-only
        assert log.splitlines() == [f"uid={USER}", "hi", *sorted([checkout.name, "out"])]
        assert (scratch / "out").read_text() == "hi\n"
        code, log = run(
            tmp_path / "c3",
            [str(script(checkout / "bin" / "write", f"touch {checkout}/bin/x"))],
            [Mount(scratch, "/tmp", False)],
            uid=None,
        )
        assert code != 0 and "Read-only file system" in log  # even for root
    finally:
        shutil.rmtree(checkout, ignore_errors=True)
