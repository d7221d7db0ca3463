"""`make demo` exits non-zero unless the TrainingJob Succeeded: its last step is hack/demo_report.py,
whose exit status hack/demo.sh passes on."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from demo_report import verdict

ROOT = Path(__file__).resolve().parents[3]


def status(phase: str | None, succeeded: int = 0, failed: int = 0, total: int = 20) -> dict[str, object]:
    st: dict[str, object] = {"products": {"total": total, "succeeded": succeeded, "failed": failed}}
    if phase:
        st["phase"] = phase
    return st


def test_only_succeeded_is_success() -> None:
    assert verdict(status("Succeeded", 20)) == (
        0,
        "demo succeeded: TrainingJob Succeeded, 20 of 20 products trained, 0 failed",
    )
    code, message = verdict(status("Failed", 0, 20))
    assert (
        code == 1
        and message == "demo FAILED: TrainingJob phase Failed (not Succeeded), 0 of 20 products trained, 20 failed"
    )
    for phase in ("Running", "Pending", "Suspended", None):
        assert verdict(status(phase, 5))[0] == 1


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_report(tmp_path: Path, phase: str) -> subprocess.CompletedProcess[str]:
    """hack/demo_report.py as demo.sh runs it, with a stub kubectl and no database."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tj = {"status": status(phase, 20 if phase == "Succeeded" else 0, 0 if phase == "Succeeded" else 20)}
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(f"#!/bin/sh\ncat <<'JSON'\n{json.dumps(tj)}\nJSON\n")
    kubectl.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": os.pathsep.join(sys.path)}
    dsn = f"postgresql://demo@127.0.0.1:{closed_port()}/demo?connect_timeout=2"
    args = ["--dsn", dsn, "--namespace", "ns", "--name", "tj", "--out", str(tmp_path / "out")]
    return subprocess.run(
        [sys.executable, str(ROOT / "hack" / "demo_report.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("phase", ["Failed", "Running"])
def test_report_exits_non_zero_when_the_run_did_not_succeed(tmp_path: Path, phase: str) -> None:
    result = run_report(tmp_path, phase)
    assert result.returncode == 1, result.stderr
    assert f"demo FAILED: TrainingJob phase {phase}" in result.stdout


def test_report_exits_non_zero_when_the_results_cannot_be_read(tmp_path: Path) -> None:
    result = run_report(tmp_path, "Succeeded")  # but PostgreSQL is not there
    assert result.returncode == 1 and "demo FAILED: its results could not be read" in result.stdout, result.stderr


def test_demo_sh_passes_the_report_status_on() -> None:
    script = (ROOT / "hack" / "demo.sh").read_text()
    assert (
        'python hack/demo_report.py --dsn "$dsn" --namespace forecast-demo --name bakery-daily --out "$out" || rc=$?'
        in script
    )
    assert script.rstrip().endswith('exit "$rc"')
    assert "pkill" not in script  # it stops only the operator it started (pid file)


def test_the_report_loads_stored_models_of_every_shape() -> None:
    """The demo's plot reads the stored model as the trainer stores it now (an envelope, a Prophet
    winner blended with a naive baseline): reading it as a bare Prophet JSON failed the demo
    (KeyError: 'seasonality_mode')."""
    from tests.unit.trainer.helpers import daily_frame

    from demo_report import in_sample_fit
    from forecast_trainer import forecaster
    from forecast_trainer.classify import classify
    from forecast_trainer.config import TrainConfig
    from forecast_trainer.training import train_product
    from forecast_trainer.validate import Prepared

    frame = daily_frame(300, seed=0, level=80)
    prepared = Prepared("p", frame, len(frame), 0.0, "D")
    for models, family in ((("prophet", "seasonal_naive"), "prophet"), (("ets", "seasonal_naive"), "ets")):
        cfg = TrainConfig(data_csv="-", horizon_days=14, folds=2, trials=0, models=models)
        trained = train_product(prepared, cfg, 0, None, classify(frame["y"], "D"))
        loaded = forecaster.load(trained.model_json, trained.checksum)
        assert loaded.family == trained.family == family
        fitted = in_sample_fit(loaded, frame["ds"])
        assert (fitted is not None and len(fitted) == len(frame)) if family == "prophet" else fitted is None
