"""A product is its id: the trainer trains exactly the product it is given, never a re-reading of it.

Issue 9 item 4: ``products: [" "]`` or ``["[]"]`` made one pod train every product of the data
source, and ``['["a","b"]']`` trained a and b. These run the command line as a pod does
(TRAINER_* variables only) and look at the termination message the operator reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.unit.trainer.helpers import daily_frame, date_rows, product_rows, run_cli, write_csv

LITERAL = '["a","b"]'


def termination(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= 4096
    return json.loads(text)


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Products a, b and one whose id is literally the JSON text ["a","b"]."""
    rows = product_rows("a", daily_frame(60, seed=1)) + product_rows("b", daily_frame(60, seed=2))
    rows += product_rows(LITERAL, daily_frame(60, seed=3))
    return write_csv(tmp_path_factory.mktemp("ids") / "sales.csv", rows)


def pod_env(csv_path: Path, term: Path, **extra: str) -> dict[str, str]:
    return {
        "TRAINER_DATA_CSV": str(csv_path),
        "TRAINER_TERMINATION_LOG": str(term),
        "TRAINER_TRIALS": "0",
        "TRAINER_FOLDS": "1",
        "TRAINER_HORIZON_DAYS": "7",
        "TRAINER_LOG_FORMAT": "json",
        **extra,
    }


@pytest.mark.parametrize("variable", ["TRAINER_PRODUCT_ID", "TRAINER_PRODUCT"])
def test_a_literal_json_array_id_trains_that_one_product(csv_path: Path, tmp_path: Path, variable: str) -> None:
    term = tmp_path / "term.json"
    run = run_cli(["train"], pod_env(csv_path, term, **{variable: LITERAL}))
    assert run.code == 0, run.stderr
    doc = termination(term)
    assert [(e["product"], e["status"]) for e in doc["products"]] == [(LITERAL, "trained")]
    assert doc["counts"]["trained"] == 1


@pytest.mark.parametrize("product_id", ["[]", "a,b", "a b", "*", "%", "null", " a"])
def test_an_id_absent_from_the_data_fails_for_that_id_only(csv_path: Path, tmp_path: Path, product_id: str) -> None:
    term = tmp_path / "term.json"
    run = run_cli(["train"], pod_env(csv_path, term, TRAINER_PRODUCT_ID=product_id))
    assert run.code == 3, run.stderr
    doc = termination(term)
    assert [(e["product"], e["status"], e["reason"]) for e in doc["products"]] == [(product_id, "invalid", "NoData")]


@pytest.mark.parametrize("blank", ["", " ", "\t"])
@pytest.mark.parametrize("variable", ["TRAINER_PRODUCT_ID", "TRAINER_PRODUCT"])
def test_a_blank_id_is_a_config_error_never_every_product(
    csv_path: Path, tmp_path: Path, variable: str, blank: str
) -> None:
    term = tmp_path / "term.json"
    run = run_cli(["train"], pod_env(csv_path, term, **{variable: blank}))
    assert run.code == 2, run.stderr
    assert variable in run.stderr and "empty or only whitespace" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    doc = termination(term)
    assert doc["exit_code"] == 2 and doc["counts"]["trained"] == 0
    if variable == "TRAINER_PRODUCT_ID":  # echoed verbatim: the operator finds its own product, and only it
        assert [(e["product"], e["status"], e["reason"]) for e in doc["products"]] == [
            (blank, "failed", "InvalidConfig")
        ]
    else:
        assert doc["products"] == []


def test_product_id_with_a_list_form_is_a_config_error(csv_path: Path, tmp_path: Path) -> None:
    term = tmp_path / "term.json"
    run = run_cli(["train"], pod_env(csv_path, term, TRAINER_PRODUCT_ID="a", TRAINER_PRODUCT="b"))
    assert run.code == 2 and "exactly one product" in run.stderr
    assert [e["product"] for e in termination(term)["products"]] == ["a"]


def test_products_json_is_the_explicit_way_to_name_several(csv_path: Path, tmp_path: Path) -> None:
    term = tmp_path / "term.json"
    run = run_cli(["train"], pod_env(csv_path, term, TRAINER_PRODUCTS_JSON='["a", "b"]'))
    assert run.code == 0, run.stderr
    assert [(e["product"], e["status"]) for e in termination(term)["products"]] == [("a", "trained"), ("b", "trained")]


def test_overflowing_daily_totals_exit_3_not_1(tmp_path: Path) -> None:
    rows = date_rows("p", [str(5 + i % 4) for i in range(60)])
    rows += [("p", rows[9][1], "1.7e308"), ("p", rows[9][1], "1.6e308")]  # finite rows, infinite day
    term = tmp_path / "term.json"
    run = run_cli(["train"], pod_env(write_csv(tmp_path / "s.csv", rows), term, TRAINER_PRODUCT_ID="p"))
    assert run.code == 3, run.stderr
    entry = termination(term)["products"][0]
    assert (entry["status"], entry["reason"]) == ("invalid", "ValueTooLarge")
    assert "too large" in entry["message"] and rows[9][1] in entry["message"]
