"""Shard mode, pure parts and the command line without a database: which products a shard
trains, the options that select them, the v2 shard report, discover on a CSV."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.trainer.helpers import daily_frame, date_rows, product_rows, run_cli, write_csv

from forecast_trainer import histogram
from forecast_trainer.config import TRAIN_OPTIONS, job_completion_index, resolve, train_config
from forecast_trainer.errors import ConfigError
from forecast_trainer.report import INVALID, LOCKED, SKIPPED, TRAINED, ProductResult, shard_message
from forecast_trainer.shard import products_sha256, read_file_list, shard_indexes
from forecast_trainer.watermark import index_ranges, parse_ranges

# --------------------------------------------------------------------------- which products


@settings(max_examples=200, deadline=None)
@given(
    indexes=st.sets(st.integers(0, 3000), min_size=1, max_size=400),
    size=st.integers(1, 60),
    k=st.integers(0, 50),
)
def test_shard_k_trains_sorted_round_slice(indexes: set[int], size: int, k: int) -> None:
    ranges = index_ranges(indexes)
    assert shard_indexes(ranges, size, k) == sorted(indexes)[k * size : (k + 1) * size]


@pytest.mark.parametrize(
    ("ranges", "size", "k", "expected"),
    [
        ("0-99999", 500, 0, list(range(0, 500))),
        ("0-99999", 500, 199, list(range(99500, 100000))),
        ("0-99999", 500, 200, []),
        ("3,17,200-210", 4, 1, [202, 203, 204, 205]),
        ("3,17,200-210", 4, 3, [210]),
        ("3,17,200-210", 4, 4, []),
        ("3,17,200-210", 10, 1, [208, 209, 210]),
    ],
)
def test_shard_indexes_table(ranges: str, size: int, k: int, expected: list[int]) -> None:
    assert shard_indexes(ranges, size, k) == expected


def test_products_sha256_is_sha256_of_the_sorted_ids_joined_by_newlines() -> None:
    import hashlib

    ids = sorted(["b", "a", "é-1", "A"])
    assert products_sha256(ids) == hashlib.sha256("A\na\nb\né-1".encode()).hexdigest()


def test_product_list_file_is_one_verbatim_id_per_line(tmp_path: Path) -> None:
    path = tmp_path / "products"
    path.write_text(" a\nb \nc\n", encoding="utf-8")
    assert read_file_list(str(path)) == [" a", "b ", "c"]
    path.write_text("", encoding="utf-8")
    assert read_file_list(str(path)) == []


# --------------------------------------------------------------------------- options

SHARD_ENV = {
    "TRAINER_DATA_CSV": "x.csv",
    "TRAINER_SHARD_SIZE": "10",
    "TRAINER_SHARD_INDEXES": "0-99",
    "TRAINER_PRODUCTS_FROM": "file:/etc/products/products",
    "TRAINER_PRODUCTS_SHA256": "a" * 64,
}


def config(env: dict[str, str]) -> object:
    return train_config(job_completion_index(resolve(TRAIN_OPTIONS, {}, env), env))


def test_shard_index_comes_from_job_completion_index() -> None:
    cfg = config({**SHARD_ENV, "JOB_COMPLETION_INDEX": "7"})
    assert cfg.shard is not None and cfg.shard.index == 7 and cfg.shard.size == 10  # type: ignore[attr-defined]
    cfg = config({**SHARD_ENV, "JOB_COMPLETION_INDEX": "7", "TRAINER_SHARD_INDEX": "2"})
    assert cfg.shard.index == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"TRAINER_PRODUCT_ID": "p1", "JOB_COMPLETION_INDEX": "0"}, "do not combine"),
        ({"TRAINER_SHARD_INDEXES": "5-3", "JOB_COMPLETION_INDEX": "0"}, "ascending"),
        ({"TRAINER_SHARD_INDEXES": "0-3,2-9", "JOB_COMPLETION_INDEX": "0"}, "disjoint"),
        ({"TRAINER_SHARD_INDEXES": "0-3;7", "JOB_COMPLETION_INDEX": "0"}, "index ranges"),
        ({"TRAINER_PRODUCTS_SHA256": "xyz", "JOB_COMPLETION_INDEX": "0"}, "SHA-256"),
        ({"TRAINER_PRODUCTS_FROM": "http://x", "JOB_COMPLETION_INDEX": "0"}, "file:<path>"),
        ({"TRAINER_PRODUCTS_FROM": "snapshot", "JOB_COMPLETION_INDEX": "0"}, "needs --output-dsn"),
        ({}, "--shard-index"),
        ({"JOB_COMPLETION_INDEX": "minus one"}, "JOB_COMPLETION_INDEX"),
        ({"TRAINER_SHARD_SIZE": "10001", "JOB_COMPLETION_INDEX": "0"}, "outside 1..10000"),
    ],
)
def test_bad_shard_options_are_config_errors(change: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        config({**SHARD_ENV, **change})


def test_shard_options_without_shard_size_are_refused() -> None:
    with pytest.raises(ConfigError, match="set --shard-size"):
        config({"TRAINER_DATA_CSV": "x.csv", "TRAINER_SHARD_INDEXES": "0-9"})
    cfg = config({"TRAINER_DATA_CSV": "x.csv", "JOB_COMPLETION_INDEX": "3"})  # a product pod of an Indexed Job
    assert cfg.shard is None  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- the v2 report


def result(i: int, status: str, **kw: object) -> ProductResult:
    return ProductResult(product=f"p{i:05d}", status=status, metric="smape", **kw)  # type: ignore[arg-type]


def test_500_products_failing_with_long_messages_fit_in_4096_bytes() -> None:
    long_id = "x" * 240
    results = [
        ProductResult(
            product=f"{i:05d}{long_id}", status=INVALID, metric="smape", reason="TooFewPoints", message="m " * 400
        )
        for i in range(500)
    ]
    text = shard_message(12, 500, 500, results, "smape")
    doc = json.loads(text)
    assert len(text.encode("utf-8")) <= 4096
    assert doc["done"] == 500 and doc["failed"] == "0-499" and doc["trained"] == ""
    assert doc["errors"] and doc["errors_omitted"] == 500 - len(doc["errors"])
    first = doc["errors"][0]
    assert first[0] == 0 and first[1] == results[0].product and first[2] == "DataInvalid"  # ids never shortened
    assert [e[0] for e in doc["errors"]] == list(range(len(doc["errors"])))


def test_report_lists_every_position_once_and_aggregates_the_trained() -> None:
    results = [
        result(0, TRAINED, error=12.5, baseline_error=14.0, beats_baseline=True, family="ets", beats_naive=True),
        result(1, SKIPPED),
        result(2, LOCKED, reason="ProductLocked", message="held by someone"),
        result(3, "failed", reason="OutputUnavailable", message="db down", infra=True),
        result(4, "failed", reason="FitFailed", message="boom"),
        result(5, TRAINED, error=0.00005, baseline_error=None, tuned=True, family="prophet", champion="kept"),
    ]
    doc = json.loads(shard_message(1, 6, 8, results, "smape"))
    assert (doc["shard"], doc["size"], doc["n"], doc["done"]) == (1, 6, 8, 6)
    assert (doc["trained"], doc["skipped"], doc["locked"], doc["failed"]) == ("0,5", "1", "2", "3-4")
    assert doc["errors"] == [
        [3, "p00003", "InfrastructureUnavailable", "OutputUnavailable: db down"],
        [4, "p00004", "TrainerError", "FitFailed: boom"],
    ]
    r = doc["results"]
    assert (r["trained"], r["tuned"], r["beat_baseline"], r["beat_naive"]) == (2, 1, 1, 1)
    assert r["models"] == {"ets": 1, "prophet": 1}
    assert r["error_sum"] == "12.500050"
    assert r["errors"] == {str(histogram.bucket_of(12.5)): 1, "0": 1}
    assert r["baseline_errors"] == {str(histogram.bucket_of(14.0)): 1}
    assert r["champions"] == {"promoted": 0, "kept": 1, "first": 0}


statuses = st.sampled_from([TRAINED, SKIPPED, LOCKED, INVALID, "failed"])


@settings(max_examples=60, deadline=None)
@given(
    kinds=st.lists(statuses, min_size=0, max_size=3000),
    message=st.text(min_size=0, max_size=300),
    error=st.floats(min_value=0, max_value=1e9, allow_nan=False),
)
def test_report_is_always_valid_json_within_4096_bytes(kinds: list[str], message: str, error: float) -> None:
    results = [result(i, k, message=message, reason="R", error=error * (i % 7)) for i, k in enumerate(kinds)]
    text = shard_message(0, len(kinds), len(kinds), results, "smape")
    assert len(text.encode("utf-8")) <= 4096
    doc = json.loads(text)
    done = doc["done"]
    covered = sorted(i for key in ("trained", "skipped", "locked", "failed") for i in parse_ranges(doc[key]))
    assert covered == list(range(done))  # a prefix of the positions, each exactly once
    for key, wanted in (("trained", {TRAINED}), ("failed", {INVALID, "failed"})):
        assert all(kinds[i] in wanted for i in parse_ranges(doc[key]))
    assert len(doc["errors"]) + doc["errors_omitted"] == sum(1 for k in kinds[:done] if k in (INVALID, "failed"))


# --------------------------------------------------------------------------- the histogram rule


def test_trainer_buckets_agree_with_the_operator() -> None:
    from trainingjob_operator import histogram as operator_histogram

    values = [0.0, 1e-5, 1e-4, 1.0000001e-4, 1.25e-4, 0.5, 1.0, 12.3456, 99.999, 100.0, 1e3, 1e6, 1e7, 1e9, 1e12]
    values += [10 ** (e / 37.0) for e in range(-200, 400)]
    values += [operator_histogram.upper_bound(i) for i in range(operator_histogram.BUCKETS)]
    for v in values:
        assert histogram.bucket_of(v) == operator_histogram.bucket_of(v), v
    assert (histogram.BASE, histogram.GROWTH, histogram.BUCKETS) == (
        operator_histogram.BASE,
        operator_histogram.GROWTH,
        operator_histogram.BUCKETS,
    )
    assert histogram.fixed_text(math.pi) == operator_histogram.fixed_text(math.pi)


# --------------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def csv_with_bad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("shard") / "sales.csv"
    rows = []
    for i in range(5):
        rows += product_rows(f"shop-{i}", daily_frame(90, seed=i))
    rows += date_rows("bad-short", [1, 2, 3])
    return write_csv(path, rows)


def test_discover_lists_a_csv_sorted_with_its_digest(csv_with_bad: Path, tmp_path: Path) -> None:
    term = tmp_path / "term.json"
    run = run_cli(["discover", "--data-csv", str(csv_with_bad), "--termination-log", str(term)])
    assert run.code == 0, run.stderr
    ids = sorted(["bad-short", *(f"shop-{i}" for i in range(5))])
    assert json.loads(term.read_text()) == {
        "v": 1,
        "kind": "discover",
        "count": 6,
        "products_sha256": products_sha256(ids),
        "snapshot": False,
        "exit_code": 0,
    }


def shard_env(csv: Path, term: Path, products: Path, ids: list[str], **extra: str) -> dict[str, str]:
    products.write_text("".join(f"{p}\n" for p in ids), encoding="utf-8")
    return {
        "TRAINER_DATA_CSV": str(csv),
        "TRAINER_MODELS": "seasonal_naive",
        "TRAINER_FOLDS": "1",
        "TRAINER_HORIZON_DAYS": "14",
        "TRAINER_TERMINATION_LOG": str(term),
        "TRAINER_SHARD_SIZE": "4",
        "TRAINER_SHARD_INDEXES": "0-5",
        "TRAINER_PRODUCTS_FROM": f"file:{products}",
        "TRAINER_PRODUCTS_SHA256": products_sha256(ids),
        **extra,
    }


def test_shard_of_a_file_list_trains_its_slice_and_the_invalid_product_fails_alone(
    csv_with_bad: Path, tmp_path: Path
) -> None:
    ids = sorted(["bad-short", *(f"shop-{i}" for i in range(5))])  # bad-short, shop-0 .. shop-4
    term = tmp_path / "term.json"
    run = run_cli(["train"], shard_env(csv_with_bad, term, tmp_path / "products", ids, JOB_COMPLETION_INDEX="0"))
    assert run.code == 0, run.stderr
    doc = json.loads(term.read_text())
    assert (doc["v"], doc["kind"], doc["shard"], doc["n"], doc["done"]) == (2, "shard", 0, 4, 4)
    assert (doc["trained"], doc["failed"]) == ("1-3", "0")
    assert doc["errors"][0][:3] == [0, "bad-short", "DataInvalid"] and "TooFewPoints" in doc["errors"][0][3]
    run = run_cli(["train"], shard_env(csv_with_bad, term, tmp_path / "products", ids, JOB_COMPLETION_INDEX="1"))
    doc = json.loads(term.read_text())
    assert run.code == 0 and (doc["n"], doc["trained"]) == (2, "0-1")  # shop-3, shop-4
    assert doc["results"]["models"] == {"seasonal_naive": 2}


def test_shard_with_another_list_digest_exits_2_and_trains_nothing(csv_with_bad: Path, tmp_path: Path) -> None:
    ids = sorted(["bad-short", *(f"shop-{i}" for i in range(5))])
    term = tmp_path / "term.json"
    env = shard_env(csv_with_bad, term, tmp_path / "products", ids, JOB_COMPLETION_INDEX="0")
    env["TRAINER_PRODUCTS_SHA256"] = products_sha256(ids[:-1])
    run = run_cli(["train"], env)
    doc = json.loads(term.read_text())
    assert run.code == 2 and "does not have the digest" in run.stderr
    assert (doc["done"], doc["exit_code"], doc["reason"]) == (0, 2, "InvalidConfig")
    env = shard_env(csv_with_bad, term, tmp_path / "products", ids, JOB_COMPLETION_INDEX="0")
    env["TRAINER_PRODUCTS_FROM"] = "source"
    env["TRAINER_PRODUCTS_SHA256"] = products_sha256(["shop-0"])
    run = run_cli(["train"], env)
    assert run.code == 2 and "the data source's products changed since discovery" in run.stderr
    env = shard_env(csv_with_bad, term, tmp_path / "products", ids, JOB_COMPLETION_INDEX="2")
    run = run_cli(["train"], env)  # 6 products in shards of 4: shard 2 does not exist
    assert run.code == 2 and "beyond this round" in run.stderr


def test_a_shard_stopped_by_sigterm_reports_what_it_finished_and_exits_4(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.unit.trainer.helpers import REPO, clean_env

    ids = sorted(f"shop-{i:03d}" for i in range(200))
    rows = []
    for i, p in enumerate(ids):
        rows += product_rows(p, daily_frame(60, seed=i))
    csv = write_csv(tmp_path / "sales.csv", rows)
    term = tmp_path / "term.json"
    env = clean_env(shard_env(csv, term, tmp_path / "products", ids, JOB_COMPLETION_INDEX="0"))
    env.update(TRAINER_SHARD_SIZE="200", TRAINER_SHARD_INDEXES="0-199")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "trainer_image"), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [sys.executable, "-m", "forecast_trainer", "train"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 240
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            done = json.loads(term.read_text())["done"]
        except (OSError, ValueError, KeyError):
            done = 0
        if done >= 2:
            break
        time.sleep(0.05)
    assert done >= 2 and proc.poll() is None, "the shard did not report two products in time"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    doc = json.loads(term.read_text())
    assert proc.returncode == 4
    assert 2 <= doc["done"] < 200 and doc["n"] == 200
    assert parse_ranges(doc["trained"]) == list(range(doc["done"]))  # what it finished, nothing more
