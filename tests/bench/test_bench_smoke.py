"""Every bench under bench/ runs at a tiny size, so a change that breaks one fails the suite instead of
rotting until someone measures again (issue 21, point 13). These check that a bench runs to the end
and prints its table with exit status 0, never its figures; and that a bench whose run errors exits
non-zero.

Markers: the cluster benches are ``e2e`` (they start local clusters from ``TJO_K8S_BIN``), the
PostgreSQL ones ``integration`` (each starts a throw-away server with hack/postgres.sh).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
K8S_BIN = os.environ.get("TJO_K8S_BIN")
needs_cluster = [
    pytest.mark.e2e,
    pytest.mark.skipif(not K8S_BIN, reason="needs TJO_K8S_BIN (hack/test.sh builds the control plane)"),
]


def run_bench(script: str, *args: str, env: dict[str, str] | None = None, timeout: float = 900) -> tuple[int, str]:
    """The bench's exit status and output. Past ``timeout`` it gets SIGINT, so its ``finally`` blocks
    stop the clusters and servers it started (a SIGKILL would leave them running), then SIGKILL."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            stdout, stderr = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        stderr += f"\n(timed out after {timeout:.0f} s: interrupted)"
    print(f"{script} {' '.join(args)}: exit {proc.returncode} in {time.monotonic() - started:.1f} s")
    return proc.returncode, stdout + "\n--- stderr\n" + stderr[-4000:]


@pytest.mark.parametrize(
    ("script", "args"),
    [
        pytest.param("reconcile_bench.py", ["--products", "50", "--repeat", "1"], id="reconcile"),
        pytest.param(
            "real_data_bench.py", ["--groups", "bank", "--methods", "seasonal-naive", "--out", "{tmp}"], id="real_data"
        ),
        pytest.param("trainer_bench.py", ["--products", "1", "--days", "200", "--skip-grid"], id="trainer"),
        pytest.param(
            "skip_bench.py",
            ["--products", "2", "--days", "120", "--trials", "0", "--jobs", "1"],
            id="skip",
            marks=pytest.mark.integration,
        ),
        pytest.param(
            "shard_trainer_bench.py",
            ["--sizes", "1,3", "--days", "60", "--baseline-cap", "1"],
            id="shard_trainer",
            marks=pytest.mark.integration,
        ),
        pytest.param(
            "cluster_bench.py",
            ["--pods", "2", "--parallelism", "2", "--repeat", "1"],
            id="cluster",
            marks=needs_cluster,
        ),
        pytest.param(
            "operator_bench.py", ["--products", "4", "--parallelism", "2"], id="operator", marks=needs_cluster
        ),
        pytest.param(
            "schedule_bench.py",
            ["--products", "2", "--days", "90", "--parallelism", "2", "--changed", "0.5"],
            id="schedule",
            marks=needs_cluster,
        ),
        pytest.param(
            "scale_bench.py",
            ["--products", "6", "--days", "60", "--per-pod", "3", "--parallelism", "2", "--compare", "4"],
            id="scale",
            marks=needs_cluster,
        ),
        pytest.param(
            "chaos_bench.py",
            ["--scenario", "baseline", "--products", "2", "--days", "120", "--trials", "1", "--parallelism", "2"],
            id="chaos",
            marks=needs_cluster,
        ),
    ],
)
def test_bench_runs_at_a_tiny_size(script: str, args: list[str], tmp_path: Path) -> None:
    code, output = run_bench(script, *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert code == 0, output
    assert "|" in output or "sMAPE" in output, f"no table printed:\n{output}"


def test_the_blend_replay_recomputes_what_the_trainer_shipped(tmp_path: Path) -> None:
    """bench/blend_replay.py reads a BENCH_CANDIDATES run; its "replayed" row recomputes the trainer's
    own weight, so it must print the same figures as "shipped" (a drift between the bench's replay
    and blend.py would make every other row meaningless)."""
    args = ["--groups", "bank", "--methods", "trainer,seasonal-naive", "--out", str(tmp_path)]
    code, output = run_bench("real_data_bench.py", *args, env={"BENCH_CANDIDATES": "1"})
    assert code == 0, output
    code, output = run_bench("blend_replay.py", str(tmp_path))
    assert code == 0, output
    rows = {
        line.split("|")[2].strip(): line.split("|")[3:] for line in output.splitlines() if line.startswith("| tuning")
    }
    assert set(rows) == {"shipped", "replayed", "model alone", "half", "covariance"}, output
    assert rows["replayed"] == rows["shipped"], output
    # a partner read from the same run: seasonal-naive "combined" with itself is never worse than itself
    code, output = run_bench("blend_replay.py", str(tmp_path), "--partner", "seasonal-naive")
    assert code == 0, output
    partner = [line.split("|")[6:8] for line in output.splitlines() if line.startswith("| tuning | partner alone")]
    assert [[cell.strip() for cell in row] for row in partner] == [["0.0%", "0.0%"]], output


@pytest.mark.integration
def test_a_bench_whose_run_errors_exits_non_zero(tmp_path: Path) -> None:
    """chaos_bench.py reports a scenario that errors in its table and goes on; it must still end
    non-zero (it used to exit 0 with every scenario failing). A control-plane directory without
    binaries makes the scenario error before any cluster starts."""
    empty = tmp_path / "no-binaries"
    empty.mkdir()
    code, output = run_bench(
        "chaos_bench.py",
        "--scenario",
        "baseline",
        "--products",
        "1",
        "--days",
        "60",
        env={"TJO_K8S_BIN": str(empty)},
    )
    assert "bench error" in output, output
    assert code != 0, output
