"""Skipping unchanged products without a database: watermarks, config hash, ranges, CSV + --output-dir."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import sys
from pathlib import Path

import pytest
from tests.unit.trainer.helpers import REPO, clean_env, daily_frame, product_rows, run_cli, write_csv

from forecast_trainer.config import TRAIN_OPTIONS, UNCHANGED_OPTIONS, TrainConfig, resolve, train_config
from forecast_trainer.errors import ConfigError, DataInvalid
from forecast_trainer.report import LIMIT, SKIPPED, TRAINED, ProductResult, exit_code
from forecast_trainer.unchanged import read_products_file, unchanged_message
from forecast_trainer.watermark import (
    MODEL_FIELDS,
    NON_MODEL_FIELDS,
    StoredModel,
    Watermark,
    config_document,
    config_hash,
    csv_watermarks,
    index_ranges,
    is_unchanged,
    parse_ranges,
)

FAST = ["--models", "naive", "--trials", "0", "--folds", "1", "--horizon-days", "14"]


def termination(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= LIMIT
    return json.loads(text)


# --------------------------------------------------------------------------- ranges and the message


@pytest.mark.parametrize(
    ("indexes", "text"),
    [([], ""), ([0], "0"), ([0, 1, 2, 3, 7], "0-3,7"), ([5, 3, 4, 9, 10, 12], "3-5,9-10,12"), ([2, 2, 3], "2-3")],
)
def test_index_ranges_round_trip(indexes: list[int], text: str) -> None:
    assert index_ranges(indexes) == text
    assert parse_ranges(text) == sorted(set(indexes))


def test_unchanged_message_is_small_valid_json() -> None:
    doc = json.loads(unchanged_message([0, 1, 2, 3, 7], 10, 0.1234))
    assert doc == {
        "v": 1,
        "kind": "unchanged",
        "order": "sorted",
        "unchanged": "0-3,7",
        "truncated": False,
        "checked": 10,
        "changed": 5,
        "seconds": 0.123,
        "exit_code": 0,
    }


def test_unchanged_message_at_10000_products() -> None:
    every = unchanged_message(list(range(10_000)), 10_000, 2.0)
    assert json.loads(every)["unchanged"] == "0-9999"
    # Alternating changed / unchanged: the ranges need ~24 kB; the message says so and stays valid.
    alternating = unchanged_message(list(range(0, 10_000, 2)), 10_000, 2.0)
    doc = json.loads(alternating)
    assert len(alternating.encode()) <= LIMIT
    assert doc["unchanged"] == "" and doc["truncated"] is True and doc["changed"] == 5_000
    assert "changed_indexes" not in doc  # neither range form fits: one bit per product does
    assert len(base64.b64decode(doc["unchanged_bitmap"])) == 1_250
    assert base64.b64decode(doc["unchanged_bitmap"]) == bytes([0b01010101]) * 1_250
    # Every 100th changed: the unchanged ranges still fit.
    mostly = [i for i in range(10_000) if i % 100]
    doc = json.loads(unchanged_message(mostly, 10_000, 2.0))
    assert doc["truncated"] is False and parse_ranges(doc["unchanged"]) == mostly and "changed_indexes" not in doc
    # 5 % changed, scattered (every 20th): too many unchanged ranges, but the changed ones fit.
    text = unchanged_message([i for i in range(10_000) if i % 20], 10_000, 2.0)
    doc = json.loads(text)
    assert len(text.encode()) <= LIMIT and doc["truncated"] is True and doc["unchanged"] == ""
    assert parse_ranges(doc["changed_indexes"]) == list(range(0, 10_000, 20))


def test_unchanged_error_message_fits() -> None:
    text = unchanged_message([], 0, 0.5, 4, "OutputUnavailable", "x" * 10_000)
    doc = json.loads(text)
    assert len(text.encode()) <= LIMIT and doc["exit_code"] == 4 and doc["reason"] == "OutputUnavailable"


def test_skipped_counts_as_success() -> None:
    skipped = ProductResult("a", SKIPPED, "smape", reason="Unchanged")
    assert exit_code([skipped]) == 0
    assert exit_code([skipped, ProductResult("b", TRAINED, "smape")]) == 0
    assert exit_code([skipped, ProductResult("b", "invalid", "smape")]) == 0
    assert exit_code([skipped, ProductResult("b", "failed", "smape", infra=True)]) == 4


# --------------------------------------------------------------------------- config hash


def _cfg(**env: str) -> TrainConfig:
    return train_config(resolve(TRAIN_OPTIONS, {}, {"TRAINER_DATA_CSV": "x.csv", **env}))


def test_every_option_is_classified_for_the_config_hash() -> None:
    fields = set(TrainConfig.__dataclass_fields__)
    assert set(MODEL_FIELDS) | set(NON_MODEL_FIELDS) == fields, "classify new TrainConfig fields in watermark.py"
    assert not set(MODEL_FIELDS) & set(NON_MODEL_FIELDS)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRAINER_HORIZON_DAYS", "31"),
        ("TRAINER_FREQUENCY", "W"),
        ("TRAINER_TRIALS", "5"),
        ("TRAINER_METRIC", "mae"),
        ("TRAINER_FOLDS", "2"),
        ("TRAINER_TIMEOUT_SECONDS", "60"),
        ("TRAINER_WARM_START", "false"),
        ("TRAINER_BUSINESS_TIMEZONE", "Europe/Berlin"),
        ("TRAINER_FILL_MISSING", "interpolate"),
        ("TRAINER_IMPROVEMENT_MARGIN", "0.05"),
        ("TRAINER_MODELS", "prophet,naive"),
        ("TRAINER_COUNTRY_HOLIDAYS", "DE"),
        ("TRAINER_TUNING_SEED", "7"),
    ],
)
def test_model_options_change_the_config_hash(name: str, value: str) -> None:
    assert config_hash(_cfg(**{name: value})) != config_hash(_cfg())


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRAINER_PRODUCT", "a"),
        ("TRAINER_DATA_TABLE", "other"),
        ("TRAINER_OUTPUT_SCHEMA", "elsewhere"),
        ("TRAINER_OUTPUT_DIR", "/tmp/x"),
        ("TRAINER_TRAININGJOB", "ns/name"),
        ("TRAINER_RUN_KEY", "uid-1"),
        ("TRAINER_SKIP_UNCHANGED", "true"),
        ("TRAINER_LOG_FORMAT", "json"),
        ("TRAINER_DB_RETRIES", "0"),
        ("TRAINER_TERMINATION_LOG", "/tmp/t"),
    ],
)
def test_other_options_keep_the_config_hash(name: str, value: str) -> None:
    assert config_hash(_cfg(**{name: value})) == config_hash(_cfg())


def test_config_document_is_plain_json() -> None:
    doc = config_document(_cfg(TRAINER_MODELS="ets,theta"))
    assert doc["trials"] == "auto" and doc["models"] == ["ets", "theta"] and doc["model_revision"] >= 1
    assert set(doc["libraries"]) == {"prophet", "statsforecast", "optuna", "numpy", "pandas", "cmdstanpy", "cmdstan"}
    assert "holidays" in config_document(_cfg(TRAINER_COUNTRY_HOLIDAYS="US"))["libraries"]
    json.dumps(doc)


def test_skip_unchanged_option_and_env() -> None:
    assert _cfg().skip_unchanged is False
    assert _cfg(TRAINER_SKIP_UNCHANGED="true").skip_unchanged is True
    assert train_config(resolve(TRAIN_OPTIONS, {"skip_unchanged": True}, {"TRAINER_DATA_CSV": "x"})).skip_unchanged
    with pytest.raises(ConfigError, match="TRAINER_SKIP_UNCHANGED"):
        _cfg(TRAINER_SKIP_UNCHANGED="maybe")
    values = resolve(UNCHANGED_OPTIONS, {}, {"TRAINER_DATA_CSV": "x", "TRAINER_PRODUCTS_FILE": "/p.json"})
    assert values["products_file"] == "/p.json"


def test_is_unchanged() -> None:
    mark = Watermark(10, "2024-01-10", "h")
    model = StoredModel(1, "c", "h", "cfg")
    assert is_unchanged(mark, model, "cfg")
    assert not is_unchanged(mark, model, "other")
    assert not is_unchanged(Watermark(11, "2024-01-11", "h2"), model, "cfg")
    assert not is_unchanged(None, model, "cfg") and not is_unchanged(mark, None, "cfg")
    assert not is_unchanged(mark, StoredModel(1, "c", None, None), "cfg")  # stored before watermarks
    # stored by an earlier attempt of this very run (same run key): reported as trained, not skipped
    assert not is_unchanged(mark, dataclasses.replace(model, run_key="k"), "cfg", "k")
    assert is_unchanged(mark, dataclasses.replace(model, run_key="k"), "cfg", "other")


def test_products_file(tmp_path: Path) -> None:
    good = tmp_path / "p.json"
    good.write_text('["b", "a", "b"]')
    assert read_products_file(str(good)) == ["b", "a"]
    for text in ("", "{}", "[]", '["a", 1]', '["a", " "]'):
        good.write_text(text)
        with pytest.raises(ConfigError, match="--products-file"):
            read_products_file(str(good))
    with pytest.raises(ConfigError, match="No such file"):
        read_products_file(str(tmp_path / "missing.json"))


# --------------------------------------------------------------------------- CSV watermarks


def _rows(path: Path, rows: list[tuple[str, str, str]]) -> dict[str, Watermark]:
    write_csv(path, rows)
    return csv_watermarks(str(path), "product_id", "ds", "y")


def test_csv_watermark_follows_the_data(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    a = product_rows("a", daily_frame(40, seed=1))
    b = product_rows("b", daily_frame(40, seed=2))
    base = _rows(path, a + b)
    assert base["a"].rows == 40 and base["a"].last == "2023-02-09" and len(base["a"].hash) == 64
    assert _rows(path, list(reversed(b)) + a) == base  # order of rows does not matter
    appended = _rows(path, [*a, ("a", "2023-02-10", "5"), *b])
    assert appended["a"] != base["a"] and appended["a"].rows == 41 and appended["b"] == base["b"]
    edited = _rows(path, [(*a[0][:2], "999"), *a[1:], *b])
    assert edited["a"].hash != base["a"].hash and edited["a"].rows == 40
    emptied = _rows(path, [(*a[0][:2], ""), *a[1:], *b])
    assert emptied["a"].hash not in (base["a"].hash, edited["a"].hash)
    spaced = _rows(path, [(f"  {p} ", d, y) for p, d, y in a + b])  # ids are stripped, as the trainer does
    assert spaced == base


def test_csv_watermark_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        csv_watermarks(str(tmp_path / "none.csv"), "product_id", "ds", "y")
    path = write_csv(tmp_path / "bad.csv", [("a", "2023-01-01", "1")], header=("sku", "ds", "y"))
    with pytest.raises(DataInvalid, match="column"):
        csv_watermarks(str(path), "product_id", "ds", "y")


# --------------------------------------------------------------------------- the CLI (CSV + --output-dir)


@pytest.fixture
def shop(tmp_path: Path) -> tuple[Path, Path, list[tuple[str, str, str]]]:
    rows: list[tuple[str, str, str]] = []
    for i, product in enumerate(("p-a", "p-b", "p-c")):
        rows += product_rows(product, daily_frame(90, seed=i))
    return write_csv(tmp_path / "sales.csv", rows), tmp_path / "out", rows


def _train(csv: Path, out: Path, term: Path, *extra: str, env: dict[str, str] | None = None) -> dict:
    run = run_cli(
        ["train", "--data-csv", str(csv), "--output-dir", str(out), "--termination-log", str(term), *FAST, *extra],
        env,
    )
    assert run.code == 0, run.stderr
    return termination(term)


def test_csv_train_then_skip_then_retrain_only_changed(shop: tuple[Path, Path, list], tmp_path: Path) -> None:
    csv, out, rows = shop
    term = tmp_path / "term.json"
    first = _train(csv, out, term, "--skip-unchanged")  # nothing stored yet: everything trains
    assert first["counts"]["trained"] == 3 and first["counts"]["skipped"] == 0
    stored = json.loads((out / "p-a" / "watermark.json").read_text())
    assert stored["rows"] == 90 and stored["checksum"] == first["products"][0]["checksum"]

    second = _train(csv, out, term, env={"TRAINER_SKIP_UNCHANGED": "true"})
    assert second["counts"] == {"trained": 0, "invalid": 0, "failed": 0, "locked": 0, "skipped": 3}
    entry = second["products"][0]
    assert entry["status"] == "skipped" and entry["reason"] == "Unchanged"
    assert entry["model_id"] == "p-a" and entry["checksum"] == first["products"][0]["checksum"]
    assert entry["family"] == first["products"][0]["family"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["skipped"] == 3

    write_csv(csv, [*rows, ("p-b", "2023-04-01", "7")])  # one more day for p-b
    third = _train(csv, out, term, "--skip-unchanged")
    assert {e["product"]: e["status"] for e in third["products"]} == {
        "p-a": "skipped",
        "p-b": "trained",
        "p-c": "skipped",
    }
    assert [e["product"] for e in third["products"]] == ["p-a", "p-b", "p-c"]  # the run's order is kept

    run = run_cli(
        ["unchanged", "--data-csv", str(csv), "--output-dir", str(out), "--termination-log", str(term), *FAST]
    )
    assert run.code == 0, run.stderr
    assert termination(term)["unchanged"] == "0-2"
    changed_config = _train(csv, out, term, "--skip-unchanged", "--horizon-days", "21")
    assert changed_config["counts"]["trained"] == 3


def test_skip_path_imports_no_data_or_model_library(shop: tuple[Path, Path, list], tmp_path: Path) -> None:
    csv, out, _ = shop
    term = tmp_path / "term.json"
    _train(csv, out, term)
    argv = ["train", "--data-csv", str(csv), "--output-dir", str(out), "--skip-unchanged"]
    argv += ["--termination-log", str(term), *FAST]
    heavy = ("pandas", "numpy", "prophet", "optuna", "statsforecast", "matplotlib")
    code = (
        "import json, sys\n"
        "from forecast_trainer.cli import main\n"
        f"rc = main({argv!r})\n"
        f"heavy = sorted(m for m in {heavy!r} if m in sys.modules)\n"
        "print(json.dumps({'rc': rc, 'heavy': heavy}))\n"
    )
    import subprocess

    env = clean_env({"PYTHONPATH": str(REPO / "trainer_image")})
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"rc": 0, "heavy": []}
    assert termination(term)["counts"]["skipped"] == 3


def test_unchanged_command_errors_leave_a_valid_message(tmp_path: Path) -> None:
    term = tmp_path / "term.json"
    env = {"TRAINER_TERMINATION_LOG": str(term)}
    run = run_cli(["unchanged", "--data-csv", str(tmp_path / "x.csv"), "--products-file", str(tmp_path / "no")], env)
    assert run.code == 2 and "--products-file" in run.stderr
    doc = termination(term)
    assert doc["kind"] == "unchanged" and doc["exit_code"] == 2 and doc["unchanged"] == "" and doc["checked"] == 0
    run = run_cli(["unchanged"], env)  # no data source
    assert run.code == 2 and termination(term)["reason"] == "InvalidConfig"
    run = run_cli(["unchanged", "--data-csv", str(tmp_path / "missing.csv")], env)
    assert run.code == 2 and "does not exist" in termination(term)["message"]


def test_unchanged_without_outputs_reports_everything_changed(shop: tuple[Path, Path, list], tmp_path: Path) -> None:
    csv, _, _ = shop
    term = tmp_path / "term.json"
    products = tmp_path / "products.json"
    products.write_text(json.dumps(["p-c", "p-a", "nope"]))
    run = run_cli(
        ["unchanged", "--data-csv", str(csv), "--products-file", str(products), "--termination-log", str(term)]
    )
    assert run.code == 0, run.stderr
    doc = termination(term)
    assert doc["checked"] == 3 and doc["changed"] == 3 and doc["unchanged"] == ""
    assert os.path.exists(term)


@pytest.mark.parametrize("library", ["numpy", "pandas", "prophet", "statsforecast", "cmdstanpy"])
def test_a_new_version_of_a_fitting_library_changes_the_config_hash(
    library: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trainer image with other numerics fits other models: nothing may be skipped as unchanged."""
    import forecast_trainer.watermark as watermark

    before = config_hash(_cfg())
    real = watermark.library_version
    monkeypatch.setattr(watermark, "library_version", lambda name: "99.0" if name == library else real(name))
    assert config_hash(_cfg()) != before


def test_the_trainer_version_and_the_bundled_cmdstan_change_the_config_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    import forecast_trainer.watermark as watermark

    before = config_hash(_cfg())
    monkeypatch.setattr(watermark, "__version__", "99.0")
    newer_trainer = config_hash(_cfg())
    monkeypatch.undo()
    monkeypatch.setattr(watermark, "cmdstan_version", lambda: "9.99.0")
    assert len({before, newer_trainer, config_hash(_cfg())}) == 3


def test_the_bundled_cmdstan_version_is_found_without_importing_prophet() -> None:
    import sys

    import forecast_trainer.watermark as watermark

    had_prophet = "prophet" in sys.modules
    version = watermark.cmdstan_version()
    assert version == "absent" or version[0].isdigit()
    assert ("prophet" in sys.modules) == had_prophet
