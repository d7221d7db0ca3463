"""The command line as a person or a pod uses it: subprocesses, exit codes, files, messages."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from tests.unit.trainer.helpers import FAST, daily_frame, date_rows, product_rows, run_cli, write_csv

from forecast_trainer.families import FAMILIES


def termination(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= 4096
    return json.loads(text)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error" in line.lower() or "warning" in line.lower()]


@pytest.fixture(scope="module")
def good_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "sales.csv"
    rows = product_rows("bakery-a-001", daily_frame(120, seed=1))
    rows += product_rows("bakery-b-001", daily_frame(120, seed=2))
    return write_csv(path, rows)


def test_help_is_fast_and_lists_subcommands() -> None:
    started = time.monotonic()
    run = run_cli(["--help"])
    elapsed = time.monotonic() - started
    assert run.code == 0 and "train" in run.stdout and "sample-data" in run.stdout and "migrate" in run.stdout
    assert elapsed < 5  # the target is 1.5 s (bench/trainer_bench.py measures it); generous under CI load
    for command in ("train", "migrate", "sample-data"):
        sub = run_cli([command, "--help"])
        assert sub.code == 0 and "TRAINER_" in sub.stdout


def test_usage_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    term = tmp_path / "term.json"
    run = run_cli(["train", "--data-csv", "x.csv", "--bogus"], {"TRAINER_TERMINATION_LOG": str(term)})
    assert run.code == 2 and len(run.stderr.strip().splitlines()) == 1 and "--bogus" in run.stderr
    assert termination(term)["exit_code"] == 2
    run = run_cli(
        ["train"],
        {
            "TRAINER_DATA_CSV": "x.csv",
            "TRAINER_HORIZON_DAYS": "many",
            "TRAINER_PRODUCT": "p1",
            "TRAINER_TERMINATION_LOG": str(term),
        },
    )
    assert run.code == 2 and "TRAINER_HORIZON_DAYS" in run.stderr
    doc = termination(term)
    assert doc["products"][0]["product"] == "p1" and doc["products"][0]["reason"] == "InvalidConfig"
    assert run_cli(["train", "--data-csv", "x", "--data-table", "x;drop table y"]).code == 2
    assert run_cli([]).code == 2
    missing = run_cli(["train", "--data-csv", str(tmp_path / "nope.csv"), "--termination-log", str(term)])
    assert missing.code == 2 and "does not exist" in missing.stderr


def test_a_config_error_writes_no_output_folder_and_names_no_destination(tmp_path: Path) -> None:
    out, term = tmp_path / "out", tmp_path / "term.json"
    missing = run_cli(
        ["train", "--data-csv", str(tmp_path / "nope.csv"), "--output-dir", str(out), "--termination-log", str(term)]
    )
    assert missing.code == 2 and "does not exist" in missing.stderr
    assert not out.exists(), "a configuration error created the output folder"
    assert "results go to" not in missing.stderr + missing.stdout
    assert termination(term)["exit_code"] == 2


def test_train_from_env_only_writes_every_artifact(good_csv: Path, tmp_path: Path) -> None:
    out, term = tmp_path / "out", tmp_path / "term.json"
    env = {
        "TRAINER_DATA_CSV": str(good_csv),
        "TRAINER_OUTPUT_DIR": str(out),
        "TRAINER_PRODUCTS_JSON": '["bakery-a-001", "bakery-b-001"]',
        "TRAINER_TRIALS": "2",
        "TRAINER_FOLDS": "1",
        "TRAINER_HORIZON_DAYS": "14",
        "TRAINER_METRIC": "mae",
        "TRAINER_TERMINATION_LOG": str(term),
        "TRAINER_LOG_FORMAT": "json",
    }
    run = run_cli(["train"], env)
    assert run.code == 0, run.stderr
    for line in run.stderr.strip().splitlines():
        json.loads(line)  # JSON lines on stderr when asked (or not a TTY)
    summary_line = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary_line["event"] == "summary" and summary_line["counts"]["trained"] == 2
    doc = termination(term)
    assert doc["exit_code"] == 0
    assert doc["counts"] == {"trained": 2, "invalid": 0, "failed": 0, "locked": 0, "skipped": 0}
    entry = doc["products"][0]
    assert entry["metric"] == "mae" and entry["trials"] == 2 and entry["class"] == "high"
    assert entry["family"] in FAMILIES and entry["beats_baseline"] is True and entry["baseline_error"] is not None
    folder = out / "bakery-a-001"
    assert entry["model_id"] == "bakery-a-001"
    assert sorted(p.name for p in folder.iterdir()) == [
        "forecast.csv",
        "forecast.png",
        "metrics.json",
        "model.json",
        "model.json.sha256",
        "watermark.json",
    ]
    from forecast_trainer.outputs import read_verified

    assert read_verified(str(folder)).startswith("{")
    assert (folder / "model.json.sha256").read_text().split()[0] == entry["checksum"]
    forecast = (folder / "forecast.csv").read_text().splitlines()
    assert forecast[0] == "ds,yhat,yhat_lower,yhat_upper,yhat_lower_80,yhat_upper_80" and len(forecast) == 15
    assert (folder / "forecast.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["trained"] == 2 and "details" in summary["products"][0]


def test_demo_mode_persists_nothing_but_reports(good_csv: Path, tmp_path: Path) -> None:
    term = tmp_path / "term.json"
    run = run_cli(
        [
            "train",
            "--data-csv",
            str(good_csv),
            "--product",
            "bakery-a-001",
            "--trials",
            "0",
            "--folds",
            "1",
            "--horizon-days",
            "7",
            "--termination-log",
            str(term),
            "--log-format",
            "text",
        ],
        cwd=tmp_path,
    )
    assert run.code == 0, run.stderr
    assert "demo mode" in run.stderr and "nothing is persisted" in run.stderr
    assert "bakery-a-001" in run.stdout and "demo mode" in run.stdout
    doc = termination(term)
    assert doc["products"][0]["model_id"] is None and len(doc["products"][0]["checksum"]) == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["term.json"]


def test_unexpected_error_exits_1(good_csv: Path, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    term = tmp_path / "term.json"
    run = run_cli(
        [
            "train",
            "--data-csv",
            str(good_csv),
            "--product",
            "bakery-a-001",
            "--output-dir",
            str(not_a_dir),
            "--trials",
            "0",
            "--folds",
            "1",
            "--horizon-days",
            "7",
            "--termination-log",
            str(term),
        ]
    )
    assert run.code == 1
    entry = termination(term)["products"][0]
    assert entry["status"] == "failed" and entry["reason"] == "InternalError"


def test_unreachable_database_exits_4(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    term = tmp_path / "term.json"
    env = {
        "TRAINER_DATA_DSN": f"postgresql://u:secret-pw@127.0.0.1:{port}/db",
        "TRAINER_PRODUCT": "p1",
        "TRAINER_DB_RETRIES": "1",
        "TRAINER_DB_CONNECT_TIMEOUT": "2",
        "TRAINER_TERMINATION_LOG": str(term),
    }
    started = time.monotonic()
    run = run_cli(["train"], env)
    assert run.code == 4, run.stderr
    assert time.monotonic() - started < 60
    assert "secret-pw" not in run.stderr + run.stdout
    entry = termination(term)["products"][0]
    assert entry["status"] == "failed" and entry["reason"] == "DataSourceUnavailable"
    assert "gave up after 2 attempts" in entry["message"]
    migrate = run_cli(["migrate", "--output-dsn", env["TRAINER_DATA_DSN"], "--db-retries", "0"])
    assert migrate.code == 4 and len(migrate.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- the bad-input suite


def invalid_run(
    tmp_path: Path,
    csv_text: str | None,
    rows: list | None,
    product: str | None,
    reason: str,
    header: tuple[str, ...] = ("product_id", "ds", "y"),
) -> None:
    data = tmp_path / "bad.csv"
    if csv_text is not None:
        data.write_text(csv_text)
    else:
        write_csv(data, rows or [], header)
    out, term = tmp_path / "out", tmp_path / "term.json"
    args = [
        "train",
        "--data-csv",
        str(data),
        "--output-dir",
        str(out),
        "--termination-log",
        str(term),
        *FAST,
        "--log-format",
        "text",
    ]
    if product:
        args += ["--product", product]
    run = run_cli(args)
    assert run.code == 3, run.stderr
    messages = [line for line in run.stderr.splitlines() if line.startswith(("warning:", "forecast-trainer: error"))]
    assert messages, run.stderr
    assert all("\n" not in m for m in messages)
    doc = termination(term)
    assert doc["exit_code"] == 3
    if product:
        assert doc["products"][0]["status"] == "invalid" and doc["products"][0]["reason"] == reason
        assert product in doc["products"][0]["message"]
    written = [p.name for p in out.iterdir()] if out.exists() else []
    assert written in ([], ["summary.json"])  # nothing for the product


def test_bad_empty_csv(tmp_path: Path) -> None:
    invalid_run(tmp_path, "", None, "p1", "EmptyData")
    invalid_run(tmp_path, "product_id,ds,y\n", None, "p1", "EmptyData")
    invalid_run(tmp_path, "product_id,ds,y\n", None, None, "EmptyData")


def test_bad_wrong_columns(tmp_path: Path) -> None:
    invalid_run(tmp_path, None, [("p1", "2023-01-01", "3")], "p1", "MissingColumns", header=("sku", "date", "qty"))


def test_bad_non_numeric_y(tmp_path: Path) -> None:
    invalid_run(
        tmp_path, None, date_rows("p1", [str(5 + i % 3) for i in range(59)] + ["lots"]), "p1", "NonNumericValues"
    )


def test_bad_unparseable_dates(tmp_path: Path) -> None:
    rows = date_rows("p1", [str(5 + i % 3) for i in range(60)])
    rows[7] = ("p1", "next tuesday", "4")
    invalid_run(tmp_path, None, rows, "p1", "UnparseableDates")


def test_bad_all_zero_product(tmp_path: Path) -> None:
    invalid_run(tmp_path, None, date_rows("p1", ["0"] * 90), "p1", "MostlyZeros")


def test_bad_ten_row_product(tmp_path: Path) -> None:
    invalid_run(tmp_path, None, date_rows("p1", [str(i + 1) for i in range(10)]), "p1", "TooFewPoints")


def test_bad_product_absent(tmp_path: Path) -> None:
    invalid_run(tmp_path, None, date_rows("other", [str(i % 5 + 1) for i in range(40)]), "p1", "NoData")


def test_repairable_inputs_train_with_warnings_and_skip_only_the_bad(tmp_path: Path) -> None:
    """NaNs, duplicate rows and timestamps with and without offsets are repaired (with warnings); a bad product in the
    same run is reported and skipped, and the run still exits 0."""
    values = [str(20 + (i * 7) % 11) for i in range(100)]
    nans = date_rows("with-nans", values)
    for i in (10, 11, 50):
        nans[i] = (nans[i][0], nans[i][1], "")
    duplicates = date_rows("with-duplicates", values)
    duplicates += [duplicates[5], duplicates[6], ("with-duplicates", duplicates[9][1], "3")]
    mixed = [
        (p, f"{d}T12:00:00" + ("+02:00" if i % 2 else ""), y)
        for i, (p, d, y) in enumerate(date_rows("mixed-tz", values))
    ]
    short = date_rows("too-short", ["4"] * 10)
    data = write_csv(tmp_path / "mixed.csv", nans + duplicates + mixed + short)
    out, term = tmp_path / "out", tmp_path / "term.json"
    run = run_cli(
        [
            "train",
            "--data-csv",
            str(data),
            "--output-dir",
            str(out),
            "--termination-log",
            str(term),
            "--trials",
            "0",
            "--folds",
            "1",
            "--horizon-days",
            "7",
            "--log-format",
            "text",
        ]
    )
    assert run.code == 0, run.stderr
    entries = {e["product"]: e for e in termination(term)["products"]}
    assert entries["with-nans"]["status"] == "trained"
    assert any("3 empty value(s) ignored" in w for w in entries["with-nans"]["warnings"])
    assert any("2 exact duplicate row(s) dropped" in w for w in entries["with-duplicates"]["warnings"])
    assert any("1 duplicate timestamp(s) aggregated" in w for w in entries["with-duplicates"]["warnings"])
    assert any("timestamps mix 50 with a UTC offset and 50 without" in w for w in entries["mixed-tz"]["warnings"])
    assert entries["too-short"]["status"] == "invalid" and entries["too-short"]["reason"] == "TooFewPoints"
    assert sorted(p.name for p in out.iterdir()) == ["mixed-tz", "summary.json", "with-duplicates", "with-nans"]
    warning_lines = [line for line in run.stderr.splitlines() if "too-short" in line and line.startswith("warning")]
    assert len(warning_lines) == 1


def test_sample_data_then_train_like_the_readme(tmp_path: Path) -> None:
    run = run_cli(
        ["sample-data", "--products", "2", "--days", "120", "--seed", "3", "--csv", "sales.csv", "--bad-products"],
        cwd=tmp_path,
    )
    assert run.code == 0 and "6 products" in run.stdout
    again = run_cli(
        ["sample-data", "--products", "2", "--days", "120", "--seed", "3", "--csv", "again.csv", "--bad-products"],
        cwd=tmp_path,
    )
    assert again.code == 0
    assert (tmp_path / "sales.csv").read_bytes() == (tmp_path / "again.csv").read_bytes()
    train = run_cli(
        ["train", "--data-csv", "sales.csv", "--output-dir", "out", "--termination-log", "t.json", *FAST], cwd=tmp_path
    )
    assert train.code == 0, train.stderr
    doc = termination(tmp_path / "t.json")
    assert doc["counts"] == {"trained": 2, "invalid": 4, "failed": 0, "locked": 0, "skipped": 0}


def test_sigterm_reports_what_finished_and_exits_4(good_csv: Path, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    from tests.unit.trainer.helpers import REPO, clean_env

    term = tmp_path / "term.json"
    env = clean_env({"PYTHONPATH": str(REPO / "trainer_image")})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "forecast_trainer",
            "train",
            "--data-csv",
            str(good_csv),
            "--trials",
            "200",
            "--folds",
            "1",
            "--horizon-days",
            "7",
            "--termination-log",
            str(term),
            "--log-format",
            "json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # wait until the first product is being trained
        if '"product_started"' in line:
            break
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 4, stderr
    doc = termination(term)
    assert doc["exit_code"] == 4 and doc["counts"]["failed"] >= 1
    assert {e["reason"] for e in doc["products"] if e["status"] == "failed"} == {"Terminated"}
