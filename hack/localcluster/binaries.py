"""Locate the control-plane binaries: ``TJO_K8S_BIN``, else build or reuse them with hack/build-binaries.sh."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

HACK = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = HACK / "build-binaries.sh"
COREDNS_SCRIPT = HACK / "build-coredns.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")


class BinariesError(RuntimeError):
    """The binaries are missing and cannot be built; the message says what to do."""


def missing_binaries(bin_dir: Path) -> list[str]:
    return [b for b in BINARIES if not os.access(bin_dir / b, os.X_OK)]


def check_bin_dir(bin_dir: Path, source: str) -> Path:
    missing = missing_binaries(bin_dir)
    if missing:
        raise BinariesError(
            f"{source}={bin_dir} lacks {', '.join(missing)}; run `bash hack/build-binaries.sh` "
            "(needs Go) and point it at the directory printed on its last line"
        )
    return bin_dir


def can_build() -> bool:
    return shutil.which("go") is not None


def find_binaries(env_var: str = "TJO_K8S_BIN") -> Path:
    """The directory holding etcd, the control plane, the kubelet and kube-proxy.

    ``$TJO_K8S_BIN`` when set (it must be complete); otherwise hack/build-binaries.sh, which
    reuses its cache (~/.cache/trainingjob-operator/k8s-<version>-<hash>/) or builds cold
    (tens of minutes) when Go is installed.
    """
    env = os.environ.get(env_var)
    if env:
        return check_bin_dir(Path(env).expanduser().resolve(), env_var)
    if not BUILD_SCRIPT.exists():
        raise BinariesError(f"{BUILD_SCRIPT} is missing; set {env_var} to a directory with {', '.join(BINARIES)}")
    return check_bin_dir(run_build_script(BUILD_SCRIPT), "hack/build-binaries.sh output")


def find_coredns(env_var: str = "TJO_COREDNS_BIN") -> Path:
    """The CoreDNS binary: ``$TJO_COREDNS_BIN`` (a directory holding ``coredns``), else hack/build-coredns.sh."""
    env = os.environ.get(env_var)
    directory = Path(env).expanduser().resolve() if env else run_build_script(COREDNS_SCRIPT)
    binary = directory / "coredns"
    if not os.access(binary, os.X_OK):
        raise BinariesError(f"{binary} is missing; run `bash hack/build-coredns.sh` (needs Go)")
    return binary


def run_build_script(script: Path) -> Path:
    """Run a hack/build-*.sh (it reuses its cache or builds cold) and return the directory it prints
    on its last line of stdout; BinariesError when it fails."""
    result = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True, check=False)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        hint = "" if can_build() else " (Go is not installed: apt-get install golang-go, or see https://go.dev/dl/)"
        raise BinariesError(f"hack/{script.name} failed with exit code {result.returncode}{hint}")
    return Path(lines[-1])
